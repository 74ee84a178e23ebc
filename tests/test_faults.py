"""Faults injected into real runs: each ends in one line and a documented exit code, and loses
nothing (README, "Exit codes"). A damaged latest checkpoint, a full disk, no --workdir, the quiet
Python API, warp pixels through training and evaluation."""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from mimex_jax.metrics import read_metrics

from cli_runner import run_module
from conftest import CHECKPOINTED_RUN_ARGS, CHECKPOINTED_UPDATES, ENV

TIMING = ("steps_per_second", "compile_seconds")  # wall-clock figures differ between runs
SMOKE_UPDATES = 6  # configs/ppo.py:smoke: 6 updates of 16 envs x 8 steps
QUIET_EVAL = ("--config.eval_sampled=False",)  # one evaluator less to compile per run


def _run(repo_root, module, *args, cwd=None, env=ENV):
  if env is ENV:  # a forked child of a process that imported the module: no imports
    return run_module(module, args, cwd or repo_root)
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or repo_root, env=env,
                        capture_output=True, text=True, timeout=600)


def _error_lines(stderr):
  return [line for line in stderr.splitlines() if "error:" in line]


def _records(workdir):
  return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(workdir)]


def _listing(directory):
  return sorted(os.listdir(directory))


def _garble(path):
  with open(path, "wb") as f:
    f.write(b"not a checkpoint")


# ------------------------------------------------------------------------------ damaged checkpoint
def test_damaged_latest_checkpoint_is_evaluated_around_then_set_aside_and_retrained(
    repo_root, uninterrupted, tmp_path):
  workdir = str(tmp_path / "damaged")
  shutil.copytree(uninterrupted, workdir, ignore=shutil.ignore_patterns("eval"))
  checkpoints = os.path.join(workdir, "checkpoints")
  latest = os.path.join(checkpoints, str(CHECKPOINTED_UPDATES))
  for root, _, names in os.walk(os.path.join(latest, "state", "d")):  # the arrays' data files
    for name in names:
      _garble(os.path.join(root, name))
  before = _listing(checkpoints)

  # Evaluation uses the checkpoint before it, and only reads the workdir.
  result = _run(repo_root, "mimex_jax.evaluate", f"--workdir={workdir}", "--episodes=2")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"checkpoint {latest} is damaged or incomplete" in result.stderr
  assert "using the one before it" in result.stderr and "Traceback" not in result.stderr
  assert f"({checkpoints}/50)" in result.stdout
  assert _listing(checkpoints) == before

  # Training sets it aside, resumes from 50 and saves 60 again: the same run as never damaged.
  result = _run(repo_root, "mimex_jax.train", *CHECKPOINTED_RUN_ARGS, f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"moved it to {latest}.damaged; trying the one before it" in result.stderr
  assert f"resuming from {checkpoints}/50" in result.stderr
  assert "Traceback" not in result.stderr and "Event loop is closed" not in result.stderr
  assert f"checkpoint {latest};" in result.stdout
  assert os.path.isdir(latest + ".damaged")  # kept for a look, out of Orbax's way
  assert _records(workdir) == _records(uninterrupted)
  # Run again: nothing left to do, nothing damaged in the way.
  result = _run(repo_root, "mimex_jax.train", *CHECKPOINTED_RUN_ARGS, f"--workdir={workdir}")
  assert result.returncode == 0 and "nothing to do" in result.stdout, result.stderr[-3000:]
  assert "is damaged" not in result.stderr


# ------------------------------------------------------------------------------ full disk
# Orbax writes each checkpoint's metadata through this coroutine; raising ENOSPC there for one
# save is what a disk that fills up during that save looks like to the run.
_FULL_DISK_AT_SAVE = """
import errno, sys
from orbax.checkpoint._src.path import async_path
write_text = async_path.write_text
async def full_disk(path, text):
  if "/{update}.orbax-checkpoint-tmp" in str(path):
    raise OSError(errno.ENOSPC, "No space left on device")
  return await write_text(path, text)
async_path.write_text = full_disk
from mimex_jax.cli import run
run(["mimex_jax.train"] + sys.argv[1:])
"""


def _assert_stopped_for_the_disk(result, workdir):
  """Exit code 4, one line naming the newest complete checkpoint, no unfinished save left."""
  assert result.returncode == 4, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  errors = _error_lines(result.stderr)
  assert len(errors) == 1, result.stderr[-3000:]
  assert "No space left on device (errno 28); training stopped" in errors[0]
  assert "run the same command to resume" in errors[0]
  checkpoints = os.path.join(workdir, "checkpoints")
  names = _listing(checkpoints)
  assert not [n for n in names if "tmp" in n], names
  last_good = max(int(n) for n in names if n.isdigit())
  assert f"last good checkpoint: {checkpoints}/{last_good};" in errors[0]
  return last_good


@pytest.mark.long  # the fast suite fills a real (tmpfs) disk below, where it can mount one
def test_disk_full_during_a_save_stops_with_one_line_and_resumes(repo_root, tmp_path):
  workdir = str(tmp_path / "full")
  args = ["--config=configs/ppo.py:smoke", *QUIET_EVAL, "--config.checkpoint.every=1",
          f"--workdir={workdir}"]
  result = subprocess.run([sys.executable, "-c", _FULL_DISK_AT_SAVE.format(update=5), *args],
                          cwd=repo_root, env=ENV, capture_output=True, text=True, timeout=600)
  assert _assert_stopped_for_the_disk(result, workdir) == 4
  assert (f"error: cannot save checkpoint {workdir}/checkpoints/5: No space left on device "
          f"(errno 28); training stopped; last good checkpoint: {workdir}/checkpoints/4; "
          f"removed its unfinished files; when it can be written again, run the same command "
          f"to resume") in result.stderr
  # With room again, the same command goes on from 4 to the end.
  result = _run(repo_root, "mimex_jax.train", *args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resuming from {workdir}/checkpoints/4" in result.stderr
  assert [r["step"] for r in read_metrics(workdir)] == [256, 384, 512, 768]
  assert max(int(n) for n in _listing(os.path.join(workdir, "checkpoints")) if n.isdigit()) == 6


@pytest.fixture
def tiny_filesystem(tmp_path):
  """A 1 MB tmpfs (root may mount one; elsewhere the test is skipped: the slow test above
  injects the same fault through Orbax's writer)."""
  mount_point = tmp_path / "tiny"
  mount_point.mkdir()
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                           capture_output=True, text=True)
  if mounted.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
  yield mount_point
  subprocess.run(["umount", str(mount_point)], check=True)


def test_a_real_full_disk_stops_with_one_line_and_resumes_once_there_is_room(repo_root,
                                                                             tiny_filesystem):
  workdir = str(tiny_filesystem / "run")
  # About 400 kB a checkpoint: the 1 MB disk fills within the 6 saves, none of them deleted.
  args = ["--config=configs/ppo.py:smoke", *QUIET_EVAL, "--config.checkpoint.every=1",
          "--config.checkpoint.max_to_keep=6", f"--workdir={workdir}"]
  last_good = _assert_stopped_for_the_disk(_run(repo_root, "mimex_jax.train", *args), workdir)
  assert 1 <= last_good < SMOKE_UPDATES
  # The disk grows: the same command goes on from the last good checkpoint to the end.
  subprocess.run(["mount", "-o", "remount,size=32m", str(tiny_filesystem)], check=True)
  result = _run(repo_root, "mimex_jax.train", *args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resuming from {workdir}/checkpoints/{last_good}" in result.stderr
  assert read_metrics(workdir)[-1]["step"] == 16 * 8 * SMOKE_UPDATES


# ------------------------------------------------------------------------------ no --workdir
def test_without_workdir_the_folder_is_named_and_the_advice_resumes_it(repo_root, tmp_path):
  """A run with no --workdir says where it writes; stopped by SIGTERM, its advice names that
  folder, and following it resumes (rather than starting a new folder)."""
  env = {**ENV, "PYTHONPATH": repo_root}  # run from another folder, on this checkout
  config = [a.replace("configs/", f"{repo_root}/configs/") for a in CHECKPOINTED_RUN_ARGS]
  process = subprocess.Popen([sys.executable, "-m", "mimex_jax.train", *config], cwd=tmp_path,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 600
  while not glob.glob(str(tmp_path / "runs" / "*" / "checkpoints" / "[0-9]*")):
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert time.time() < deadline
    time.sleep(0.005)
  process.send_signal(signal.SIGTERM)
  stdout, stderr = process.communicate(timeout=600)
  assert process.returncode == 0, stderr[-3000:]
  folder = re.search(r"no --workdir given: writing to (runs/[0-9-]+) ", stderr).group(1)
  assert f"run the same command with --workdir={folder} to resume" in stdout, stdout
  result = run_module("mimex_jax.train", [*config, f"--workdir={folder}"], tmp_path,
                      pythonpath=[repo_root])
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resuming from {tmp_path}/{folder}/checkpoints/" in result.stderr
  assert "no --workdir given" not in result.stderr
  assert os.listdir(tmp_path / "runs") == [os.path.basename(folder)]  # no second folder


# ------------------------------------------------------------------------------ one run per workdir
def test_a_second_run_in_a_busy_workdir_is_refused_and_a_killed_runs_lock_is_not(repo_root,
                                                                                 tmp_path):
  """A requeued job meeting its first copy: refused with one line naming the running process,
  exit code 5, nothing written. Once the first is killed (SIGKILL: no cleanup), the next run
  in the workdir goes ahead."""
  workdir = str(tmp_path / "shared")
  first = subprocess.Popen(
      [sys.executable, "-m", "mimex_jax.train", "--config=configs/ppo.py:smoke", *QUIET_EVAL,
       f"--config.total_steps={16 * 8 * 100_000}", f"--workdir={workdir}"], cwd=repo_root,
      env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  lock = os.path.join(workdir, ".lock")
  deadline = time.time() + 600
  while not (os.path.exists(lock) and f'"pid": {first.pid}' in open(lock).read()):
    assert first.poll() is None, first.communicate()[1][-3000:]
    assert time.time() < deadline
    time.sleep(0.01)
  try:
    before = sorted(os.listdir(workdir))
    second = _run(repo_root, "mimex_jax.train", "--config=configs/ppo.py:smoke", *QUIET_EVAL,
                  f"--workdir={workdir}")
    assert second.returncode == 5, second.stderr[-3000:]
    errors = _error_lines(second.stderr)
    assert len(errors) == 1 and "Traceback" not in second.stderr
    assert f"another run is training in {workdir} (process {first.pid} on host " in errors[0]
    assert second.stdout == ""
    # Nothing of its own: what appeared meanwhile is the first run's (its events, metrics).
    assert set(before) <= set(os.listdir(workdir))
    assert not any("no --workdir" in line for line in second.stderr.splitlines())
  finally:
    first.kill()
    first.wait()
  third = _run(repo_root, "mimex_jax.train", "--config=configs/ppo.py:smoke", *QUIET_EVAL,
               f"--workdir={workdir}")
  assert third.returncode == 0, third.stderr[-3000:]
  steps = [r["step"] for r in read_metrics(workdir)]
  assert steps == sorted(set(steps))  # every log step once


# ------------------------------------------------------------------------------ signals at any moment
def _start_training(repo_root, workdir, env=ENV, stderr=subprocess.PIPE):
  return subprocess.Popen(
      [sys.executable, "-m", "mimex_jax.train", "--config=configs/ppo.py:smoke", *QUIET_EVAL,
       f"--workdir={workdir}"], cwd=repo_root, env=env, stdout=subprocess.PIPE,
      stderr=stderr, text=True)


@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_sigterm_during_the_imports_ends_with_one_line_and_exit_0(repo_root, uninterrupted,
                                                                  tmp_path, with_checkpoint):
  """A scheduler's SIGTERM in the first seconds (the imports take several): one line, exit 0,
  with resume advice when the workdir holds a checkpoint."""
  workdir = tmp_path / "run"
  if with_checkpoint:
    shutil.copytree(uninterrupted, workdir)
  process = _start_training(repo_root, workdir)
  time.sleep(1.5)  # past the interpreter's start, inside the imports of JAX and MJX
  process.send_signal(signal.SIGTERM)
  stdout, stderr = process.communicate(timeout=60)
  assert process.returncode == 0, stderr[-3000:]
  assert "Traceback" not in stderr
  if with_checkpoint:
    assert stdout == (f"stopped by SIGTERM before training started: nothing new to save; latest "
                      f"checkpoint {workdir}/checkpoints/{CHECKPOINTED_UPDATES}; run the same "
                      f"command to resume\n")
  else:
    assert stdout == "stopped by SIGTERM before training started: nothing saved yet\n"
    assert not os.path.exists(workdir / "checkpoints")


def test_a_second_signal_during_the_first_compile_stops_at_once(repo_root, tmp_path):
  """The README's promise, inside XLA's compiler (which holds the main thread for minutes on a
  loaded machine): a cold cache makes the first update's compile last."""
  env = {**ENV, "MIMEX_JAX_CACHE_DIR": str(tmp_path / "cold_cache")}
  workdir = tmp_path / "run"
  stderr_path = tmp_path / "stderr"
  with open(stderr_path, "w") as stderr_file:
    process = _start_training(repo_root, workdir, env, stderr=stderr_file)
  deadline = time.time() + 600
  while "env steps:" not in stderr_path.read_text():  # the progress bar: the loop begins
    assert process.poll() is None, stderr_path.read_text()[-3000:]
    assert time.time() < deadline
    time.sleep(0.01)
  time.sleep(0.5)  # into the first update's compile
  process.send_signal(signal.SIGTERM)
  time.sleep(0.5)
  process.send_signal(signal.SIGTERM)
  sent = time.time()
  stdout, _ = process.communicate(timeout=60)
  stderr = stderr_path.read_text()
  assert time.time() - sent < 3.0
  assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  errors = _error_lines(stderr)
  assert errors == ["mimex_jax.train: error: second SIGTERM: stopped at once without saving; "
                    "last checkpoint: none"], stderr[-3000:]
  assert "stopped by" not in stdout


# ------------------------------------------------------------------------------ quiet Python API
def test_show_progress_false_hides_the_bar_and_writes_everything(smoke_config, tmp_path, capfd):
  from mimex_jax.train import train_and_evaluate
  workdir = tmp_path / "quiet"
  result = train_and_evaluate(smoke_config, str(workdir), show_progress=False)
  assert result["step"] == 16 * 8 * SMOKE_UPDATES
  assert "env steps" not in capfd.readouterr().err  # no progress bar
  assert [r["step"] for r in read_metrics(str(workdir))] == [256, 384, 512, 768]
  assert result["plot"] == str(workdir / "learning_curve.png") and os.path.exists(result["plot"])
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir))


# ------------------------------------------------------------------------------ NaN advice
@pytest.mark.parametrize("kind,last,keys,again", [
    ("mimex", "none", "ppo.learning_rate, intrinsic.learning_rate or intrinsic.k_expl",
     "run again"),
    ("rnd", "/w/checkpoints/3", "ppo.learning_rate, intrinsic.rnd.learning_rate or "
     "intrinsic.k_expl", "start again in a new --workdir"),
    ("none", "/w/checkpoints/3", "ppo.learning_rate", "start again in a new --workdir"),
])
def test_non_finite_stop_names_the_keys_and_never_advises_a_resume(smoke_config, kind, last,
                                                                   keys, again):
  from mimex_jax.checkpoint import NonFiniteError
  from mimex_jax.metrics import LogWindow
  from mimex_jax.train import _check_finite
  config = smoke_config.copy_and_resolve_references()
  config.intrinsic.kind = kind
  window = LogWindow(1)
  window.add(1, {"approx_kl": [float("nan")]})
  with pytest.raises(NonFiniteError) as error:
    _check_finite(window, 128, last, config)
  assert str(error.value).startswith(
      f"approx_kl is nan at update 1 (env step 128); training stopped; last good checkpoint: "
      f"{last}. Lower {keys} and {again}")
  assert "resume from" not in str(error.value)


# ------------------------------------------------------------------------------ warp pixels
@pytest.mark.long  # 2 min cold on 2 cores; the fast suite checks the seed loop it relies on below
def test_warp_pixels_train_evaluate_and_load(repo_root, tmp_path):
  """MuJoCo Warp's renderer draws a fixed number of worlds, so nothing may vmap around it: the
  evaluation in training (over seeds) and the evaluation CLI (another episode count)."""
  pytest.importorskip("warp", reason="warp-lang is not installed: no Warp renderer to test")
  workdir = str(tmp_path / "warp")
  result = _run(repo_root, "mimex_jax.train", "--config=configs/drq.py:smoke",
                "--config.env.pixels.backend=warp", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  records = read_metrics(workdir)
  assert records[-1]["step"] == 192 and "actor_loss" in records[-1]
  assert [r["step"] for r in records if r.get("eval_return") is not None] == [96, 192]
  # Three episodes where training evaluated two: the renderer is rebuilt for three worlds.
  result = _run(repo_root, "mimex_jax.evaluate", f"--workdir={workdir}", "--episodes=3")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "over 3 episodes" in result.stdout


@pytest.mark.long  # about 1.5 min on 2 cores: two seeds of DrQ compile their own program
def test_warp_pixels_train_two_seeds_one_by_one(repo_root, tmp_path):
  pytest.importorskip("warp", reason="warp-lang is not installed: no Warp renderer to test")
  workdir = str(tmp_path / "warp_seeds")
  result = _run(repo_root, "mimex_jax.train", "--config=configs/drq.py:smoke",
                "--config.env.pixels.backend=warp", "--config.num_seeds=2",
                f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  last = read_metrics(workdir)[-1]
  assert last["step"] == 192 and len(last["per_seed"]["eval_return"]) == 2


def test_seeds_run_one_by_one_around_a_function_that_refuses_vmap():
  """`over_seeds(..., vmappable=False)` never vmaps its function, and gives what a vmap would."""
  import jax
  import jax.numpy as jnp
  from mimex_jax.train import over_seeds

  @jax.custom_batching.custom_vmap
  def fixed_batch(x):
    return x * 2.0

  @fixed_batch.def_vmap
  def _refuse(axis_size, in_batched, x):
    raise AssertionError("vmapped around a fixed batch")

  def step(state, key):
    return fixed_batch(state) + key.sum(), {"loss": state.sum()}

  state, keys = jnp.arange(6.0).reshape(3, 2), jnp.ones((3, 2))
  new_state, metrics = jax.jit(over_seeds(step, 3, vmappable=False))(state, keys)
  assert new_state.tolist() == (state * 2 + 2).tolist()
  assert metrics["loss"].tolist() == [1.0, 5.0, 9.0]
  with pytest.raises(AssertionError, match="fixed batch"):
    jax.jit(over_seeds(step, 3))(state, keys)
  single = jax.jit(over_seeds(step, 1, vmappable=False))(state[:1], keys[:1])
  assert single[0].shape == (1, 2)
