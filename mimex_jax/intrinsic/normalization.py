"""Scaling intrinsic rewards by a running standard deviation of intrinsic returns (as RND does).

Intrinsic rewards shrink by orders of magnitude as a bonus's model learns, and differ in scale
between bonuses; dividing by the spread of their discounted sums keeps `k_expl` meaningful.
Returns run on across episode ends (novelty is not episodic), and the statistics are summed over
all envs of all devices, so every device divides by the same number.
"""

from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from mimex_jax import parallel

EPSILON = 1e-8


class ReturnStatistics(NamedTuple):
  running_return: jax.Array  # [B] discounted intrinsic return of each env so far
  count: jax.Array  # returns seen (all envs, all devices)
  mean: jax.Array
  variance: jax.Array


def init(num_envs: int) -> ReturnStatistics:
  zero = jnp.zeros(())
  return ReturnStatistics(jnp.zeros(num_envs), zero, zero, zero)


def normalize(stats: ReturnStatistics, rewards: jax.Array, discount: float,
              axis_name: Optional[str] = None) -> Tuple[ReturnStatistics, jax.Array]:
  """Updates the statistics with this rollout's returns, then divides `rewards` `[T, B]` by
  the updated standard deviation."""
  def accumulate(running, reward):
    running = discount * running + reward
    return running, running

  running, returns = jax.lax.scan(accumulate, stats.running_return, rewards)
  # Every device holds as many returns: the count needs no all-reduce (one that depends on
  # nothing could run out of order across processes; see `parallel.after`).
  active = parallel.active_axis(axis_name)
  devices = 1 if active is None else jax.lax.axis_size(active)
  total = jnp.asarray(returns.size * devices, jnp.float32)
  batch_mean = parallel.sum_across_devices(returns.sum(), axis_name) / total
  batch_variance = parallel.sum_across_devices(
      jnp.square(returns - batch_mean).sum(), axis_name) / total
  # Chan et al.'s merge of two (count, mean, variance) summaries.
  count = stats.count + total
  delta = batch_mean - stats.mean
  mean = stats.mean + delta * total / count
  variance = (stats.variance * stats.count + batch_variance * total
              + jnp.square(delta) * stats.count * total / count) / count
  stats = ReturnStatistics(running, count, mean, variance)
  return stats, rewards / jnp.sqrt(variance + EPSILON)
