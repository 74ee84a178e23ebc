"""The last-T-steps context of every transition, zero-padded at episode starts."""

from typing import Tuple

import jax
import jax.numpy as jnp


def trailing_windows(history: jax.Array, history_done: jax.Array, values: jax.Array,
                     done: jax.Array) -> Tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Windows of the `L` most recent values ending at each step of a rollout.

  Args:
    history: `[L-1, B, D]` the last values of the previous rollout (oldest first).
    history_done: `[L-1, B]` their episode-end flags (all ones at the start of training, so
      nothing before the first step is visible).
    values: `[U, B, D]` this rollout's values, one per step.
    done: `[U, B]` 1.0 where the episode ended with that step.

  Returns:
    windows `[U, B, L, D]`: window k holds values k-L+1..k; entries from an earlier episode than
    step k's are zeros (left padding). valid `[U, B, L]`: 1.0 where an entry is real. And the
    history and history_done to carry into the next rollout.
  """
  length = history.shape[0] + 1
  steps = values.shape[0]
  full = jnp.concatenate([history, values], axis=0)
  full_done = jnp.concatenate([history_done, done], axis=0)
  # Episode index of each position: the number of episode ends strictly before it.
  episode = jnp.cumsum(full_done, axis=0) - full_done
  windows = jnp.stack([full[j:j + steps] for j in range(length)], axis=2)
  episodes = jnp.stack([episode[j:j + steps] for j in range(length)], axis=2)
  valid = (episodes == episodes[..., -1:]).astype(values.dtype)
  windows = windows * valid[..., None]
  return windows, valid, full[steps:], full_done[steps:]
