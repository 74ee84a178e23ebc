r"""Training: `train_and_evaluate(config, workdir)` trains the learner `config.agent` names.

The host loop only calls the fused, pmapped update step, logs, checkpoints and evaluates; all
learning happens inside the step (`agents/<name>/train_step.py`), built by the learner's
`builder.py`. The command line is `mimex_jax.cli` (`python -m mimex_jax.train` runs it).
"""

import os
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Optional

import jax

from mimex_jax import agents, parallel
from mimex_jax import checkpoint as checkpoint_lib
from mimex_jax import metrics as metrics_lib
from mimex_jax.compilation import enable_compilation_cache
from mimex_jax.config_checks import ConfigError
from mimex_jax.device_memory import device_memory_problem
from mimex_jax.evaluate import make_evaluator
from mimex_jax.preemption import PreemptionGuard
from mimex_jax.workdir_lock import WorkdirLock


# ------------------------------------------------------------------------------ seeds
def over_seeds(step_fn, num_seeds: int, vmappable: bool = True):
  """`step_fn` on states with a leading seed axis: vmapped for several seeds; for one, the axis is
  dropped and restored around the call instead. Vmapping a size-1 axis of parameters turns every
  convolution into a grouped one, which XLA's CPU backend runs about 10x slower (DrQ's encoder:
  1.2 s instead of 0.1 s per update, measured on 2 cores). With `vmappable=False` (an env whose
  renderer draws a fixed batch, which no outer vmap may widen) several seeds run one by one."""
  if num_seeds > 1 and vmappable:
    return jax.vmap(step_fn)
  if num_seeds > 1:
    return lambda state, key: jax.lax.map(lambda args: step_fn(*args), (state, key))

  def single(state, key):
    out = step_fn(jax.tree.map(lambda x: x[0], state), key[0])
    return jax.tree.map(lambda x: x[None], out)
  return single


def seeded_training(config: Any, fused, vmappable: bool = True):
  """`(seed_keys [S, 2], state, step_fn, step_keys)`: `config.num_seeds` independent seeds in one
  program, vmapped inside the pmap (see `over_seeds`). Seed s uses `PRNGKey(config.seed + s)`,
  so it is the run that `--config.seed=<seed + s> --config.num_seeds=1` trains."""
  seed_keys = jax.numpy.stack([jax.random.PRNGKey(config.seed + s)
                               for s in range(config.num_seeds)])
  state = parallel.pmap_init_seeds(fused.init, seed_keys, vmappable)
  step_fn = parallel.pmap_step(over_seeds(fused, config.num_seeds, vmappable))
  step_keys = jax.numpy.stack([jax.vmap(lambda k: jax.random.fold_in(k, 1))(seed_keys)]
                              * jax.local_device_count())
  return seed_keys, state, step_fn, step_keys


# ------------------------------------------------------------------------------ the loop
def train_and_evaluate(config: Any, workdir: str, show_progress: bool = True,
                       restore_path: Optional[str] = None,
                       on_workdir_ready: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
  """Trains for `config.total_steps` env steps; returns the last logged metrics.

  Resumes from the latest checkpoint in `workdir` if there is one (else from `restore_path`).
  SIGTERM or SIGINT stops after the current update with a checkpoint (`result["preempted"]`).
  `show_progress=False` hides the progress bar only (metrics are written all the same);
  `on_workdir_ready` is called once the config passed its checks and the workdir exists.
  A workdir that cannot be written is a `ConfigError`; a write that fails during the run (e.g.
  a full disk) a `checkpoint.WriteError`, after the unfinished save is cleared away.
  """
  # ---------------------------------------------------------------- checks and output
  if config.get("distributed", False):  # before anything asks JAX for its devices
    try:
      parallel.initialize_distributed()
    except parallel.DistributedSetupError as e:
      raise ConfigError(str(e)) from e
  agents.check(config, jax.device_count(), jax.default_backend())
  problem = workdir_problem(workdir)
  if problem is not None:
    raise ConfigError(problem)
  lock = WorkdirLock(workdir)
  if jax.process_index() == 0:  # the processes of one multi-process run share the workdir
    lock.acquire()  # WorkdirBusyError (exit code 5) while another run trains in it
  try:
    if on_workdir_ready is not None:
      on_workdir_ready()
    enable_compilation_cache()
    checkpointer = checkpoint_lib.Checkpointer(
        checkpoint_lib.checkpoint_dir(workdir), max_to_keep=config.checkpoint.max_to_keep,
        keep_best=config.checkpoint.keep_best, async_save=config.checkpoint.async_save)
    try:
      try:
        return _train(config, workdir, checkpointer, restore_path, show_progress)
      finally:  # a save in flight completes, also when training failed
        checkpointer.wait()
    except Exception as e:  # pylint: disable=broad-except  (re-raised unless the disk failed)
      failure = checkpoint_lib.storage_error(e)
      if failure is None:
        raise
      raise checkpoint_lib.WriteError(_write_failure_message(failure, checkpointer)) from e
    finally:
      checkpointer.close()
  finally:
    lock.release()


def workdir_problem(workdir: str) -> Optional[str]:
  """Why `workdir` cannot hold a run (a file, a read-only or virtual filesystem), or None.
  Creates it if need be."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    return f"--workdir={workdir} is a file, not a folder"
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):  # a folder can exist and still refuse files
      pass
  except OSError as e:
    return f"--workdir={workdir} cannot be written: {e.strerror or e}"
  return None


def _write_failure_message(failure: OSError, checkpointer) -> str:
  """One line: what could not be written, the checkpoint to resume from, and the unfinished
  save that was cleared away (a resume would otherwise meet it)."""
  removed = checkpointer.remove_partial_saves() if jax.process_index() == 0 else []
  steps = checkpointer.steps()
  last_good = f"{checkpointer.directory}/{steps[-1]}" if steps else "none"
  unfinished = [os.path.basename(path).split(".")[0] for path in removed]
  if unfinished:
    what = f"cannot save checkpoint {checkpointer.directory}/{','.join(unfinished)}"
  else:
    what = f"cannot write {failure.filename or 'to the workdir'}"
  cleared = "; removed its unfinished files" if removed else ""
  return (f"{what}: {failure.strerror or failure} (errno {failure.errno}); training stopped; "
          f"last good checkpoint: {last_good}{cleared}")


def _train(config, workdir: str, checkpointer, restore_path: Optional[str],
           show_progress: bool) -> Dict[str, Any]:
  is_main = jax.process_index() == 0
  source, source_update = _restore_source(checkpointer, restore_path)
  # As it trains here (e.g. DrQ's bonus_encoder=auto made): what checkpoints record and compare.
  config_dict = agents.resolve(checkpoint_lib.config_to_dict(config), jax.default_backend())
  if source is not None:
    source.check_compatible(config_dict, jax.local_device_count(), source_update,
                            jax.process_count())

  # ---------------------------------------------------------------- model and step
  env, fused, steps_per_update, total_updates = agents.build(config)
  if is_main and total_updates * steps_per_update != config.total_steps:
    print(f"total_steps={config.total_steps} is not a whole number of updates of "
          f"{steps_per_update} env steps each: training runs {total_updates} update"
          f"{'s' if total_updates > 1 else ''}, {total_updates * steps_per_update} env steps",
          file=sys.stderr)
  memory_problem = device_memory_problem(config, fused)
  if memory_problem is not None:
    raise ConfigError(memory_problem)
  vmappable = seeds_vmappable(config, env, jax.default_backend())
  seed_keys, state, step_fn, step_keys = seeded_training(config, fused, vmappable)

  # ---------------------------------------------------------------- restore
  window = metrics_lib.LogWindow(config.num_seeds)
  start = 0
  if source is not None:
    start, host_state, meta = source.restore(state, source_update)
    state = checkpoint_lib.to_devices(host_state, state)
    window.load(meta["log_window"])
    if is_main:
      print(f"resuming from {source.directory}/{start} (update {start} of {total_updates}, "
            f"env step {start * steps_per_update})", file=sys.stderr)
    if is_main and meta.get("replay_left_out"):
      print(f"the replay buffer was not saved in {source.directory}/{start} "
            f"(checkpoint.include_replay=False): it starts empty, and learning resumes at "
            f"update {start + fused.refill_updates()}, once it holds {fused.refill_frames} "
            f"frames again (drq.learning_starts, at most a full buffer)", file=sys.stderr)
  if is_main:  # lines past the start belong to a run that did not save them (or a fresh start)
    metrics_lib.truncate_metrics(workdir, start * steps_per_update)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))

  evaluator = jax.jit(over_seeds(make_evaluator(env, config.eval_episodes,
                                                fused.deterministic_policy),
                                 config.num_seeds, vmappable))
  # The policy as it acts (sampled actions) beside its mean action: a policy can lean on its
  # noise, and then only this one succeeds (issue 27).
  sampled_evaluator = None
  if config.get("eval_sampled", False) and hasattr(fused, "sampled_policy"):
    sampled_evaluator = jax.jit(over_seeds(make_evaluator(env, config.eval_episodes,
                                                          fused.sampled_policy, sampled=True),
                                           config.num_seeds, vmappable))

  def evaluate(state, update):
    """`{name: [value per seed]}` of deterministic episodes."""
    policy_args = parallel.unreplicate(tuple(getattr(state, f) for f in fused.POLICY_FIELDS))
    # Device 0's copy still spans every device (replicated), which would run the evaluation
    # on each of them, and Warp's renderer cannot be split that way at all: one device.
    policy_args = jax.device_put(policy_args, jax.local_devices()[0])
    keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, 2), update))(seed_keys)
    result = {k: [float(x) for x in v] for k, v in jax.device_get(evaluator(policy_args,
                                                                            keys)).items()}
    if sampled_evaluator is not None:
      sampled = jax.device_get(sampled_evaluator(policy_args, keys))
      result["eval_sampled_return"] = [float(x) for x in sampled["eval_return"]]
      result["eval_sampled_success_rate"] = [float(x) for x in sampled["eval_success_rate"]]
    return result

  # ---------------------------------------------------------------- loop
  writer = metrics_lib.MetricsWriter(workdir, total_updates * steps_per_update,
                                     enabled=is_main, initial_step=start * steps_per_update,
                                     show_progress=show_progress)
  pending = []  # device metrics not fetched yet (fetching every update would stall the devices)
  window_start, window_updates = time.time(), 0
  compile_seconds = None
  last_checkpoint = f"{checkpointer.directory}/{start}" if source is checkpointer else "none"
  last: Dict[str, Any] = {}
  preempted = None
  try:
    with PreemptionGuard() as preemption:
      for update in range(start + 1, total_updates + 1):
        state, step_metrics = step_fn(state, step_keys)
        pending.append((update, step_metrics))
        if len(pending) > 1:
          # At most two updates in flight: dispatch alone would queue a whole log window, and a
          # stop asked for then waits for all of it (11 minutes at 66 s an update, seen on
          # pixel PPO); the device still has the newest update to run while Python waits.
          jax.block_until_ready(pending[-2][1])
        if update == start + 1:  # the first call compiles; keep it out of the throughput
          jax.block_until_ready(step_metrics)
          compile_seconds = time.time() - window_start
          window_start, window_updates = time.time(), 0
        else:
          window_updates += 1
        preempted = preemption.requested
        if jax.process_count() > 1 and (update % config.log_every == 0
                                        or update == total_updates):
          # Processes agree at log steps only: each agreement waits for the step to finish.
          preempted = parallel.stop_requested_anywhere(preempted, step_metrics)
        elif jax.process_count() > 1:
          preempted = None
        is_eval = (config.eval_every and update % config.eval_every == 0) or (
            update == total_updates)
        is_log = update % config.log_every == 0 or is_eval
        is_checkpoint = preempted or update == total_updates or (
            config.checkpoint.every and update % config.checkpoint.every == 0)
        if is_log or is_checkpoint:
          for u, m in pending:
            window.add(u, _host_metrics(m))
          pending = []
          _check_finite(window, steps_per_update, last_checkpoint, config)
        eval_metrics = evaluate(state, update) if is_eval else None
        if is_log:
          elapsed = time.time() - window_start
          scalars, per_seed = window.summarize(eval_metrics)
          # Throughput counts the env steps of all seeds; `step` is each seed's own count.
          scalars["steps_per_second"] = (
              window_updates * steps_per_update * config.num_seeds / elapsed
              if window_updates else None)
          scalars["compile_seconds"] = compile_seconds
          writer.write(update * steps_per_update, scalars, per_seed)
          last = {"step": update * steps_per_update, **scalars}
          if config.num_seeds > 1:
            last["per_seed"] = per_seed
          window_start, window_updates = time.time(), 0
        if is_checkpoint:
          best_score = None if eval_metrics is None else {  # the best seed's evaluation
              k: max(v) for k, v in eval_metrics.items()}
          checkpointer.save(update, state, {"config": config_dict,
                                            "log_window": window.dump()}, best_score,
                            include_replay=config.checkpoint.get("include_replay", True))
          last_checkpoint = f"{checkpointer.directory}/{update}"
        if preempted:
          break
  finally:
    writer.close()
  last["checkpoint"] = last_checkpoint
  if preempted:
    last.update(preempted=preempted, step=update * steps_per_update)
    return last
  if start >= total_updates:
    return {**last, "step": start * steps_per_update, "already_trained": True}
  if is_main:
    last["plot"] = metrics_lib.plot_learning_curve(
        workdir, f"{config.env.name}, {config.get('agent', 'ppo').upper()} + "
        f"{config.intrinsic.kind}")
  return last


# ------------------------------------------------------------------------------ helpers
def seeds_vmappable(config: Any, env, platform: str) -> bool:
  """Whether `config.num_seeds` seeds share one vmapped program; if not they run one by one in
  it (`over_seeds`), still compiled once. Not with a renderer that draws a fixed batch (warp
  pixels), and not DrQ or PPO's conv torso on CPU: vmapped seeds make convolutions grouped ones
  (about 10x slower on XLA's CPU backend), and two pixel seeds of DrQ, or five state seeds with
  MIMEx, stopped advancing at 0% CPU before their first update (jax 0.10.2, 2 cores)."""
  if not renders_any_batch(env):
    return False
  env, ppo = config.get("env") or {}, config.get("ppo") or {}
  convolutions = config.get("agent", "ppo") == "drq" or (
      env.get("obs_type", "state") == "pixels" and ppo.get("encoder") == "conv")
  return not (convolutions and platform == "cpu")


def renders_any_batch(env) -> bool:
  """False for an env whose renderer draws a fixed number of worlds (warp pixels): it runs
  under the vmap over its own envs, and a second vmap (over seeds) would widen that batch."""
  return getattr(env.backend, "fixed_batch", None) is None


def _restore_source(checkpointer, restore_path: Optional[str]):
  """Where to start from: this workdir's latest checkpoint if it has one, else `restore_path`
  (a run's workdir, its checkpoints/ folder or one checkpoint inside), else nowhere."""
  if checkpointer.steps():
    return checkpointer, None
  if not restore_path:
    return None, None
  path = os.path.abspath(restore_path)
  if not os.path.exists(path):
    raise checkpoint_lib.CheckpointError(f"--restore={restore_path} does not exist")
  name = os.path.basename(path.rstrip(os.sep))
  if name.isdigit() and os.path.isdir(path):
    return checkpoint_lib.Checkpointer(os.path.dirname(path), read_only=True), int(name)
  folder = checkpoint_lib.CHECKPOINT_DIR
  if os.path.isdir(os.path.join(path, folder)):
    path = os.path.join(path, folder)
  source = checkpoint_lib.Checkpointer(path, read_only=True)
  if not source.steps():
    raise checkpoint_lib.CheckpointError(f"--restore={restore_path} holds no checkpoint; give a "
                                         f"workdir, its {folder}/ folder or {folder}/<update>")
  return source, None


def _host_metrics(device_metrics) -> Dict[str, list]:
  """Device 0's copy of one update's metrics, `{name: [value per seed]}` as Python floats (the
  same numbers on every device, since the step takes cross-device means and sums)."""
  host = parallel.unreplicate(jax.device_get(device_metrics))
  return {k: [float(x) for x in v] for k, v in host.items()}


def _check_finite(window, steps_per_update: int, last_checkpoint: str, config: Any) -> None:
  problem = window.non_finite()
  if problem is not None:
    name, value, update = problem
    # A changed config cannot resume a checkpoint (check_compatible), so the advice is never
    # "resume": with no checkpoint yet the same workdir starts afresh, else a new one does.
    again = ("run again" if last_checkpoint == "none" else "start again in a new --workdir "
             "(a checkpoint resumes only with the config it was written with)")
    raise checkpoint_lib.NonFiniteError(
        f"{name} is {value} at update {update} (env step {update * steps_per_update}); "
        f"training stopped; last good checkpoint: {last_checkpoint}. Lower "
        f"{_or_list(_step_size_keys(config))} and {again}")


def _step_size_keys(config: Any) -> list:
  """The config keys that scale the updates: the learner's learning rate, the intrinsic
  model's and the bonus weight, when there is a bonus."""
  keys = [f"{config.get('agent', 'ppo')}.learning_rate"]
  kind = config.intrinsic.kind
  if kind != "none":
    keys.append("intrinsic.learning_rate" if kind == "mimex" else f"intrinsic.{kind}.learning_rate")
    keys.append("intrinsic.k_expl")
  return keys


def _or_list(items: list) -> str:
  return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


if __name__ == "__main__":
  # Run as a script this file is `__main__`, not `mimex_jax.train`, so this is no import circle.
  from mimex_jax.cli import run
  run()
