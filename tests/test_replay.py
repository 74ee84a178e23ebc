"""The on-device replay buffer: n-step targets against hand values, frame stacks and MIMEx
contexts (ending at obs or at next_obs) rebuilt exactly from frames stored once, padding at
episode starts, and wrapping."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax.agents.drq.replay import ReplayBuffer, n_step_return


@pytest.mark.parametrize("jitted", [False, True])
def test_n_step_return_hand_values(jitted):
  fn = jax.jit(n_step_return, static_argnums=3) if jitted else n_step_return
  rewards = jnp.array([1.0, 2.0, 3.0])
  zeros = jnp.zeros(3)

  def check(terminated, truncated, expected):
    got = fn(rewards, jnp.array(terminated), jnp.array(truncated), 0.5)
    np.testing.assert_allclose([float(x) for x in got], expected, rtol=1e-6)

  check(zeros, zeros, (1 + 0.5 * 2 + 0.25 * 3, 0.125, 1.0))
  # Terminated at the second step: its reward counts, nothing after it, no bootstrap.
  check([0.0, 1.0, 0.0], zeros, (1 + 0.5 * 2, 0.0, 1.0))
  check([1.0, 0.0, 0.0], zeros, (1.0, 0.0, 1.0))
  # Cut by the time limit inside the window: the bootstrap observation is not stored.
  check(zeros, [0.0, 1.0, 0.0], (1 + 0.5 * 2 + 0.25 * 3, 0.125, 0.0))
  check(zeros, [0.0, 0.0, 1.0], (1 + 0.5 * 2 + 0.25 * 3, 0.125, 0.0))
  # A truncation after a termination belongs to the next episode: the window stays valid.
  check([1.0, 0.0, 0.0], [0.0, 0.0, 1.0], (1.0, 0.0, 1.0))
  with pytest.raises(ValueError, match="one window"):
    n_step_return(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros((2, 3)), 0.5)


def test_wrap_keeps_the_newest_slots():
  buffer = ReplayBuffer(capacity=8, num_envs=2, obs_shape=(1,), obs_dtype=jnp.float32,
                        action_size=1)
  state = buffer.init()
  zeros = jnp.zeros(2)
  for t in range(6):
    obs = jnp.array([[10.0 * t], [10.0 * t + 1]])
    state = buffer.insert(state, obs, jnp.full((2, 1), float(t)), zeros, zeros, zeros)
  assert buffer.num_slots == 4
  assert int(state.cursor) == 2 and int(state.count) == 4
  # Slots 0 and 1 were overwritten by steps 4 and 5; slots 2 and 3 still hold steps 2 and 3.
  np.testing.assert_array_equal(np.asarray(state.frames)[:, 0, 0], [40, 50, 20, 30])
  np.testing.assert_array_equal(np.asarray(state.action)[:, 1, 0], [4, 5, 2, 3])
  np.testing.assert_array_equal(np.asarray(state.episode_step)[:, 0], [4, 5, 2, 3])


class SyntheticRun:
  """Envs whose frame at step t is the number `t * E + env + 1`, so every sampled frame names
  its step and env; episodes end at random by termination or time limit."""

  def __init__(self, steps=70, envs=3, stack=3, seed=0):
    rng = np.random.default_rng(seed)
    self.steps, self.envs, self.stack = steps, envs, stack
    self.terminated = (rng.random((steps, envs)) < 0.06).astype(np.float32)
    self.truncated = ((rng.random((steps, envs)) < 0.06) & (self.terminated == 0)).astype(
        np.float32)
    self.reward = rng.normal(size=(steps, envs)).astype(np.float32)
    self.action = rng.uniform(-1, 1, size=(steps, envs, 2)).astype(np.float32)
    self.start = np.zeros((steps, envs), int)  # step of each step's episode start
    for e in range(envs):
      for t in range(1, steps):
        ended = self.terminated[t - 1, e] or self.truncated[t - 1, e]
        self.start[t, e] = t if ended else self.start[t - 1, e]

  def frame(self, t, e):
    return float(t * self.envs + e + 1)

  def obs(self, t, e):
    """What the env shows at step t: oldest frame first, the episode's first frame repeated."""
    return np.array([self.frame(max(t - j, self.start[t, e]), e)
                     for j in range(self.stack - 1, -1, -1)], np.float32)

  def fill(self, buffer):
    state = buffer.init()
    insert = jax.jit(buffer.insert)
    for t in range(self.steps):
      obs = np.stack([self.obs(t, e) for e in range(self.envs)])
      state = insert(state, obs, self.action[t], self.reward[t], self.terminated[t],
                     self.truncated[t])
    return state


@pytest.mark.parametrize("context_end", ["obs", "next_obs"])
def test_samples_rebuild_stacks_targets_and_contexts_exactly(context_end):
  run = SyntheticRun()
  seq_len, n_step, discount = 4, 2, 0.9
  buffer = ReplayBuffer(capacity=3 * 20, num_envs=3, obs_shape=(3,), obs_dtype=jnp.float32,
                        action_size=2, frame_stack=3, n_step=n_step, discount=discount,
                        seq_len=seq_len, context_end=context_end)
  state = run.fill(buffer)  # 70 steps into 20 slots: wrapped more than three times
  sample = jax.device_get(jax.jit(functools.partial(buffer.sample, batch_size=600))(
      state, jax.random.PRNGKey(1)))

  seen_steps = set()
  for i in range(600):
    newest = int(sample.obs[i, -1]) - 1
    t, e = divmod(newest, run.envs)
    seen_steps.add(t)
    # Only slots still in the buffer, with their look-back and n-step window written.
    assert run.steps - 20 + buffer.lookback <= t <= run.steps - 1 - n_step
    np.testing.assert_array_equal(sample.obs[i], run.obs(t, e))
    np.testing.assert_array_equal(sample.action[i], run.action[t, e])
    ret, disc, valid = n_step_return(jnp.asarray(run.reward[t:t + n_step, e]),
                                     jnp.asarray(run.terminated[t:t + n_step, e]),
                                     jnp.asarray(run.truncated[t:t + n_step, e]), discount)
    np.testing.assert_allclose([sample.reward[i], sample.discount[i], sample.valid[i]],
                               [ret, disc, valid], rtol=1e-5)
    if not valid:
      continue
    if disc > 0:
      np.testing.assert_array_equal(sample.bootstrap_obs[i], run.obs(t + n_step, e))
    reached = t if run.terminated[t, e] else t + 1
    np.testing.assert_array_equal(sample.next_obs[i], run.obs(reached, e))
    end = t if context_end == "obs" else reached
    for j in range(seq_len):
      step = end - (seq_len - 1 - j)
      inside = step >= run.start[end, e]
      assert sample.context_valid[i, j] == float(inside)
      expected = run.obs(step, e) if inside else np.zeros(3)
      np.testing.assert_array_equal(sample.context[i, j], expected)
      # No frame of another episode (or env) anywhere in the context.
      for value in sample.context[i, j][sample.context[i, j] > 0]:
        step_of, env_of = divmod(int(value) - 1, run.envs)
        assert env_of == e and run.start[step_of, e] == run.start[end, e]
  assert len(seen_steps) > 10  # the draw covers the buffer, not a few slots
  assert 0 < sample.valid.mean() < 1  # the run has windows cut by the time limit


# One env, frame t is the number t + 1. Episodes: steps 0-2 (step 2 terminates: its next
# observation is never stored), steps 3-4 (step 4 hits the time limit: its next observation is
# replaced by the next episode's first one, frame 6), steps 5-9. With seq_len 3 and n_step 1,
# steps 2..8 are sampleable. Per step: (context, context_valid) for each end, and next_obs.
_HAND_CONTEXTS = {
    "obs": {
        2: ([1, 2, 3], [1, 1, 1]),  # the episode's third step: no padding
        3: ([0, 0, 4], [0, 0, 1]),  # an episode start: two padded positions
        4: ([0, 4, 5], [0, 1, 1]),  # nothing of the previous episode (frame 3) leaks in
        5: ([0, 0, 6], [0, 0, 1]),
        6: ([0, 6, 7], [0, 1, 1]),
        7: ([6, 7, 8], [1, 1, 1]),
        8: ([7, 8, 9], [1, 1, 1]),
    },
    "next_obs": {
        2: ([1, 2, 3], [1, 1, 1]),  # terminated: ends at the last stored observation itself
        3: ([0, 4, 5], [0, 1, 1]),
        4: ([0, 0, 6], [0, 0, 1]),  # truncated: ends at the next episode's first observation
        5: ([0, 6, 7], [0, 1, 1]),
        6: ([6, 7, 8], [1, 1, 1]),
        7: ([7, 8, 9], [1, 1, 1]),
        8: ([8, 9, 10], [1, 1, 1]),
    },
}
_HAND_NEXT_OBS = {2: 3, 3: 5, 4: 6, 5: 7, 6: 8, 7: 9, 8: 10}


@pytest.mark.parametrize("context_end", ["obs", "next_obs"])
def test_context_ends_at_obs_or_next_obs_hand_built(context_end):
  buffer = ReplayBuffer(capacity=12, num_envs=1, obs_shape=(1,), obs_dtype=jnp.float32,
                        action_size=1, seq_len=3, context_end=context_end)
  assert buffer.lookback == 2  # a context ending at obs reaches seq_len - 1 slots back
  state = buffer.init()
  for t in range(10):
    state = buffer.insert(state, jnp.array([[t + 1.0]]), jnp.array([[float(t)]]),
                          jnp.zeros(1), jnp.array([float(t == 2)]), jnp.array([float(t == 4)]))
  sample = jax.device_get(buffer.sample(state, jax.random.PRNGKey(0), 300))
  expected = _HAND_CONTEXTS[context_end]
  seen = set()
  for i in range(300):
    t = int(sample.obs[i, 0]) - 1
    seen.add(t)
    assert sample.action[i, 0] == t
    assert sample.next_obs[i, 0] == _HAND_NEXT_OBS[t]
    assert sample.valid[i] == float(t != 4)  # step 4's next observation is not stored
    context, valid = expected[t]
    np.testing.assert_array_equal(sample.context[i, :, 0], context, err_msg=f"step {t}")
    np.testing.assert_array_equal(sample.context_valid[i], valid, err_msg=f"step {t}")
  assert seen == set(expected)


def test_frames_are_stored_once():
  buffer = ReplayBuffer(capacity=1000, num_envs=10, obs_shape=(84, 84, 9), obs_dtype=jnp.uint8,
                        action_size=6, frame_stack=3)
  state = jax.eval_shape(buffer.init)
  per_transition = sum(np.prod(x.shape) * x.dtype.itemsize
                       for x in (state.frames, state.action, state.reward, state.terminated,
                                 state.truncated, state.episode_step)) / 1000
  assert per_transition == buffer.bytes_per_transition == 84 * 84 * 3 + 4 * 6 + 10  # frame, action, reward, 2 flags, step
  with pytest.raises(ValueError, match="needs"):
    ReplayBuffer(capacity=20, num_envs=10, obs_shape=(4,), obs_dtype=jnp.float32,
                 action_size=1, n_step=3)
  with pytest.raises(ValueError, match="context_end"):
    ReplayBuffer(capacity=20, num_envs=1, obs_shape=(4,), obs_dtype=jnp.float32,
                 action_size=1, context_end="action")
