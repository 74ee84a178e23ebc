"""Test setup: two forced CPU devices (so the pmapped step really runs on two) and a persistent
compilation cache (compiles dominate on 2 cores)."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402

from mimex_jax.compilation import enable_compilation_cache  # noqa: E402

enable_compilation_cache()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def repo_root():
  return REPO


@pytest.fixture(scope="session")
def smoke_config():
  import sys
  sys.path.insert(0, REPO)
  from configs import ppo
  return ppo.get_config("smoke")


ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
       "JAX_PLATFORMS": "cpu"}
CHECKPOINTED_UPDATES = 60  # smoke-sized updates take milliseconds; 60 leave time to interrupt
CHECKPOINTED_RUN_ARGS = [
    "--config=configs/ppo.py:smoke", f"--config.total_steps={16 * 8 * CHECKPOINTED_UPDATES}",
    "--config.log_every=5", "--config.eval_every=10", "--config.checkpoint.every=10",
    "--config.checkpoint.max_to_keep=3"]


@pytest.fixture(scope="session")
def uninterrupted(repo_root, tmp_path_factory):
  """The workdir of a finished smoke-sized run with checkpoints at updates 10, 20, ..., 60."""
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  from cli_runner import run_train  # after XLA_FLAGS: its server inherits them
  result = run_train([*CHECKPOINTED_RUN_ARGS, f"--workdir={workdir}"], repo_root)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir
