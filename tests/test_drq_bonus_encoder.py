"""DrQ's `drq.bonus_encoder`: `step_start` (the CPU default) against `current`, the
reference's, where they must train alike, and the key's check."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax import parallel
from mimex_jax.agents import build, check
from mimex_jax.config_checks import ConfigError
from test_drq import _state_config


@pytest.fixture(scope="module")
def drq_configs(repo_root):
  sys.path.insert(0, repo_root)
  from configs import drq
  return drq


def _run_fused_steps(config, steps):
  """`(drq params, bonus model state, last metrics)` after `steps` fused steps from seed 0."""
  _, fused, _, _ = build(config)
  key = jax.random.PRNGKey(0)
  state = parallel.pmap_init(fused.init, key)
  step = parallel.pmap_step(fused)
  keys = jnp.stack([key] * jax.local_device_count())
  for _ in range(steps):
    state, metrics = step(state, keys)
  return jax.tree.map(np.asarray, (state.params, state.intrinsic, metrics))


def _assert_trees_close(a, b, what):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    name = jax.tree_util.keystr(path)
    if "['key']['bias']" in name:
      # Attention is blind to a bias shared by all keys: its gradient is rounding noise, which
      # Adam scales up to full steps, so the two orders of float sums move it differently.
      continue
    np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-6, err_msg=f"{what}: {name}")


@pytest.mark.slow  # 4 programs compiled cold: 7 min of the fast line under load
@pytest.mark.parametrize("kind", ["mimex", "rnd"])
def test_step_start_bonus_encoder_matches_current_where_the_encoder_cannot_differ(
    drq_configs, kind):
  """`drq.bonus_encoder=step_start` (the CPU default) embeds all of a fused step's bonus inputs
  with the step's starting encoder, then runs the bonus model's steps before the learner's. From
  states the encoder has no parameters, and from pixels with one update per step the starting
  encoder is the update's own: in both cases it must train exactly as `current` does."""
  config = _state_config(drq_configs)
  config.intrinsic.kind = kind
  runs = {}
  for mode in ("current", "step_start"):
    config.drq.bonus_encoder = mode
    runs[mode] = _run_fused_steps(config, 5)  # learning from the third step on
  assert float(runs["current"][2]["learning"][0]) == 1.0
  assert float(runs["current"][2]["intrinsic_reward"][0]) > 0
  _assert_trees_close(runs["current"], runs["step_start"], f"{kind} from states")

  config = drq_configs.get_config("smoke")
  config.intrinsic.kind = kind
  config.updates_per_step = 1
  config.drq.aug_pad = 2  # the bonus's shifted contexts go through the chunked pass too
  pixel_runs = {}
  for mode in ("current", "step_start"):
    config.drq.bonus_encoder = mode
    pixel_runs[mode] = _run_fused_steps(config, 6)
  assert float(pixel_runs["current"][2]["learning"][0]) == 1.0
  _assert_trees_close(pixel_runs["current"], pixel_runs["step_start"], f"{kind} from pixels")


def test_bonus_encoder_is_checked(drq_configs):
  config = _state_config(drq_configs)
  config.drq.bonus_encoder = "latest"
  with pytest.raises(ConfigError, match="drq.bonus_encoder='latest' is invalid; allowed: auto, "
                                        "current or step_start"):
    check(config, jax.device_count(), "cpu")


def test_a_checkpoint_records_the_bonus_encoder_that_trained_and_another_is_refused(
    drq_configs):
  """`auto` is made before a run saves: a CPU run's checkpoint says `step_start`, so resuming it
  where `auto` means `current` (a GPU) is refused with the flag that matches it."""
  from mimex_jax import agents
  from mimex_jax.checkpoint_config import config_differences, config_to_dict, override_flags
  config = config_to_dict(drq_configs.get_config("smoke"))
  assert config["drq"]["bonus_encoder"] == "auto"
  on_cpu, on_gpu = agents.resolve(config, "cpu"), agents.resolve(config, "gpu")
  assert on_cpu["drq"]["bonus_encoder"] == "step_start"
  assert on_gpu["drq"]["bonus_encoder"] == "current"
  assert config["drq"]["bonus_encoder"] == "auto"  # the config itself is left as it was
  assert config_differences(on_cpu, agents.resolve(config, "cpu")) == []
  assert config_differences(on_cpu, on_gpu) == [
      "drq.bonus_encoder='step_start' in the checkpoint vs 'current' now"]
  assert override_flags(on_cpu, on_gpu) == ["--config.drq.bonus_encoder=step_start"]
  # A value set by hand is kept on every platform.
  config["drq"]["bonus_encoder"] = "current"
  assert agents.resolve(config, "cpu")["drq"]["bonus_encoder"] == "current"
  # Checkpoints saved before `auto` was made hold `auto`: they resume as before.
  config["drq"]["bonus_encoder"] = "auto"
  assert config_differences(config, on_gpu) == [] and override_flags(config, on_gpu) == []
  # PPO has no such choice: its config is recorded as it is.
  from configs import ppo  # on sys.path since the drq_configs fixture
  ppo_config = config_to_dict(ppo.get_config("smoke"))
  assert agents.resolve(ppo_config, "gpu") == ppo_config
