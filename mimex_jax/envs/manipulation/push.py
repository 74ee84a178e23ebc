"""Push: slide the cube across the table to a random goal spot."""

import jax
import jax.numpy as jnp
from mujoco import mjx

from mimex_jax.envs.manipulation import arm_model as am
from mimex_jax.envs.manipulation.cube_task import CubeTask

GOAL_DISTANCE = (0.1, 0.15)  # range of the cube's start-to-goal distance (metres)
GOAL_LOW = (0.25, -0.18)
GOAL_HIGH = (0.5, 0.18)
SUCCESS_DISTANCE = 0.04  # horizontal distance of cube centre to goal


class Push(CubeTask):

  def _goal_marker_radius(self) -> float:
    return SUCCESS_DISTANCE

  def _sample_goal(self, rng: jax.Array, object_xy: jax.Array) -> jax.Array:
    angle_key, distance_key = jax.random.split(rng)
    angle = jax.random.uniform(angle_key, (), minval=-jnp.pi, maxval=jnp.pi)
    distance = jax.random.uniform(distance_key, (), minval=GOAL_DISTANCE[0],
                                  maxval=GOAL_DISTANCE[1])
    xy = object_xy + distance * jnp.stack([jnp.cos(angle), jnp.sin(angle)])
    xy = jnp.clip(xy, jnp.array(GOAL_LOW), jnp.array(GOAL_HIGH))
    return jnp.concatenate([xy, jnp.array([am.OBJECT_HALF_SIZE])])

  def _goal_distance(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    return jnp.linalg.norm(self.object_pos(data)[:2] - goal[:2])

  def _success(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    return self._goal_distance(data, goal) < SUCCESS_DISTANCE

  def _shaped_reward(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    return 0.5 * self._reach_reward(data) + 1.0 - jnp.tanh(5.0 * self._goal_distance(data, goal))
