"""PPO's math on time-major `[T, B]` arrays: generalized advantage estimation and the loss."""

from typing import Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from mimex_jax import parallel
from mimex_jax.networks.mlp import gaussian_entropy, gaussian_log_prob


def compute_gae(rewards: jax.Array, values: jax.Array, next_values: jax.Array,
                terminated: jax.Array, done: jax.Array, discount: float,
                gae_lambda: float) -> Tuple[jax.Array, jax.Array]:
  """Advantages and value targets, each `[T, B]`.

      delta_t = r_t + discount * (1 - terminated_t) * V(s'_t) - V(s_t)
      A_t     = delta_t + discount * gae_lambda * (1 - done_t) * A_{t+1},   A_T = 0

  `next_values` is V of the observation each step reached, before any reset, so an episode cut
  by the time limit (done but not terminated) still bootstraps from where it stopped, and the
  trace never runs across an episode boundary.
  """
  chex_shape = rewards.shape
  for name, x in (("values", values), ("next_values", next_values),
                  ("terminated", terminated), ("done", done)):
    if x.shape != chex_shape:
      raise ValueError(f"compute_gae: {name} has shape {x.shape}, rewards {chex_shape}")
  deltas = rewards + discount * (1.0 - terminated) * next_values - values

  def backward(advantage, inputs):
    delta, step_done = inputs
    advantage = delta + discount * gae_lambda * (1.0 - step_done) * advantage
    return advantage, advantage

  _, advantages = jax.lax.scan(backward, jnp.zeros_like(rewards[0]), (deltas, done),
                               reverse=True)
  return advantages, advantages + values


class LossInputs(NamedTuple):
  """A minibatch of flattened transitions `[N, ...]`."""
  obs: jax.Array
  action: jax.Array  # the unclipped Gaussian sample
  log_prob: jax.Array  # under the policy that acted
  value: jax.Array  # V(s) when acting, for value clipping; `[N, 2]` with two value heads
  advantage: jax.Array
  value_target: jax.Array  # shaped as `value`


def ppo_loss(policy_out: Tuple[jax.Array, jax.Array], value: jax.Array, batch: LossInputs,
             clip_epsilon: float, value_clip: bool, value_coef: float, entropy_coef: float,
             normalize_advantage: bool = True, advantage_std_floor: float = 0.0,
             axis_name: Optional[str] = None,
             bounds_coef: float = 0.0) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """Clipped-surrogate PPO loss from the current policy's `(mean, log_std)` and value `[N]`.

  `bounds_coef` > 0 adds `bounds_coef * mean(sum(relu(|mean| - 1)^2))`: a pull back on policy
  means past the action bounds. There every sample is clipped to the same action, the
  surrogate's gradient on the mean is pure noise (scaled by 1/std^2), and with a narrow std the
  means random-walk outwards with nothing to bring them back (issue 27's collapse replay)."""
  action_mean, log_std = policy_out
  log_prob = gaussian_log_prob(batch.action, action_mean, log_std)
  ratio = jnp.exp(log_prob - batch.log_prob)
  advantage = batch.advantage
  if normalize_advantage:  # over the whole minibatch, all devices' shares of it
    # Two passes (mean, then spread around it): E[x^2] - E[x]^2 loses the variance to
    # rounding when the mean is large, and PPO then stopped learning.
    mean = parallel.mean_across_devices(advantage.mean(), axis_name)
    std = jnp.sqrt(parallel.mean_across_devices(jnp.square(advantage - mean).mean(), axis_name))
    # The floor keeps advantages that are only value-fitting noise (no reward in the batch) from
    # being blown up to unit scale: PPO fits that noise and narrows its std with nothing to gain
    # (docs/RESULTS.md: with zero reward and entropy 0.01 the std fell from 1.0 to 0.42).
    advantage = (advantage - mean) / (jnp.maximum(std, advantage_std_floor) + 1e-8)
  surrogate = jnp.minimum(ratio * advantage,
                          jnp.clip(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * advantage)
  policy_loss = -surrogate.mean()

  value_error = jnp.square(value - batch.value_target)
  if value_clip:
    clipped = batch.value + jnp.clip(value - batch.value, -clip_epsilon, clip_epsilon)
    value_error = jnp.maximum(value_error, jnp.square(clipped - batch.value_target))
  if value_error.ndim == 2:  # two heads (extrinsic, intrinsic): each its own squared error
    value_error = value_error.sum(axis=-1)
  value_loss = 0.5 * value_error.mean()

  entropy = gaussian_entropy(log_std).mean()
  bounds_loss = jnp.sum(jnp.square(jax.nn.relu(jnp.abs(action_mean) - 1.0)), axis=-1).mean()
  total = (policy_loss + value_coef * value_loss - entropy_coef * entropy
           + bounds_coef * bounds_loss)
  metrics = {
      "policy_loss": policy_loss,
      "value_loss": value_loss,
      "entropy": entropy,
      "bounds_loss": bounds_loss,
      "approx_kl": jnp.mean((ratio - 1) - jnp.log(ratio)),
      "clip_fraction": jnp.mean((jnp.abs(ratio - 1) > clip_epsilon).astype(jnp.float32)),
      # Samples are clipped to [-1, 1]: a mean far outside with a small std acts the same
      # whatever the gradient says, and such a policy can no longer find its way back.
      "action_std": jnp.exp(log_std).mean(),
      "action_mean_outside_bounds": jnp.mean((jnp.abs(action_mean) > 1).astype(jnp.float32)),
  }
  return total, metrics
