"""Which parts of a `[N, L, D]` sequence batch the model must reconstruct: the mask distribution.

MIMEx's point is that the mask distribution decides what a reconstruction loss measures:

- `random`: `mask_ratio` of the positions, chosen per sequence; how surprising a trajectory
  snippet is given a random subset of it (the paper's default).
- `elementwise`: `mask_ratio` of the individual `[L, D]` entries; surprise of single features
  given the rest of the snippet, across time and features (the reference's space-time variant).
- `last`: the last `L - K` positions; surprise of the future given the past (a forward model, as
  in ICM-style curiosity without actions).
- `block`: one contiguous span of `L - K` positions at a random offset; surprise of a stretch of
  the trajectory given its context on both sides.

Position masks return `keep` `[N, K]` (visible positions in increasing order) and `mask`
`[N, L]`, 1.0 where a position is hidden and scored. The element mask returns all `L` positions
as `keep` and `mask` `[N, L, D]`: hidden entries are zeroed in the input and scored.
"""

from typing import Tuple

import jax
import jax.numpy as jnp

KINDS = ("random", "elementwise", "last", "block")


def num_kept(length: int, mask_ratio: float) -> int:
  """Items left visible, as the reference computes it: int(L * (1 - mask_ratio))."""
  return int(length * (1 - mask_ratio))


def _keep_from_mask(mask: jax.Array, kept: int) -> jax.Array:
  # A stable argsort of the mask puts the visible (zero) positions first, in order.
  return jnp.argsort(mask, axis=1, stable=True)[:, :kept]


def random_mask(key: jax.Array, num_sequences: int, length: int,
                mask_ratio: float) -> Tuple[jax.Array, jax.Array]:
  """Per sequence, keeps `num_kept(length, mask_ratio)` positions chosen uniformly at random."""
  kept = num_kept(length, mask_ratio)
  noise = jax.random.uniform(key, (num_sequences, length))
  rank = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)  # rank of each position's noise
  mask = (rank >= kept).astype(jnp.float32)
  return _keep_from_mask(mask, kept), mask


def last_mask(num_sequences: int, length: int, mask_ratio: float) -> Tuple[jax.Array, jax.Array]:
  """Keeps the first `num_kept` positions and hides the rest: predict the future."""
  kept = num_kept(length, mask_ratio)
  mask = jnp.broadcast_to((jnp.arange(length) >= kept).astype(jnp.float32),
                          (num_sequences, length))
  return _keep_from_mask(mask, kept), mask


def block_mask(key: jax.Array, num_sequences: int, length: int,
               mask_ratio: float) -> Tuple[jax.Array, jax.Array]:
  """Hides one contiguous span of `length - num_kept` positions, its start uniform over the
  `num_kept + 1` places it fits."""
  kept = num_kept(length, mask_ratio)
  start = jax.random.randint(key, (num_sequences, 1), 0, kept + 1)
  position = jnp.arange(length)[None, :]
  mask = ((position >= start) & (position < start + length - kept)).astype(jnp.float32)
  return _keep_from_mask(mask, kept), mask


def elementwise_mask(key: jax.Array, num_sequences: int, length: int, dim: int,
                     mask_ratio: float) -> Tuple[jax.Array, jax.Array]:
  """Hides all but `num_kept(length * dim, mask_ratio)` entries of each `[L, D]` sequence."""
  kept = num_kept(length * dim, mask_ratio)
  noise = jax.random.uniform(key, (num_sequences, length * dim))
  rank = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)
  mask = (rank >= kept).astype(jnp.float32).reshape(num_sequences, length, dim)
  keep = jnp.broadcast_to(jnp.arange(length), (num_sequences, length))
  return keep, mask


def make_mask(kind: str, key: jax.Array, num_sequences: int, length: int, dim: int,
              mask_ratio: float) -> Tuple[jax.Array, jax.Array]:
  """`(keep, mask)` of the mask distribution `kind` (one of `KINDS`)."""
  if kind == "random":
    return random_mask(key, num_sequences, length, mask_ratio)
  if kind == "last":
    return last_mask(num_sequences, length, mask_ratio)
  if kind == "block":
    return block_mask(key, num_sequences, length, mask_ratio)
  if kind == "elementwise":
    return elementwise_mask(key, num_sequences, length, dim, mask_ratio)
  raise ValueError(f"mask must be one of {KINDS}, got {kind!r}")
