"""Data parallelism in one place: the device-axis name, the pmap wrapper and cross-device means.

Everything that averages across devices goes through `mean_across_devices`, which is the identity
when `axis_name` is None, so the same update code runs alone (tests, notebooks) or under `pmap`.
"""

from typing import Any, Callable, Optional

import jax

AXIS = "devices"

def active_axis(axis_name: Optional[str]) -> Optional[str]:
  """`axis_name`, or None when it spans one device: a one-device all-reduce is the identity, and
  leaving it out avoided XLA CPU deadlocks (jax 0.10.2: a pmapped step with vmapped seeds hung at
  0% CPU inside its all-reduces on a 2-core machine)."""
  if axis_name is None or jax.lax.axis_size(axis_name) == 1:
    return None
  return axis_name

def mean_across_devices(tree: Any, axis_name: Optional[str]) -> Any:
  axis_name = active_axis(axis_name)
  if axis_name is None:
    return tree
  return jax.lax.pmean(tree, axis_name=axis_name)

def sum_across_devices(tree: Any, axis_name: Optional[str]) -> Any:
  axis_name = active_axis(axis_name)
  if axis_name is None:
    return tree
  return jax.lax.psum(tree, axis_name=axis_name)

def unreplicate(tree: Any) -> Any:
  """Takes device 0's copy of a tree whose leaves carry a leading device axis."""
  return jax.tree.map(lambda x: x[0], tree)

def pmap_init(init_fn: Callable, key: jax.Array) -> Any:
  """Builds a per-device state on the devices themselves: `init_fn(shared_key, device_key)`.

  `shared_key` is the same on every device (so parameters start identical), `device_key` differs
  (so each device steps its own environments).
  """
  count = jax.local_device_count()
  shared = jax.numpy.stack([key] * count)
  device_keys = jax.random.split(jax.random.fold_in(key, jax.process_index()), count)
  return jax.pmap(init_fn, axis_name=AXIS)(shared, device_keys)

def pmap_step(step_fn: Callable, donate_state: bool = True) -> Callable:
  """pmaps `step_fn(state, key) -> (state, metrics)` over local devices, donating the state."""
  return jax.pmap(step_fn, axis_name=AXIS, donate_argnums=(0,) if donate_state else ())


def pmap_init_seeds(init_fn: Callable, seed_keys: jax.Array) -> Any:
  """`pmap_init` for independent seeds trained side by side: `seed_keys` `[S, 2]` gives a state
  whose leaves carry `[devices, S, ...]`. Seed s is built exactly as `pmap_init` builds it from
  `seed_keys[s]` alone."""
  count = jax.local_device_count()
  shared = jax.numpy.stack([seed_keys] * count)
  device_keys = jax.vmap(
      lambda key: jax.random.split(jax.random.fold_in(key, jax.process_index()), count))(
          seed_keys)
  return jax.pmap(jax.vmap(init_fn), axis_name=AXIS)(shared, device_keys.swapaxes(0, 1))
