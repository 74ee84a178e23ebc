"""Whether a run fits its devices' memory, estimated before anything compiles: a huge num_envs
otherwise sits silent in the compile or the allocator."""

from typing import Any, Optional, Tuple

import jax


def estimated_device_bytes(config: Any, fused) -> int:
  """A lower bound on one device's memory for the run: its training states (every seed's, shape
  inference only, nothing compiled or allocated) and one rollout of `unroll_length` steps
  (observations and next observations, actions, a few scalars a step)."""
  key = jax.random.PRNGKey(0)
  state = jax.eval_shape(fused.init, key, key)
  state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  obs = state.env_state.obs
  per_env_step = 2 * obs.size * obs.dtype.itemsize // obs.shape[0] + 4 * 16
  rollout_bytes = _steps_per_rollout(config) * obs.shape[0] * per_env_step
  return config.num_seeds * (state_bytes + rollout_bytes)


def available_device_bytes() -> Tuple[int, str]:
  """`(bytes, what)`: free memory of one local device (an accelerator's own; on CPU the host's
  available memory, shared by its forced devices)."""
  device = jax.local_devices()[0]
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "bytes_limit" in stats:
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"{device.device_kind} has"
  import psutil  # pylint: disable=import-outside-toplevel
  return (psutil.virtual_memory().available // jax.local_device_count(),
          f"this host has {_gib(psutil.virtual_memory().available)} available for its "
          f"{jax.local_device_count()} CPU device(s), so each has")


def device_memory_problem(config: Any, fused) -> Optional[str]:
  """One line if the run's estimated memory per device exceeds what a device has free, before
  anything compiles (a huge num_envs otherwise sits silent in the compile or the allocator)."""
  needed = estimated_device_bytes(config, fused)
  available, where = available_device_bytes()
  if needed <= available:
    return None
  return (f"config key num_envs={config.num_envs} needs at least {_gib(needed)} per device "
          f"(training state and one rollout of {_steps_per_rollout(config)} steps, "
          f"{config.num_seeds} seed(s)), and {where} "
          f"{_gib(available)}; lower num_envs (or unroll_length, num_seeds)")


def _steps_per_rollout(config: Any) -> int:
  return config.get("unroll_length", config.get("env_steps", 1))  # PPO's, DrQ's


def _gib(num_bytes: float) -> str:
  return f"{num_bytes / 2**30:.1f} GiB"
