"""The arm manipulation suite: API conventions, determinism, and solvability by the scripted
policies, on every task.

Compiles dominate on CPU, so each env compiles one jitted function: a batched reset plus a
rollout in which the first `NUM_SCRIPTED` envs follow the scripted policy and the rest take
uniform random actions from the same initial states as the first scripted envs.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax.envs.manipulation import DEFAULT_EPISODE_LENGTH, TASKS, scripted_policy

from conftest import FULL_OPTIMIZATION

NUM_SCRIPTED = 16
NUM_RANDOM = 8
SPARSE_TASKS = ("ReachSparse", "PushSparse", "PickSparse", "DrawerSparse")
DENSE_TASKS = ("ReachDense", "PushDense", "PickDense", "DrawerDense")
ROLLOUT_STEPS = {"Reach": 40, "Push": 80, "Pick": 60, "Drawer": 90}  # scripted needs 12-60


def _base(name):
  return name.replace("Sparse", "").replace("Dense", "")


@functools.lru_cache(maxsize=None)
def _env(name):
  return TASKS[name]({})


def _rollout(name):
  """The batch rollout of `name`'s base task, with the rewards of the sparse or dense variant."""
  r = _base_rollout(_base(name))
  reward = r["sparse"] if name.endswith("Sparse") else r["dense"]
  return {**r, "first_reward": reward[0], "reward": reward[1], "env": _env(name)}


@functools.lru_cache(maxsize=None)
def _base_rollout(base):
  """Runs the mixed scripted/random batch once per base task; returns numpy results.

  The twins differ only in their reward, so one compile serves both: the dense variant steps,
  and the sparse twin's reward is computed on the same states."""
  env, sparse_twin = _env(base + "Dense"), _env(base + "Sparse")
  policy = scripted_policy(base + "Sparse", env)
  steps = ROLLOUT_STEPS[base]
  is_scripted = jnp.arange(NUM_SCRIPTED + NUM_RANDOM) < NUM_SCRIPTED

  def sparse_reward(states):
    reward_of = lambda s: sparse_twin._reward_and_metrics(s.data, s.info["goal"])[0]
    return jax.vmap(reward_of)(states)

  # Physics for 24 envs over 40-90 steps: cheap test-time code would run it for minutes.
  @functools.partial(jax.jit, compiler_options=FULL_OPTIMIZATION)
  def run(key):
    reset_keys = jax.random.split(key, NUM_SCRIPTED)
    # Random envs reuse the first scripted envs' keys: same key must give the same state.
    reset_keys = jnp.concatenate([reset_keys, reset_keys[:NUM_RANDOM]])
    first = jax.vmap(env.reset)(reset_keys)

    def body(states, step_key):
      random_actions = jax.random.uniform(step_key, (len(is_scripted), env.action_size),
                                          minval=-1.0, maxval=1.0)
      actions = jnp.where(is_scripted[:, None], jax.vmap(policy)(states), random_actions)
      states = jax.vmap(env.step)(states, actions)
      return states, (states.obs, states.reward, sparse_reward(states), states.done,
                      states.metrics["success"])

    last, trajectory = jax.lax.scan(body, first, jax.random.split(key, steps))
    return first, sparse_reward(first), last, trajectory

  first, first_sparse, last, (obs, dense, sparse, done, success) = run(jax.random.PRNGKey(7))
  dtypes = {"reset": jax.tree.map(lambda x: x.dtype, first),
            "step": jax.tree.map(lambda x: x.dtype, last)}
  weak = [x.weak_type for x in jax.tree.leaves(last) if hasattr(x, "weak_type")]
  return dict(first_obs=np.asarray(first.obs), obs=np.asarray(obs),
              dense=(np.asarray(first.reward), np.asarray(dense)),
              sparse=(np.asarray(first_sparse), np.asarray(sparse)), done=np.asarray(done),
              success=np.asarray(success), dtypes=dtypes, any_weak=any(weak))


def test_registry_names_and_lengths():
  expected = {t + v for t in ("Reach", "Push", "Pick", "Drawer") for v in ("Sparse", "Dense")}
  assert set(TASKS) == expected
  assert set(DEFAULT_EPISODE_LENGTH) == expected
  assert all(50 <= n <= 300 for n in DEFAULT_EPISODE_LENGTH.values())
  env = TASKS["ReachSparse"]({"ctrl_dt": 0.05})
  assert env.dt == pytest.approx(0.05) and env.n_substeps == 5
  assert env.action_size == 6 and env.mjx_model.nu == 7
  assert env.mj_model.camera("front").id >= 0 and env.mj_model.camera("top").id >= 0
  with pytest.raises(Exception):
    TASKS["ReachSparse"]({"no_such_key": 1})


@pytest.mark.parametrize("name", SPARSE_TASKS + DENSE_TASKS)
def test_conventions_determinism_and_finiteness(name):
  r = _rollout(name)
  env = r["env"]
  batch = NUM_SCRIPTED + NUM_RANDOM
  assert isinstance(env.observation_size, int)
  assert r["first_obs"].shape == (batch, env.observation_size)
  assert r["obs"].shape == (ROLLOUT_STEPS[_base(name)], batch, env.observation_size)
  assert r["first_obs"].dtype == np.float32 and r["reward"].dtype == np.float32
  assert r["first_reward"].shape == (batch,) and r["first_reward"].dtype == np.float32
  assert np.isfinite(r["first_obs"]).all() and np.isfinite(r["obs"]).all()
  assert (r["done"] == 0).all()
  assert r["dtypes"]["reset"] == r["dtypes"]["step"]  # same leaves and dtypes
  assert not r["any_weak"]
  # Same key -> same initial state; different keys -> different objects/goals.
  # (Up to float rounding: XLA may vectorize batch rows differently.)
  np.testing.assert_allclose(r["first_obs"][NUM_SCRIPTED:], r["first_obs"][:NUM_RANDOM],
                             rtol=0, atol=1e-6)
  task_part = r["first_obs"][:NUM_SCRIPTED, 18:]  # everything after the robot's own state
  pairwise = np.abs(task_part[:, None] - task_part[None]).max(-1)
  assert (pairwise + np.eye(NUM_SCRIPTED) > 1e-3).all()
  # Success is a 0/1 float; sparse rewards are exactly it, dense ones add shaping on top.
  assert set(np.unique(r["success"])) <= {0.0, 1.0}
  if name.endswith("Sparse"):
    np.testing.assert_array_equal(r["reward"], r["success"])
  else:
    assert (r["reward"] >= r["success"]).all() and (r["reward"] <= r["success"] + 2.0).all()


@pytest.mark.parametrize("name", SPARSE_TASKS)
def test_scripted_policy_solves_sparse_task(name):
  success = _rollout(name)["success"]
  scripted, random = success[:, :NUM_SCRIPTED], success[:, NUM_SCRIPTED:]
  ever = scripted.max(0).mean()
  at_end = scripted[-1].mean()
  assert ever >= 0.8, f"{name}: scripted success in {ever:.0%} of episodes"
  assert at_end >= 0.7, f"{name}: success held at the end in {at_end:.0%} of episodes"
  if name != "ReachSparse":  # a random arm may brush the reach goal; it won't move objects
    assert random.max(0).mean() <= 0.25, f"{name}: random actions succeed too often"


@pytest.mark.parametrize("name", DENSE_TASKS)
def test_dense_reward_prefers_scripted_policy(name):
  r = _rollout(name)
  returns = r["reward"].sum(0)
  scripted, random = returns[:NUM_SCRIPTED], returns[NUM_SCRIPTED:]
  # Compare on the same initial states (random envs copy the first scripted ones).
  assert (scripted[:NUM_RANDOM] > random).mean() >= 0.85
  assert scripted.mean() > 1.5 * random.mean()
  assert r["success"][:, :NUM_SCRIPTED].max(0).mean() >= 0.8
