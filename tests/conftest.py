"""Test setup: two forced CPU devices (so the pmapped step really runs on two) and a persistent
compilation cache (compiles dominate on 2 cores).

The README's fast line (`-m "not slow"`) compiles its programs with XLA's cheapest CPU code
generation (`FAST_COMPILE_FLAGS`); the slow suite, a run of chosen files, and the benchmarks
compile at full optimization. Tests check numbers and behaviour, not speed, but a test whose
program runs long (the arm's physics rollouts in test_manipulation: 114-360 s each with cheap
code instead of 10-47 s) asks for full optimization of that one program with
`jax.jit(..., compiler_options=FULL_OPTIMIZATION)`. `MIMEX_TEST_XLA_OPT=fast|full` overrides the
choice.
"""

import os

import jax  # noqa: F401  (imported only: XLA_FLAGS are read when the backend starts)
import pytest

from mimex_jax.compilation import enable_compilation_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# XLA CPU flags that trade the compiled code's speed for compile time: the smoke CLI run
# compiled in 12.6 s instead of 18.9 s with the same final metrics (issue 25), but programs that
# run long (the arm's physics) became many times slower. XLA's older loop emitters for fusions
# (`use_fusion_emitters=false`) compile faster still: the 2-device smoke PPO step in 14.3 s
# instead of 21.9 s, the 2-device DrQ + MIMEx step in 42 s instead of 55 s (alone, once each,
# jax 0.10.2).
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0",
                      "--xla_llvm_disable_expensive_passes=true",
                      "--xla_cpu_use_fusion_emitters=false")
# Full LLVM optimization (XLA's level 3), per program: `jax.jit(f,
# compiler_options=FULL_OPTIMIZATION)` undoes the first two FAST_COMPILE_FLAGS for a program
# that runs long. The older fusion emitters stay: the arm's scripted rollout compiled in 23.9 s
# instead of 31.7 s with them, and ran in 0.62 s instead of 1.06 s (alone, once).
FULL_OPTIMIZATION = {"xla_backend_optimization_level": 3,
                     "xla_llvm_disable_expensive_passes": False,
                     "xla_cpu_use_fusion_emitters": False}
_FAST = {"value": False}  # decided in pytest_configure, before any backend starts


def xla_flags(device_count: int = 2) -> str:
  """The XLA_FLAGS of this test session for `device_count` CPU devices: the in-process backend's
  and every training process's the tests start."""
  flags = [f"--xla_force_host_platform_device_count={device_count}"]
  return " ".join(flags + list(FAST_COMPILE_FLAGS if _FAST["value"] else ()))


def _fast_compile_wanted(config) -> bool:
  """Cheap code for the README's fast line (a marker expression with `not slow`), unless
  MIMEX_TEST_XLA_OPT says otherwise."""
  choice = os.environ.get("MIMEX_TEST_XLA_OPT", "auto")
  if choice not in ("auto", "fast", "full"):
    raise pytest.UsageError(f"MIMEX_TEST_XLA_OPT={choice!r}; use auto, fast or full")
  if choice != "auto":
    return choice == "fast"
  return "not slow" in (config.getoption("markexpr", "") or "")


# Subprocesses get these; filled in by pytest_configure (test modules read it after that).
ENV = {}


def pytest_configure(config):
  _FAST["value"] = _fast_compile_wanted(config)
  user_flags = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = " ".join(filter(None, [user_flags, xla_flags(2)])) if (
      "xla_force_host_platform_device_count" not in user_flags) else user_flags
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  ENV.update({**os.environ, "XLA_FLAGS": xla_flags(2), "JAX_PLATFORMS": "cpu"})
  enable_compilation_cache()  # starts the backend: after XLA_FLAGS


def pytest_collection_modifyitems(config, items):
  """A test marked `long` is also `slow`: the README's line (`not slow`) and CI's second command
  (`slow and not long`) both leave it out; `-m long` runs it."""
  del config
  for item in items:
    if item.get_closest_marker("long"):
      item.add_marker(pytest.mark.slow)


def pretrain_smoke_encoder(workdir: str, steps: int, log=lambda line: None) -> str:
  """Writes a smoke-sized encoder (16x16 CartpoleBalance frames) pretrained for `steps` Adam
  steps into `workdir`, as `python -m mimex_jax.pretrain` does."""
  import sys
  sys.path.insert(0, REPO)
  from configs import pretrain as pretrain_configs
  from mimex_jax import pretrain
  config = pretrain_configs.get_config("smoke")
  config.train.steps = steps
  pretrain.pretrain(config, workdir, log=log)
  return workdir


@pytest.fixture(scope="session")
def repo_root():
  return REPO


@pytest.fixture(scope="session")
def smoke_config():
  import sys
  sys.path.insert(0, REPO)
  from configs import ppo
  return ppo.get_config("smoke")


CHECKPOINTED_UPDATES = 60  # smoke-sized updates take milliseconds; 60 leave time to interrupt
CHECKPOINTED_RUN_ARGS = [
    "--config=configs/ppo.py:smoke", f"--config.total_steps={16 * 8 * CHECKPOINTED_UPDATES}",
    "--config.log_every=5", "--config.eval_every=10", "--config.checkpoint.every=10",
    "--config.checkpoint.max_to_keep=3",
    # One evaluator less to trace and compile in each run (test_cli's smoke run checks it).
    "--config.eval_sampled=False"]


@pytest.fixture(scope="session")
def uninterrupted(repo_root, tmp_path_factory):
  """The workdir of a finished smoke-sized run with checkpoints at updates 10, 20, ..., 60: this
  worker's own copy (tests write into it), of a run that pytest-xdist's workers train once."""
  import fcntl
  import shutil
  from cli_runner import run_train  # after XLA_FLAGS: its server inherits them
  base = tmp_path_factory.getbasetemp()
  # Under xdist each worker's base is a folder of the session's; alone, the session's own.
  shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
  trained, done = shared / "uninterrupted-trained", shared / "uninterrupted-trained.done"
  with open(shared / "uninterrupted-trained.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits here while one trains
    if not done.exists():
      shutil.rmtree(trained, ignore_errors=True)  # a failed try's leftovers
      result = run_train([*CHECKPOINTED_RUN_ARGS, f"--workdir={trained}"], repo_root)
      assert result.returncode == 0, result.stderr[-3000:]
      done.touch()
  workdir = tmp_path_factory.mktemp("uninterrupted") / "run"
  shutil.copytree(trained, workdir)
  return str(workdir)
