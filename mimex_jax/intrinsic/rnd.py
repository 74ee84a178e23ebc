"""RND (Burda et al., 2018): the error of a trained predictor at matching a fixed random network's
output is the novelty of an observation. In MIMEx's terms, conditional prediction of a random
projection of the whole input from the input itself.

Sizes as in the MIMEx reference: both networks D -> 256 -> 256 -> 288 with ReLU and orthogonal
init (gain sqrt 2); the predictor trains with Adam (lr 1e-3), one step per rollout.
"""

from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mimex_jax.intrinsic.base import IntrinsicBatch, PredictorState, online_step
from mimex_jax.networks.mlp import MLP


class RndState(NamedTuple):
  predictor: PredictorState
  target_params: Any  # fixed


class Rnd:
  sampled_inputs = ("next_obs",)  # see base.IntrinsicReward

  def __init__(self, obs_size: int, hidden_sizes: Sequence[int] = (256, 256),
               output_size: int = 288, learning_rate: float = 1e-3,
               axis_name: Optional[str] = None):
    self.obs_size = obs_size
    self.network = MLP(tuple(hidden_sizes), output_size, nn.relu, output_scale=np.sqrt(2))
    self.optimizer = optax.adam(learning_rate)
    self.axis_name = axis_name

  def init(self, key: jax.Array, num_envs: int) -> RndState:
    del num_envs
    predictor_key, target_key = jax.random.split(key)
    dummy = jnp.zeros((1, self.obs_size))
    params = self.network.init(predictor_key, dummy)
    return RndState(PredictorState(params, self.optimizer.init(params)),
                    self.network.init(target_key, dummy))

  def _losses(self, params: Any, target_params: Any, obs: jax.Array) -> jax.Array:
    """`[N, D]` -> `[N]` mean squared error of the predictor against the fixed target."""
    target = jax.lax.stop_gradient(self.network.apply(target_params, obs))
    return jnp.mean(jnp.square(self.network.apply(params, obs) - target), axis=-1)

  def reward(self, state: RndState, batch: IntrinsicBatch, key: jax.Array) -> jax.Array:
    del key
    return self._losses(state.predictor.params, state.target_params, batch.next_obs)

  def update(self, state: RndState, batch: IntrinsicBatch,
             key: jax.Array) -> Tuple[RndState, jax.Array, Dict[str, jax.Array]]:
    del key
    obs = batch.next_obs.reshape(-1, batch.next_obs.shape[-1])

    def loss_fn(params):
      losses = self._losses(params, state.target_params, obs)
      return losses.mean(), losses

    params, opt_state, losses, loss = online_step(
        self.optimizer, state.predictor.params, state.predictor.opt_state, loss_fn,
        self.axis_name)
    state = state._replace(predictor=PredictorState(params, opt_state))
    return state, losses.reshape(batch.done.shape), {"intrinsic_loss": loss}
