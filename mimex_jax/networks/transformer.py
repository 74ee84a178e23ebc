"""Pre-norm transformer pieces for masked input modeling (MAE-style encoder/decoder).

Numerically these follow the MIMEx reference (a timm ViT block): exact erf GELU, LayerNorm eps
1e-6, qkv with bias, attention scaled by 1/sqrt(head_dim), and sine/cosine position encodings
interleaved channel by channel. `tests/test_reference_model.py` checks that against the
reference model's own outputs.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_dense_init = dict(kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.zeros)


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
  """Fixed `[length, dim]` position encoding: channel 2i is sin(p * w_i), channel 2i+1 is
  cos(p * w_i), with w_i = 10000^(-2i / dim) (the reference's interleaved layout)."""
  if dim % 2:
    raise ValueError(f"position encoding needs an even width, got {dim}")
  position = np.arange(length, dtype=np.float64)[:, None]
  omega = 10000.0 ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
  angles = position * omega[None, :]
  table = np.empty((length, dim), np.float64)
  table[:, 0::2] = np.sin(angles)
  table[:, 1::2] = np.cos(angles)
  return table  # float64; callers cast to their dtype


def dense(features: int, name: Optional[str] = None) -> nn.Dense:
  return nn.Dense(features, name=name, **_dense_init)


class Block(nn.Module):
  """LayerNorm -> self-attention -> residual, LayerNorm -> MLP -> residual.

  `__call__(x [N, S, W], query_index [N, Q] or None) -> [N, S or Q, W]`. With `query_index`,
  only those tokens are computed (as queries, attending to all S tokens): the same numbers as
  the full block at those tokens, for a fraction of the MLP's cost.
  """
  num_heads: int
  mlp_ratio: float = 4.0

  @nn.compact
  def __call__(self, x: jax.Array, query_index: Optional[jax.Array] = None) -> jax.Array:
    width = x.shape[-1]
    y = nn.LayerNorm(epsilon=1e-6, name="norm1")(x)
    if query_index is not None:  # LayerNorm is per token, so it commutes with the gather
      x = jnp.take_along_axis(x, query_index[..., None], axis=1)
      queries = jnp.take_along_axis(y, query_index[..., None], axis=1)
    else:
      queries = y
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads, use_bias=True, name="attn",
                                            **_dense_init)(queries, y, y)
    y = nn.LayerNorm(epsilon=1e-6, name="norm2")(x)
    # The reference's blocks use the exact erf GELU (flax's default is the tanh approximation).
    y = nn.gelu(dense(int(width * self.mlp_ratio), name="fc1")(y), approximate=False)
    return x + dense(width, name="fc2")(y)
