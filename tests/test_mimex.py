"""MIMEx learns what it sees: familiar sequences score low, unseen ones high."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax.intrinsic import IntrinsicBatch, Mimex

SMALL = dict(embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32, decoder_depth=1,
             decoder_num_heads=2)


def _familiar(key, num, length=5, dim=4):
  """Straight lines from near a fixed start along a fixed direction."""
  start_key, speed_key = jax.random.split(key)
  start = 1.0 + 0.1 * jax.random.normal(start_key, (num, 1, dim))
  speed = 0.5 + 0.05 * jax.random.normal(speed_key, (num, 1, 1))
  steps = jnp.arange(length, dtype=jnp.float32)[None, :, None]
  return start + speed * steps * jnp.ones((1, 1, dim))


def _novel(key, num, length=5, dim=4):
  """Random walks around a different point."""
  return -1.0 + jnp.cumsum(0.7 * jax.random.normal(key, (num, length, dim)), axis=1)


@pytest.mark.parametrize("mask,train_fraction", [
    ("random", 1.0),
    pytest.param("last", 1.0, marks=pytest.mark.slow),  # the masks' layouts are tested fast
    pytest.param("elementwise", 1.0, marks=pytest.mark.slow),  # in test_masking.py
    ("random", 0.25),  # trained on a quarter of each batch, it still tells familiar from novel
])
def test_mimex_scores_unseen_sequences_above_familiar_ones(mask, train_fraction):
  mimex = Mimex(obs_size=4, seq_len=5, mask_ratio=0.6, learning_rate=1e-3, mask=mask,
                train_fraction=train_fraction, model_kwargs=SMALL)
  state = mimex.init(jax.random.PRNGKey(0), num_envs=1)

  @jax.jit
  def train(state, key):
    def body(state, step_key):
      data_key, mask_key = jax.random.split(step_key)
      # 256 sequences as a rollout of 8 steps x 32 envs (with train_fraction 0.25, 2 steps of
      # each env train).
      state, _, loss = mimex.train_on_sequences(state, _familiar(data_key, 256), mask_key,
                                                steps=8)
      return state, loss
    return jax.lax.scan(body, state, jax.random.split(key, 300))

  state, losses = train(state, jax.random.PRNGKey(1))
  assert losses[-20:].mean() < 0.2 * losses[:20].mean()  # it learned the familiar data

  score = jax.jit(mimex.score_sequences)
  familiar = score(state, _familiar(jax.random.PRNGKey(2), 512), jax.random.PRNGKey(3))
  novel = score(state, _novel(jax.random.PRNGKey(4), 512), jax.random.PRNGKey(3))
  assert novel.shape == familiar.shape == (512,)
  assert float(novel.mean()) > 5 * float(familiar.mean())
  # Not just on average: most novel sequences score above the typical familiar one.
  assert float(jnp.mean(novel > jnp.median(familiar))) > 0.95


def test_update_rewards_are_the_pre_step_losses_of_each_transition():
  mimex = Mimex(obs_size=3, seq_len=4, mask_ratio=0.5, n_mask=2, model_kwargs=SMALL)
  state = mimex.init(jax.random.PRNGKey(0), num_envs=2)
  steps, envs = 6, 2
  next_obs = jax.random.normal(jax.random.PRNGKey(1), (steps, envs, 3))
  done = jnp.zeros((steps, envs)).at[2, 1].set(1.0)
  batch = IntrinsicBatch(obs=next_obs, action=jnp.zeros((steps, envs, 1)), next_obs=next_obs,
                         done=done)
  key = jax.random.PRNGKey(5)
  scored = mimex.reward(state, batch, key)
  new_state, reward, metrics = jax.jit(mimex.update)(state, batch, key)
  assert reward.shape == (steps, envs)
  np.testing.assert_allclose(reward, scored, rtol=1e-5)
  np.testing.assert_allclose(metrics["intrinsic_loss"], reward.mean(), rtol=1e-5)
  # Parameters moved, and the last seq_len - 1 observations are carried to the next rollout.
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state.params, new_state.params)
  assert max(jax.tree.leaves(moved)) > 0
  np.testing.assert_array_equal(new_state.history, next_obs[-3:])


def test_random_projection_embedding_keeps_padding_zero():
  mimex = Mimex(obs_size=6, seq_len=3, embedding="random_projection", embedding_dim=4,
                model_kwargs=SMALL)
  state = mimex.init(jax.random.PRNGKey(0), num_envs=1)
  windows = jnp.concatenate([jnp.zeros((2, 1, 6)), jnp.ones((2, 2, 6))], axis=1)
  embedded = mimex.embed(state, windows)
  assert embedded.shape == (2, 3, 4)
  np.testing.assert_array_equal(embedded[:, 0], 0.0)
  assert float(jnp.abs(embedded[:, 1:]).sum()) > 0


def _rollout_batch(steps=8, envs=6, dim=3, seed=1):
  obs = jax.random.normal(jax.random.PRNGKey(seed), (steps, envs, dim))
  done = jnp.zeros((steps, envs)).at[3, 2].set(1.0)
  return IntrinsicBatch(obs=obs, action=jnp.zeros((steps, envs, 1)), next_obs=obs + 1.0,
                        done=done)


def test_train_fraction_scores_every_row_with_the_pre_update_parameters():
  steps, envs = 8, 6
  batch = _rollout_batch(steps, envs)
  keys = jax.random.split(jax.random.PRNGKey(7), steps * envs).reshape(steps, envs, 2)
  mimex = Mimex(obs_size=3, seq_len=4, mask_ratio=0.5, train_fraction=0.25, model_kwargs=SMALL)
  state = mimex.init(jax.random.PRNGKey(0), num_envs=envs)
  scored = jax.jit(mimex.reward)(state, batch, keys)
  new_state, reward, metrics = jax.jit(mimex.update)(state, batch, keys)
  np.testing.assert_allclose(reward, scored, rtol=1e-5)

  # The trained rows: 2 of 8 steps in every env column, and the loss is their mean.
  order = mimex._training_order(keys.reshape(-1, 2), steps * envs, steps)
  trained = np.asarray(order[:2]).reshape(-1)
  assert sorted(trained % envs) == sorted(list(range(envs)) * 2)
  np.testing.assert_allclose(metrics["intrinsic_loss"],
                             np.asarray(reward).reshape(-1)[trained].mean(), rtol=1e-5)

  # The gradient step is the one of the trained rows alone.
  full = Mimex(obs_size=3, seq_len=4, mask_ratio=0.5, model_kwargs=SMALL)
  train_all = jax.jit(full.train_on_sequences)
  sequences, _, _ = mimex._windows(state, batch)
  expected_state, _, subset_loss = train_all(state, sequences[trained],
                                             keys.reshape(-1, 2)[trained])
  np.testing.assert_allclose(subset_loss, metrics["intrinsic_loss"], rtol=1e-5)
  # Adam's first step is about +-lr wherever the gradient is not tiny; compare those entries
  # (where the gradient is near Adam's eps, rounding decides the step).
  got = np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree.leaves(new_state.params),
                                                        jax.tree.leaves(state.params))])
  want = np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree.leaves(expected_state.params),
                                                         jax.tree.leaves(state.params))])
  firm = np.abs(want) > 0.5e-4
  assert firm.mean() > 0.5
  agree = np.isclose(got[firm], want[firm], rtol=1e-3, atol=0)
  assert agree.mean() > 0.999, f"{(~agree).sum()} of {agree.size} parameter steps differ"
  # Training on every row would have moved the parameters differently.
  all_rows, _, _ = train_all(state, sequences, keys.reshape(-1, 2))
  moved = np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree.leaves(all_rows.params),
                                                          jax.tree.leaves(state.params))])
  assert np.abs(moved[firm] - want[firm]).max() > 1e-5


def test_which_rows_train_depends_on_each_env_s_own_keys_only():
  """Half the envs (one device's share) pick the same training steps as in the whole batch."""
  steps, envs = 8, 6
  keys = jax.random.split(jax.random.PRNGKey(7), steps * envs).reshape(steps, envs, 2)
  mimex = Mimex(obs_size=3, seq_len=4, train_fraction=0.5, model_kwargs=SMALL)
  whole = np.asarray(mimex._training_order(keys.reshape(-1, 2), steps * envs, steps))
  half = np.asarray(mimex._training_order(keys[:, 3:].reshape(-1, 2), steps * 3, steps))
  # Row indices -> (step, env); the steps each env trains on must agree.
  np.testing.assert_array_equal(whole[:4, 3:] // envs, half[:4] // 3)


@pytest.mark.parametrize("window_end", ["obs", "next_obs"])
def test_window_layouts_at_episode_starts_and_ends(window_end):
  """One env, seq_len 3. obs = 1..6; the episode ends with step 2 (next_obs 30, a terminal
  observation never acted on) and step 3 acts in the new episode's first observation 4."""
  obs = jnp.array([1.0, 2, 3, 4, 5, 6])[:, None, None]
  next_obs = jnp.array([2.0, 3, 30, 5, 6, 7])[:, None, None]
  done = jnp.array([0, 0, 1, 0, 0, 0.0])[:, None]
  batch = IntrinsicBatch(obs=obs, action=jnp.zeros((6, 1, 1)), next_obs=next_obs, done=done)
  mimex = Mimex(obs_size=1, seq_len=3, window_end=window_end, model_kwargs=SMALL)
  state = mimex.init(jax.random.PRNGKey(0), num_envs=1)
  windows, history, _ = mimex._windows(state, batch)
  if window_end == "obs":  # the reference's: step t is scored by the window ending at obs_t
    expected = [[0, 0, 1], [0, 1, 2], [1, 2, 3], [0, 0, 4], [0, 4, 5], [4, 5, 6]]
    np.testing.assert_array_equal(history[:, 0, 0], [5, 6])
  else:  # ending at the observation reached: the new episode's first observation never shows
    expected = [[0, 0, 2], [0, 2, 3], [2, 3, 30], [0, 0, 5], [0, 5, 6], [5, 6, 7]]
    np.testing.assert_array_equal(history[:, 0, 0], [6, 7])
  np.testing.assert_array_equal(windows[..., 0], expected)
  # The next rollout continues the episode: its first window starts with the carried history.
  follow = IntrinsicBatch(obs=jnp.full((1, 1, 1), 7.0), action=jnp.zeros((1, 1, 1)),
                          next_obs=jnp.full((1, 1, 1), 8.0), done=jnp.zeros((1, 1)))
  state = state.replace(history=history, history_done=jnp.zeros((2, 1)))
  windows, _, _ = mimex._windows(state, follow)
  np.testing.assert_array_equal(windows[0, :, 0], [5, 6, 7] if window_end == "obs" else [6, 7, 8])


@pytest.mark.parametrize("seq_len,mask_ratio", [(5, 0.8), (3, 0.7), (10, 0.9)])
def test_no_kept_position_scores_and_trains(seq_len, mask_ratio):
  """int(seq_len * (1 - mask_ratio)) == 0: the encoder sees only the CLS token (the reference's
  DMC example, mask 0.8 at T = 5). Scoring and training run, the losses are finite, and a step
  on familiar data lowers them."""
  mimex = Mimex(obs_size=4, seq_len=seq_len, mask_ratio=mask_ratio, learning_rate=1e-3,
                model_kwargs=SMALL)
  state = mimex.init(jax.random.PRNGKey(0), num_envs=2)
  keep, _ = mimex.masks(jax.random.PRNGKey(1), 8)
  assert keep.shape[-1] == 0
  data = _familiar(jax.random.PRNGKey(2), 64, length=seq_len)
  train = jax.jit(lambda s, k: mimex.train_on_sequences(s, data, k))
  state, first, _ = train(state, jax.random.PRNGKey(3))
  for step in range(30):
    state, losses, _ = train(state, jax.random.PRNGKey(4 + step))
  assert first.shape == losses.shape == (64,)
  assert bool(jnp.all(jnp.isfinite(losses)))
  assert float(losses.mean()) < 0.5 * float(first.mean())
  # The fused path: rewards for a rollout, with the episode start padding.
  batch = IntrinsicBatch(obs=data[:, :1].reshape(8, 8, 4)[:, :2], action=jnp.zeros((8, 2, 1)),
                         next_obs=data[:, :1].reshape(8, 8, 4)[:, :2], done=jnp.zeros((8, 2)))
  _, reward, _ = jax.jit(mimex.update)(state, batch, jax.random.PRNGKey(9))
  assert reward.shape == (8, 2) and bool(jnp.all(jnp.isfinite(reward)))
