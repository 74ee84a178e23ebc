"""experiments/encoder_probe.py's fits: they find a state that is in the inputs and report
none where it is not."""

import functools
import importlib.util
import os

import numpy as np

_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments",
                     "encoder_probe.py")


@functools.cache
def _module():
  spec = importlib.util.spec_from_file_location("encoder_probe", _PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_loads_beside_the_trainers_flags():
  """The trainer defines `--config` in absl's global flags; the probe keeps its own."""
  from mimex_jax import cli  # noqa: F401
  spec = importlib.util.spec_from_file_location("encoder_probe_again", _PATH)
  spec.loader.exec_module(importlib.util.module_from_spec(spec))


def _data(seed=0, rows=800, features=20):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(rows, features))
  in_features = x @ rng.normal(size=features) + 0.05 * rng.normal(size=rows)
  not_in_features = rng.normal(size=rows)  # independent of x
  squared = x[:, 0] ** 2  # in the features, but not linearly
  return x, np.stack([in_features, not_in_features, squared], axis=-1)


def test_ridge_finds_a_linear_state_and_no_absent_one():
  probe = _module()
  x, y = _data()
  r2 = probe.ridge_r2(x[:600], y[:600], x[600:], y[600:])
  assert r2[0] > 0.99, r2
  assert r2[1] < 0.05, r2
  assert r2[2] < 0.1, r2  # x0^2 has no linear part


def test_mlp_reads_what_the_linear_fit_cannot():
  probe = _module()
  x, y = _data(features=4)
  r2 = probe.mlp_r2(x[:600], y[:600], x[600:], y[600:], steps=600)
  assert r2[2] > 0.8, r2
  assert r2[1] < 0.1, r2


def test_stack_frames_puts_the_oldest_first():
  probe = _module()
  pooled = np.arange(2 * 5 * 1, dtype=float).reshape(2, 5, 1)  # env, time, pixel
  stacked = probe.stack_frames(pooled, 3)
  assert stacked.shape == (2, 3, 3)
  np.testing.assert_array_equal(stacked[0, 0], [0.0, 1.0, 2.0])
  np.testing.assert_array_equal(stacked[1, 2], [7.0, 8.0, 9.0])
