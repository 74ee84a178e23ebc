"""Reach: bring the grip point to a random goal point in the air above the table."""

from typing import Tuple

import jax
import jax.numpy as jnp
from mujoco import mjx

from mimex_jax.envs.manipulation import arm_model as am
from mimex_jax.envs.manipulation.base import ArmTaskEnv

GOAL_LOW = (0.25, -0.2, 0.08)
GOAL_HIGH = (0.5, 0.2, 0.35)
SUCCESS_DISTANCE = 0.03  # metres between grip point and goal


class Reach(ArmTaskEnv):
  """Observation `[18 + 6]`: robot state, goal position, goal minus grip point."""

  def _task_bodies(self) -> str:
    return am.goal_marker(SUCCESS_DISTANCE)

  def _touches_table(self) -> bool:
    # Goals float above the table: without table contacts Reach has no contacts at all and MJX
    # skips the constraint solver (the fingers may dip into the table under random actions).
    return False

  def _post_init(self) -> None:
    self._goal_mocap_id = self._mj_model.body("goal").mocapid[0]

  def _randomize(self, rng: jax.Array, qpos: jax.Array) -> Tuple[jax.Array, jax.Array]:
    goal = jax.random.uniform(rng, (3,), minval=jnp.array(GOAL_LOW), maxval=jnp.array(GOAL_HIGH))
    return qpos, goal

  def _goal_mocap(self, data: mjx.Data, goal: jax.Array) -> mjx.Data:
    return data.replace(mocap_pos=data.mocap_pos.at[self._goal_mocap_id].set(goal))

  def _distance(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    return jnp.linalg.norm(goal - self.grip_pos(data))

  def _task_obs(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    return jnp.concatenate([goal, goal - self.grip_pos(data)])

  def _success(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    return self._distance(data, goal) < SUCCESS_DISTANCE

  def _shaped_reward(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    return 1.0 - jnp.tanh(5.0 * self._distance(data, goal))
