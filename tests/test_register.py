"""A task of the user's own: registered in a module written here, trained, evaluated and loaded
from the command line through `env.imports`; and `register`'s rules on small backends."""

import json
import sys

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_runner import run_module, run_train

import mimex_jax
from mimex_jax import envs
from mimex_jax.envs import registry
from mimex_jax.envs.pixels import PixelSpec


# A point mass on a plane, pushed by two motors, that should come to rest at the origin.
POINT_MASS_XML = """
<mujoco>
  <option timestep="0.02"/>
  <worldbody>
    <light pos="0 0 2"/>
    <camera name="top" pos="0 0 1.5"/>
    <geom type="plane" size="1 1 0.1" rgba=".3 .3 .3 1"/>
    <body name="mass" pos="0 0 0.05">
      <joint name="x" type="slide" axis="1 0 0" damping="2"/>
      <joint name="y" type="slide" axis="0 1 0" damping="2"/>
      <geom type="sphere" size="0.05" mass="1" rgba="1 0 0 1" contype="0" conaffinity="0"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="x" ctrlrange="-1 1"/>
    <motor joint="y" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""

# The user's module: a Playground MjxEnv whose states report `success` in their metrics.
PLAYGROUND_MODULE = f'''
import jax
import jax.numpy as jnp
from ml_collections import config_dict
import mujoco
from mujoco import mjx
import mujoco_playground

import mimex_jax

XML = """{POINT_MASS_XML}"""


class PointMass(mujoco_playground.MjxEnv):
  xml_path = ""  # the model comes from the string above

  def __init__(self, **overrides):
    super().__init__(config_dict.ConfigDict({{"ctrl_dt": 0.04, "sim_dt": 0.02}}), overrides)
    self._mj_model = mujoco.MjModel.from_xml_string(XML)
    self._mjx_model = mjx.put_model(self._mj_model, impl="jax")

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
    qpos = jax.random.uniform(rng, (2,), minval=-0.5, maxval=0.5)
    data = mjx.forward(self._mjx_model, mjx.make_data(self._mjx_model).replace(qpos=qpos))
    return self._state(data, jnp.zeros(()))

  def step(self, state, action):
    data = mujoco_playground.step(self._mjx_model, state.data, action, self.n_substeps)
    return self._state(data, state.done)

  def _state(self, data, done):
    distance = jnp.linalg.norm(data.qpos)
    obs = jnp.concatenate([data.qpos, data.qvel])
    metrics = {{"success": (distance < 0.1).astype(jnp.float32)}}
    return mujoco_playground.State(data, obs, -distance, done, metrics, {{}})


mimex_jax.envs.register("UserPointMass", PointMass, episode_length=50)
'''

# The same task as a Brax PipelineEnv, with success from a function of its state.
BRAX_MODULE = f'''
import jax
import jax.numpy as jnp
from brax.envs.base import PipelineEnv, State
from brax.io import mjcf

import mimex_jax

XML = """{POINT_MASS_XML}"""


class PointMass(PipelineEnv):
  def __init__(self, **overrides):
    super().__init__(mjcf.loads(XML), backend="mjx", n_frames=2, **overrides)

  def reset(self, rng):
    q = jax.random.uniform(rng, (2,), minval=-0.5, maxval=0.5)
    return self._state(self.pipeline_init(q, jnp.zeros(2)), jnp.zeros(()))

  def step(self, state, action):
    return self._state(self.pipeline_step(state.pipeline_state, action), state.done)

  def _state(self, pipeline_state, done):
    distance = jnp.linalg.norm(pipeline_state.q)
    obs = jnp.concatenate([pipeline_state.q, pipeline_state.qd])
    return State(pipeline_state, obs, -distance, done, {{"distance": distance}})


mimex_jax.envs.register("UserBraxPointMass", PointMass, episode_length=50,
                        success=lambda state: state.metrics["distance"] < 0.1)
'''


@pytest.fixture(scope="module")
def user_modules(tmp_path_factory):
  """A folder holding the user's modules `user_point_mass` and `user_brax_point_mass`."""
  folder = tmp_path_factory.mktemp("user_modules")
  (folder / "user_point_mass.py").write_text(PLAYGROUND_MODULE)
  (folder / "user_brax_point_mass.py").write_text(BRAX_MODULE)
  return folder


@pytest.fixture
def clean_registry(monkeypatch):
  """Tasks registered and modules imported by a test are gone after it."""
  monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
  modules = set(sys.modules)
  yield
  for name in set(sys.modules) - modules:
    if name.startswith("user_"):
      del sys.modules[name]


def _run(repo_root, module, *args, pythonpath=None):
  return run_module(module, args, repo_root, pythonpath=[pythonpath] if pythonpath else ())


@pytest.fixture(scope="module")
def trained(repo_root, user_modules, tmp_path_factory):
  """The workdir of a smoke-sized PPO run on UserPointMass, trained from the command line."""
  workdir = tmp_path_factory.mktemp("user_task_run")
  result = run_train(["--config=configs/ppo.py:smoke", "--config.env.imports=user_point_mass",
                      "--config.env.name=UserPointMass", "--config.intrinsic.kind=none",
                      f"--workdir={workdir}"], repo_root, pythonpath=[user_modules])
  return result, workdir


def test_a_registered_task_trains_from_the_command_line(trained):
  result, workdir = trained
  assert result.returncode == 0, result.stderr[-3000:]
  assert "done:" in result.stdout
  last = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])
  # Success comes from the env's own `success` metric: a number, not null.
  assert isinstance(last["success_rate"], float) and 0 <= last["success_rate"] <= 1
  assert isinstance(last["eval_success_rate"], float)
  config = json.loads((workdir / "config.json").read_text())
  assert config["env"]["imports"] == "user_point_mass"  # so evaluation imports it too


def test_evaluate_imports_the_runs_module(repo_root, user_modules, trained):
  _, workdir = trained
  result = _run(repo_root, "mimex_jax.evaluate", f"--workdir={workdir}", "--episodes=4",
                pythonpath=user_modules)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "UserPointMass" in result.stdout and "success rate n/a" not in result.stdout
  summary = json.loads((workdir / "eval" / "checkpoint_6.json").read_text())
  assert summary["env"] == "UserPointMass" and summary["episodes"] == 4
  assert isinstance(summary["success_rate"], float)


def test_evaluate_without_the_module_is_one_line(repo_root, trained):
  _, workdir = trained
  result = _run(repo_root, "mimex_jax.evaluate", f"--workdir={workdir}", "--episodes=4")
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if "error:" in line]
  assert len(errors) == 1 and "cannot import module 'user_point_mass'" in errors[0], errors


def test_load_policy_imports_the_runs_module(trained, user_modules, monkeypatch,
                                             clean_registry):
  _, workdir = trained
  monkeypatch.syspath_prepend(str(user_modules))
  policy = mimex_jax.load_policy(str(workdir))
  actions = np.asarray(policy(np.zeros((3, 4), np.float32)))
  assert actions.shape == (3, 2) and np.all(np.abs(actions) <= 1)


def test_a_brax_pipeline_env_steps_succeeds_and_renders(user_modules, monkeypatch,
                                                        clean_registry):
  monkeypatch.syspath_prepend(str(user_modules))
  envs.import_task_modules("user_brax_point_mass")
  env = envs.make("UserBraxPointMass")
  assert env.episode_length == 50 and env.observation_size == 4 and env.success_defined
  step = jax.jit(env.step)
  state = jax.jit(env.reset)(jax.random.PRNGKey(0))
  for _ in range(30):  # push toward the origin
    state = step(state, -jnp.sign(state.inner.pipeline_state.q))
  assert float(state.episode.success) == 1.0
  # The pixel camera reads Brax's MJX data: the red mass shows on the gray plane.
  pixel_env = envs.make("UserBraxPointMass", obs_type="pixels",
                        pixels=PixelSpec(height=16, width=16, frame_stack=1, camera="top"))
  frame = np.asarray(jax.jit(pixel_env.reset)(jax.random.PRNGKey(0)).obs)
  assert frame.shape == (16, 16, 3)
  assert np.any(frame[..., 0] > frame[..., 1] + 40)


# ------------------------------------------------------------------------------ the rules
@struct.dataclass
class _State:
  obs: jax.Array
  reward: jax.Array
  done: jax.Array
  metrics: dict


class _Line:
  """obs = position; actions move it; `reached` once it passes 1."""
  observation_size = 1
  action_size = 1

  def __init__(self, **overrides):
    self.overrides = overrides

  def reset(self, key):
    del key
    return self._state(jnp.zeros(1))

  def step(self, state, action):
    return self._state(state.obs + action)

  def _state(self, position):
    return _State(position, jnp.zeros(()), jnp.zeros(()),
                  {"reached": (position[0] > 1).astype(jnp.float32)})


def _other_line(**overrides):
  return _Line(**overrides)


def test_register_checks_its_arguments(clean_registry):
  envs.register("UserLine", _Line, episode_length=7)
  envs.register("UserLine", _Line, episode_length=9)  # the same factory again: settings update
  assert envs.spec("UserLine").default_episode_length == 9
  assert "UserLine" in envs.task_names()
  with pytest.raises(ValueError, match="registered already, with another factory"):
    envs.register("UserLine", _other_line, episode_length=9)
  with pytest.raises(ValueError, match="one of mimex_jax's own tasks"):
    envs.register("CartpoleBalance", _Line, episode_length=9)
  with pytest.raises(ValueError, match="episode_length must be an integer >= 1"):
    envs.register("UserLine2", _Line, episode_length=0)
  with pytest.raises(ValueError, match="success must be None, a metric name or a function"):
    envs.register("UserLine2", _Line, episode_length=9, success=0.5)
  assert envs.make("UserLine", scale=2).backend.overrides == {"scale": 2}  # to the factory


def test_success_from_a_metric_a_function_or_undefined(clean_registry):
  envs.register("UserLineMetric", _Line, episode_length=5, success="reached")
  envs.register("UserLineFunction", _Line, episode_length=5,
                success=lambda state: state.obs[0] > 1.5)
  envs.register("UserLineNone", _Line, episode_length=5)  # no `success` metric: undefined
  envs.register("UserLineMissing", _Line, episode_length=5, success="solved")
  assert not envs.make("UserLineNone").success_defined
  with pytest.raises(ValueError, match=r"metric 'solved' is not among the env's metrics "
                                       r"\['reached'\]"):
    envs.make("UserLineMissing")
  for name, expected in (("UserLineMetric", [0, 1, 1]), ("UserLineFunction", [0, 0, 1])):
    env = envs.make(name)
    state = env.reset(jax.random.PRNGKey(0))
    successes = []
    for _ in range(3):
      state = env.step(state, jnp.ones(1) * 0.6)
      successes.append(float(state.episode.success))
    assert successes == expected, name


def test_a_missing_module_is_a_task_module_error():
  with pytest.raises(envs.TaskModuleError, match="cannot import module 'no_such_user_module'"):
    envs.import_task_modules("os, no_such_user_module")
  assert registry.module_names(" a, b ,,") == ("a", "b")
  assert registry.module_names(["a"]) == ("a",)
