"""How a batch is split does not change what is trained: two processes joined by
jax.distributed (loopback coordinator, gloo all-reduces) with one CPU device each, one process
with two devices, and one process with one device all train the same run."""

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mimex_jax import checkpoint as checkpoint_lib
from mimex_jax.metrics import read_metrics

from conftest import CHECKPOINTED_RUN_ARGS as RUN_ARGS, CHECKPOINTED_UPDATES as UPDATES, ENV, xla_flags

pytestmark = pytest.mark.slow  # several processes, each compiling its own step

TIMING = ("steps_per_second", "compile_seconds")
NUM_ENVS = 16  # the smoke config's global batch


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(repo_root, workdir):
  """Both processes of one 2-process run, each with one CPU device."""
  port = _free_port()
  processes = []
  for process_id in range(2):
    env = {**ENV, "XLA_FLAGS": xla_flags(1),
           "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
           "JAX_PROCESS_ID": str(process_id)}
    processes.append(subprocess.Popen(
        [sys.executable, "-m", "mimex_jax.train", *RUN_ARGS, "--config.distributed=True",
         f"--workdir={workdir}"], cwd=repo_root, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True))
  return processes


def _finish(processes, timeout=600):
  """`[(returncode, stdout, stderr)]`; a process that fails brings the other down (it would
  wait for its peer's all-reduces until jax.distributed times out)."""
  deadline = time.time() + timeout
  while any(p.poll() is None for p in processes) and time.time() < deadline:
    if any(p.poll() not in (None, 0) for p in processes):
      for p in processes:
        if p.poll() is None:
          p.kill()
    time.sleep(0.05)
  for p in processes:
    if p.poll() is None:
      p.kill()
  return [(p.returncode, *p.communicate()) for p in processes]


def _saved_steps(workdir):
  directory = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit()) if os.path.isdir(
      directory) else []


def _records(workdir):
  return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(workdir)]


def _assert_same_curve(workdir, reference, rtol, atol):
  """Every logged number of `workdir` (timing aside) equals the one of `reference`."""
  records, expected = _records(workdir), _records(reference)
  assert [r["step"] for r in records] == [r["step"] for r in expected]
  for a, b in zip(records, expected):
    for key, value in b.items():
      if isinstance(value, float):
        np.testing.assert_allclose(a[key], value, rtol=rtol, atol=atol, err_msg=key)


def test_two_processes_train_what_one_process_with_two_devices_trains(repo_root, uninterrupted,
                                                                       tmp_path):
  workdir = str(tmp_path / "two_processes")
  # 1. A signal to process 1 alone stops both after the same update, with one checkpoint.
  processes = _launch(repo_root, workdir)
  deadline = time.time() + 600
  while not _saved_steps(workdir):
    if not all(p.poll() is None for p in processes):
      raise AssertionError("\n".join(f"rc {c}\n{err[-2500:]}" for c, _, err in _finish(processes)))
    assert time.time() < deadline
    time.sleep(0.005)
  processes[1].send_signal(signal.SIGTERM)
  results = _finish(processes)
  for code, _, stderr in results:
    assert code == 0, stderr[-3000:]
  stopped_at = max(_saved_steps(workdir))
  assert stopped_at < UPDATES, "the run ended before it could be stopped"
  assert "stopped by a signal to process 1" in results[0][1]
  assert "stopped by" not in results[1][1]  # process 0 speaks for the run

  # 2. Both resume from that checkpoint and train to the end.
  results = _finish(_launch(repo_root, workdir))
  for code, _, stderr in results:
    assert code == 0, stderr[-3000:]
  assert f"resuming from {workdir}/checkpoints/{stopped_at}" in results[0][2]

  # 3. The two processes hold identical parameters; each stepped its own half of the envs.
  directory = os.path.join(workdir, "checkpoints")
  two = checkpoint_lib.read_arrays(directory, UPDATES)
  assert checkpoint_lib.Checkpointer(directory, read_only=True).read_meta(UPDATES)[
      "num_processes"] == 2
  for leaf in jax.tree.leaves((two["params"], two["opt_state"], two["normalizer"],
                               two["intrinsic"]["params"])):
    assert leaf.shape[0] == 2
    np.testing.assert_array_equal(leaf[0], leaf[1])
  obs = two["env_state"]["obs"]  # [processes x devices, seeds, envs per device, obs]
  assert obs.shape[:3] == (2, 1, NUM_ENVS // 2)
  assert not np.array_equal(obs[0], obs[1])

  # 4. Global batch = the sum of the local ones: the run is the one-process, two-device run.
  one = checkpoint_lib.read_arrays(os.path.join(uninterrupted, "checkpoints"), UPDATES)
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(two)[0], jax.tree.leaves(one),
                          strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6,
                               err_msg=jax.tree_util.keystr(path))
  # Only process 0 wrote metrics, and they are the one-process run's.
  _assert_same_curve(workdir, uninterrupted, rtol=1e-4, atol=1e-6)


def _by_env(env_leaf):
  """`[devices, seeds, envs per device, ...]` -> `[seeds, all envs, ...]` in global order."""
  moved = np.moveaxis(env_leaf, 0, 1)
  return moved.reshape((moved.shape[0], -1) + moved.shape[3:])


@pytest.mark.long  # the fast suite compares 1 and 2 devices on the fused step itself
def test_one_device_trains_what_two_devices_train(repo_root, uninterrupted, tmp_path):
  workdir = str(tmp_path / "one_device")
  result = subprocess.run(
      [sys.executable, "-m", "mimex_jax.train", *RUN_ARGS, f"--workdir={workdir}"],
      cwd=repo_root, env={**ENV, "XLA_FLAGS": xla_flags(1)},
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  one = checkpoint_lib.read_arrays(os.path.join(workdir, "checkpoints"), UPDATES)
  two = checkpoint_lib.read_arrays(os.path.join(uninterrupted, "checkpoints"), UPDATES)
  assert jax.tree.leaves(one["params"])[0].shape[0] == 1
  # The same learning curve, up to the order of floating-point sums.
  _assert_same_curve(workdir, uninterrupted, rtol=2e-3, atol=1e-4)
  # The same parameters, and the same envs in the same states.
  learned = lambda state: {"params": state["params"], "opt_state": state["opt_state"],  # noqa
                           "normalizer": state["normalizer"],
                           "intrinsic": (state["intrinsic"]["params"],
                                         state["intrinsic"]["opt_state"])}
  for name, tree in learned(one).items():
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(tree)[0],
                            jax.tree.leaves(learned(two)[name]), strict=True):
      where = name + jax.tree_util.keystr(path)
      if "['key']['bias']" in where:
        # Softmax ignores a bias added to every key, so its gradient is rounding noise, which
        # Adam scales up to full-sized steps: it differs between any two summation orders.
        continue
      np.testing.assert_allclose(a[0], b[0], rtol=2e-3, atol=1e-4, err_msg=where)
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(one["env_state"])[0],
                          jax.tree.leaves(two["env_state"]), strict=True):
    if a.ndim >= 3:  # per-env leaves
      np.testing.assert_allclose(_by_env(a), _by_env(b), rtol=2e-3, atol=1e-4,
                                 err_msg="env_state" + jax.tree_util.keystr(path))
