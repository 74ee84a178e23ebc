"""PPO's second value head for the intrinsic return (`ppo.intrinsic_value_head`)."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax.agents.ppo import learner as ppo_learner
from mimex_jax.agents.ppo.losses import compute_gae

STEPS, ENVS, OBS_SIZE = 8, 4, 3


def _ppo_config(repo_root, two_heads, **overrides):
  sys.path.insert(0, repo_root)
  from configs import ppo as ppo_configs
  config = ppo_configs.get_config("smoke").ppo
  config.intrinsic_value_head = two_heads
  for key, value in overrides.items():
    config[key] = value
  return config


def _batch(key, intrinsic_reward=None, reward=None):
  keys = jax.random.split(key, 4)
  obs = jax.random.normal(keys[0], (STEPS, ENVS, OBS_SIZE))
  done = (jax.random.uniform(keys[1], (STEPS, ENVS)) < 0.2).astype(jnp.float32)
  return ppo_learner.PPOBatch(
      obs=obs, action=jnp.zeros((STEPS, ENVS, 1)), log_prob=jnp.zeros((STEPS, ENVS)),
      reward=jax.random.normal(keys[2], (STEPS, ENVS)) if reward is None else reward,
      terminated=jnp.zeros((STEPS, ENVS)), done=done,
      next_obs=jax.random.normal(keys[3], (STEPS, ENVS, OBS_SIZE)),
      intrinsic_reward=intrinsic_reward)


def test_each_head_has_its_own_discount_and_the_policy_follows_their_sum(repo_root):
  config = _ppo_config(repo_root, True, discount=0.97)
  ppo = ppo_learner.PPO(OBS_SIZE, 1, config, total_updates=1, intrinsic_discount=0.5)
  params, _ = ppo.init(jax.random.PRNGKey(0))
  batch = _batch(jax.random.PRNGKey(1),
                 intrinsic_reward=jax.random.uniform(jax.random.PRNGKey(2), (STEPS, ENVS)))
  values, next_values = ppo.value(params, batch.obs), ppo.value(params, batch.next_obs)
  assert values.shape == (STEPS, ENVS, 2)
  advantage, targets = ppo._advantages(batch, values, next_values)
  extrinsic = compute_gae(batch.reward, values[..., 0], next_values[..., 0], batch.terminated,
                          batch.done, 0.97, config.gae_lambda)
  intrinsic = compute_gae(batch.intrinsic_reward, values[..., 1], next_values[..., 1],
                          batch.terminated, batch.done, 0.5, config.gae_lambda)
  np.testing.assert_allclose(advantage, extrinsic[0] + intrinsic[0], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(targets[..., 0], extrinsic[1], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(targets[..., 1], intrinsic[1], rtol=1e-6, atol=1e-6)
  # At one discount the two heads' advantage is one head's on the summed reward and value.
  same = ppo_learner.PPO(OBS_SIZE, 1, config, total_updates=1, intrinsic_discount=0.97)
  summed = compute_gae(batch.reward + batch.intrinsic_reward, values.sum(-1),
                       next_values.sum(-1), batch.terminated, batch.done, 0.97, config.gae_lambda)
  np.testing.assert_allclose(same._advantages(batch, values, next_values)[0], summed[0],
                             rtol=1e-5, atol=1e-5)


def test_the_intrinsic_head_learns_the_intrinsic_return_and_the_other_the_extrinsic(repo_root):
  """Constant rewards of 1, no episode end: worth 4 at the extrinsic discount 0.75 and 2 at the
  intrinsic 0.5. Repeated updates on that batch bring each head to its own return."""
  config = _ppo_config(repo_root, True, learning_rate=1e-2, lr_schedule="constant",
                       num_epochs=4, num_minibatches=2, discount=0.75)
  ppo = ppo_learner.PPO(OBS_SIZE, 1, config, total_updates=1, intrinsic_discount=0.5)
  params, opt_state = ppo.init(jax.random.PRNGKey(0))
  batch = _batch(jax.random.PRNGKey(1), intrinsic_reward=jnp.ones((STEPS, ENVS)),
                 reward=jnp.ones((STEPS, ENVS)))
  batch = batch._replace(done=jnp.zeros((STEPS, ENVS)))
  update = jax.jit(ppo.update)
  for i in range(150):
    params, opt_state, metrics = update(params, opt_state, batch, jax.random.PRNGKey(i))
  values = ppo.value(params, batch.obs)
  np.testing.assert_allclose(values[..., 1], 2.0, atol=0.2)
  np.testing.assert_allclose(values[..., 0], 4.0, atol=0.2)
  assert float(metrics["intrinsic_value_mean"]) == pytest.approx(2.0, abs=0.2)
  assert float(metrics["value_mean"]) == pytest.approx(4.0, abs=0.2)


def test_two_heads_need_the_intrinsic_reward(repo_root):
  ppo = ppo_learner.PPO(OBS_SIZE, 1, _ppo_config(repo_root, True), total_updates=1)
  params, opt_state = ppo.init(jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="needs the batch's intrinsic_reward"):
    ppo.update(params, opt_state, _batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2))


@pytest.mark.long  # a CLI run that compiles a step of its own
def test_a_run_with_two_heads_trains_and_logs_the_intrinsic_value(repo_root, tmp_path):
  import json
  from cli_runner import run_train
  workdir = tmp_path / "two_heads"
  result = run_train(["--config=configs/ppo.py:smoke", "--config.total_steps=512",
                      "--config.intrinsic.kind=mimex", "--config.ppo.intrinsic_value_head=True",
                      f"--workdir={workdir}"], repo_root)
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  logged = [r["intrinsic_value_mean"] for r in records if "intrinsic_value_mean" in r]
  assert logged and all(np.isfinite(logged))
