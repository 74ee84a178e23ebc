"""ICM (Pathak et al., 2017): the error of a forward model in a learned feature space is the
novelty of a transition. In MIMEx's terms, predicting the next step from the past (and the
action).

Sizes as in the MIMEx reference: encoder D -> 288 (linear), trained only by the inverse model
(288 * 2 -> 256 -> action, mean squared error on the continuous action taken); forward model
(288 + action -> 256 -> 288) on detached features; Adam (lr 1e-3) for both, one step per rollout.
The bonus is the forward model's mean squared error.
"""

from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mimex_jax.intrinsic.base import IntrinsicBatch, PredictorState, online_step
from mimex_jax.networks.mlp import MLP


class CuriosityModel(nn.Module):
  """`(obs, action, next_obs) -> (forward errors [N], inverse errors [N])`."""
  action_size: int
  feature_size: int = 288
  hidden_size: int = 256

  @nn.compact
  def __call__(self, obs, action, next_obs):
    encoder = nn.Dense(self.feature_size, name="encoder")
    features, next_features = encoder(obs), encoder(next_obs)
    predicted_action = MLP((self.hidden_size,), self.action_size, nn.relu, name="inverse")(
        jnp.concatenate([features, next_features], axis=-1))
    inverse_errors = jnp.mean(jnp.square(predicted_action - action), axis=-1)
    # The forward model does not shape the features: otherwise collapsing them to a constant
    # would make every transition predictable.
    features, next_features = jax.lax.stop_gradient((features, next_features))
    predicted = MLP((self.hidden_size,), self.feature_size, nn.relu, name="forward")(
        jnp.concatenate([features, action], axis=-1))
    forward_errors = jnp.mean(jnp.square(predicted - next_features), axis=-1)
    return forward_errors, inverse_errors


class Icm:
  sampled_inputs = ("obs", "next_obs")  # see base.IntrinsicReward

  def __init__(self, obs_size: int, action_size: int, feature_size: int = 288,
               hidden_size: int = 256, learning_rate: float = 1e-3,
               axis_name: Optional[str] = None):
    self.obs_size = obs_size
    self.action_size = action_size
    self.model = CuriosityModel(action_size, feature_size, hidden_size)
    self.optimizer = optax.adam(learning_rate)
    self.axis_name = axis_name

  def init(self, key: jax.Array, num_envs: int) -> PredictorState:
    del num_envs
    obs, action = jnp.zeros((1, self.obs_size)), jnp.zeros((1, self.action_size))
    params = self.model.init(key, obs, action, obs)
    return PredictorState(params, self.optimizer.init(params))

  @staticmethod
  def _flat(batch: IntrinsicBatch):
    # The env received the action clipped to its bounds; that is what the inverse model sees.
    flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
    return flat(batch.obs), flat(jnp.clip(batch.action, -1.0, 1.0)), flat(batch.next_obs)

  def reward(self, state: PredictorState, batch: IntrinsicBatch, key: jax.Array) -> jax.Array:
    del key
    forward_errors, _ = self.model.apply(state.params, *self._flat(batch))
    return forward_errors.reshape(batch.done.shape)

  def update(self, state: PredictorState, batch: IntrinsicBatch,
             key: jax.Array) -> Tuple[PredictorState, jax.Array, Dict[str, jax.Array]]:
    del key
    inputs = self._flat(batch)

    def loss_fn(params):
      forward_errors, inverse_errors = self.model.apply(params, *inputs)
      loss = forward_errors.mean() + inverse_errors.mean()
      return loss, (forward_errors, inverse_errors.mean())

    params, opt_state, (forward_errors, inverse_loss), loss = online_step(
        self.optimizer, state.params, state.opt_state, loss_fn, self.axis_name)
    metrics = {"intrinsic_loss": loss, "icm_forward_loss": forward_errors.mean(),
               "icm_inverse_loss": inverse_loss}
    return (PredictorState(params, opt_state), forward_errors.reshape(batch.done.shape),
            metrics)
