"""Task registry: `make(name, **overrides)` returns a vectorizable `Env`.

Names are this package's manipulation tasks (`ReachSparse`, `PushSparse`, ... with `...Dense`
twins), MuJoCo Playground's DM Control Suite tasks (their XMLs ship with the package, so nothing
is downloaded) and `brax/<name>` for Brax's own environments. MJX tasks run on the pure-JAX
backend (`impl="jax"`) unless told otherwise: Playground's default, MuJoCo Warp, is slower on CPU.
`make(name, obs_type="pixels", pixels=PixelSpec(...))` renders observations for any MJX task.
"""

import contextlib
import dataclasses
import functools
from typing import Any, Callable, Dict, Optional, Tuple

from mimex_jax.envs import dmc
from mimex_jax.envs import pixels as pixel_obs
from mimex_jax.envs.core import Env

BRAX_PREFIX = "brax/"
RESET_POOL = ("auto", "on", "off")  # the config's env.reset_pool; see `uses_reset_pool`

# DM Control tasks whose reward is 1 inside the goal region and 0 outside (tolerance with zero
# margin): success is reaching that reward.
_SPARSE_PLAYGROUND_TASKS = (
    "AcrobotSwingupSparse", "BallInCup", "CartpoleBalanceSparse", "CartpoleSwingupSparse",
    "FingerTurnEasy", "FingerTurnHard", "ReacherEasy", "ReacherHard",
)
_BRAX_TASKS = ("ant", "halfcheetah", "hopper", "humanoid", "humanoidstandup", "inverted_pendulum",
               "inverted_double_pendulum", "pusher", "reacher", "walker2d")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  name: str
  build: Callable[[Dict[str, Any]], Any]  # overrides -> backend
  default_episode_length: int
  success_threshold: Optional[float]  # per-step reward that counts as success; None: undefined
  # Backend state -> 1 where solved; when set, it replaces the reward threshold.
  success_fn: Optional[Callable[[Any], Any]] = None
  # A reset (model data and a forward pass) that costs more than a step: a trainer's staggered
  # episodes then pay most of their time in resets unless `VectorEnv` keeps a reset pool.
  costly_reset: bool = False


class UnknownTaskError(ValueError):
  pass


def _playground_backend(name: str, overrides: Dict[str, Any]) -> Any:
  from mujoco_playground import registry as playground_registry  # slow import: only when used
  defaults = playground_registry.get_default_config(name)
  unknown = sorted(set(overrides) - set(defaults.keys()))
  if unknown:
    raise ValueError(f"env {name}: unknown override(s) {unknown}; "
                     f"allowed: {sorted(defaults.keys())}")
  backend = playground_registry.load(name, config_overrides={"impl": "jax", **overrides})
  wrapper = dmc.BACKEND_WRAPPERS.get(name)
  return wrapper(backend) if wrapper else backend


def _brax_backend(name: str, overrides: Dict[str, Any]) -> Any:
  from brax import envs as brax_envs
  return brax_envs.get_environment(name, **{"backend": "mjx", **overrides})


@functools.lru_cache(maxsize=None)
def _playground_task_names() -> Tuple[str, ...]:
  try:
    from mujoco_playground import registry as playground_registry
  except ImportError:  # Playground is a dependency, but keep Brax tasks usable without it
    return ()
  return tuple(playground_registry.dm_control_suite.ALL_ENVS)


def _manipulation_backend(name: str, overrides: Dict[str, Any]) -> Any:
  from mimex_jax.envs import manipulation
  return manipulation.TASKS[name](overrides)


def _manipulation_task_names() -> Tuple[str, ...]:
  from mimex_jax.envs import manipulation
  return tuple(manipulation.TASKS)


def _success_metric(state: Any) -> Any:
  return state.metrics["success"]


def task_names() -> Tuple[str, ...]:
  return (_manipulation_task_names() + _playground_task_names()
          + tuple(BRAX_PREFIX + n for n in _BRAX_TASKS))


def spec(name: str) -> TaskSpec:
  if name in _manipulation_task_names():
    from mimex_jax.envs import manipulation
    return TaskSpec(name, functools.partial(_manipulation_backend, name),
                    manipulation.DEFAULT_EPISODE_LENGTH[name], None, _success_metric,
                    costly_reset=True)
  if name.startswith(BRAX_PREFIX) and name[len(BRAX_PREFIX):] in _BRAX_TASKS:
    brax_name = name[len(BRAX_PREFIX):]
    return TaskSpec(name, functools.partial(_brax_backend, brax_name), 1000, None)
  if name in _playground_task_names():
    threshold = 0.5 if name in _SPARSE_PLAYGROUND_TASKS else None
    return TaskSpec(name, functools.partial(_playground_backend, name), 1000, threshold,
                    dmc.SUCCESS_FNS.get(name))
  raise UnknownTaskError(f"unknown env name {name!r}; known: {', '.join(task_names())}")


def uses_reset_pool(name: str, setting: str, pixel_backend: Optional[str] = None) -> bool:
  """Whether a trainer's `VectorEnv` for task `name` keeps a reset pool. `setting` is `on`,
  `off` or `auto`: on where the task's reset is dear (the arm tasks: 2.8x the steps/s of
  in-place resets, docs/TASKS.md), off elsewhere, where it measured neutral and would double the
  env state a device holds and checkpoints; never with the warp renderer (`pixel_backend`),
  which renders all of a device's envs at once."""
  if setting not in RESET_POOL:
    raise ValueError(f"reset pool setting must be one of {RESET_POOL}, got {setting!r}")
  if setting != "auto":
    return setting == "on"
  return spec(name).costly_reset and pixel_backend != "warp"


@contextlib.contextmanager
def _models_on_local_devices():
  """MJX puts a model on `jax.devices()[0]` unless told otherwise. In a multi-process run that
  device belongs to process 0, and every other process would build its env around arrays it
  cannot read; here each process gets its model on its own first device instead."""
  import jax
  if jax.process_count() == 1:
    yield
    return
  from mujoco.mjx._src import io as mjx_io  # the one place all of MJX's put_model calls resolve
  resolve = mjx_io._resolve_device

  def local_device(impl):
    device = resolve(impl)
    if device.process_index == jax.process_index():
      return device
    return jax.local_devices(backend=device.platform)[0]

  mjx_io._resolve_device = local_device
  try:
    yield
  finally:
    mjx_io._resolve_device = resolve


def make(name: str, episode_length: Optional[int] = None, action_repeat: int = 1,
         obs_type: str = "state", pixels: Optional[pixel_obs.PixelSpec] = None,
         num_worlds: Optional[int] = None, **overrides: Any) -> Env:
  """Builds task `name`. `overrides` go to the task's own config (e.g. `impl="warp"`).

  `obs_type="pixels"` replaces observations by camera frames as `pixels` describes (default
  `PixelSpec()`); the warp renderer also needs `num_worlds`, the envs per device.
  """
  task = spec(name)
  if episode_length is not None and episode_length < 1:
    raise ValueError(f"episode_length must be >= 1, got {episode_length}")
  if action_repeat < 1:
    raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
  if obs_type not in ("state", "pixels"):
    raise ValueError(f"obs_type must be 'state' or 'pixels', got {obs_type!r}")
  with _models_on_local_devices():
    backend = task.build(overrides)
    if obs_type == "pixels":
      # Success functions read `metrics`, which the pixel state passes through.
      backend = pixel_obs.PixelObservations(backend, pixels or pixel_obs.PixelSpec(), num_worlds)
  return Env(backend, episode_length=episode_length or task.default_episode_length,
             action_repeat=action_repeat, success_threshold=task.success_threshold, name=name,
             success_fn=task.success_fn)
