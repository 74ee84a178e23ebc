"""Checkpoints: a run killed (SIGKILL) or stopped (SIGTERM) and resumed ends exactly where the
uninterrupted run ends; damaged checkpoints are skipped; other configs and NaNs are refused."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mimex_jax import checkpoint as checkpoint_lib
from mimex_jax.metrics import read_metrics

from cli_runner import run_train
from conftest import CHECKPOINTED_RUN_ARGS as RUN_ARGS, CHECKPOINTED_UPDATES as UPDATES, ENV

TIMING = ("steps_per_second", "compile_seconds")  # wall-clock figures differ between runs


def _args(workdir, *extra):
  return [*RUN_ARGS, f"--workdir={workdir}", *extra]


def _run(repo_root, workdir, *extra):
  return run_train(_args(workdir, *extra), repo_root)


def _saved_steps(workdir):
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def _interrupt(repo_root, workdir, signum, after_update):
  """Starts a run and sends `signum` as soon as a checkpoint past `after_update` is complete."""
  process = subprocess.Popen([sys.executable, "-m", "mimex_jax.train", *_args(workdir)],
                             cwd=repo_root, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 600
  while not any(s > after_update for s in _saved_steps(workdir)):
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert time.time() < deadline
    time.sleep(0.005)
  process.send_signal(signum)
  stdout, stderr = process.communicate(timeout=600)
  return process.returncode, stdout, stderr


def _final_state(workdir):
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                             read_only=True)
  update = max(checkpointer.steps())
  state = checkpointer.manager.restore(update)["state"]
  return update, state


def _records(workdir):
  return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(workdir)]


@pytest.mark.slow  # three CLI runs: killed, stopped by a signal, resumed
def test_killed_then_stopped_then_resumed_run_equals_uninterrupted_run(repo_root, uninterrupted,
                                                                        tmp_path):
  workdir = str(tmp_path / "interrupted")
  # 1. SIGKILL: no chance to save; the run resumes from its last periodic checkpoint.
  code, _, _ = _interrupt(repo_root, workdir, signal.SIGKILL, after_update=0)
  assert code == -signal.SIGKILL
  killed_at = max(_saved_steps(workdir))
  assert killed_at < UPDATES, "the run ended before it could be killed"
  # 2. The resumed run gets SIGTERM: it saves where it is and exits 0.
  code, stdout, stderr = _interrupt(repo_root, workdir, signal.SIGTERM, after_update=killed_at)
  assert code == 0, stderr[-3000:]
  assert f"resuming from {workdir}/checkpoints/{killed_at}" in stderr
  assert "stopped by SIGTERM" in stdout and "run the same command to resume" in stdout
  stopped_at = max(_saved_steps(workdir))
  assert killed_at < stopped_at < UPDATES, (killed_at, stopped_at)
  assert f"checkpoint saved to {workdir}/checkpoints/{stopped_at}" in stdout
  # 3. Resume to the end.
  result = _run(repo_root, workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resuming from {workdir}/checkpoints/{stopped_at}" in result.stderr

  assert _records(workdir) == _records(uninterrupted)
  update, state = _final_state(workdir)
  reference_update, reference = _final_state(uninterrupted)
  assert update == reference_update == UPDATES
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  reference_leaves = dict(jax.tree_util.tree_flatten_with_path(reference)[0])
  assert len(leaves) == len(reference_leaves) > 50
  for path, leaf in leaves:
    np.testing.assert_array_equal(leaf, reference_leaves[path],
                                  err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow  # a CLI training; test_cli and test_faults resume through the CLI fast
def test_restore_flag_starts_a_new_workdir_from_a_given_checkpoint(repo_root, uninterrupted,
                                                                    tmp_path):
  workdir = str(tmp_path / "restored")
  result = _run(repo_root, workdir, f"--restore={uninterrupted}/checkpoints/50")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resuming from {uninterrupted}/checkpoints/50" in result.stderr
  # Updates 51-60 are those of the uninterrupted run, number for number.
  assert _records(workdir) == [r for r in _records(uninterrupted) if r["step"] > 50 * 16 * 8]
  _, state = _final_state(workdir)
  _, reference = _final_state(uninterrupted)
  for leaf, reference_leaf in zip(jax.tree.leaves(state), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(leaf, reference_leaf)


def test_checkpoint_of_another_config_is_refused_naming_the_keys(repo_root, uninterrupted):
  before = open(os.path.join(uninterrupted, "metrics.jsonl")).read()
  result = _run(repo_root, uninterrupted, "--config.intrinsic.embed_dim=32",
                "--config.intrinsic.kind=none")
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if "error:" in line]
  assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  assert "intrinsic.embed_dim=16 in the checkpoint vs 32 now" in errors[0]
  assert "intrinsic.kind='mimex' in the checkpoint vs 'none' now" in errors[0]
  assert "num_envs" not in errors[0]  # only what differs is named
  assert open(os.path.join(uninterrupted, "metrics.jsonl")).read() == before


def test_missing_restore_path_is_one_line(repo_root, tmp_path):
  result = _run(repo_root, str(tmp_path / "new"), f"--restore={tmp_path}/nowhere")
  assert result.returncode == 2
  assert f"--restore={tmp_path}/nowhere does not exist" in result.stderr
  assert "Traceback" not in result.stderr


def _damage(directory):
  """Cuts every file of a checkpoint's state in half, as a crash of the storage might."""
  damaged = 0
  for root, _, files in os.walk(os.path.join(directory, "state")):
    for name in files:
      path = os.path.join(root, name)
      size = os.path.getsize(path)
      with open(path, "r+b") as f:
        f.truncate(size // 2)
      damaged += 1
  assert damaged


@pytest.fixture(scope="module")
def smoke_template(smoke_config):
  """A freshly initialized smoke-config train state: what a restore fills in."""
  from mimex_jax.agents import build
  from mimex_jax.train import seeded_training
  _, fused, _, _ = build(smoke_config)
  return seeded_training(smoke_config, fused)[1]


def test_damaged_latest_checkpoint_falls_back_to_the_one_before(uninterrupted, tmp_path,
                                                                smoke_template):
  import shutil
  template = smoke_template
  directory = str(tmp_path / "checkpoints")
  shutil.copytree(os.path.join(uninterrupted, "checkpoints"), directory)
  _damage(os.path.join(directory, "60"))
  messages = []
  checkpointer = checkpoint_lib.Checkpointer(directory, read_only=True)
  update, state, meta = checkpointer.restore(template, log=messages.append)
  assert update == 50 and meta["update"] == 50
  assert len(messages) == 1 and f"{directory}/60 is damaged or incomplete" in messages[0]
  assert int(state.update_step[0, 0]) == 50
  _, intact_state, _ = checkpoint_lib.Checkpointer(
      os.path.join(uninterrupted, "checkpoints"), read_only=True).restore(template, update=50)
  for leaf, intact in zip(jax.tree.leaves(state), jax.tree.leaves(intact_state)):
    np.testing.assert_array_equal(leaf, intact)
  # All damaged: one clear error, not a traceback from deep inside Orbax.
  for step in checkpointer.steps():
    _damage(os.path.join(directory, str(step)))
  with pytest.raises(checkpoint_lib.CheckpointError, match="no usable checkpoint"):
    checkpointer.restore(template, log=messages.append)


def _garble(path):
  with open(path, "wb") as f:
    f.write(b"not a checkpoint")


def _empty(directory):
  for name in os.listdir(directory):
    path = os.path.join(directory, name)
    import shutil
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


DAMAGE = {  # the ways of damaging a checkpoint that were found in the wild
    "data file": lambda d: [_garble(os.path.join(root, name)) for root, _, names in
                            os.walk(os.path.join(d, "state", "d")) for name in names],
    "_METADATA": lambda d: _garble(os.path.join(d, "state", "_METADATA")),
    "meta": lambda d: _garble(os.path.join(d, "meta", "metadata")),
    "emptied": _empty,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_set_aside_so_its_update_can_be_saved_again(
    uninterrupted, tmp_path, smoke_template, damage):
  import shutil
  directory = str(tmp_path / "checkpoints")
  shutil.copytree(os.path.join(uninterrupted, "checkpoints"), directory)
  DAMAGE[damage](os.path.join(directory, "60"))
  # Read only (evaluation, --restore): skipped, left where it is.
  messages = []
  reader = checkpoint_lib.Checkpointer(directory, read_only=True)
  assert reader.restore(smoke_template, log=messages.append)[0] == 50
  assert "trying the one before it" in messages[0] and "moved" not in messages[0]
  assert 60 in reader.steps()
  reader.close()
  # A training run's checkpointer moves it aside and can then save update 60 again.
  messages = []
  checkpointer = checkpoint_lib.Checkpointer(directory)
  update, state, meta = checkpointer.restore(smoke_template, log=messages.append)
  assert update == 50 and len(messages) == 1
  assert f"moved it to {directory}/60.damaged; trying the one before it" in messages[0]
  assert 60 not in checkpointer.steps() and os.path.isdir(f"{directory}/60.damaged")
  checkpointer.save(60, checkpoint_lib.to_devices(state, smoke_template), meta)
  checkpointer.wait()
  assert checkpointer.restore(smoke_template, log=messages.append)[0] == 60
  checkpointer.close()


def test_nan_in_a_loss_stops_the_run_and_keeps_the_last_good_checkpoint(smoke_config, tmp_path,
                                                                        monkeypatch):
  import jax.numpy as jnp
  from mimex_jax import parallel
  from mimex_jax.train import train_and_evaluate
  original = parallel.pmap_step

  def poisoned(step_fn, **kwargs):  # the 5th update's value loss comes back NaN
    step, calls = original(step_fn, **kwargs), []

    def call(state, keys):
      new_state, metrics = step(state, keys)
      calls.append(1)
      if len(calls) == 5:  # poisoned outside the step: the smoke step's compiled program serves
        metrics = {**metrics, "value_loss": metrics["value_loss"] * jnp.nan}
      return new_state, metrics
    return call

  monkeypatch.setattr(parallel, "pmap_step", poisoned)
  workdir = str(tmp_path / "nan")
  with pytest.raises(checkpoint_lib.NonFiniteError) as error:
    train_and_evaluate(smoke_config, workdir, show_progress=False)
  message = str(error.value)
  assert "value_loss is nan at update 5 (env step 640)" in message
  assert f"last good checkpoint: {workdir}/checkpoints/3" in message
  assert _saved_steps(workdir) == [3]  # update 6 was not saved
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                             read_only=True)
  state = checkpointer.manager.restore(3)["state"]
  assert checkpoint_lib.first_non_finite(state["params"], "params") is None


def test_save_refuses_non_finite_parameters(smoke_config, tmp_path):
  from mimex_jax import parallel
  from mimex_jax.agents import build
  _, fused, _, _ = build(smoke_config)
  state = parallel.pmap_init(fused.init, jax.random.PRNGKey(0))
  policy = state.params.policy
  policy["params"]["log_std"] = policy["params"]["log_std"] * np.inf
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path / "c"))
  with pytest.raises(checkpoint_lib.NonFiniteError, match=r"state.*log_std.*not finite"):
    checkpointer.save(1, state, {})
  checkpointer.wait()
  assert checkpointer.steps() == []


def test_keeps_the_latest_checkpoints_and_the_best_evaluation(smoke_config, tmp_path):
  from mimex_jax import parallel
  from mimex_jax.agents import build
  _, fused, _, _ = build(smoke_config)
  state = parallel.pmap_init(fused.init, jax.random.PRNGKey(0))
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path / "c"), max_to_keep=2)
  evaluations = {1: (0.5, 10.0), 2: None, 3: (1.0, 3.0), 4: (1.0, 2.0), 5: None, 6: (0.0, 50.0)}
  for update, evaluation in evaluations.items():
    metrics = None if evaluation is None else {"eval_success_rate": evaluation[0],
                                               "eval_return": evaluation[1]}
    checkpointer.save(update, state, {"config": {}}, metrics)
  checkpointer.wait()
  # Success rate ranks first, return breaks the tie between updates 3 and 4.
  assert checkpointer.steps() == [3, 5, 6]
  assert checkpointer.best_step() == 3


def test_resume_on_another_device_count_is_refused(smoke_config, tmp_path):
  from mimex_jax import parallel
  from mimex_jax.agents import build
  _, fused, _, _ = build(smoke_config)
  state = parallel.pmap_init(fused.init, jax.random.PRNGKey(0))
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path / "c"))
  config = checkpoint_lib.config_to_dict(smoke_config)
  checkpointer.save(1, state, {"config": config})
  checkpointer.wait()
  checkpointer.check_compatible(config, num_devices=2)  # the same: accepted
  with pytest.raises(checkpoint_lib.CheckpointError,
                     match="written on 2 local devices and this process has 1"):
    checkpointer.check_compatible(config, num_devices=1)


def test_abandoned_reads_of_a_damaged_checkpoint_are_not_reported_again():
  """One failed read of a damaged checkpoint is reported once (the fallback line); asyncio's
  later report of its abandoned sibling reads is dropped, and nothing else is."""
  import logging
  log_filter = checkpoint_lib._StorageErrorLogFilter()
  damaged = ValueError("DATA_LOSS: Error reading local file")

  def record(name, message, error=None):
    exc_info = (type(error), error, None) if error else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, (), exc_info)

  assert not log_filter.filter(record("asyncio", "Task exception was never retrieved", damaged))
  assert log_filter.filter(record("asyncio", "Task was destroyed but it is pending!"))
  assert log_filter.filter(record("absl", "restore failed", damaged))  # not a storage error
  assert not log_filter.filter(record("absl", "write failed", OSError(28, "No space left")))


def test_keys_added_since_a_run_was_saved_resume_at_their_old_behaviour():
  saved = {"seed": 0, "ppo": {"learning_rate": 1e-3}, "env": {"name": "CartpoleBalance"}}
  current = {"seed": 0, "ppo": {"learning_rate": 1e-3, "squash_mean": False, "min_std": 0.0},
             "env": {"name": "CartpoleBalance", "imports": ""}}
  assert checkpoint_lib.config_differences(saved, current) == []
  # A new key set to something the saved run did not do is a real difference.
  current["ppo"]["squash_mean"] = True
  assert checkpoint_lib.config_differences(saved, current) == [
      "ppo.squash_mean absent in the checkpoint (False before the key existed) vs True now"]
