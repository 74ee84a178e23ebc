"""Shared part of the cube tasks (Push, Pick): a free cube at a random spot on the table."""

from typing import Tuple

import jax
import jax.numpy as jnp
from mujoco import mjx

from mimex_jax.envs.manipulation import arm_model as am
from mimex_jax.envs.manipulation.base import ArmTaskEnv

OBJECT_LOW = (0.3, -0.12)
OBJECT_HIGH = (0.42, 0.12)


class CubeTask(ArmTaskEnv):
  """Observation `[18 + 12]`: robot state, cube position and velocity, goal, cube minus grip."""

  def _task_bodies(self) -> str:
    return am.cube_object() + "\n" + am.goal_marker(self._goal_marker_radius())

  def _task_pairs(self) -> str:
    return am.cube_pairs()

  def _goal_marker_radius(self) -> float:
    return 0.02

  def _post_init(self) -> None:
    model = self._mj_model
    self._goal_mocap_id = model.body("goal").mocapid[0]
    self._object_body = model.body("object").id
    joint = model.joint("object").id
    self._object_qpos = int(model.jnt_qposadr[joint])
    self._object_dof = int(model.jnt_dofadr[joint])

  def _sample_object_xy(self, rng: jax.Array) -> jax.Array:
    return jax.random.uniform(rng, (2,), minval=jnp.array(OBJECT_LOW),
                              maxval=jnp.array(OBJECT_HIGH))

  def _sample_goal(self, rng: jax.Array, object_xy: jax.Array) -> jax.Array:
    raise NotImplementedError

  def _randomize(self, rng: jax.Array, qpos: jax.Array) -> Tuple[jax.Array, jax.Array]:
    object_key, goal_key = jax.random.split(rng)
    object_xy = self._sample_object_xy(object_key)
    start = jnp.concatenate([object_xy, jnp.array([am.OBJECT_HALF_SIZE]),
                             jnp.array([1.0, 0.0, 0.0, 0.0])])
    qpos = qpos.at[self._object_qpos:self._object_qpos + 7].set(start)
    return qpos, self._sample_goal(goal_key, object_xy)

  def _goal_mocap(self, data: mjx.Data, goal: jax.Array) -> mjx.Data:
    return data.replace(mocap_pos=data.mocap_pos.at[self._goal_mocap_id].set(goal))

  def object_pos(self, data: mjx.Data) -> jax.Array:
    """`[3]` cube centre."""
    return data.xpos[self._object_body]

  def object_yaw(self, data: mjx.Data) -> jax.Array:
    """Cube yaw (radians) from its rotation matrix."""
    rot = data.xmat[self._object_body]
    return jnp.arctan2(rot[1, 0], rot[0, 0])

  def _task_obs(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    position = self.object_pos(data)
    velocity = data.qvel[self._object_dof:self._object_dof + 3]
    return jnp.concatenate([position, velocity, goal, position - self.grip_pos(data)])

  def _reach_reward(self, data: mjx.Data) -> jax.Array:
    return 1.0 - jnp.tanh(10.0 * jnp.linalg.norm(self.object_pos(data) - self.grip_pos(data)))
