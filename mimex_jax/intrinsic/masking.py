"""Which positions of a `[N, L, D]` sequence batch the model must reconstruct."""

from typing import Tuple

import jax
import jax.numpy as jnp


def num_kept(length: int, mask_ratio: float) -> int:
  """Positions left visible, as the reference computes it: int(L * (1 - mask_ratio))."""
  return int(length * (1 - mask_ratio))


def random_mask(key: jax.Array, num_sequences: int, length: int,
                mask_ratio: float) -> Tuple[jax.Array, jax.Array]:
  """Per sequence, keeps `num_kept(length, mask_ratio)` positions chosen uniformly at random.

  Returns `keep` `[N, K]` (kept positions in increasing order) and `mask` `[N, L]`, 1.0 where a
  position is masked (hidden from the encoder and scored by the loss).
  """
  kept = num_kept(length, mask_ratio)
  noise = jax.random.uniform(key, (num_sequences, length))
  rank = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)  # rank of each position's noise
  mask = (rank >= kept).astype(jnp.float32)
  # Kept positions in order: stable argsort of the mask puts the zeros first.
  keep = jnp.argsort(mask, axis=1, stable=True)[:, :kept]
  return keep, mask
