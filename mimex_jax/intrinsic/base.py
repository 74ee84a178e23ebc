"""The interface every intrinsic reward implements, so the learner never needs to know which.

    state = module.init(key, num_envs)
    state, reward, metrics = module.update(state, batch, key)   # one optimizer step per rollout
    reward = module.reward(state, batch, key)                   # scoring only, state unchanged

`update` returns the reward of each transition computed in the same forward pass as the loss it
trains on, with the parameters from before the step.
"""

from typing import Any, Dict, NamedTuple, Optional, Protocol, Tuple

import jax
import jax.numpy as jnp


class IntrinsicBatch(NamedTuple):
  """One rollout, time-major `[T, B, ...]`; observations already normalized (or embedded)."""
  obs: jax.Array  # [T, B, D] observation the action was taken in
  action: jax.Array  # [T, B, A]
  next_obs: jax.Array  # [T, B, D] observation the action led to (before any automatic reset)
  done: jax.Array  # [T, B] 1.0 where the episode ended with this step
  # [T, B, L, D] the L observations ending at obs or next_obs (as MIMEx's window_end says),
  # zeros before the episode's start, when the caller has them already (DrQ's replay buffer);
  # None: built from the rollout itself.
  context: Optional[jax.Array] = None


class IntrinsicReward(Protocol):
  # The embedded fields a bonus reads of a batch sampled from a replay buffer (which carries
  # `context`), so a learner embeds only those: some of "obs", "next_obs", "context".
  sampled_inputs: Tuple[str, ...]

  def init(self, key: jax.Array, num_envs: int) -> Any:
    ...

  def reward(self, state: Any, batch: IntrinsicBatch, key: jax.Array) -> jax.Array:
    ...

  def update(self, state: Any, batch: IntrinsicBatch,
             key: jax.Array) -> Tuple[Any, jax.Array, Dict[str, jax.Array]]:
    ...


class PredictorState(NamedTuple):
  """Parameters and Adam state of a bonus's trained networks."""
  params: Any
  opt_state: Any


def online_step(optimizer, params: Any, opt_state: Any, loss_fn, axis_name=None):
  """One optimizer step on `loss_fn(params) -> (mean loss, per-sample losses)`, gradients averaged
  across devices. Returns `(params, opt_state, per_sample_losses, mean_loss)`; the per-sample
  losses come from the parameters before the step (they are the bonus of this rollout)."""
  import optax
  from mimex_jax import parallel
  (loss, losses), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  grads = parallel.mean_across_devices(grads, axis_name)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, jax.lax.stop_gradient(losses), loss


def bonus_weight(k_expl: float, anneal: bool, update_step: jax.Array,
                 total_updates: int) -> jax.Array:
  """`k_expl`, or with `anneal` `k_expl` decayed linearly to 0 over `total_updates` (the
  reference's optional schedule): the weight of the bonus in `r_ext + weight * r_int`."""
  if not anneal:
    return jnp.asarray(k_expl, jnp.float32)
  progress = update_step.astype(jnp.float32) / total_updates
  return k_expl * jnp.clip(1.0 - progress, 0.0, 1.0)
