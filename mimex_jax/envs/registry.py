"""Task registry: `make(name, **overrides)` returns a vectorizable `Env`.

Names are this package's manipulation tasks (`ReachSparse`, `PushSparse`, ... with `...Dense`
twins), MuJoCo Playground's DM Control Suite tasks (their XMLs ship with the package, so nothing
is downloaded), `brax/<name>` for Brax's own environments, and the user's own tasks, added with
`register(name, factory, ...)` (a config names the modules that register them in `env.imports`).
MJX tasks run on the pure-JAX backend (`impl="jax"`) unless told otherwise: Playground's default,
MuJoCo Warp, is slower on CPU.
`make(name, obs_type="pixels", pixels=PixelSpec(...))` renders observations for any MJX task.
"""

import contextlib
import dataclasses
import functools
import importlib
import inspect
import os
import sys
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

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


class TaskModuleError(ValueError):
  """A module named to register tasks (`import_task_modules`) that cannot be imported."""


@dataclasses.dataclass(frozen=True)
class MetricSuccess:
  """Success read from a metric of the backend's states: `state.metrics[name] > 0`. `make`
  looks for the metric once the backend is built; a `required` one that is missing is an error,
  an optional one leaves success undefined."""
  name: str
  required: bool = True

  def __call__(self, state: Any) -> Any:
    return state.metrics[self.name] > 0


# The user's tasks, by name: `register` adds them.
_REGISTERED: Dict[str, TaskSpec] = {}


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
          + tuple(BRAX_PREFIX + n for n in _BRAX_TASKS) + tuple(_REGISTERED))


def spec(name: str) -> TaskSpec:
  if name in _REGISTERED:
    return _REGISTERED[name]
  builtin = _builtin_spec(name)
  if builtin is None:
    raise UnknownTaskError(
        f"unknown env name {name!r}; known: {', '.join(task_names())}. A task of your own: "
        "mimex_jax.envs.register it in a module and name the module in the config's "
        "env.imports (README, \"Your own environment\")")
  return builtin


def _builtin_spec(name: str) -> Optional[TaskSpec]:
  """The spec of one of this package's, Playground's or Brax's tasks; None for other names."""
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
  return None


Success = Union[None, str, Callable[[Any], Any]]


def register(name: str, factory: Callable[..., Any], *, episode_length: int,
             success: Success = None, costly_reset: bool = False) -> None:
  """Adds task `name`: from then on `make(name)`, the configs' `env.name` and
  `python -m mimex_jax.envs.show --list` know it. Training and evaluation from the command line
  see it when the config's `env.imports` names the module that calls this.

  `factory(**overrides)` builds the env: a MuJoCo Playground `MjxEnv`, a Brax `PipelineEnv`, or
  any object with `reset(key)`, `step(state, action)`, `observation_size` and `action_size`
  whose states carry `obs`, `reward`, `done` and `metrics`. It picks its own MJX
  implementation (the pure-JAX one, `impl="jax"`, is the fast one on CPU).
  `episode_length` is the time limit a config's `env.episode_length=0` stands for.
  `success` says when an episode succeeded (once is enough):
    None (default): the env's own metric `success` (`state.metrics["success"] > 0`) if its
      states have one; otherwise success is undefined and reported as null / n/a;
    a metric name: `state.metrics[name] > 0`; the states must have it;
    a function of the env's state: true (or > 0) on steps where the task is solved.
  `costly_reset`: a reset dearer than a step; `env.reset_pool=auto` then keeps a reset pool.

  Registering a name again with a factory defined elsewhere is an error; with the same factory
  (a module imported twice, a notebook cell run again) the later settings win.
  """
  if not isinstance(name, str) or not name.strip():
    raise ValueError(f"a task name is a non-empty string, got {name!r}")
  if _builtin_spec(name) is not None:
    raise ValueError(f"task name {name!r} is one of mimex_jax's own tasks; choose another")
  if not callable(factory):
    raise ValueError(f"task {name}: factory must be callable, got {factory!r}")
  if isinstance(episode_length, bool) or not isinstance(episode_length, int) or \
      episode_length < 1:
    raise ValueError(f"task {name}: episode_length must be an integer >= 1, got "
                     f"{episode_length!r}")
  earlier = _REGISTERED.get(name)
  if earlier is not None and _origin(earlier.build.factory) != _origin(factory):
    raise ValueError(f"task {name!r} is registered already, with another factory "
                     f"({_describe(earlier.build.factory)}); choose another name")
  if success is None:
    success_fn = MetricSuccess("success", required=False)
  elif isinstance(success, str):
    success_fn = MetricSuccess(success)
  elif callable(success):
    success_fn = success
  else:
    raise ValueError(f"task {name}: success must be None, a metric name or a function of the "
                     f"env state, got {success!r}")
  _REGISTERED[name] = TaskSpec(name, _UserBackend(factory), episode_length, None, success_fn,
                               costly_reset=bool(costly_reset))


@dataclasses.dataclass(frozen=True)
class _UserBackend:
  """A registered task's `TaskSpec.build`: the user's factory, called with the overrides."""
  factory: Callable[..., Any]

  def __call__(self, overrides: Dict[str, Any]) -> Any:
    return self.factory(**overrides)


def _origin(factory: Callable[..., Any]) -> Tuple[Any, ...]:
  """Where a factory is defined. A module imported twice (as a script and again by
  `env.imports`) makes new objects from the same source: the same factory."""
  try:
    return (inspect.getsourcefile(factory), factory.__qualname__)
  except (TypeError, AttributeError):  # partials, builtins: only the object itself is the same
    return (id(factory),)


def _describe(factory: Callable[..., Any]) -> str:
  origin = _origin(factory)
  return f"{origin[1]} in {origin[0]}" if len(origin) == 2 else repr(factory)


def module_names(imports: Union[None, str, Sequence[str]]) -> Tuple[str, ...]:
  """The module names of a config's `env.imports`: a comma-separated string, or a list."""
  if imports is None:
    return ()
  if isinstance(imports, str):
    imports = imports.split(",")
  if not isinstance(imports, (list, tuple)) or not all(isinstance(m, str) for m in imports):
    raise TaskModuleError(f"expected module names, comma-separated, got {imports!r}")
  return tuple(m.strip() for m in imports if m.strip())


def import_task_modules(imports: Union[None, str, Sequence[str]]) -> None:
  """Imports the modules that register the user's tasks (a config's `env.imports`). The current
  folder is searched last, as `python -m` does, so `mimex-train` finds the same modules. A
  module that is not found is a `TaskModuleError`; errors inside a module propagate as they are.
  """
  names = module_names(imports)
  if names and os.getcwd() not in sys.path and "" not in sys.path:
    sys.path.append(os.getcwd())
  for module in names:
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      raise TaskModuleError(
          f"cannot import module {module!r} ({e}); put the folder that holds it on PYTHONPATH "
          "or run from it") from e


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
    success_fn = _success_of(backend, task)
    if obs_type == "pixels":
      backend = pixel_obs.PixelObservations(backend, pixels or pixel_obs.PixelSpec(), num_worlds)
      success_fn = _on_task_state(success_fn)
  return Env(backend, episode_length=episode_length or task.default_episode_length,
             action_repeat=action_repeat, success_threshold=task.success_threshold, name=name,
             success_fn=success_fn)


def _on_task_state(success_fn: Optional[Callable[[Any], Any]]):
  """A success function for pixel states: it reads the task's own state inside them."""
  if success_fn is None:
    return None
  return lambda pixel_state: success_fn(pixel_state.inner)


def _success_of(backend: Any, task: TaskSpec) -> Optional[Callable[[Any], Any]]:
  """The task's success function, once a success metric was looked up in the backend's states
  (an abstract reset: traced, not run)."""
  if not isinstance(task.success_fn, MetricSuccess):
    return task.success_fn
  import jax
  state = jax.eval_shape(backend.reset, jax.random.PRNGKey(0))
  metrics = getattr(state, "metrics", None) or {}
  if task.success_fn.name in metrics:
    return task.success_fn
  if task.success_fn.required:
    raise ValueError(f"{task.name}: success metric {task.success_fn.name!r} is not among the "
                     f"env's metrics {sorted(metrics)}")
  return None
