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
  normalized = (target - 2.5) / jnp.sqrt(5.0 / 3.0 + 1e-6)  # sample variance, as the reference
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


def test_last_mask_hides_the_future_only():
  from mimex_jax.intrinsic.masking import last_mask
  keep, mask = last_mask(8, 5, 0.7)  # keeps int(5 * 0.3) = 1
  np.testing.assert_array_equal(mask, np.tile([0, 1, 1, 1, 1], (8, 1)))
  np.testing.assert_array_equal(keep, np.zeros((8, 1)))
  keep, mask = last_mask(2, 10, 0.7)  # keeps 3
  np.testing.assert_array_equal(keep, np.tile([0, 1, 2], (2, 1)))
  np.testing.assert_array_equal(mask.sum(axis=1), [7, 7])


def test_block_mask_hides_one_contiguous_span_at_a_uniform_offset():
  from mimex_jax.intrinsic.masking import block_mask
  length, ratio, num = 10, 0.7, 8192  # keeps 3, hides a span of 7 starting at 0..3
  keep, mask = block_mask(jax.random.PRNGKey(0), num, length, ratio)
  keep, mask = np.asarray(keep), np.asarray(mask)
  np.testing.assert_array_equal(mask.sum(axis=1), 7)
  starts = mask.argmax(axis=1)
  for row in range(0, num, 331):
    np.testing.assert_array_equal(np.flatnonzero(mask[row]), np.arange(starts[row],
                                                                       starts[row] + 7))
    np.testing.assert_array_equal(keep[row], np.flatnonzero(mask[row] == 0))
  frequency = np.bincount(starts, minlength=4) / num
  assert frequency.shape == (4,)  # no span starts past where it fits
  np.testing.assert_allclose(frequency, 0.25, atol=4 * np.sqrt(0.25 * 0.75 / num))


def test_elementwise_mask_hides_the_ratio_of_entries_uniformly():
  from mimex_jax.intrinsic.masking import elementwise_mask
  length, dim, ratio, num = 5, 4, 0.7, 4096  # keeps int(20 * 0.3) = 6 entries of 20
  keep, mask = elementwise_mask(jax.random.PRNGKey(0), num, length, dim, ratio)
  keep, mask = np.asarray(keep), np.asarray(mask)
  assert mask.shape == (num, length, dim)
  np.testing.assert_array_equal(mask.sum(axis=(1, 2)), 14)
  np.testing.assert_array_equal(keep, np.tile(np.arange(length), (num, 1)))  # all positions in
  np.testing.assert_allclose(mask.mean(axis=0), 14 / 20, atol=4 * np.sqrt(0.7 * 0.3 / num))
  assert len({row.tobytes() for row in mask[:100]}) == 100  # a new pattern per sequence


def test_element_mask_loss_counts_only_masked_entries():
  target = jnp.zeros((1, 2, 2))
  reconstruction = jnp.array([[[1.0, 2.0], [3.0, 100.0]]])
  mask = jnp.array([[[1.0, 0.0], [1.0, 0.0]]])
  np.testing.assert_allclose(masked_sequence_loss(reconstruction, target, mask),
                             [(1.0 + 9.0) / 2])
