"""Pre-norm transformer pieces for masked input modeling (MAE-style encoder/decoder)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_dense_init = dict(kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.zeros)


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
  """Fixed `[length, dim]` sine/cosine position encoding (first half sines, second cosines)."""
  assert dim % 2 == 0, f"position encoding needs an even width, got {dim}"
  position = np.arange(length, dtype=np.float64)[:, None]
  omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
  angles = position * omega[None, :]
  return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


class Block(nn.Module):
  """LayerNorm -> self-attention -> residual, LayerNorm -> MLP -> residual."""
  num_heads: int
  mlp_ratio: float = 4.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    width = x.shape[-1]
    y = nn.LayerNorm(epsilon=1e-6)(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads, use_bias=True,
                                            **_dense_init)(y, y)
    y = nn.LayerNorm(epsilon=1e-6)(x)
    y = nn.gelu(nn.Dense(int(width * self.mlp_ratio), **_dense_init)(y))
    return x + nn.Dense(width, **_dense_init)(y)


def dense(features: int) -> nn.Dense:
  return nn.Dense(features, **_dense_init)
