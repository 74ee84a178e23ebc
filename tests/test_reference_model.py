"""Our masked sequence model reproduces the MIMEx reference's own outputs.

`data/mimex_reference_outputs.npz` holds a small reference model (its PyTorch `BERT` with the
weights moved off their init, float64), 8 input sequences, the kept positions it drew, and its
reconstructions and per-sequence losses with and without `norm_loss`.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax.intrinsic.mimex import (MaskedSequenceModel, masked_positions,
                                       masked_sequence_loss)
from mimex_jax.intrinsic.reference import params_from_reference
from mimex_jax.networks.transformer import sinusoidal_positions

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "mimex_reference_outputs.npz")


@pytest.fixture(scope="module")
def reference():
  with np.load(FIXTURE) as data:
    return {key: data[key] for key in data.files}


def _model_and_params(reference, dtype):
  config = json.loads(str(reference["config"]))
  model = MaskedSequenceModel(
      output_size=config["feature_dim"], embed_dim=config["embed_dim"], depth=config["depth"],
      num_heads=config["num_heads"], decoder_embed_dim=config["decoder_embed_dim"],
      decoder_depth=config["decoder_depth"], decoder_num_heads=config["decoder_num_heads"],
      mlp_ratio=config["mlp_ratio"], use_cls=config["use_cls"])
  weights = {k: v for k, v in reference.items() if k.startswith("param/")}
  params = params_from_reference(weights, config["num_heads"], config["decoder_num_heads"])
  return model, jax.tree.map(lambda x: jnp.asarray(x, dtype), params)


def test_position_tables_match_the_reference(reference):
  """Same interleaved layout and frequencies (the reference's tables carry float32 rounding)."""
  np.testing.assert_allclose(sinusoidal_positions(5, 32), reference["buffer/pos_embed.pe"][0],
                             atol=1e-7)
  np.testing.assert_allclose(sinusoidal_positions(5, 16),
                             reference["buffer/decoder_pos_embed.pe"][0], atol=1e-7)
  # The first-half-sines layout is far off: the layout is what is being checked.
  table = sinusoidal_positions(5, 32)
  halves = np.concatenate([table[:, 0::2], table[:, 1::2]], axis=1)
  assert np.abs(halves - reference["buffer/pos_embed.pe"][0]).max() > 0.5


def test_converted_parameters_have_our_model_s_tree(reference):
  model, params = _model_and_params(reference, jnp.float32)
  fresh = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 5, 7)), jnp.zeros((1, 1), jnp.int32))
  assert jax.tree.structure(fresh) == jax.tree.structure(params)
  shapes = jax.tree.map(lambda a, b: a.shape == b.shape, fresh, params)
  assert all(jax.tree.leaves(shapes))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reconstructions_and_losses_match_the_reference(reference, dtype):
  with jax.enable_x64(dtype == "float64"):
    model, params = _model_and_params(reference, dtype)
    inputs = jnp.asarray(reference["input"], dtype)
    keep = jnp.sort(jnp.asarray(reference["keep"]), axis=1)
    mask = jnp.asarray(reference["mask"], dtype)
    # The mask is the complement of the kept positions.
    hidden = np.ones(mask.shape)
    np.put_along_axis(hidden, np.asarray(keep), 0.0, axis=1)
    np.testing.assert_array_equal(hidden, reference["mask"])

    reconstruction = jax.jit(model.apply)(params, inputs, keep)
    # The reference computed its position tables in float32 (they differ from exact ones by up
    # to 6e-8), so even in float64 the outputs agree only to about that.
    tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-6, atol=2e-7)
    np.testing.assert_allclose(reconstruction, reference["reconstruction_plain"], **tolerance)
    # The reference's two forward passes use the same weights, so the reconstructions agree.
    np.testing.assert_allclose(reconstruction, reference["reconstruction_norm_loss"],
                               **tolerance)
    for norm_loss, name in ((False, "loss_plain"), (True, "loss_norm_loss")):
      loss = masked_sequence_loss(reconstruction, inputs, mask, norm_loss=norm_loss)
      np.testing.assert_allclose(loss, reference[name], **tolerance)

    # Decoding only the masked positions gives the same numbers there.
    predict = masked_positions(mask, 4)
    partial = jax.jit(model.apply)(params, inputs, keep, predict)
    np.testing.assert_allclose(
        partial, np.take_along_axis(reference["reconstruction_plain"],
                                    np.asarray(predict)[..., None], axis=1), **tolerance)


def test_a_wrong_head_split_is_caught(reference):
  """The fixture's weights are off their init, so a wrong mapping cannot pass by chance."""
  weights = {k: v for k, v in reference.items() if k.startswith("param/")}
  model, _ = _model_and_params(reference, jnp.float32)
  params = params_from_reference(weights, num_heads=1, decoder_num_heads=2)
  wrong = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  with pytest.raises(Exception):  # shapes no longer fit a 2-head model
    model.apply(wrong, jnp.asarray(reference["input"], jnp.float32),
                jnp.sort(jnp.asarray(reference["keep"]), axis=1))
