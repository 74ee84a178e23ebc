"""Environment wrappers (time limit, termination, auto-reset, stats, action repeat) and the
registry, on a tiny pure-JAX backend and on real MJX tasks."""

import sys

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


@pytest.mark.long  # the fast suite runs a Brax PipelineEnv through register (test_register)
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


# --- reset pool -----------------------------------------------------------------------------------

_STATE_FIELDS = ("obs", "reward", "terminated", "truncated", "final_obs", "episode", "completed",
                 "key")


def _rollout(vector_env, key, num_steps, max_action=2.0):
  """Per-step states of `num_steps` random actions in [0, max_action), jitted as one scan."""
  action_size = vector_env.action_size

  @jax.jit
  def run(key):
    def body(state, action_key):
      action = jax.random.uniform(action_key, (vector_env.num_envs, action_size),
                                  maxval=max_action)
      state = vector_env.step(state, action)
      return state, {field: getattr(state, field) for field in _STATE_FIELDS}
    reset_key, steps_key = jax.random.split(key)
    return jax.lax.scan(body, vector_env.reset(reset_key), jax.random.split(steps_key, num_steps))
  return run(key)


@pytest.mark.parametrize("refill", [None, 1])
def test_reset_pool_plays_the_in_place_episodes(refill):
  """Terminations at random times and time limits, several envs ending in one step: the pool
  (with its default refill, and with a refill of one, where it must catch up when slots run
  short) yields the same episodes, returns, lengths, success and flags as resetting in place."""
  env = Env(_Counter(), episode_length=4, success_threshold=0.5)
  in_place = _rollout(VectorEnv(env, 8, stagger=True), jax.random.PRNGKey(3), 30)[1]
  final, pooled = _rollout(VectorEnv(env, 8, stagger=True, reset_pool=True, refill=refill),
                           jax.random.PRNGKey(3), 30)
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(in_place)[0],
                          jax.tree.leaves(pooled), strict=True):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  done = np.asarray(in_place["terminated"] + in_place["truncated"])
  assert (in_place["terminated"].sum(), in_place["truncated"].sum()) > (20, 20)
  assert done.sum(axis=1).max() >= 3  # more ends in a step than one refill prepares
  # Ready slots hold exactly what a reset from the env's key gives.
  ready = np.asarray(final.pool.ready)
  assert ready.any() or refill == 1  # one a step cannot keep up with these short episodes
  fresh = jax.vmap(env.reset)(final.key)
  np.testing.assert_array_equal(np.asarray(final.pool.obs)[ready], np.asarray(fresh.obs)[ready])
  np.testing.assert_array_equal(np.asarray(final.pool.key)[ready], np.asarray(fresh.key)[ready])


def test_reset_pool_starts_are_fresh_independent_draws():
  """Every new episode starts from its own draw of the task's initial distribution (the
  counter's uniform [0, 1) start): no start handed out twice, moments of the uniform."""
  env = Env(_Counter(), episode_length=3)
  vector_env = VectorEnv(env, 64, stagger=True, reset_pool=True)
  assert vector_env.refill == 43  # twice the 64 / 3 time-limit ends per step
  _, steps = _rollout(vector_env, jax.random.PRNGKey(0), 12, max_action=1.0)  # never ends early
  done = np.asarray(steps["truncated"]) > 0
  starts = np.asarray(steps["obs"])[done][:, 0]
  assert len(starts) == 64 * 12 // 3
  assert len(np.unique(starts)) == len(starts)
  assert abs(starts.mean() - 0.5) < 0.04 and abs(starts.std() - 12 ** -0.5) < 0.03


@pytest.mark.long  # the pool's logic is tested fast above and below on counting envs
def test_reset_pool_mjx_initial_states_match_in_place_resets():
  """A real MJX task (randomized initial qpos) through the pool: the same starts as resetting
  in place, from a spread of initial states."""
  env = envs.make("CartpoleSwingupSparse", episode_length=3)
  in_place = _rollout(VectorEnv(env, 16, stagger=True), jax.random.PRNGKey(0), 7, 1.0)[1]
  pooled = _rollout(VectorEnv(env, 16, stagger=True, reset_pool=True), jax.random.PRNGKey(0), 7,
                    1.0)[1]
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(in_place)[0],
                          jax.tree.leaves(pooled), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=jax.tree_util.keystr(path))
  done = np.asarray(pooled["truncated"]) > 0
  starts = np.asarray(pooled["obs"])[done]
  assert len(starts) >= 16 * 2 and len(np.unique(starts[:, 0])) == len(starts)
  assert starts[:, 0].std() > 1e-3  # the cart's position is drawn anew each episode


def test_reset_pool_state_pmaps_over_two_devices():
  """Each device holds its envs' pool slots; the pmapped run is the one-device run."""
  assert jax.local_device_count() == 2  # tests/conftest.py forces two CPU devices
  env = Env(_Counter(), episode_length=3)
  vector_env = VectorEnv(env, 4, stagger=True, reset_pool=True, refill=1)
  key = jax.random.PRNGKey(5)
  state = jax.pmap(lambda first: vector_env.reset(key, first, 8))(jnp.array([0, 4]))
  assert state.pool.obs.shape == (2, 4, 1) and state.pool.ready.shape == (2, 4)
  step = jax.pmap(vector_env.step)
  whole = VectorEnv(env, 8, stagger=True)
  reference = whole.reset(key)
  for action_key in jax.random.split(key, 8):
    action = jax.random.uniform(action_key, (8, 1), maxval=2.0)
    state = step(state, action.reshape(2, 4, 1))
    reference = jax.jit(whole.step)(reference, action)
    np.testing.assert_array_equal(state.obs.reshape(8, 1), reference.obs)
    np.testing.assert_array_equal(state.completed.episode_return.reshape(8),
                                  reference.completed.episode_return)


def test_reset_pool_refuses_a_renderer_of_fixed_batches():
  class _FixedBatch(_Counter):
    fixed_batch = 4
  with pytest.raises(ValueError, match="draws exactly 4"):
    VectorEnv(Env(_FixedBatch(), episode_length=3), 4, reset_pool=True)


def test_reset_pool_setting_and_its_check(repo_root):
  sys.path.insert(0, repo_root)
  from configs import drq, ppo
  from mimex_jax import agents
  from mimex_jax.config_checks import ConfigError
  assert envs.uses_reset_pool("PushSparse", "auto")
  assert not envs.uses_reset_pool("PushSparse", "auto", pixel_backend="warp")
  assert not envs.uses_reset_pool("CartpoleSwingupSparse", "auto")
  assert envs.uses_reset_pool("CartpoleSwingupSparse", "on")
  assert not envs.uses_reset_pool("PushSparse", "off")
  config = ppo.get_config("push_sparse")
  agents.check(config, 2)
  config.env.reset_pool = "yes"
  with pytest.raises(ConfigError, match=r"^config key env.reset_pool='yes' is invalid; "
                                        r"allowed: auto, on or off$"):
    agents.check(config, 2)
  config = drq.get_config("smoke")
  config.env.reset_pool = "on"
  config.env.pixels.backend = "warp"
  with pytest.raises(ConfigError, match="env.reset_pool='on' needs a renderer"):
    agents.check(config, 2)
