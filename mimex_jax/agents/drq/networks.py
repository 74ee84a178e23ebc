"""DrQ-v2's networks: a conv encoder shared by actor and critic (trained by the critic only), an
actor with a deterministic mean, and twin Q critics. Sizes follow DrQ-v2 (Yarats et al., 2021):
32-filter 3x3 convs (the first with stride 2), a 50-dim trunk (Linear, LayerNorm, tanh), 1024-wide
heads, orthogonal init.
"""

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mimex_jax.networks.loop_conv import LoopConv

_RELU_GAIN = np.sqrt(2)


class PixelEncoder(nn.Module):
  """uint8 `[..., H, W, C]` -> flat features `[..., F]`; pixels are scaled to [-0.5, 0.5]."""
  num_filters: int = 32
  num_layers: int = 4
  # Gradients as forward convolutions (`LoopConv`: the same parameters and numbers), which XLA's
  # CPU backend runs as fast inside a loop as written out; its own are 6-11x slower in a loop.
  loop_gradients: bool = False

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    batch_shape = obs.shape[:-3]
    x = obs.reshape((-1,) + obs.shape[-3:]).astype(jnp.float32) / 255.0 - 0.5
    for layer in range(self.num_layers):
      stride, init = 2 if layer == 0 else 1, nn.initializers.orthogonal(_RELU_GAIN)
      if self.loop_gradients:
        x = LoopConv(self.num_filters, (3, 3), strides=stride, kernel_init=init,
                     name=f"Conv_{layer}")(x)
      else:
        x = nn.Conv(self.num_filters, (3, 3), strides=stride, padding="VALID",
                    kernel_init=init)(x)
      x = nn.relu(x)
    return x.reshape(batch_shape + (-1,))


class StateEncoder(nn.Module):
  """State vectors pass through unchanged (DrQ-v2 from states has no encoder)."""

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    return obs.astype(jnp.float32)


def _trunk(feature_dim: int, features: jax.Array) -> jax.Array:
  dense = nn.Dense(feature_dim, kernel_init=nn.initializers.orthogonal(1.0))
  return jnp.tanh(nn.LayerNorm()(dense(features)))


def _head(hidden_dim: int, output_size: int, x: jax.Array) -> jax.Array:
  for _ in range(2):
    x = nn.relu(nn.Dense(hidden_dim, kernel_init=nn.initializers.orthogonal(_RELU_GAIN))(x))
  return nn.Dense(output_size, kernel_init=nn.initializers.orthogonal(1.0))(x)


class Actor(nn.Module):
  """Encoder features -> `(mean action in [-1, 1], trunk features)`."""
  action_size: int
  feature_dim: int = 50
  hidden_dim: int = 1024

  @nn.compact
  def __call__(self, features: jax.Array) -> Tuple[jax.Array, jax.Array]:
    trunk = _trunk(self.feature_dim, features)
    return jnp.tanh(_head(self.hidden_dim, self.action_size, trunk)), trunk


class TwinCritic(nn.Module):
  """`(features, action) -> (Q1, Q2)`, each `[...]`; one trunk, two heads."""
  feature_dim: int = 50
  hidden_dim: int = 1024

  @nn.compact
  def __call__(self, features: jax.Array, action: jax.Array) -> Tuple[jax.Array, jax.Array]:
    x = jnp.concatenate([_trunk(self.feature_dim, features), action], axis=-1)
    return _head(self.hidden_dim, 1, x)[..., 0], _head(self.hidden_dim, 1, x)[..., 0]
