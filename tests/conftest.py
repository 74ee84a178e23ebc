"""Test setup: two forced CPU devices (so the pmapped step really runs on two) and a persistent
compilation cache (compiles dominate on 2 cores)."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402

from mimex_jax.train import enable_compilation_cache  # noqa: E402

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
