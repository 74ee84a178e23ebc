"""Restoring a trained policy from a run's workdir, for evaluation, videos and notebooks:

  policy = mimex_jax.load_policy("runs/default")      # latest checkpoint
  action = policy(obs)                                # raw observation(s) -> action in [-1, 1]
"""

import dataclasses
import functools
import os
import sys
from typing import Any, Callable, Optional, Union

import jax
import numpy as np
from ml_collections import config_dict
import orbax.checkpoint as ocp

from mimex_jax import agents
from mimex_jax import checkpoint as checkpoint_lib
from mimex_jax.config_checks import ConfigError, check_env_name

Checkpoint = Optional[Union[int, str]]  # an update number, "latest", "best" or None (latest)


@dataclasses.dataclass
class LoadedRun:
  config: config_dict.ConfigDict
  env: Any  # mimex_jax.envs.Env
  fused: Any  # the fused step that trained it (for its policy and normalizer)
  update: int  # updates done when the checkpoint was saved
  env_steps: int
  policy_args: Any  # one device's `fused.POLICY_FIELDS` of the train state
  path: str

  def act(self, obs: jax.Array) -> jax.Array:
    return self.fused.deterministic_policy(self.policy_args, obs)


def resolve(workdir: str, checkpoint: Checkpoint = None):
  """`(checkpointer, update)` for `checkpoint` of the run in `workdir`."""
  directory = checkpoint_lib.checkpoint_dir(workdir)
  if not os.path.exists(workdir):
    raise checkpoint_lib.CheckpointError(
        f"{workdir} does not exist; give the --workdir of a training run")
  if not os.path.isdir(directory):
    raise checkpoint_lib.CheckpointError(
        f"{workdir} holds no checkpoints/ folder; train first with "
        f"`python -m mimex_jax.train --config=... --workdir={workdir}`")
  checkpointer = checkpoint_lib.Checkpointer(directory, read_only=True)
  steps = checkpointer.steps()
  if not steps:
    raise checkpoint_lib.CheckpointError(f"no checkpoint in {directory}")
  if checkpoint is None or checkpoint == "latest":
    return checkpointer, steps[-1]
  if checkpoint == "best":
    best = checkpointer.best_step()
    if best is None:
      raise checkpoint_lib.CheckpointError(
          f"no checkpoint in {directory} was saved at an evaluation; use latest or one of "
          f"{steps}")
    return checkpointer, best
  if str(checkpoint).isdigit() and int(checkpoint) in steps:
    return checkpointer, int(checkpoint)
  raise checkpoint_lib.CheckpointError(
      f"checkpoint {checkpoint!r} is not in {directory}; choose latest, best or one of {steps}")


def load(workdir: str, checkpoint: Checkpoint = None, seed: int = 0, log=None) -> LoadedRun:
  """Restores the policy of `checkpoint` with the env and config it was trained with; `seed`
  picks one of a multi-seed run's seeds (0 to num_seeds - 1).

  For the latest checkpoint, a damaged one is reported through `log` (default: stderr) and the
  one before it is used; the workdir is only read. A damaged checkpoint asked for by number or
  as "best" is a `CheckpointError`.
  """
  log = log or (lambda message: print(message, file=sys.stderr))
  checkpointer, update = resolve(workdir, checkpoint)
  latest = checkpoint is None or checkpoint == "latest"
  candidates = [s for s in reversed(checkpointer.steps()) if s <= update] if latest else [update]
  problems = []
  for step in candidates:
    try:
      return _load_update(checkpointer, step, seed)
    except _Damaged as e:
      reason = str(e)
      path = os.path.join(checkpointer.directory, str(step))
      if not latest:
        raise checkpoint_lib.CheckpointError(
            f"checkpoint {path} is damaged or incomplete ({reason}); choose another one of "
            f"{list(checkpointer.steps())}") from e
      problems.append(f"{step}: {reason}")
      log(f"checkpoint {path} is damaged or incomplete ({reason}); using the one before it")
  raise checkpoint_lib.CheckpointError(
      f"no usable checkpoint in {checkpointer.directory} ({'; '.join(problems)})")


class _Damaged(Exception):
  """A checkpoint's files do not read back; the message is the first line of why."""


def _load_update(checkpointer, update: int, seed: int) -> LoadedRun:
  try:
    meta = checkpointer.read_meta(update)
  except Exception as e:  # damaged files show up as many different exception types
    raise _Damaged(checkpoint_lib.damage_reason(e)) from e
  # An older run's config lacks keys added since; they take the values it trained with.
  config = config_dict.ConfigDict(checkpoint_lib.with_added_keys(meta["config"]))
  num_seeds = config.get("num_seeds", 1)
  if not 0 <= seed < num_seeds:
    raise checkpoint_lib.CheckpointError(
        f"seed {seed} is not in this run; it trained seeds 0 to {num_seeds - 1}")
  _find_task(config, checkpointer.directory)
  env, fused, steps_per_update, _ = agents.build(config)  # built as in training
  # Only the policy's parts are read, so a run saved on 8 devices loads on 1.
  key = jax.random.PRNGKey(0)
  abstract = jax.eval_shape(fused.init, key, key)
  fields = fused.POLICY_FIELDS
  saved_devices = meta["num_devices"] * meta.get("num_processes", 1)  # rows over all hosts
  item = jax.tree.map(lambda s: np.zeros((saved_devices, num_seeds) + s.shape, s.dtype),
                      {f: getattr(abstract, f) for f in fields})
  try:
    restored = checkpointer.manager.restore(update, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            item=item, partial_restore=True,
            restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item))
    ))["state"]
  except Exception as e:  # as above
    raise _Damaged(checkpoint_lib.damage_reason(e)) from e
  policy_args = jax.tree.map(lambda x: x[0, seed], tuple(restored[f] for f in fields))
  return LoadedRun(config=config, env=env, fused=fused, update=update,
                   env_steps=update * steps_per_update, policy_args=policy_args,
                   path=os.path.join(checkpointer.directory, str(update)))


def _find_task(config: config_dict.ConfigDict, where: str) -> None:
  """Imports the modules the run named in `env.imports` and checks its task is known, so a run
  on a task of the user's own loads like any other, and a missing module is one clear error."""
  try:
    check_env_name(config)
  except ConfigError as e:
    raise checkpoint_lib.CheckpointError(f"cannot rebuild the task the run in {where} "
                                         f"trained on: {e}") from e


def load_policy(workdir: str, checkpoint: Checkpoint = None,
                seed: int = 0) -> Callable[[Any], jax.Array]:
  """A jitted `policy(obs) -> action`: the deterministic (mean) action for raw observations,
  `[obs_size]` or batched `[..., obs_size]`."""
  run = load(workdir, checkpoint, seed)
  return jax.jit(functools.partial(run.fused.deterministic_policy, run.policy_args))
