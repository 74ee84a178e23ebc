"""Checkpoints: a run killed (SIGKILL) or stopped (SIGTERM) and resumed ends exactly where the
uninterrupted run ends; damaged checkpoints are skipped; other configs and NaNs are refused."""

import json
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

ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
       "JAX_PLATFORMS": "cpu"}
UPDATES = 60  # smoke-sized updates take milliseconds; 60 leave time to interrupt a run
RUN_ARGS = ["--config=configs/ppo.py:smoke", f"--config.total_steps={16 * 8 * UPDATES}",
            "--config.log_every=5", "--config.eval_every=10", "--config.checkpoint.every=10",
            "--config.checkpoint.max_to_keep=3"]
TIMING = ("steps_per_second", "compile_seconds")  # wall-clock figures differ between runs


def _command(workdir, *extra):
  return [sys.executable, "-m", "mimex_jax.train", *RUN_ARGS, f"--workdir={workdir}", *extra]


def _run(repo_root, workdir, *extra):
  return subprocess.run(_command(workdir, *extra), cwd=repo_root, env=ENV, capture_output=True,
                        text=True, timeout=600)


def _saved_steps(workdir):
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def _interrupt(repo_root, workdir, signum, after_update):
  """Starts a run and sends `signum` as soon as a checkpoint past `after_update` is complete."""
  process = subprocess.Popen(_command(workdir), cwd=repo_root, env=ENV, stdout=subprocess.PIPE,
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


@pytest.fixture(scope="module")
def uninterrupted(repo_root, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  result = _run(repo_root, workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


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
