"""Vectorized MuJoCo-MJX environments: `make(name)` for one env, `VectorEnv` for a batch."""

from mimex_jax.envs.core import Env, EnvState, EpisodeStats, ResetPool, VectorEnv
from mimex_jax.envs.registry import (RESET_POOL, UnknownTaskError, make, spec, task_names,
                                     uses_reset_pool)

__all__ = ["Env", "EnvState", "EpisodeStats", "ResetPool", "VectorEnv", "RESET_POOL",
           "UnknownTaskError", "make", "spec", "task_names", "uses_reset_pool"]
