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


@pytest.mark.parametrize("mask", ["random", "last", "elementwise"])
def test_mimex_scores_unseen_sequences_above_familiar_ones(mask):
  mimex = Mimex(obs_size=4, seq_len=5, mask_ratio=0.6, learning_rate=1e-3, mask=mask,
                model_kwargs=SMALL)
  state = mimex.init(jax.random.PRNGKey(0), num_envs=1)

  @jax.jit
  def train(state, key):
    def body(state, step_key):
      data_key, mask_key = jax.random.split(step_key)
      state, _, loss = mimex.train_on_sequences(state, _familiar(data_key, 256), mask_key)
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
