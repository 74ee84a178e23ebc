"""Multi-layer perceptrons and the Gaussian policy head used by PPO."""

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {"elu": nn.elu, "relu": nn.relu, "tanh": nn.tanh, "swish": nn.swish}


class MLP(nn.Module):
  """Hidden layers with `activation`, then a linear output layer of `output_size`."""
  hidden_sizes: Sequence[int]
  output_size: int
  activation: Callable = nn.elu
  output_scale: float = 1.0  # orthogonal-init gain of the last layer

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for size in self.hidden_sizes:
      x = self.activation(nn.Dense(size, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(x))
    return nn.Dense(self.output_size,
                    kernel_init=nn.initializers.orthogonal(self.output_scale))(x)


class GaussianPolicy(nn.Module):
  """Diagonal Gaussian with a state-independent learned standard deviation.

  Returns `(mean, log_std)` of shape `[..., action_size]`. Samples are clipped to the action
  bounds by the caller, and log-probabilities are of the unclipped sample (as the reference PPO
  does): the entropy is exact and there is no tanh Jacobian to estimate.

  `squash_mean` passes the mean through tanh, so it stays inside the action bounds. Without it a
  mean can drift beyond them, where the clipped action no longer depends on it and the gradient
  cannot bring it back (on CartpoleSwingupSparse 30-100% of means ended outside, docs/RESULTS.md).
  `min_std` is a floor under the std (std = min_std + exp(param)), so it cannot collapse.
  `max_std` > 0 bounds it from above as well (std = min_std + (max_std - min_std) * sigmoid(param)):
  samples are clipped to [-1, 1], so a std beyond about 1 no longer changes the actions, while
  an entropy bonus on the unclipped Gaussian keeps rewarding its growth (it reached 6 in a
  CartpoleSwingupSparse run and the policy lost the balance it had found, docs/RESULTS.md).
  """
  hidden_sizes: Sequence[int]
  action_size: int
  activation: Callable = nn.elu
  init_std: float = 1.0
  squash_mean: bool = False
  min_std: float = 0.0
  max_std: float = 0.0  # 0: no upper bound

  @nn.compact
  def __call__(self, obs: jax.Array):
    mean = MLP(self.hidden_sizes, self.action_size, self.activation, output_scale=0.01)(obs)
    if self.squash_mean:
      mean = jnp.tanh(mean)
    if self.max_std > 0:
      share = (self.init_std - self.min_std) / (self.max_std - self.min_std)
      initial = np.log(share / (1.0 - share))  # the logit: sigmoid(initial) = share
      param = self.param("log_std", nn.initializers.constant(initial), (self.action_size,))
      std = self.min_std + (self.max_std - self.min_std) * jax.nn.sigmoid(param)
      return mean, jnp.broadcast_to(jnp.log(std), mean.shape)
    # The parameter is log(std - min_std); with no floor it is log(std) itself, as before.
    initial = np.log(max(self.init_std - self.min_std, 1e-6))
    log_std = self.param("log_std", nn.initializers.constant(initial), (self.action_size,))
    if self.min_std > 0:
      log_std = jnp.log(self.min_std + jnp.exp(log_std))
    return mean, jnp.broadcast_to(log_std, mean.shape)


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """Sum over the last axis of the diagonal Gaussian log-density."""
  z = (x - mean) * jnp.exp(-log_std)
  return jnp.sum(-0.5 * z * z - log_std - 0.5 * np.log(2 * np.pi), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
  return jnp.sum(log_std + 0.5 * np.log(2 * np.pi * np.e), axis=-1)
