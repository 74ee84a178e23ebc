"""Vectorized MuJoCo-MJX environments: `make(name)` for one env, `VectorEnv` for a batch,
`register(name, factory, ...)` for a task of your own."""

from mimex_jax.envs.core import Env, EnvState, EpisodeStats, ResetPool, VectorEnv
from mimex_jax.envs.registry import (RESET_POOL, TaskModuleError, UnknownTaskError,
                                     import_task_modules, make, register, spec, task_names,
                                     uses_reset_pool)

__all__ = ["Env", "EnvState", "EpisodeStats", "ResetPool", "VectorEnv", "RESET_POOL",
           "TaskModuleError", "UnknownTaskError", "import_task_modules", "make", "register",
           "spec", "task_names", "uses_reset_pool"]
