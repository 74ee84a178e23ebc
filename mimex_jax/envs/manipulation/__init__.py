"""Sparse-reward tabletop manipulation with our own arm, in the spirit of PixMC-Sparse.

`TASKS[name](overrides)` builds an env (Playground `MjxEnv` conventions, pure-JAX MJX);
`scripted_policy(name)` returns a jit/vmap-able `policy(state) -> action` that solves it.
"""

import functools
from typing import Any, Callable, Dict, Optional

from mimex_jax.envs.manipulation import scripted
from mimex_jax.envs.manipulation.base import ArmTaskEnv, default_config
from mimex_jax.envs.manipulation.drawer import Drawer
from mimex_jax.envs.manipulation.pick import Pick
from mimex_jax.envs.manipulation.push import Push
from mimex_jax.envs.manipulation.reach import Reach

_TASK_CLASSES = {"Reach": Reach, "Push": Push, "Pick": Pick, "Drawer": Drawer}
# Control steps at ctrl_dt=0.04 s: Reach needs ~1 s, the contact tasks ~3 s scripted.
_EPISODE_LENGTHS = {"Reach": 100, "Push": 150, "Pick": 150, "Drawer": 150}


def _factory(task: str, sparse: bool) -> Callable[[Optional[Dict[str, Any]]], ArmTaskEnv]:
  def make(overrides: Optional[Dict[str, Any]] = None) -> ArmTaskEnv:
    config = default_config()
    config.episode_length = _EPISODE_LENGTHS[task]
    return _TASK_CLASSES[task](sparse=sparse, config=config, config_overrides=overrides)
  return make


TASKS: Dict[str, Callable[[Optional[Dict[str, Any]]], ArmTaskEnv]] = {}
DEFAULT_EPISODE_LENGTH: Dict[str, int] = {}
for _task, _length in _EPISODE_LENGTHS.items():
  for _variant, _sparse in (("Sparse", True), ("Dense", False)):
    TASKS[_task + _variant] = _factory(_task, _sparse)
    DEFAULT_EPISODE_LENGTH[_task + _variant] = _length


def _base_task(name: str) -> str:
  for suffix in ("Sparse", "Dense"):
    if name.endswith(suffix) and name[:-len(suffix)] in _TASK_CLASSES:
      return name[:-len(suffix)]
  raise KeyError(f"unknown manipulation task {name!r}; known: {sorted(TASKS)}")


def scripted_policy(name: str, env: Optional[ArmTaskEnv] = None) -> Callable[[Any], Any]:
  """`policy(state) -> action [6]` solving task `name` (e.g. "PickSparse"); pass the `env` the
  states come from, or one is built with default settings."""
  env = env if env is not None else TASKS[name]({})
  return functools.partial(scripted.POLICIES[_base_task(name)], env)


__all__ = ["TASKS", "DEFAULT_EPISODE_LENGTH", "scripted_policy", "ArmTaskEnv"]
