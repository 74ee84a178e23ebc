"""Masks hide exactly the asked fraction; the loss scores masked positions only; sequences are
zero-padded at episode starts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax.intrinsic.masking import num_kept, random_mask
from mimex_jax.intrinsic.mimex import masked_sequence_loss
from mimex_jax.intrinsic.sequences import trailing_windows


@pytest.mark.parametrize("length,ratio,kept", [(5, 0.7, 1), (2, 0.5, 1), (3, 0.6, 1),
                                               (10, 0.7, 3), (6, 0.7, 1), (4, 0.25, 3)])
def test_random_mask_keeps_exactly_int_t_times_one_minus_ratio(length, ratio, kept):
  assert num_kept(length, ratio) == kept
  keep, mask = random_mask(jax.random.PRNGKey(0), 4096, length, ratio)
  keep, mask = np.asarray(keep), np.asarray(mask)
  assert keep.shape == (4096, kept)
  np.testing.assert_array_equal(mask.sum(axis=1), length - kept)
  # The kept indices are exactly the unmasked positions, in increasing order.
  for row in range(0, 4096, 97):
    np.testing.assert_array_equal(keep[row], np.flatnonzero(mask[row] == 0))
  # Positions are chosen uniformly: each is kept kept/length of the time (within 4 sigma).
  frequency = 1 - mask.mean(axis=0)
  sigma = np.sqrt(kept / length * (1 - kept / length) / 4096)
  np.testing.assert_allclose(frequency, kept / length, atol=4 * sigma + 1e-9)


def test_random_mask_differs_per_sample_and_key():
  _, a = random_mask(jax.random.PRNGKey(0), 64, 5, 0.7)
  _, b = random_mask(jax.random.PRNGKey(1), 64, 5, 0.7)
  assert len({tuple(row) for row in np.asarray(a)}) > 1
  assert not np.array_equal(a, b)


def test_loss_counts_only_masked_positions():
  target = jnp.zeros((1, 4, 3))
  reconstruction = jnp.array([[[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0],
                               [100.0, 100.0, 100.0]]])
  mask = jnp.array([[1.0, 0.0, 1.0, 0.0]])  # positions 0 and 2 masked
  loss = masked_sequence_loss(reconstruction, target, mask)
  np.testing.assert_allclose(loss, [(1.0 + 9.0) / 2])
  # Changing an unmasked position changes nothing.
  changed = reconstruction.at[0, 1].set(-50.0)
  np.testing.assert_allclose(masked_sequence_loss(changed, target, mask), loss)


def test_norm_loss_normalizes_each_target_position():
  target = jnp.array([[[1.0, 2.0, 3.0, 4.0]]])
  normalized = (target - 2.5) / jnp.sqrt(1.25 + 1e-6)
  loss = masked_sequence_loss(normalized, target, jnp.ones((1, 1)), norm_loss=True)
  np.testing.assert_allclose(loss, [0.0], atol=1e-10)


def test_trailing_windows_zero_pad_at_episode_starts():
  length, steps = 3, 5
  values = jnp.arange(1.0, steps + 1)[:, None, None]  # [U=5, B=1, D=1], values 1..5
  done = jnp.array([0, 1, 0, 0, 0.0])[:, None]  # the episode ends with step 1 (value 2)
  history = jnp.zeros((length - 1, 1, 1))
  history_done = jnp.ones((length - 1, 1))  # start of training: nothing before step 0
  windows, valid, new_history, new_done = trailing_windows(history, history_done, values, done)
  got = np.asarray(windows[:, 0, :, 0])
  expected = np.array([[0, 0, 1], [0, 1, 2], [0, 0, 3], [0, 3, 4], [3, 4, 5]], dtype=float)
  np.testing.assert_array_equal(got, expected)
  np.testing.assert_array_equal(valid[:, 0], expected > 0)
  np.testing.assert_array_equal(new_history[:, 0, 0], [4, 5])
  # The next rollout continues the same episode: its first window reaches back into this one.
  windows2, _, _, _ = trailing_windows(new_history, new_done, jnp.full((1, 1, 1), 6.0),
                                       jnp.zeros((1, 1)))
  np.testing.assert_array_equal(windows2[0, 0, :, 0], [4, 5, 6])
  # ...unless this rollout's last step ended an episode.
  windows3, _, _, _ = trailing_windows(new_history, new_done.at[-1].set(1.0),
                                       jnp.full((1, 1, 1), 6.0), jnp.zeros((1, 1)))
  np.testing.assert_array_equal(windows3[0, 0, :, 0], [0, 0, 6])
