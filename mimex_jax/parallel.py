"""Data parallelism in one place: the device-axis name, the pmap wrapper and cross-device means.

Everything that averages across devices goes through `mean_across_devices`, which is the identity
when `axis_name` is None, so the same update code runs alone (tests, notebooks) or under `pmap`.
"""

import os
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import numpy as np

AXIS = "devices"

# Environment variables for a launch by hand (see README, "Many hosts"); schedulers that JAX
# detects itself (SLURM, Open MPI, Cloud TPU) need none of them.
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"  # host:port of process 0
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"


class DistributedSetupError(RuntimeError):
  """`jax.distributed` could not start: the message says which variables to set."""


def initialize_distributed() -> None:
  """Joins this process to the others of a multi-host run (`config.distributed=True`).

  Must run before anything touches a JAX backend. Reads `JAX_COORDINATOR_ADDRESS`,
  `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` when set, else lets JAX detect the cluster. On CPU the
  cross-process all-reduces go through gloo.
  """
  from jax._src import distributed as jax_distributed  # no public "already initialized" check
  if jax_distributed.global_state.client is not None:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  num_processes = os.environ.get(NUM_PROCESSES_ENV)
  process_id = os.environ.get(PROCESS_ID_ENV)
  try:
    jax.distributed.initialize(
        coordinator_address=os.environ.get(COORDINATOR_ENV),
        num_processes=int(num_processes) if num_processes else None,
        process_id=int(process_id) if process_id else None)
  except (ValueError, RuntimeError) as e:
    raise DistributedSetupError(
        f"distributed=True but jax.distributed could not start ({str(e).splitlines()[0]}); "
        f"under SLURM, Open MPI or on a Cloud TPU pod JAX finds the other processes itself, "
        f"elsewhere set {COORDINATOR_ENV}=host:port of process 0, {NUM_PROCESSES_ENV} and "
        f"{PROCESS_ID_ENV} in every process") from e


def stop_requested_anywhere(requested: Optional[str], running: Any = None) -> Optional[str]:
  """A stop asked of any process stops all of them after the same update: a process that left
  the loop alone would leave the others waiting in their all-reduces forever.

  `running` is the output of the last step: the exchange waits for it, because on CPU a second
  program's all-reduce running beside the step's own mismatched them (gloo, jax 0.10.2).
  """
  if jax.process_count() == 1:
    return requested
  from jax.experimental import multihost_utils
  jax.block_until_ready(running)
  flags = multihost_utils.process_allgather(np.int32(requested is not None))
  if requested is None and np.any(flags):
    return f"a signal to process {int(np.argmax(flags))}"
  return requested


def global_mesh_sharding() -> jax.sharding.NamedSharding:
  """Splits a leading axis over every device of every process, in pmap's device order."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()), (AXIS,))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))


def to_global(local_tree: Any) -> Any:
  """Host arrays `[local devices, ...]` of this process -> global arrays `[all devices, ...]`,
  each process holding its own rows (what Orbax writes from many processes at once)."""
  sharding = global_mesh_sharding()
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(
          sharding, x, (jax.process_count() * x.shape[0],) + x.shape[1:]), local_tree)


def from_global(global_tree: Any) -> Any:
  """The inverse of `to_global`: this process's rows of global arrays, as host arrays."""
  def local_rows(x):
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    return np.concatenate([np.asarray(s.data) for s in shards])
  return jax.tree.map(local_rows, global_tree)

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

def after(tree: Any, earlier: Any) -> Any:
  """`tree` made to depend on every leaf of `earlier` (its floats plus 0 times a scalar read from
  each of `earlier`'s floating leaves).

  Phases of a step that hold all-reduces are chained with it. Across processes on CPU the
  all-reduces go through gloo, which pairs them by order, and XLA's CPU runtime starts
  independent ones in whatever order they become ready: two crossed (a gloo size mismatch, jax
  0.10.2). `lax.optimization_barrier` did not keep them apart (XLA combined all-reduces across
  it), a data dependency does. Between the devices of one process it is needed too: without it
  the smoke PPO step on two CPU devices segfaulted mid-run. On one device the step has no
  all-reduces (`active_axis`), so there `tree` is returned as it is: the token's sum over every
  leaf (hundreds with Adam's moments) was fused into each leaf's add, and those copies were
  about 1.6 of DrQ + MIMEx's 4.35 GB peak on CPU (issue 25).
  """
  if jax.device_count() == 1:
    return tree
  floats = [x for x in jax.tree.leaves(earlier)
            if jax.numpy.issubdtype(x.dtype, jax.numpy.floating) and x.size]
  token = sum((x.ravel()[0].astype(jax.numpy.float32) for x in floats),
              jax.numpy.zeros((), jax.numpy.float32)) * 0.0
  # Computed once: without the barrier XLA fuses the sum into every leaf's add below.
  token = jax.lax.optimization_barrier(token)
  return jax.tree.map(
      lambda x: x + token.astype(x.dtype) if jax.numpy.issubdtype(x.dtype, jax.numpy.floating)
      else x, tree)


def reduce_metrics(sums: Dict[str, Any], means: Dict[str, Any],
                   axis_name: Optional[str]) -> Dict[str, jax.Array]:
  """Scalar metrics summed (`sums`) or averaged (`means`) over devices in ONE all-reduce, as
  float32 (a second, independent all-reduce could run in either order; see `after`)."""
  axis_name = active_axis(axis_name)
  if axis_name is None:
    return {**sums, **means}
  names = list(sums) + list(means)
  values = jax.numpy.stack([jax.numpy.asarray(v, jax.numpy.float32)
                            for v in list(sums.values()) + list(means.values())])
  totals = jax.lax.psum(values, axis_name=axis_name)
  size = jax.lax.axis_size(axis_name)
  return {name: totals[i] if i < len(sums) else totals[i] / size
          for i, name in enumerate(names)}


def batch_rows(axis_name: Optional[str], per_device: int) -> Tuple[Any, int]:
  """`(first, total)`: this device holds rows `first ... first + per_device` of a batch of
  `total` split evenly over the devices of `axis_name`; `(0, per_device)` outside a pmap.

  Randomness drawn per row of the whole batch (env resets, action noise, MIMEx masks) makes a
  run independent of how many devices share the batch."""
  try:
    return (jax.lax.axis_index(axis_name) * per_device,
            jax.lax.axis_size(axis_name) * per_device)
  except NameError:  # traced without the device axis (shape inference, one-device tools)
    return 0, per_device


def keys_per_row(key: jax.Array, rows: jax.Array) -> jax.Array:
  """One key per global row index: `[..., 2]` for `rows` `[...]`."""
  flat = jax.vmap(jax.random.fold_in, (None, 0))(key, rows.reshape(-1))
  return flat.reshape(rows.shape + flat.shape[1:])


def unreplicate(tree: Any) -> Any:
  """Takes device 0's copy of a tree whose leaves carry a leading device axis."""
  return jax.tree.map(lambda x: x[0], tree)

def local_device_keys(key: jax.Array) -> jax.Array:
  """This process's rows of one key per device of the whole run, `[local devices, 2]`. Device d
  gets the same key whether it is run by one process or by many, so 2 processes of 1 device
  train what 1 process of 2 devices trains."""
  start = jax.process_index() * jax.local_device_count()
  all_keys = jax.random.split(jax.random.fold_in(key, 0), jax.device_count())
  return all_keys[start:start + jax.local_device_count()]


def pmap_init(init_fn: Callable, key: jax.Array) -> Any:
  """Builds a per-device state on the devices themselves: `init_fn(shared_key, device_key)`.

  `shared_key` is the same on every device (so parameters start identical), `device_key` differs
  (so each device steps its own environments).
  """
  count = jax.local_device_count()
  shared = jax.numpy.stack([key] * count)
  return jax.pmap(init_fn, axis_name=AXIS)(shared, local_device_keys(key))

def pmap_step(step_fn: Callable, donate_state: bool = True) -> Callable:
  """pmaps `step_fn(state, key) -> (state, metrics)` over local devices, donating the state."""
  return jax.pmap(step_fn, axis_name=AXIS, donate_argnums=(0,) if donate_state else ())


def pmap_init_seeds(init_fn: Callable, seed_keys: jax.Array, vmappable: bool = True) -> Any:
  """`pmap_init` for independent seeds trained side by side: `seed_keys` `[S, 2]` gives a state
  whose leaves carry `[devices, S, ...]`. Seed s is built exactly as `pmap_init` builds it from
  `seed_keys[s]` alone. With `vmappable=False` (a renderer of a fixed batch in the env's reset)
  the seeds are built one by one."""
  count = jax.local_device_count()
  shared = jax.numpy.stack([seed_keys] * count)
  device_keys = jax.vmap(local_device_keys)(seed_keys)
  over_seeds = jax.vmap(init_fn) if vmappable else (
      lambda keys, device_keys: jax.lax.map(lambda k: init_fn(*k), (keys, device_keys)))
  return jax.pmap(over_seeds, axis_name=AXIS)(shared, device_keys.swapaxes(0, 1))
