"""The fused step on two forced CPU devices: replicas stay identical, one compile only."""

import jax
import numpy as np

from mimex_jax import parallel
from mimex_jax.agents import build


def test_fused_step_two_devices_identical_params_and_single_trace(smoke_config):
  assert jax.local_device_count() == 2, "conftest forces two CPU devices"
  _, fused, _, _ = build(smoke_config)
  traces = []

  def counted(state, key):
    traces.append(1)  # runs only while tracing
    return fused(state, key)

  key = jax.random.PRNGKey(0)
  state = parallel.pmap_init(fused.init, key)
  step = parallel.pmap_step(counted)
  keys = jax.numpy.stack([key] * 2)
  first_obs = np.asarray(state.env_state.obs)
  assert not np.allclose(first_obs[0], first_obs[1])  # each device steps its own envs

  for _ in range(3):
    state, metrics = step(state, keys)
  jax.block_until_ready(state)
  assert len(traces) == 1, f"the fused step was traced {len(traces)} times"

  for name, tree in (("ppo", state.params), ("mimex", state.intrinsic.params),
                     ("normalizer", state.normalizer.mean), ("optimizer", state.opt_state)):
    for leaf in jax.tree.leaves(tree):
      leaf = np.asarray(leaf)
      np.testing.assert_array_equal(leaf[0], leaf[1], err_msg=f"{name} differs across devices")
  # Parameters did change, and the envs still differ per device.
  initial = parallel.pmap_init(fused.init, key)
  moved = [float(np.abs(np.asarray(a) - np.asarray(b)).max())
           for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(initial.params))]
  assert max(moved) > 0
  obs = np.asarray(state.env_state.obs)
  assert not np.allclose(obs[0], obs[1])
  assert int(state.update_step[0]) == 3
  # Metrics came back the same on both devices (they are cross-device means and sums).
  np.testing.assert_allclose(np.asarray(metrics["intrinsic_reward"]),
                             np.asarray(metrics["intrinsic_reward"])[0])
  assert np.isfinite(np.asarray(metrics["policy_loss"])).all()


def test_seeds_run_one_by_one_on_cpu_and_vmapped_elsewhere():
  from types import SimpleNamespace
  from ml_collections import config_dict
  from mimex_jax.train import seeds_vmappable
  any_batch = SimpleNamespace(backend=SimpleNamespace())
  fixed_batch = SimpleNamespace(backend=SimpleNamespace(fixed_batch=8))  # warp pixels
  drq = config_dict.ConfigDict({"agent": "drq"})
  ppo = config_dict.ConfigDict({"agent": "ppo"})
  assert not seeds_vmappable(drq, any_batch, "cpu")  # grouped convolutions, stalls
  assert seeds_vmappable(drq, any_batch, "gpu")
  assert seeds_vmappable(ppo, any_batch, "cpu")
  assert not seeds_vmappable(ppo, fixed_batch, "gpu")
  conv = config_dict.ConfigDict({"agent": "ppo", "env": {"obs_type": "pixels"},
                                 "ppo": {"encoder": "conv"}})
  frozen = config_dict.ConfigDict({"agent": "ppo", "env": {"obs_type": "pixels"},
                                   "ppo": {"encoder": "frozen"}})
  assert not seeds_vmappable(conv, any_batch, "cpu") and seeds_vmappable(conv, any_batch, "gpu")
  assert seeds_vmappable(frozen, any_batch, "cpu")  # no convolutions: the encoder is a ViT
