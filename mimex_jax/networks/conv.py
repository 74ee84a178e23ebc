"""A small convolutional torso for PPO from pixels, trained by the learner's own loss.

Two strided convs and a LayerNorm'd tanh projection (DrQ-v2's trunk), sized for a 2-core CPU:
at 32x32 a frame costs about 0.8 MFLOP forward, where DrQ-v2's four 32-filter convs with one
stride cost about 7. `Encoded(torso, head)` puts a torso in front of any head.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Smallest frame the torso takes: a 4x4 conv with stride 2, then a 3x3 conv with stride 2.
MIN_IMAGE_SIZE = 9


class ConvTorso(nn.Module):
  """uint8 `[..., H, W, C]` -> `[..., feature_dim]`; pixels scaled to [-0.5, 0.5]."""
  filters: Sequence[int] = (16, 32)
  kernels: Sequence[int] = (4, 3)
  strides: Sequence[int] = (2, 2)
  feature_dim: int = 64

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    batch_shape = obs.shape[:-3]
    x = obs.reshape((-1,) + obs.shape[-3:]).astype(jnp.float32) / 255.0 - 0.5
    for filters, kernel, stride in zip(self.filters, self.kernels, self.strides):
      x = nn.relu(nn.Conv(filters, (kernel, kernel), strides=stride, padding="VALID",
                          kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(x))
    x = nn.Dense(self.feature_dim, kernel_init=nn.initializers.orthogonal(1.0))(
        x.reshape(x.shape[0], -1))
    x = jnp.tanh(nn.LayerNorm()(x))
    return x.reshape(batch_shape + (self.feature_dim,))


class Encoded(nn.Module):
  """`head(torso(obs))`; `features` is the torso's output alone."""
  torso: nn.Module
  head: nn.Module

  def __call__(self, obs: jax.Array):
    return self.head(self.torso(obs))

  def features(self, obs: jax.Array) -> jax.Array:
    return self.torso(obs)
