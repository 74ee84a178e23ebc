"""Drawer: pull a drawer open by its handle past a threshold."""

from typing import Tuple

import jax
import jax.numpy as jnp
from mujoco import mjx

from mimex_jax.envs.manipulation import arm_model as am
from mimex_jax.envs.manipulation.base import ArmTaskEnv

INITIAL_OPENING = (0.0, 0.05)  # metres, drawn uniformly at reset
SUCCESS_OPENING = 0.15


class Drawer(ArmTaskEnv):
  """Observation `[18 + 8]`: robot state, handle position, drawer opening and its velocity,
  handle minus grip point. The goal `[3]` (in `info`) is where the handle is when the drawer is
  open just enough."""

  def _task_bodies(self) -> str:
    return am.drawer()

  def _task_pairs(self) -> str:
    return am.drawer_pairs()

  def _post_init(self) -> None:
    model = self._mj_model
    joint = model.joint("drawer").id
    self._drawer_qpos = int(model.jnt_qposadr[joint])
    self._drawer_dof = int(model.jnt_dofadr[joint])
    self._handle_site = model.site("handle").id

  def _randomize(self, rng: jax.Array, qpos: jax.Array) -> Tuple[jax.Array, jax.Array]:
    opening = jax.random.uniform(rng, (), minval=INITIAL_OPENING[0], maxval=INITIAL_OPENING[1])
    qpos = qpos.at[self._drawer_qpos].set(opening)
    closed_handle_x = am.DRAWER_FRONT_X - am.HANDLE_OFFSET
    goal = jnp.array([closed_handle_x - SUCCESS_OPENING, 0.0, am.HANDLE_HEIGHT])
    return qpos, goal

  def handle_pos(self, data: mjx.Data) -> jax.Array:
    """`[3]` centre of the handle bar."""
    return data.site_xpos[self._handle_site]

  def opening(self, data: mjx.Data) -> jax.Array:
    return data.qpos[self._drawer_qpos]

  def _task_obs(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    handle = self.handle_pos(data)
    return jnp.concatenate([handle, self.opening(data)[None],
                            data.qvel[self._drawer_dof][None], handle - self.grip_pos(data)])

  def _success(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    return self.opening(data) > SUCCESS_OPENING

  def _shaped_reward(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    reach = 1.0 - jnp.tanh(10.0 * jnp.linalg.norm(self.handle_pos(data) - self.grip_pos(data)))
    return 0.5 * reach + jnp.clip(self.opening(data) / SUCCESS_OPENING, 0.0, 1.0)
