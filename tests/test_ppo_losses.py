"""GAE and the PPO loss against values computed by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax.agents.ppo import LossInputs, compute_gae, ppo_loss
from mimex_jax.networks.mlp import gaussian_log_prob


def _gae_by_hand(rewards, values, next_values, terminated, done, discount, lam):
  steps, envs = rewards.shape
  advantages = np.zeros((steps, envs))
  for b in range(envs):
    running = 0.0
    for t in reversed(range(steps)):
      delta = rewards[t, b] + discount * (1 - terminated[t, b]) * next_values[t, b] - values[t, b]
      running = delta + discount * lam * (1 - done[t, b]) * running
      advantages[t, b] = running
  return advantages


def test_gae_three_steps_written_out():
  # One env, three steps, no episode end: A2 = d2, A1 = d1 + g*l*A2, A0 = d0 + g*l*A1.
  r = jnp.array([[1.0], [0.0], [2.0]])
  v = jnp.array([[0.5], [1.0], [1.5]])
  nv = jnp.array([[1.0], [1.5], [3.0]])
  zeros = jnp.zeros((3, 1))
  adv, target = compute_gae(r, v, nv, zeros, zeros, discount=0.9, gae_lambda=0.5)
  d0, d1, d2 = 1 + 0.9 * 1.0 - 0.5, 0 + 0.9 * 1.5 - 1.0, 2 + 0.9 * 3.0 - 1.5
  a2 = d2
  a1 = d1 + 0.45 * a2
  a0 = d0 + 0.45 * a1
  np.testing.assert_allclose(adv[:, 0], [a0, a1, a2], rtol=1e-6)
  np.testing.assert_allclose(target[:, 0], np.array([a0, a1, a2]) + [0.5, 1.0, 1.5], rtol=1e-6)


def test_gae_termination_and_truncation():
  rng = np.random.default_rng(0)
  steps, envs = 7, 3
  r, v, nv = (rng.normal(size=(steps, envs)) for _ in range(3))
  terminated = np.zeros((steps, envs))
  done = np.zeros((steps, envs))
  terminated[2, 0] = done[2, 0] = 1  # env 0 ends by termination: no bootstrap
  done[4, 1] = 1  # env 1 is truncated: bootstrap from next_values, but the trace stops
  expected = _gae_by_hand(r, v, nv, terminated, done, 0.99, 0.95)
  adv, _ = compute_gae(*map(jnp.asarray, (r, v, nv, terminated, done)), 0.99, 0.95)
  np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-6)
  # At the terminal step the advantage is r - V(s); at the truncated one r + g V(s') - V(s).
  np.testing.assert_allclose(adv[2, 0], r[2, 0] - v[2, 0], rtol=1e-5)
  np.testing.assert_allclose(adv[4, 1], r[4, 1] + 0.99 * nv[4, 1] - v[4, 1], rtol=1e-5)
  # jitted and unjitted agree.
  jitted = jax.jit(compute_gae, static_argnums=(5, 6))(
      *map(jnp.asarray, (r, v, nv, terminated, done)), 0.99, 0.95)[0]
  np.testing.assert_allclose(jitted, adv, rtol=1e-5, atol=1e-6)


def test_gae_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="values"):
    compute_gae(jnp.zeros((3, 2)), jnp.zeros((3, 1)), jnp.zeros((3, 2)), jnp.zeros((3, 2)),
                jnp.zeros((3, 2)), 0.9, 0.9)


def test_ppo_loss_by_hand():
  # Two samples, 1-d actions, unit std policy; the old policy had mean 0.
  mean = jnp.array([[0.5], [0.0]])
  log_std = jnp.zeros((2, 1))
  action = jnp.array([[1.0], [-1.0]])
  old_log_prob = gaussian_log_prob(action, jnp.zeros((2, 1)), log_std)
  batch = LossInputs(obs=jnp.zeros((2, 1)), action=action, log_prob=old_log_prob,
                     value=jnp.array([0.0, 1.0]), advantage=jnp.array([1.0, -1.0]),
                     value_target=jnp.array([1.0, 0.0]))
  value = jnp.array([0.5, 2.0])
  total, metrics = ppo_loss((mean, log_std), value, batch, clip_epsilon=0.2, value_clip=True,
                            value_coef=0.5, entropy_coef=0.01, normalize_advantage=False)
  # Ratios: exp(-(1-.5)^2/2 + 1/2) = exp(0.375) for sample 0, exactly 1 for sample 1.
  ratio0 = np.exp(0.375)
  surrogate0 = min(ratio0 * 1.0, 1.2 * 1.0)
  surrogate1 = -1.0
  policy_loss = -(surrogate0 + surrogate1) / 2
  # Values: sample 0 moved +0.5 (clipped to +0.2: error max(.25, .64)); sample 1 moved +1
  # (clipped to 1.2: error max(4, 1.44)).
  value_loss = 0.5 * (0.64 + 4.0) / 2
  entropy = 0.5 * np.log(2 * np.pi * np.e)
  np.testing.assert_allclose(metrics["policy_loss"], policy_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics["value_loss"], value_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics["entropy"], entropy, rtol=1e-5)
  np.testing.assert_allclose(total, policy_loss + 0.5 * value_loss - 0.01 * entropy, rtol=1e-5)
  np.testing.assert_allclose(metrics["clip_fraction"], 0.5)


def test_policy_head_keeps_mean_inside_bounds_and_std_above_floor():
  from mimex_jax.networks.mlp import GaussianPolicy
  obs = 50.0 * jax.random.normal(jax.random.PRNGKey(0), (64, 5))  # large inputs, large raw means
  plain = GaussianPolicy((16,), 2, init_std=1.0)
  params = plain.init(jax.random.PRNGKey(1), obs)
  # Push the std parameter far down, as a collapsing run does.
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.full_like(x, -20.0) if "log_std" in str(path) else 30.0 * x, params)
  mean, log_std = plain.apply(params, obs)
  assert float(jnp.abs(mean).max()) > 1.0  # unbounded: the raw means leave [-1, 1]
  np.testing.assert_allclose(log_std, -20.0)

  bounded = GaussianPolicy((16,), 2, init_std=1.0, squash_mean=True, min_std=0.05)
  mean_b, log_std_b = bounded.apply(params, obs)  # same parameter tree
  np.testing.assert_allclose(mean_b, jnp.tanh(mean), rtol=1e-6)
  assert float(jnp.abs(mean_b).max()) <= 1.0
  np.testing.assert_allclose(jnp.exp(log_std_b), 0.05 + np.exp(-20.0), rtol=1e-5)
  # Starts at init_std whatever the floor.
  fresh = bounded.init(jax.random.PRNGKey(1), obs)
  np.testing.assert_allclose(jnp.exp(bounded.apply(fresh, obs)[1]), 1.0, rtol=1e-6)


@pytest.mark.parametrize("scale", [1e-4, 1.0])
def test_advantage_floor_damps_only_advantages_below_it(scale):
  # Advantages that are value noise (scale 1e-4) or real signal (scale 1); the policy has not
  # moved, so every ratio is 1 and the policy loss is -mean(normalized advantage * ratio).
  rng = np.random.default_rng(0)
  advantage = jnp.asarray(scale * rng.normal(size=256), jnp.float32)
  action = jnp.asarray(rng.normal(size=(256, 1)), jnp.float32)
  log_std = jnp.zeros((256, 1))
  batch = LossInputs(obs=jnp.zeros((256, 1)), action=action,
                     log_prob=gaussian_log_prob(action, jnp.zeros((256, 1)), log_std),
                     value=jnp.zeros(256), advantage=advantage, value_target=jnp.zeros(256))

  def mean_gradient(floor):
    loss = lambda mean: ppo_loss((mean, log_std), jnp.zeros(256), batch, 0.2, False, 0.5, 0.0,
                                 normalize_advantage=True, advantage_std_floor=floor)[0]
    return jax.grad(loss)(jnp.zeros((256, 1)))

  unfloored, floored = mean_gradient(0.0), mean_gradient(0.01)
  ratio = float(jnp.linalg.norm(floored) / jnp.linalg.norm(unfloored))
  spread = float(np.std(np.asarray(advantage)))
  # Noise is scaled down by its spread over the floor; signal above the floor is untouched.
  np.testing.assert_allclose(ratio, min(1.0, spread / 0.01), rtol=1e-3)


def test_bounded_std_starts_at_init_std_and_stays_between_its_bounds():
  from mimex_jax.networks.mlp import GaussianPolicy
  obs = jnp.zeros((4, 3))
  policy = GaussianPolicy((8,), 2, init_std=1.0, min_std=0.1, max_std=1.5)
  params = policy.init(jax.random.PRNGKey(0), obs)
  np.testing.assert_allclose(jnp.exp(policy.apply(params, obs)[1]), 1.0, rtol=1e-5)
  for value, expected in ((60.0, 1.5), (-60.0, 0.1)):  # the parameter pushed far either way
    moved = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.full_like(x, value) if "log_std" in str(path) else x, params)
    np.testing.assert_allclose(jnp.exp(policy.apply(moved, obs)[1]), expected, rtol=1e-5)


@pytest.mark.parametrize("key, value, message", [
    ("min_std", 1.0, r"^config key ppo.min_std=1.0 is not below ppo.init_std=1.0"),
    ("max_std", 0.5, r"^config key ppo.max_std=0.5 is not above ppo.init_std=1.0"),
    ("advantage_std_floor", -0.01, r"^config key ppo.advantage_std_floor=-0.01 is invalid"),
    ("squash_mean", "yes", r"^config key ppo.squash_mean='yes' is invalid; allowed: True or False"),
    ("target_kl", -0.1, r"^config key ppo.target_kl=-0.1 is invalid; allowed: a number >= 0"),
    ("intrinsic_value_head", 1, r"^config key ppo.intrinsic_value_head=1 is invalid; allowed: "
     r"True or False"),
])
def test_std_and_advantage_keys_are_checked(repo_root, key, value, message):
  import sys
  sys.path.insert(0, repo_root)
  from configs import ppo as ppo_configs
  from mimex_jax.agents import check
  from mimex_jax.config_checks import ConfigError
  config = ppo_configs.get_config("smoke")
  check(config, 1)
  config.ppo = {**config.ppo.to_dict(), key: value}
  with pytest.raises(ConfigError, match=message):
    check(config, 1)


@pytest.mark.parametrize("target_kl", [0.0, 1e-9, 10.0])
def test_target_kl_stops_an_update_after_the_step_that_passes_it(repo_root, target_kl):
  """A tiny target lets only the first minibatch step through (its KL from the acting policy is
  0 before it); a huge one, like none, lets every step through; the parameters say the same."""
  import sys
  sys.path.insert(0, repo_root)
  from configs import ppo as ppo_configs
  from mimex_jax.agents.ppo import learner as ppo_learner
  config = ppo_configs.get_config("smoke").ppo
  config.target_kl = target_kl
  config.num_epochs, config.num_minibatches = 2, 2
  steps, envs, obs_size = 4, 8, 3
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  ppo = ppo_learner.PPO(obs_size, 1, config, total_updates=10)
  params, opt_state = ppo.init(jax.random.PRNGKey(1))
  obs = jax.random.normal(keys[0], (steps, envs, obs_size))
  action, log_prob = ppo.act(params, obs, keys[1])  # the acting policy is the current one
  batch = ppo_learner.PPOBatch(
      obs=obs, action=action, log_prob=log_prob,
      reward=jax.random.normal(keys[2], (steps, envs)), terminated=jnp.zeros((steps, envs)),
      done=jnp.zeros((steps, envs)), next_obs=jax.random.normal(keys[3], (steps, envs, obs_size)))
  new_params, _, metrics = jax.jit(ppo.update)(params, opt_state, batch, jax.random.PRNGKey(2))
  moved = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(new_params),
                                                          jax.tree.leaves(params)))
  assert moved > 0
  if target_kl == 1e-9:
    assert float(metrics["sgd_steps_taken"]) == pytest.approx(1 / 4)
    # Fewer steps than with no target: the parameters differ from the unguarded update's.
    config.target_kl = 0.0
    free, _, _ = jax.jit(_ppo_update(ppo_learner, obs_size, config))(params, opt_state, batch,
                                                                     jax.random.PRNGKey(2))
    gap = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(new_params),
                                                          jax.tree.leaves(free)))
    assert gap > 1e-6
  else:
    assert float(metrics["sgd_steps_taken"]) == 1.0


def _ppo_update(ppo_learner, obs_size, config):
  return ppo_learner.PPO(obs_size, 1, config, total_updates=10).update
