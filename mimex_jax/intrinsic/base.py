"""The interface every intrinsic reward implements, so the learner never needs to know which.

    state = module.init(key, num_envs)
    state, reward, metrics = module.update(state, batch, key)   # one optimizer step per rollout
    reward = module.reward(state, batch, key)                   # scoring only, state unchanged

`update` returns the reward of each transition computed in the same forward pass as the loss it
trains on, with the parameters from before the step.
"""

from typing import Any, Dict, NamedTuple, Protocol, Tuple

import jax


class IntrinsicBatch(NamedTuple):
  """One rollout, time-major `[T, B, ...]`; observations already normalized."""
  obs: jax.Array  # [T, B, D] observation the action was taken in
  action: jax.Array  # [T, B, A]
  next_obs: jax.Array  # [T, B, D] observation the action led to (before any automatic reset)
  done: jax.Array  # [T, B] 1.0 where the episode ended with this step


class IntrinsicReward(Protocol):

  def init(self, key: jax.Array, num_envs: int) -> Any:
    ...

  def reward(self, state: Any, batch: IntrinsicBatch, key: jax.Array) -> jax.Array:
    ...

  def update(self, state: Any, batch: IntrinsicBatch,
             key: jax.Array) -> Tuple[Any, jax.Array, Dict[str, jax.Array]]:
    ...
