"""experiments/compare_exploration.py's summary: steps to a threshold per seed, every seed kept."""

import importlib.util
import json
import os

import numpy as np

_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments",
                     "compare_exploration.py")


def _module():
  spec = importlib.util.spec_from_file_location("compare_exploration", _PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _write_run(workdir, eval_rows):
  """A metrics.jsonl of two vmapped seeds: a training row per step, evals as given."""
  os.makedirs(workdir)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    for step, returns in eval_rows:
      row = {"step": step, "steps_per_second": 1000.0, "episode_return": float(np.mean(returns)),
             "eval_return": float(np.mean(returns)),
             "per_seed": {"episode_return": returns, "success_rate": [1.0, 0.0],
                          "eval_return": returns, "eval_success_rate": [1.0, 0.0]}}
      f.write(json.dumps(row) + "\n")


def test_steps_to_threshold_per_seed_and_not_reached(tmp_path):
  compare = _module()
  # Seed 0 crosses 600 at the second evaluation and dips after; seed 1 never does.
  _write_run(str(tmp_path / "a"), [(100, [10.0, 5.0]), (200, [650.0, 500.0]),
                                   (300, [590.0, 599.0])])
  summary = compare._summarize([(str(tmp_path / "a"), 2)], 2, 12.0, 600.0)
  assert summary["steps_to_threshold"] == [200, None]
  assert summary["final_eval_return"] == [590.0, 599.0]
  table = compare._table({"task": {"mimex@k=0.05": summary}}, 2, {"task": 300})
  assert "| task | mimex@k=0.05 | 1/2 | - | 0.2k, - |" in table  # median counts "-" as beyond


def test_split_runs_are_joined_seed_by_seed(tmp_path):
  compare = _module()
  _write_run(str(tmp_path / "first"), [(100, [700.0, 0.0])])
  _write_run(str(tmp_path / "second"), [(100, [0.0, 800.0])])
  summary = compare._summarize([(str(tmp_path / "first"), 2), (str(tmp_path / "second"), 2)], 4,
                               1.0, 600.0)
  assert summary["steps_to_threshold"] == [100, None, None, 100]


def test_steps_read_in_millions_or_thousands():
  compare = _module()
  assert compare._steps(12_300_000) == "12.3M"
  assert compare._steps(250_000) == "250.0k"


def test_drq_runs_use_its_config_and_the_variant_sizes():
  compare = _module()
  args = compare.argparse.Namespace(learner="drq", task_steps={"task": 200_000}, num_envs=None,
                                    eval_every=None, log_every=None)
  command = compare._command("task", "rnd", "/w", args, ["intrinsic.k_expl=0.01"], 2, 1)
  assert "--config=configs/drq.py:task" in command
  assert "--config.total_steps=200000" in command and "--config.seed=2" in command
  assert not any(part.startswith(("--config.num_envs", "--config.eval_every"))
                 for part in command)
  assert command[-1] == "--config.intrinsic.k_expl=0.01"
  args.learner, args.num_envs = "ppo", 256
  assert "--config.num_envs=256" in compare._command("task", "none", "/w", args, [], 0, 5)
