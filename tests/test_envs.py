"""Environment wrappers (time limit, termination, auto-reset, stats, action repeat) and the
registry, on a tiny pure-JAX backend and on real MJX tasks."""

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax import envs
from mimex_jax.envs import Env, VectorEnv


@struct.dataclass
class _CounterState:
  obs: jax.Array
  reward: jax.Array
  done: jax.Array


class _Counter:
  """obs = position; each step adds the action; reward 1 while position >= 2; the task ends
  (terminates) when position reaches 5. Reset starts at a random position in [0, 1)."""
  observation_size = 1
  action_size = 1

  def reset(self, key):
    return _CounterState(jax.random.uniform(key, (1,)), jnp.zeros(()), jnp.zeros(()))

  def step(self, state, action):
    obs = state.obs + action
    return _CounterState(obs, (obs[0] >= 2).astype(jnp.float32),
                         (obs[0] >= 5).astype(jnp.float32))


def _run(vector_env, actions, key=jax.random.PRNGKey(0)):
  state = vector_env.reset(key)
  states = []
  for action in actions:
    state = jax.jit(vector_env.step)(state, action)
    states.append(state)
  return states


def test_time_limit_truncates_and_resets_with_stats():
  env = Env(_Counter(), episode_length=3, success_threshold=0.5)
  vector_env = VectorEnv(env, 2)
  states = _run(vector_env, [jnp.array([[1.0], [0.0]])] * 4)
  third = states[2]
  np.testing.assert_array_equal(third.truncated, [1, 1])
  np.testing.assert_array_equal(third.terminated, [0, 0])
  # Env 0 moved 1 per step from ~0.x: rewards 0, 1, 1 -> return 2, success; env 1 stood still.
  np.testing.assert_allclose(third.completed.episode_return, [2.0, 0.0])
  np.testing.assert_array_equal(third.completed.length, [3, 3])
  np.testing.assert_array_equal(third.completed.success, [1.0, 0.0])
  # final_obs is where the episode stopped; obs is the fresh episode's start.
  assert float(third.final_obs[0, 0]) >= 3.0
  assert float(third.obs[0, 0]) < 1.0
  np.testing.assert_array_equal(third.episode.length, [0, 0])
  np.testing.assert_array_equal(states[3].episode.length, [1, 1])


def test_termination_is_not_truncation():
  env = Env(_Counter(), episode_length=100)
  vector_env = VectorEnv(env, 1)
  states = _run(vector_env, [jnp.array([[2.0]])] * 3)
  np.testing.assert_array_equal([s.terminated[0] for s in states], [0, 0, 1])
  np.testing.assert_array_equal([s.truncated[0] for s in states], [0, 0, 0])
  np.testing.assert_array_equal(states[2].completed.length, [3])
  assert np.isnan(float(states[2].completed.success[0]))  # no success defined for this env


def test_action_repeat_sums_rewards_and_stops_at_termination():
  env = Env(_Counter(), episode_length=100, action_repeat=3)
  state = env.reset(jax.random.PRNGKey(1))
  state = jax.jit(env.step)(state, jnp.array([1.0]))  # positions ~1.x, 2.x, 3.x: rewards 0,1,1
  np.testing.assert_allclose(state.reward, 2.0)
  state = jax.jit(env.step)(state, jnp.array([1.0]))  # 4.x, 5.x (ends), the rest not counted
  np.testing.assert_allclose(state.reward, 2.0)
  assert float(state.terminated) == 1.0


def test_stagger_spreads_the_first_time_limits():
  env = Env(_Counter(), episode_length=10)
  state = VectorEnv(env, 64, stagger=True).reset(jax.random.PRNGKey(0))
  lengths = np.asarray(state.episode.length)
  assert lengths.min() >= 0 and lengths.max() < 10 and len(set(lengths.tolist())) > 5


def test_unknown_task_names_the_known_ones():
  with pytest.raises(envs.UnknownTaskError, match="CartpoleSwingupSparse"):
    envs.make("CartpoleSwingupSparce")


def test_unknown_playground_override_is_refused():
  with pytest.raises(ValueError, match="unknown override"):
    envs.make("CartpoleBalanceSparse", not_a_key=1)


def test_mjx_task_vectorized_deterministic_and_sparse_success():
  env = envs.make("CartpoleSwingupSparse", episode_length=4)
  assert env.observation_size == 5 and env.action_size == 1
  assert env.success_threshold is not None
  vector_env = VectorEnv(env, 8)

  @jax.jit
  def rollout(key):
    def body(state, action_key):
      action = jax.random.uniform(action_key, (8, 1), minval=-1, maxval=1)
      state = vector_env.step(state, action)
      return state, (state.obs, state.reward, state.done)
    return jax.lax.scan(body, vector_env.reset(key), jax.random.split(key, 6))[1]

  obs, reward, done = rollout(jax.random.PRNGKey(0))
  again = rollout(jax.random.PRNGKey(0))[0]
  other = rollout(jax.random.PRNGKey(1))[0]
  assert obs.shape == (6, 8, 5) and bool(jnp.all(jnp.isfinite(obs)))
  np.testing.assert_array_equal(obs, again)
  assert not np.allclose(obs, other)
  np.testing.assert_array_equal(done[3], 1.0)  # time limit of 4 steps
  # Swing-up starts hanging down: the sparse reward (pole upright) is never reached at random.
  np.testing.assert_array_equal(reward, 0.0)


def test_brax_env_plugs_in_with_time_limit():
  env = envs.make("brax/inverted_pendulum", episode_length=3)
  assert env.observation_size == 4 and env.action_size == 1
  vector_env = VectorEnv(env, 2)
  state = jax.jit(vector_env.reset)(jax.random.PRNGKey(0))
  step = jax.jit(vector_env.step)
  rewards = []
  for _ in range(3):
    state = step(state, jnp.zeros((2, 1)))
    rewards.append(state.reward)
  np.testing.assert_array_equal(state.truncated, [1, 1])
  np.testing.assert_allclose(state.completed.episode_return, np.sum(rewards, axis=0))
  np.testing.assert_array_equal(state.episode.length, [0, 0])
