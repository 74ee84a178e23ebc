"""Running normalization of intrinsic rewards against a numpy reference, on one and two devices."""

import jax
import jax.numpy as jnp
import numpy as np

from mimex_jax.intrinsic import normalization


def _numpy_reference(rollouts, discount):
  """Divides each rollout's rewards by the std of all discounted returns seen so far."""
  running = np.zeros(rollouts[0].shape[1])
  seen, outputs = [], []
  for rewards in rollouts:
    for reward in rewards:
      running = discount * running + reward
      seen.append(running.copy())
    outputs.append(rewards / np.sqrt(np.var(np.concatenate(seen)) + normalization.EPSILON))
  return outputs


def test_matches_numpy_reference_over_rollouts():
  rng = np.random.default_rng(0)
  rollouts = [rng.exponential(scale, size=(8, 5)) for scale in (3.0, 1.0, 0.1, 0.1)]
  stats = normalization.init(5)
  step = jax.jit(lambda s, r: normalization.normalize(s, r, 0.9))
  for rewards, expected in zip(rollouts, _numpy_reference(rollouts, 0.9)):
    stats, normalized = step(stats, jnp.asarray(rewards, jnp.float32))
    np.testing.assert_allclose(normalized, expected, rtol=2e-4)
  assert int(stats.count) == 4 * 8 * 5


def test_statistics_are_shared_across_devices():
  assert jax.local_device_count() == 2
  rng = np.random.default_rng(1)
  rollouts = [rng.exponential(2.0, size=(6, 4)) for _ in range(3)]  # 4 envs: 2 per device
  step = jax.pmap(lambda s, r: normalization.normalize(s, r, 0.95, axis_name="d"),
                  axis_name="d")
  stats = jax.pmap(lambda _: normalization.init(2))(jnp.zeros(2))
  for rewards, expected in zip(rollouts, _numpy_reference(rollouts, 0.95)):
    per_device = jnp.asarray(rewards, jnp.float32).reshape(6, 2, 2).transpose(1, 0, 2)
    stats, normalized = step(stats, per_device)
    np.testing.assert_allclose(np.asarray(normalized).transpose(1, 0, 2).reshape(6, 4),
                               expected, rtol=2e-4)
  np.testing.assert_array_equal(stats.variance[0], stats.variance[1])
