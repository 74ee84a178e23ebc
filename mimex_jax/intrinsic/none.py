"""No exploration bonus: the baseline every bonus is compared with."""

from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp

from mimex_jax.intrinsic.base import IntrinsicBatch


class NoBonus:
  sampled_inputs = ()  # see base.IntrinsicReward

  def init(self, key: jax.Array, num_envs: int) -> Any:
    del key, num_envs
    return ()

  def reward(self, state: Any, batch: IntrinsicBatch, key: jax.Array) -> jax.Array:
    del state, key
    return jnp.zeros(batch.done.shape)

  def update(self, state: Any, batch: IntrinsicBatch,
             key: jax.Array) -> Tuple[Any, jax.Array, Dict[str, jax.Array]]:
    return state, self.reward(state, batch, key), {}
