"""A task of your own, complete: a two-link arm in a plane that must bring its fingertip to a
target, as a MuJoCo Playground `MjxEnv`, registered for mimex_jax as `TwoLinkReach`.

README, "Your own environment", trains, evaluates, loads and renders it from this file alone
(`--config.env.imports=reach_arm` with this folder on PYTHONPATH or as the current folder).
"""

import jax
import jax.numpy as jnp
from ml_collections import config_dict
import mujoco
from mujoco import mjx
import mujoco_playground

from mimex_jax import envs as mimex_envs

# The model: two hinged links, two motors, a target the arm passes through (a mocap body: each
# episode moves it) and a fixed camera above (pixel observations render from a camera you name).
XML = """
<mujoco>
  <option timestep="0.01">
    <flag contact="disable"/>  <!-- a planar arm touches nothing: no collision work -->
  </option>
  <worldbody>
    <light pos="0 0 1.5"/>
    <camera name="above" pos="0 0 1.2"/>
    <geom type="plane" size="0.5 0.5 0.1" rgba=".25 .25 .3 1"/>
    <body name="upper" pos="0 0 0.02">
      <joint name="shoulder" type="hinge" axis="0 0 1" damping="0.02"/>
      <geom type="capsule" fromto="0 0 0 0.15 0 0" size="0.015" rgba=".8 .5 .2 1"/>
      <body name="lower" pos="0.15 0 0">
        <joint name="elbow" type="hinge" axis="0 0 1" damping="0.02"/>
        <geom type="capsule" fromto="0 0 0 0.12 0 0" size="0.012" rgba=".8 .6 .3 1"/>
        <site name="fingertip" pos="0.12 0 0" size="0.015" rgba="1 1 1 1"/>
      </body>
    </body>
    <body name="target" mocap="true" pos="0.1 0.1 0.02">
      <geom type="sphere" size="0.02" rgba="1 0 0 1" contype="0" conaffinity="0"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="shoulder" gear="0.3" ctrlrange="-1 1"/>
    <motor joint="elbow" gear="0.3" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""

SUCCESS_DISTANCE = 0.03  # fingertip within 3 cm of the target


class TwoLinkReach(mujoco_playground.MjxEnv):
  """What mimex_jax needs of an env: `reset(key)`, `step(state, action)` with actions in
  [-1, 1], `observation_size`, `action_size` (Playground derives the first from `reset`), and
  states with `obs`, `reward`, `done` (1.0 ends the episode early), `metrics` (a dict of floats,
  the same keys from reset on) and `info` (a dict; anything your task carries between steps).
  The time limit is not the env's: `register`'s `episode_length` sets it. `mj_model` and
  `mjx_model` let the pixel renderer and the videos draw it."""

  def __init__(self, **overrides):
    # mimex_jax calls the factory with keyword overrides only (none by default): Playground
    # merges them into this config. ctrl_dt is one agent step, sim_dt one physics step.
    config = config_dict.ConfigDict({"ctrl_dt": 0.02, "sim_dt": 0.01})
    super().__init__(config, overrides)
    self._mj_model = mujoco.MjModel.from_xml_string(XML)
    self._mjx_model = mjx.put_model(self._mj_model, impl="jax")  # impl="jax": fast on CPU
    self._fingertip = self._mj_model.site("fingertip").id

  xml_path = ""  # Playground asks for it; the model comes from the string above

  @property
  def action_size(self):
    return self._mj_model.nu

  @property
  def mj_model(self):
    return self._mj_model

  @property
  def mjx_model(self):
    return self._mjx_model

  def reset(self, rng):
    angle_key, target_key = jax.random.split(rng)
    qpos = jax.random.uniform(angle_key, (2,), minval=-1.0, maxval=1.0)
    radius_angle = jax.random.uniform(target_key, (2,), minval=jnp.array([0.08, -3.14]),
                                      maxval=jnp.array([0.25, 3.14]))
    target = radius_angle[0] * jnp.array([jnp.cos(radius_angle[1]), jnp.sin(radius_angle[1])])
    data = mjx.make_data(self._mjx_model)
    data = data.replace(qpos=qpos, mocap_pos=data.mocap_pos.at[0, :2].set(target))
    data = mjx.forward(self._mjx_model, data)
    return self._state(data, jnp.zeros(()))

  def step(self, state, action):
    data = mujoco_playground.step(self._mjx_model, state.data, action, self.n_substeps)
    return self._state(data, state.done)

  def _state(self, data, done):
    target = data.mocap_pos[0, :2]
    tip = data.site_xpos[self._fingertip, :2]
    distance = jnp.linalg.norm(tip - target)
    obs = jnp.concatenate([jnp.cos(data.qpos), jnp.sin(data.qpos), data.qvel, target - tip])
    metrics = {"distance": distance}
    return mujoco_playground.State(data, obs, -distance, done, metrics, {})


# `success` says when an episode succeeded (once is enough): a function of the state, the name
# of a metric (> 0 where solved), or None for the env's own `success` metric.
mimex_envs.register(
    "TwoLinkReach", TwoLinkReach, episode_length=100,
    success=lambda state: state.metrics["distance"] < SUCCESS_DISTANCE)
