"""Shared machinery of the arm tasks: model building, action mapping, arm observations, stepping.

A task subclasses `ArmTaskEnv` and supplies its extra MJCF, its reset randomization, its
observations, its success test and its shaped reward. `sparse=True` pays 1.0 on steps where the
success test holds; `sparse=False` pays the shaped reward plus that same success bonus.
"""

from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from ml_collections import config_dict
import mujoco
from mujoco import mjx
from mujoco_playground._src import mjx_env

from mimex_jax.envs.manipulation import arm_model as am

_HOME_NOISE = 0.1  # radians of uniform noise on the initial arm joints
MAX_TARGET_STEP = (0.15, 0.012)  # per control step: arm target (rad), finger target (m)


def default_config() -> config_dict.ConfigDict:
  return config_dict.create(
      ctrl_dt=0.04,
      sim_dt=0.01,
      episode_length=150,
      action_repeat=1,
      impl="jax",  # pure-JAX MJX: MuJoCo Warp is slower on CPU
  )


class ArmTaskEnv(mjx_env.MjxEnv):
  """Base of the tabletop arm tasks; states follow Playground's `mjx_env.State`.

  Actions `[5 + 1]` in [-1, 1]: changes of the five arm joint targets and of the shared finger
  target (+ opens), scaled by `MAX_TARGET_STEP` and clipped to the joint ranges. Delta targets
  (as in PixMC) rather than absolute ones: uniform random actions then make a slow random walk
  instead of whipping the arm to a new pose every step, so random exploration does not solve
  the sparse tasks by flinging the cube or yanking the drawer; the previous targets live in
  `data.ctrl`, so the state needs nothing extra.
  """

  def __init__(self, sparse: bool = True, config: Optional[config_dict.ConfigDict] = None,
               config_overrides: Optional[Dict[str, Any]] = None):
    super().__init__(config if config is not None else default_config(), config_overrides)
    self.sparse = sparse
    xml = am.build_xml(self._task_bodies(), self._task_pairs(), timestep=self._sim_dt,
                       finger_table_contacts=self._touches_table())
    self._xml = xml
    self._mj_model = mujoco.MjModel.from_xml_string(xml)
    self._mjx_model = mjx.put_model(self._mj_model, impl=self._config.impl)
    model = self._mj_model
    self._grip_site = model.site("grip").id
    self._arm_qpos = jnp.array([model.jnt_qposadr[model.joint(j).id] for j in am.ARM_JOINTS])
    self._finger_qpos = jnp.array(
        [model.jnt_qposadr[model.joint(j).id] for j in am.FINGER_JOINTS])
    self._robot_dofs = jnp.array([model.jnt_dofadr[model.joint(j).id]
                                  for j in am.ARM_JOINTS + am.FINGER_JOINTS])
    self._arm_low = jnp.array([am.JOINT_RANGES[j][0] for j in am.ARM_JOINTS], jnp.float32)
    self._arm_high = jnp.array([am.JOINT_RANGES[j][1] for j in am.ARM_JOINTS], jnp.float32)
    self._post_init()

  # --- task hooks -------------------------------------------------------------------------------

  def _task_bodies(self) -> str:
    return ""

  def _task_pairs(self) -> str:
    return ""

  def _touches_table(self) -> bool:
    """Whether the fingers need contacts with the table."""
    return True

  def _post_init(self) -> None:
    """Looks up the task's ids once the model exists."""

  def _randomize(self, rng: jax.Array, qpos: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Returns the task's initial `qpos` `[nq]` and goal `[3]`."""
    raise NotImplementedError

  def _task_obs(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    raise NotImplementedError

  def _success(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    """Boolean scalar: the task is solved in this state."""
    raise NotImplementedError

  def _shaped_reward(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    raise NotImplementedError

  def _goal_mocap(self, data: mjx.Data, goal: jax.Array) -> mjx.Data:
    """Moves the visual goal marker (if the task has one) to `goal`."""
    return data

  # --- shared helpers ---------------------------------------------------------------------------

  def action_to_ctrl(self, action: jax.Array, ctrl: jax.Array) -> jax.Array:
    """`[6]` action in [-1, 1] and current targets `ctrl` `[7]` -> new targets `[7]` (the two
    fingers share one)."""
    action = jnp.clip(action, -1.0, 1.0)
    arm = jnp.clip(ctrl[:5] + MAX_TARGET_STEP[0] * action[:5], self._arm_low, self._arm_high)
    finger = jnp.clip(ctrl[5] + MAX_TARGET_STEP[1] * action[5], 0.0, am.FINGER_TRAVEL)
    return jnp.concatenate([arm, jnp.stack([finger, finger])])

  def action_towards(self, data: mjx.Data, arm_joints: jax.Array,
                     gripper_open: jax.Array) -> jax.Array:
    """`[6]` action moving the targets in `data.ctrl` towards arm joint targets `[5]` and a
    finger opening fraction in [0, 1], as far as one step allows."""
    arm = (arm_joints - data.ctrl[:5]) / MAX_TARGET_STEP[0]
    finger = (gripper_open * am.FINGER_TRAVEL - data.ctrl[5]) / MAX_TARGET_STEP[1]
    return jnp.clip(jnp.concatenate([arm, jnp.reshape(finger, (1,))]), -1.0, 1.0).astype(
        jnp.float32)

  def grip_pos(self, data: mjx.Data) -> jax.Array:
    """`[3]` world position of the point between the fingertips."""
    return data.site_xpos[self._grip_site]

  def arm_joints(self, data: mjx.Data) -> jax.Array:
    """`[5]` arm joint angles (yaw, shoulder, elbow, wrist, roll)."""
    return data.qpos[self._arm_qpos]

  def gripper_gap(self, data: mjx.Data) -> jax.Array:
    """Scalar inner gap between the fingers (metres)."""
    return data.qpos[self._finger_qpos].sum()

  def _robot_obs(self, data: mjx.Data) -> jax.Array:
    """`[7 + 7 + 3 + 1]`: arm and finger positions and velocities, grip point, finger gap."""
    qpos = jnp.concatenate([data.qpos[self._arm_qpos], data.qpos[self._finger_qpos]])
    return jnp.concatenate([qpos, data.qvel[self._robot_dofs], self.grip_pos(data),
                            self.gripper_gap(data)[None]])

  def proprio(self, data: mjx.Data) -> jax.Array:
    """The arm's own state, what a robot knows without a camera (PixMC's proprioception): the
    robot part of the state observation, without the object or the goal."""
    return self._robot_obs(data).astype(jnp.float32)

  def _observe(self, data: mjx.Data, goal: jax.Array) -> jax.Array:
    return jnp.concatenate([self._robot_obs(data), self._task_obs(data, goal)]).astype(
        jnp.float32)

  def _reward_and_metrics(self, data: mjx.Data, goal: jax.Array):
    success = self._success(data, goal).astype(jnp.float32)
    reward = success if self.sparse else self._shaped_reward(data, goal) + success
    return reward.astype(jnp.float32), {"success": success}

  # --- MjxEnv API -------------------------------------------------------------------------------

  def reset(self, rng: jax.Array) -> mjx_env.State:
    rng, arm_key, task_key = jax.random.split(rng, 3)
    home = 0.5 * (self._arm_low + self._arm_high)
    qpos = jnp.asarray(self._mj_model.qpos0, jnp.float32)
    arm = home + jax.random.uniform(arm_key, (5,), minval=-_HOME_NOISE, maxval=_HOME_NOISE)
    qpos = qpos.at[self._arm_qpos].set(arm)
    qpos = qpos.at[self._finger_qpos].set(0.5 * am.FINGER_TRAVEL)
    qpos, goal = self._randomize(task_key, qpos)
    ctrl = jnp.concatenate([arm, jnp.full((2,), 0.5 * am.FINGER_TRAVEL)])
    data = mjx_env.make_data(self._mj_model, qpos=qpos, ctrl=ctrl, impl=self._mjx_model.impl.value)
    data = self._goal_mocap(data, goal)
    data = mjx.forward(self._mjx_model, data)
    reward, metrics = self._reward_and_metrics(data, goal)
    info = {"rng": rng, "goal": goal.astype(jnp.float32)}
    return mjx_env.State(data, self._observe(data, goal), reward, jnp.zeros((), jnp.float32),
                         metrics, info)

  def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
    ctrl = self.action_to_ctrl(action, state.data.ctrl)
    data = mjx_env.step(self._mjx_model, state.data, ctrl, self.n_substeps)
    goal = state.info["goal"]
    reward, metrics = self._reward_and_metrics(data, goal)
    done = (jnp.isnan(data.qpos).any() | jnp.isnan(data.qvel).any()).astype(jnp.float32)
    return mjx_env.State(data, self._observe(data, goal), reward, done, metrics, state.info)

  @property
  def xml_path(self) -> str:
    return ""  # built from strings in `arm_model`; see `xml`

  @property
  def xml(self) -> str:
    return self._xml

  @property
  def action_size(self) -> int:
    return 6

  @property
  def mj_model(self) -> mujoco.MjModel:
    return self._mj_model

  @property
  def mjx_model(self) -> mjx.Model:
    return self._mjx_model
