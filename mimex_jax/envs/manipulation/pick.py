"""Pick: grasp the cube and lift it above a height."""

import jax
import jax.numpy as jnp
from mujoco import mjx

from mimex_jax.envs.manipulation import arm_model as am
from mimex_jax.envs.manipulation.cube_task import CubeTask

LIFT_HEIGHT = 0.1  # cube centre height (metres) that counts as lifted; it starts at 0.025
HOLD_DISTANCE = 0.04  # cube centre to grip point while held
GOAL_HEIGHT = 0.15  # where the goal marker shows the cube should go


class Pick(CubeTask):

  def _sample_goal(self, rng: jax.Array, object_xy: jax.Array) -> jax.Array:
    del rng  # the goal sits above the cube's random start
    return jnp.concatenate([object_xy, jnp.array([GOAL_HEIGHT])])

  def _success(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    # Held near the grip point too: a cube knocked into the air is not picked.
    held = jnp.linalg.norm(self.object_pos(data) - self.grip_pos(data)) < HOLD_DISTANCE
    return (self.object_pos(data)[2] > LIFT_HEIGHT) & held

  def _shaped_reward(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    lift = (self.object_pos(data)[2] - am.OBJECT_HALF_SIZE) / (LIFT_HEIGHT - am.OBJECT_HALF_SIZE)
    return 0.5 * self._reach_reward(data) + jnp.clip(lift, 0.0, 1.0)
