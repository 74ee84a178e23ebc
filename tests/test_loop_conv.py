"""`LoopConv`: a VALID convolution whose gradients are forward convolutions (for DrQ's learner
updates in a loop on CPU) gives the gradients XLA derives, and DrQ's `drq.learner_updates`."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax.agents.drq.networks import PixelEncoder
from mimex_jax.checkpoint_config import config_differences
from mimex_jax.networks.loop_conv import LoopConv, conv_valid


def _xla_conv(x, kernel, stride):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("size,kernel_size,stride", [(15, 3, 1), (32, 3, 2), (12, 5, 3)])
def test_gradients_are_xlas_for_every_stride_and_size(size, kernel_size, stride):
  """Sizes where the stride leaves the last rows unread (32 at stride 2, 12 at 3) included:
  their input gradient is zero there."""
  x = jax.random.normal(jax.random.PRNGKey(0), (3, size, size + 1, 4))
  kernel = jax.random.normal(jax.random.PRNGKey(1), (kernel_size, kernel_size, 4, 5))
  weights = jax.random.normal(jax.random.PRNGKey(2), _xla_conv(x, kernel, stride).shape)
  loss = lambda conv: lambda x, k: jnp.sum(jnp.tanh(conv(x, k, stride)) * weights)  # noqa: E731

  @jax.jit  # one program per case: op by op, the fast suite would compile dozens
  def both(x, kernel):
    ours = jax.grad(loss(conv_valid), argnums=(0, 1))(x, kernel)
    xlas = jax.grad(loss(_xla_conv), argnums=(0, 1))(x, kernel)
    # Inside a loop (where XLA's own gradients run slowly on CPU): the same numbers.
    looped = jax.lax.scan(lambda c, k: (c, jax.grad(loss(conv_valid), argnums=1)(x, k)), 0.0,
                          jnp.stack([kernel, 2 * kernel]))[1]
    return conv_valid(x, kernel, stride), _xla_conv(x, kernel, stride), ours, xlas, looped

  out, xla_out, ours, xlas, looped = both(x, kernel)
  np.testing.assert_allclose(out, xla_out, rtol=1e-5, atol=1e-5)
  for name, a, b in zip(("input", "kernel"), ours, xlas):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=f"{name} gradient")
    assert float(jnp.abs(b).max()) > 0.1  # a gradient to compare, not zeros
  np.testing.assert_allclose(looped[0], xlas[1], rtol=1e-4, atol=1e-4)
  if (size - kernel_size) % stride:  # the unread last rows get no gradient
    assert float(jnp.abs(ours[0][:, -1]).max()) == 0.0


def test_loop_conv_has_flax_convs_parameters_and_numbers():
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 11, 11, 3))
  ours, flax_conv = LoopConv(6, (3, 3), strides=2), nn.Conv(6, (3, 3), strides=2,
                                                              padding="VALID")
  params = flax_conv.init(jax.random.PRNGKey(4), x)
  assert jax.tree.structure(ours.init(jax.random.PRNGKey(4), x)) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(ours.init(jax.random.PRNGKey(4), x)), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  params = jax.tree.map(lambda p: p + 0.1, params)  # a bias that is not zero
  np.testing.assert_allclose(ours.apply(params, x), flax_conv.apply(params, x), rtol=1e-5,
                             atol=1e-5)


def test_drq_encoder_with_loop_gradients_is_the_same_encoder():
  """The same parameters (names and initial values: checkpoints load either way) and the same
  gradients as the `nn.Conv` encoder."""
  obs = jax.random.randint(jax.random.PRNGKey(5), (4, 32, 32, 9), 0, 255).astype(jnp.uint8)
  plain, looped = PixelEncoder(), PixelEncoder(loop_gradients=True)
  params = plain.init(jax.random.PRNGKey(6), obs)
  for a, b in zip(jax.tree.leaves(looped.init(jax.random.PRNGKey(6), obs)),
                  jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  grads = [jax.jit(jax.grad(lambda p, m=m: jnp.sum(jnp.sin(m.apply(p, obs)))))(params)
           for m in (plain, looped)]
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grads[0]),
                          jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3 * float(jnp.abs(a).max()),
                               err_msg=jax.tree_util.keystr(path))


def test_learner_updates_is_checked_and_may_change_on_resume(repo_root):
  import sys
  sys.path.insert(0, repo_root)
  from configs import drq
  from mimex_jax.agents import check
  from mimex_jax.agents.drq.config_checks import learner_updates
  from mimex_jax.config_checks import ConfigError
  from mimex_jax.agents import build
  config = drq.get_config("smoke")
  assert learner_updates(config.drq) == "loop"
  # What the builder makes of it on this CPU: a loop through LoopConv's gradients, or written out
  # through XLA's own.
  for mode, unrolled in (("auto", False), ("unrolled", True)):
    config.drq.learner_updates = mode
    _, fused, _, _ = build(config)
    assert fused.unroll_updates is unrolled
    assert fused.drq.encoder.loop_gradients is not unrolled
  assert learner_updates(config.drq) == "unrolled"
  check(config, jax.device_count(), "cpu")
  config.drq.learner_updates = "scan"
  with pytest.raises(ConfigError, match="drq.learner_updates='scan' is invalid; allowed: auto, "
                                        "unrolled or loop"):
    check(config, jax.device_count(), "cpu")
  saved = {"drq": {"learner_updates": "unrolled", "batch_size": 256}}
  assert config_differences(saved, {"drq": {"learner_updates": "loop", "batch_size": 256}}) == []
  assert config_differences(saved, {"drq": {"learner_updates": "loop", "batch_size": 128}}) == [
      "drq.batch_size=256 in the checkpoint vs 128 now"]


@pytest.mark.slow  # two pixel DrQ + MIMEx fused steps compiled cold: 5 min next to a training
def test_drq_from_pixels_trains_alike_with_updates_in_a_loop(repo_root):
  """`drq.learner_updates=loop` on CPU (updates in a loop, the encoder's gradients as forward
  convolutions) trains what `unrolled` trains, up to float rounding: the smoke pixel config with
  MIMEx, two learner updates per step, four steps of learning."""
  import sys
  sys.path.insert(0, repo_root)
  from configs import drq
  from test_drq_bonus_encoder import _assert_trees_close, _run_fused_steps
  config = drq.get_config("smoke")
  config.intrinsic.kind = "mimex"
  assert config.updates_per_step == 2
  runs = {}
  for mode in ("unrolled", "loop"):
    config.drq.learner_updates = mode
    runs[mode] = _run_fused_steps(config, 6)
  assert float(runs["unrolled"][2]["learning"][0]) == 1.0
  _assert_trees_close(runs["unrolled"], runs["loop"], "loop against unrolled")
