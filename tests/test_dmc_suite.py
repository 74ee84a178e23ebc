"""The DM Control sparse suite under our names: every task steps under jit and vmap with finite,
deterministic observations, and its success test fires in the goal state and not at the start.

The goal states are built by hand from each task's geometry (pole upright, ball moved into the
cup, target moved onto the fingertip, ...): they check the success definitions, while the
tasks' solvability is the DM Control Suite's own record.
"""

import jax
import jax.numpy as jnp
from mujoco import mjx
import numpy as np
import pytest

from mimex_jax import envs
from mimex_jax.envs import VectorEnv

_NUM_ENVS = 4


def _slide_onto(model, data, joints, body_position, goal_position):
  """Moves a body on world-aligned slide joints (one per axis in `joints`) onto a goal point."""
  for axis, joint in joints.items():
    address = model.jnt_qposadr[model.joint(joint).id]
    data = data.replace(qpos=data.qpos.at[address].add(goal_position[axis] - body_position[axis]))
  return data


def _upright(model, data):
  return data.replace(qpos=jnp.zeros_like(data.qpos), qvel=jnp.zeros_like(data.qvel))


def _ball_in_cup(model, data):
  data = data.replace(qvel=jnp.zeros_like(data.qvel))
  return _slide_onto(model, data, {0: "ball_x", 2: "ball_z"},
                     data.xpos[model.body("ball").id], data.site_xpos[model.site("target").id])


def _mass_on_target(model, data):
  data = data.replace(qvel=jnp.zeros_like(data.qvel))
  return _slide_onto(model, data, {0: "root_x", 1: "root_y"},
                     data.xpos[model.body("pointmass").id],
                     data.geom_xpos[model.geom("target").id])


def _target_on(point_of):
  """Moves the (mocap) target onto a point of the robot: the success region by definition."""
  def goal(model, data):
    mocap = model.body("target").mocapid[0]
    return data.replace(qvel=jnp.zeros_like(data.qvel),
                        mocap_pos=data.mocap_pos.at[mocap].set(point_of(model, data)))
  return goal


_GOAL_STATES = {
    "CartpoleSwingupSparse": _upright,
    "AcrobotSwingupSparse": _upright,
    "BallInCup": _ball_in_cup,
    "PointMass": _mass_on_target,
    "ReacherHard": _target_on(lambda m, d: d.geom_xpos[m.geom("finger").id]),
    "FingerTurnHard": _target_on(lambda m, d: d.site_xpos[m.site("tip").id]),
}


def test_the_suite_is_registered_with_its_success_definitions():
  assert set(envs.dmc.SPARSE_SUITE) == set(_GOAL_STATES)
  for name in _GOAL_STATES:
    assert name in envs.task_names()
    assert envs.make(name).success_defined


# The contact-heavy tasks compile for half a minute each; dmc.py is covered by the others.
# The fast suite steps Cartpole; the rest run with the slow tests (one compile each).
_SLOW_TASKS = ("AcrobotSwingupSparse", "BallInCup", "FingerTurnHard", "PointMass", "ReacherHard")


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.long) if name in _SLOW_TASKS else name
    for name in sorted(_GOAL_STATES)])
def test_steps_and_recognizes_its_goal(name):
  env = envs.make(name, episode_length=50)
  vector_env = VectorEnv(env, _NUM_ENVS)
  mj_model = env.backend.mj_model
  mjx_model = env.backend.mjx_model
  assert env.backend.observation_size == env.observation_size

  @jax.jit
  def run(key):
    """Start states, ten steps of zero actions, and one step from the goal state."""
    start = vector_env.reset(key)
    def body(state, _):
      state = vector_env.step(state, jnp.zeros((_NUM_ENVS, env.action_size)))
      return state, state.episode.success
    after, start_success = jax.lax.scan(body, start, None, length=10)
    goal_data = jax.vmap(lambda d: mjx.forward(mjx_model, _GOAL_STATES[name](mj_model, d)))(
        start.inner.data)
    at_goal = start.replace(inner=start.inner.replace(data=goal_data))
    at_goal = vector_env.step(at_goal, jnp.zeros((_NUM_ENVS, env.action_size)))
    return start, after, start_success, at_goal

  start, after, start_success, at_goal = run(jax.random.PRNGKey(0))
  assert start.obs.shape == (_NUM_ENVS, env.observation_size)
  assert np.isfinite(np.asarray(after.obs)).all()
  np.testing.assert_array_equal(run(jax.random.PRNGKey(0))[1].obs, after.obs)  # deterministic
  assert not np.array_equal(run(jax.random.PRNGKey(1))[0].obs, start.obs)
  np.testing.assert_array_equal(at_goal.episode.success, np.ones(_NUM_ENVS))
  assert float(np.mean(start_success[-1])) < 0.5  # the tasks do not start solved
