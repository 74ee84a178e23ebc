"""Several seeds in one program: they differ from each other, and each is the run that seed
trains alone, up to float rounding (XLA rounds a batched matmul over 2 seeds differently from one
over 1: differences of about 1e-7 after 3 updates)."""

import jax
import numpy as np

from mimex_jax.train import build, seeded_training


def _train(config, updates=3):
  _, fused, _, _ = build(config)
  _, state, step_fn, step_keys = seeded_training(config, fused)
  for _ in range(updates):
    state, metrics = step_fn(state, step_keys)
  return jax.device_get(state), jax.device_get(metrics)


def test_two_seeds_differ_and_each_equals_its_single_seed_run(smoke_config):
  config = smoke_config.copy_and_resolve_references()
  config.num_seeds = 2
  config.seed = 3
  both, metrics = _train(config)
  assert np.asarray(metrics["policy_loss"]).shape == (2, 2)  # [devices, seeds]
  params = jax.tree.leaves(both.params)
  assert max(float(np.abs(leaf[:, 0] - leaf[:, 1]).max()) for leaf in params) > 1e-3
  for index in range(2):
    alone_config = smoke_config.copy_and_resolve_references()
    alone_config.seed = 3 + index
    alone, _ = _train(alone_config)
    pairs = zip(jax.tree_util.tree_flatten_with_path(both)[0], jax.tree.leaves(alone))
    checked = 0
    for (path, leaf), single in pairs:
      name = jax.tree_util.keystr(path)
      if "['key']['bias']" in name:
        # Attention key biases shift every logit of a query equally, so their true gradient is
        # zero; Adam scales the rounding noise in it to learning-rate-sized steps.
        continue
      leaf, single = np.asarray(leaf)[:, index], np.asarray(single)[:, 0]
      if leaf.dtype.kind == "f":
        np.testing.assert_allclose(leaf, single, rtol=1e-5, atol=2e-6, err_msg=name)
      else:
        np.testing.assert_array_equal(leaf, single, err_msg=name)  # counters, keys
      checked += 1
    assert checked > 200
