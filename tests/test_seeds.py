"""Several seeds in one program: they differ from each other, and each is the run that seed
trains alone, up to float rounding (XLA rounds a batched matmul over 2 seeds differently from one
over 1: differences of about 1e-7 after 3 updates)."""

import jax
import numpy as np
import pytest

from mimex_jax.agents import build
from mimex_jax.train import seeded_training

pytestmark = pytest.mark.slow  # vmapped seeds compile their own programs, in and out of the CLI


def _train(config, updates=3):
  _, fused, _, _ = build(config)
  _, state, step_fn, step_keys = seeded_training(config, fused)
  for _ in range(updates):
    state, metrics = step_fn(state, step_keys)
  return jax.device_get(state), jax.device_get(metrics)


def test_two_seeds_differ_and_each_equals_its_single_seed_run(smoke_config):
  config = smoke_config.copy_and_resolve_references()
  config.num_seeds = 2
  config.seed = 3
  both, metrics = _train(config)
  assert np.asarray(metrics["policy_loss"]).shape == (2, 2)  # [devices, seeds]
  params = jax.tree.leaves(both.params)
  assert max(float(np.abs(leaf[:, 0] - leaf[:, 1]).max()) for leaf in params) > 1e-3
  for index in range(2):
    alone_config = smoke_config.copy_and_resolve_references()
    alone_config.seed = 3 + index
    alone, _ = _train(alone_config)
    pairs = zip(jax.tree_util.tree_flatten_with_path(both)[0], jax.tree.leaves(alone))
    checked = 0
    for (path, leaf), single in pairs:
      name = jax.tree_util.keystr(path)
      if "['key']['bias']" in name:
        # Attention key biases shift every logit of a query equally, so their true gradient is
        # zero; Adam scales the rounding noise in it to learning-rate-sized steps.
        continue
      leaf, single = np.asarray(leaf)[:, index], np.asarray(single)[:, 0]
      if leaf.dtype.kind == "f":
        np.testing.assert_allclose(leaf, single, rtol=1e-5, atol=2e-6, err_msg=name)
      else:
        np.testing.assert_array_equal(leaf, single, err_msg=name)  # counters, keys
      checked += 1
    assert checked > 200


@pytest.mark.long  # a MIMEx CLI run of two seeds
def test_cli_trains_two_seeds_and_logs_each(repo_root, tmp_path):
  import json
  import subprocess
  import sys
  from conftest import ENV
  workdir = tmp_path / "seeds"
  result = subprocess.run(
      [sys.executable, "-m", "mimex_jax.train", "--config=configs/ppo.py:smoke",
       f"--workdir={workdir}", "--config.num_seeds=2", "--config.intrinsic.kind=mimex",
       "--config.intrinsic.normalize=True"],
      cwd=repo_root, env=ENV, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  last = records[-1]
  returns = last["per_seed"]["episode_return"]
  assert len(returns) == 2 and returns[0] != returns[1]
  assert abs(last["episode_return"] - sum(returns) / 2) < 1e-9  # the logged value is the mean
  assert len(last["per_seed"]["eval_return"]) == 2
  assert (workdir / "learning_curve.png").stat().st_size > 10_000


# 7 min on 2 busy cores: DrQ's smoke run compiles, and runs two seeds one by one.
@pytest.mark.long  # two DrQ seeds, each compiling its own program
def test_cli_trains_two_drq_seeds_on_cpu(repo_root, tmp_path):
  import json
  import subprocess
  import sys
  from conftest import ENV
  workdir = tmp_path / "drq_seeds"
  result = subprocess.run(
      [sys.executable, "-m", "mimex_jax.train", "--config=configs/drq.py:smoke",
       f"--workdir={workdir}", "--config.num_seeds=2"],
      cwd=repo_root, env=ENV, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  last = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])
  assert last["step"] == 192 and len(last["per_seed"]["eval_return"]) == 2
