"""Orbax checkpoints of the whole training state, written so that a resumed run continues exactly.

A checkpoint holds two items:
- `state`: the `TrainState` of every local device as saved (parameters and Adam states of the
  agent and the intrinsic model, normalizer statistics, environment states with their keys, and
  the update counter). Per-update keys are `fold_in(seed key, update)`, so the seed in the config
  and the counter are all the randomness a resume needs.
- `meta` (JSON): the config, the host loop's bookkeeping (episode sums and metrics of the log
  window in progress) and the evaluation at that step, if any.

A state with a replay buffer (DrQ's) may be saved without it (`include_replay=False`): its
arrays are left out of `state` and `meta["replay_left_out"]` says so; a restore then starts the
buffer from the template (empty).

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a crash
mid-save leaves the previous checkpoints as they were. Saves run in a background thread from a
host copy of the state, so the next (donating) update step can start at once.
"""

import errno
import glob
import logging
import os
import re
import shutil
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from mimex_jax import parallel, version
# What a saved config means today lives in checkpoint_config; its names are used here and by
# callers of this module.
from mimex_jax.checkpoint_config import (  # noqa: F401
    ADDED_KEYS, CHECKPOINT_FORMAT, FORMAT_CHANGES, RESUMABLE_KEYS, config_differences,
    config_to_dict, override_flags, version_of, with_added_keys)
from mimex_jax.config_checks import ConfigError

CHECKPOINT_DIR = "checkpoints"
REPLAY_FIELD = "replay"  # the part of a train state a checkpoint may leave out (DrQ's buffer)
# Keys that may change between a run and its resume: they say how long to train, how often to
# log, evaluate and save, and how processes find each other, not what is trained.
class CheckpointError(ConfigError):
  """A checkpoint that cannot be used: printed as one line, exit code 2."""


class NonFiniteError(RuntimeError):
  """Training produced NaN or inf; the run stops and keeps the last good checkpoint."""


class WriteError(RuntimeError):
  """The workdir could not be written (a full disk, a quota, an I/O error): the run stops with
  one line naming the last good checkpoint, exit code 4."""


# Errors of the storage rather than of the program: a save or a log line that meets one of
# these stops the run cleanly.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)
DAMAGED_SUFFIX = ".damaged"  # not a number, so Orbax neither lists nor cleans such a folder


def storage_error(error: BaseException) -> Optional[OSError]:
  """The `OSError` of the storage behind `error` (itself, or what it was raised from: Orbax
  re-raises errors of its writer threads), or None. TensorStore, which writes the arrays,
  reports them as `ValueError: RESOURCE_EXHAUSTED: ... [os_error_code='28']`; that becomes the
  `OSError` it stands for."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
      return error
    code = re.search(r"os_error_code='(\d+)'", str(error))
    if code and int(code.group(1)) in STORAGE_ERRNOS:
      path = re.search(r'Failed writing: "([^"]+)"', str(error))
      return OSError(int(code.group(1)), os.strerror(int(code.group(1))),
                     path.group(1) if path else None)
    error = error.__cause__ or error.__context__
  return None


class _StorageErrorLogFilter(logging.Filter):
  """Drops the tracebacks Orbax's writer threads log for a storage error: the run reports it
  once, as one line (`WriteError`). Also drops asyncio's reports of abandoned tasks: when one
  read of a damaged checkpoint fails, its siblings fail too, after the restore has given up on
  them (and reported the checkpoint); asyncio then logs each one when it is collected."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.name == "asyncio" and "exception was never retrieved" in record.getMessage():
      return False
    error = record.exc_info[1] if record.exc_info else None
    return error is None or storage_error(error) is None


def _ignore_answers_to_a_closed_loop() -> None:
  """When a read of a damaged checkpoint or a write to a full disk fails, TensorStore's other
  reads or writes of it are still in flight; when they finish, they find the event loop Orbax
  ran them in closed, and Python prints a `RuntimeError: Event loop is closed` traceback for
  each, at some later point. Nobody waits for those answers: this drops exactly those reports
  and passes every other one on."""
  previous = sys.unraisablehook
  if getattr(previous, "ignores_answers_to_a_closed_loop", False):
    return

  def hook(unraisable):
    error = unraisable.exc_value
    if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
      previous(unraisable)

  hook.ignores_answers_to_a_closed_loop = True
  sys.unraisablehook = hook


def _quiet_failure_noise() -> None:
  """A failed read or write is reported once, by this module; not by Orbax's threads (absl
  logs) or its abandoned tasks ("Task exception was never retrieved", asyncio logs) too."""
  for name in ("absl", "asyncio"):
    logger = logging.getLogger(name)
    if not any(isinstance(f, _StorageErrorLogFilter) for f in logger.filters):
      logger.addFilter(_StorageErrorLogFilter())
  _ignore_answers_to_a_closed_loop()


def damage_reason(error: BaseException) -> str:
  """The first line of why a checkpoint did not read back (damaged files show up as many
  different exception types, some with pages of detail)."""
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else type(error).__name__


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def first_non_finite(tree: Any, name: str) -> Optional[str]:
  """The path of the first leaf of `tree` holding NaN or inf (floating leaves only), or None."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    leaf = np.asarray(leaf)
    if np.issubdtype(leaf.dtype, np.floating) and not np.isfinite(leaf).all():
      return name + jax.tree_util.keystr(path)
  return None


def _drop_empty(tree: Any) -> Any:
  # Orbax refuses zero-size arrays (MJX data has some, e.g. `act` for models without actuator
  # state); they carry no information and are taken from the template on restore.
  return jax.tree.map(lambda x: None if np.size(x) == 0 else x, tree)


def has_replay(state: Any) -> bool:
  return getattr(state, REPLAY_FIELD, None) is not None


def without_replay(state: Any) -> Any:
  """`state` with every array of its replay buffer replaced by None: nothing is written for
  them, and a restore target shaped so reads none."""
  return state.replace(**{REPLAY_FIELD: jax.tree.map(lambda _: None,
                                                     getattr(state, REPLAY_FIELD))})


def _fill_empty(restored: Any, template: Any) -> Any:
  is_none = lambda x: x is None  # noqa: E731  (states may hold None fields of their own)
  template_leaves, treedef = jax.tree.flatten(template, is_leaf=is_none)
  restored_leaves = jax.tree.flatten(restored, is_leaf=is_none)[0]
  leaves = [t if t is None else np.asarray(t if r is None else r)
            for r, t in zip(restored_leaves, template_leaves, strict=True)]
  return jax.tree.unflatten(treedef, leaves)


class Checkpointer:
  """Saves and restores training checkpoints under `<workdir>/checkpoints/<update>`.

  Keeps the latest `max_to_keep` checkpoints and, with `keep_best`, the one with the best
  evaluation (success rate first, return to break ties) among those saved at an evaluation.
  """

  def __init__(self, directory: str, max_to_keep: int = 2, keep_best: bool = True,
               async_save: bool = True, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self.read_only = read_only
    _quiet_failure_noise()
    managers = ocp.checkpoint_managers
    policies = [managers.LatestN(max_to_keep)]
    if keep_best:
      policies.append(managers.BestN(get_metric_fn=_eval_score, reverse=False, n=1,
                                     keep_checkpoints_without_metrics=False))
    # `read_only` only promises not to write: Orbax's own read-only mode logs warnings on
    # every open, and nothing here saves into a source it restores from.
    options = ocp.CheckpointManagerOptions(
        create=not read_only, enable_async_checkpointing=async_save,
        cleanup_tmp_directories=not read_only,  # leftovers of a save cut short by a crash
        preservation_policy=managers.AnyPreservationPolicy(policies))
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def steps(self) -> Sequence[int]:
    return sorted(self.manager.all_steps())

  def save(self, update: int, state: Any, meta: Dict[str, Any],
           eval_metrics: Optional[Dict[str, float]] = None, include_replay: bool = True) -> None:
    """Saves the pmapped `state` after `update` updates; refuses a state with NaN or inf.
    `include_replay=False` leaves its replay buffer (if it has one) out."""
    leave_out = not include_replay and has_replay(state)
    if leave_out:  # before the host copy: a buffer can be tens of GB
      state = without_replay(state)
    host_state = jax.device_get(state)
    learned = ("params", "opt_state", "normalizer", "intrinsic")  # not env states or replay
    bad = first_non_finite(tuple(getattr(host_state, f, None) for f in learned), "state")
    if bad is not None:
      raise NonFiniteError(f"{bad} is not finite after update {update}; not saved")
    meta = {**meta, "update": int(update), "eval": eval_metrics,
            "format": CHECKPOINT_FORMAT, "mimex_jax_version": version.__version__,
            "num_devices": int(np.shape(host_state.update_step)[0]),
            "num_processes": jax.process_count(), "replay_left_out": leave_out}
    saved = _drop_empty(host_state)
    if jax.process_count() > 1:  # every process writes its own devices' rows of one array
      saved = parallel.to_global(saved)
    if int(update) in self.manager.all_steps():
      self.manager.reload()  # another process may have set a damaged one aside (`restore`)
    self.manager.save(
        int(update),
        args=ocp.args.Composite(state=ocp.args.StandardSave(saved),
                                meta=ocp.args.JsonSave(meta)),
        metrics=eval_metrics, force=True)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    # Orbax clears leftover temporary folders in a thread it starts on opening; a run that stops
    # at once (a bad --restore) must not leave it running into interpreter shutdown, where it
    # prints a traceback. The method is private, hence the guard.
    await_cleanup = getattr(self.manager, "_maybe_await_cleanup_tmp_directory", None)
    if await_cleanup is not None:
      await_cleanup()
    self.manager.close()

  def remove_partial_saves(self, settle_seconds: float = 1.0) -> List[str]:
    """Deletes the temporary folders of saves that did not complete (a save that failed on a
    full disk leaves one); returns their paths."""
    try:  # the failed save's other writer threads: let them end before deleting under them
      self.manager.wait_until_finished()
    except Exception:  # pylint: disable=broad-except  (the failure is already being reported)
      pass
    # A writer thread still running when the first error surfaced can add files or make the
    # folder again: delete until none has reappeared for `settle_seconds` (10 s at most).
    removed, quiet_until, give_up = [], time.time() + settle_seconds, time.time() + 10.0
    while time.time() < min(quiet_until, give_up):
      for path in glob.glob(os.path.join(glob.escape(self.directory), "*.orbax-checkpoint-tmp*")):
        shutil.rmtree(path, ignore_errors=True)
        removed += [] if path in removed else [path]
        quiet_until = time.time() + settle_seconds
      time.sleep(0.05)
    self.manager.reload()
    return sorted(removed)

  def set_aside(self, update: int) -> str:
    """Renames the damaged checkpoint `update` to `<update>.damaged` (`.damaged.2`, ... if that
    is taken), so that a resumed run can save that update again; returns the new path."""
    path = os.path.join(self.directory, str(update))
    target, n = path + DAMAGED_SUFFIX, 1
    while os.path.exists(target):
      n += 1
      target = f"{path}{DAMAGED_SUFFIX}.{n}"
    os.rename(path, target)
    self.manager.reload()
    return target

  def read_meta(self, update: int) -> Dict[str, Any]:
    return self.manager.restore(update, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
        "meta"]

  def saved_meta(self, update: Optional[int] = None) -> Dict[str, Any]:
    """The metadata of checkpoint `update`, or of the latest one that reads back."""
    for step in [update] if update is not None else sorted(self.steps(), reverse=True):
      try:
        return self.read_meta(step)
      except Exception:  # damaged: `restore` reports it; the config is the same in all of them
        continue
    raise CheckpointError(f"no readable checkpoint in {self.directory}; start a new --workdir")

  def check_compatible(self, config: Dict[str, Any], num_devices: int,
                       update: Optional[int] = None, num_processes: int = 1) -> None:
    """Refuses to continue a checkpoint with a config that trains something else, or on another
    number of devices or processes (each device holds its own environments)."""
    meta = self.saved_meta(update)
    form = meta.get("format", 1)
    if form > CHECKPOINT_FORMAT:
      raise CheckpointError(
          f"the checkpoints in {self.directory} were written by {version_of(meta)}, newer "
          f"than this mimex_jax (format {CHECKPOINT_FORMAT}); upgrade mimex_jax to resume it")
    differences = config_differences(meta["config"], config)
    if differences and form < CHECKPOINT_FORMAT:
      raise CheckpointError(
          f"the checkpoints in {self.directory} were written by {version_of(meta)}, whose "
          f"config differs from this version's: {'; '.join(differences)}. Its policy still "
          f"loads (python -m mimex_jax.evaluate --workdir=..., load_policy); "
          f"`python -m mimex_jax.migrate --workdir=...` says whether training can resume "
          f"and rewrites it for this version if so")
    if differences:
      raise CheckpointError(
          f"the checkpoints in {self.directory} were written with another config: "
          f"{'; '.join(differences)}. Use a new --workdir, or resume with the checkpoint's "
          f"values: {' '.join(override_flags(meta['config'], config))}")
    if meta["num_devices"] != num_devices:
      raise CheckpointError(
          f"the checkpoints in {self.directory} were written on {meta['num_devices']} local "
          f"devices and this process has {num_devices}; resume on {meta['num_devices']} "
          f"(on CPU: XLA_FLAGS=--xla_force_host_platform_device_count={meta['num_devices']}), "
          f"or evaluate it with mimex_jax.evaluate, which loads on any number")
    if meta.get("num_processes", 1) != num_processes:
      raise CheckpointError(
          f"the checkpoints in {self.directory} were written by {meta.get('num_processes', 1)} "
          f"processes and this run has {num_processes}; resume with as many processes (and "
          f"config.distributed={meta.get('num_processes', 1) > 1}), or evaluate it with "
          f"mimex_jax.evaluate, which loads in one process")

  def best_step(self) -> Optional[int]:
    """The kept checkpoint with the best evaluation, or None if none was saved at one."""
    scored = []
    for update in self.steps():
      try:
        evaluation = self.read_meta(update).get("eval")
      except Exception:  # an unreadable checkpoint is not the best one
        continue
      if evaluation:
        scored.append((_eval_score(evaluation), update))
    return max(scored)[1] if scored else None

  def restore(self, template: Any, update: Optional[int] = None, log=None):
    """Restores `(update, host_state, meta)`.

    `template` is a state of the right structure (e.g. the freshly initialized one); a replay
    buffer the checkpoint left out (`meta["replay_left_out"]`) is the template's. Without
    `update`, the latest checkpoint that reads back completely is used; each damaged one on the
    way is reported through `log` and skipped. Unless `read_only`, a skipped one is also moved
    aside (`set_aside`): left in place, it would block the save of its update later in the run.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    host_template = jax.device_get(template)
    target = _drop_empty(jax.tree.map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype),
                                      host_template))
    if jax.process_count() > 1:  # each process reads back its own devices' rows
      sharding = parallel.global_mesh_sharding()
      target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
          (jax.process_count() * x.shape[0],) + x.shape[1:], x.dtype, sharding=sharding), target)
    candidates = [update] if update is not None else sorted(self.steps(), reverse=True)
    if not candidates:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    problems = []
    for step in candidates:
      if step not in self.manager.all_steps():
        raise CheckpointError(f"no checkpoint for update {step} in {self.directory}; "
                              f"there are: {list(self.steps()) or 'none'}")
      try:
        # Checkpoints saved before `replay_left_out` existed all hold their buffer.
        left_out = self.read_meta(step).get("replay_left_out", False)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(without_replay(target) if left_out else target),
            meta=ocp.args.JsonRestore()))
        state = restored["state"]
        if jax.process_count() > 1:
          state = parallel.from_global(state)
        state = _fill_empty(state, host_template)
      except Exception as e:  # damaged files show up as many different exception types
        reason = damage_reason(e)
        problems.append(f"{step}: {reason}")
        path = os.path.join(self.directory, str(step))
        moved = ""
        if not self.read_only and jax.process_index() == 0:  # one process renames
          moved = f"; moved it to {self.set_aside(step)}"
        log(f"checkpoint {path} is damaged or incomplete ({reason}){moved}; trying the one "
            f"before it")
        continue
      return step, state, restored["meta"]
    raise CheckpointError(f"no usable checkpoint in {self.directory} "
                          f"({'; '.join(problems)}); start a new --workdir")


def read_arrays(directory: str, update: int) -> Any:
  """Checkpoint `update` in `directory` as a tree of host arrays with every device's rows,
  whatever the number of devices and processes that wrote it or that read it now."""
  path = os.path.join(os.path.abspath(directory), str(update), "state")
  reader = ocp.PyTreeCheckpointer()
  tree = reader.metadata(path).item_metadata.tree
  return reader.restore(path, restore_args=jax.tree.map(
      lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree))


def _eval_score(evaluation: Dict[str, Any]) -> float:
  """Success rate first, return to break ties (returns here are below 1e6)."""
  success = evaluation.get("eval_success_rate")
  success = 0.0 if success is None or np.isnan(success) else success
  value = evaluation.get("eval_return")
  value = 0.0 if value is None or np.isnan(value) else value
  return float(success) * 1e6 + float(value)


def to_devices(host_state: Any, like: Any) -> Any:
  """Places a restored host state on the devices the same way as `like` (a pmapped state)."""
  return jax.tree.map(lambda h, d: jax.device_put(np.asarray(h), d.sharding), host_state, like)
