"""Vectorized MuJoCo-MJX environments: `make(name)` for one env, `VectorEnv` for a batch."""

from mimex_jax.envs.core import Env, EnvState, EpisodeStats, ResetPool, VectorEnv
from mimex_jax.envs.registry import UnknownTaskError, make, spec, task_names

__all__ = ["Env", "EnvState", "EpisodeStats", "ResetPool", "VectorEnv", "UnknownTaskError",
           "make", "spec", "task_names"]
