"""The image MAE's loss: which patches count, at what weight; and pretraining's check of it."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax import pretrain
from mimex_jax.config_checks import ConfigError
from mimex_jax.networks import image_mae


def _pretrain_config(variant):
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "pretrain.py")
  spec = importlib.util.spec_from_file_location("pretrain_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


@pytest.fixture(scope="module")
def model_and_batch():
  model = image_mae.ImageMAE(height=8, width=8, channels=1, patch_size=4, embed_dim=8, depth=1,
                             num_heads=2, decoder_embed_dim=8, decoder_depth=1,
                             decoder_num_heads=2)
  images = jax.random.randint(jax.random.PRNGKey(0), (3, 8, 8, 1), 0, 256).astype(jnp.uint8)
  keep = jnp.array([[0], [2], [3]])  # one of the 4 patches visible in each image
  params = model.init(jax.random.PRNGKey(1), images, keep)
  return model, params, images, keep


def test_loss_counts_hidden_patches_only_unless_visible_ones_are_weighted(model_and_batch):
  model, params, images, keep = model_and_batch
  prediction = model.apply(params, images, keep)
  error = np.asarray(jnp.mean(jnp.square(prediction - image_mae.patchify(images, 4)), -1))
  visible = np.zeros_like(error, dtype=bool)
  visible[np.arange(3), np.asarray(keep)[:, 0]] = True

  mae_loss, _ = image_mae.reconstruction_loss(model, params, images, keep)
  np.testing.assert_allclose(mae_loss, error[~visible].mean(), rtol=1e-5)
  all_loss, _ = image_mae.reconstruction_loss(model, params, images, keep, visible_weight=1.0)
  np.testing.assert_allclose(all_loss, error.mean(), rtol=1e-5)
  half_loss, _ = image_mae.reconstruction_loss(model, params, images, keep, visible_weight=0.5)
  expected = (error[~visible].sum() + 0.5 * error[visible].sum()) / (
      (~visible).sum() + 0.5 * visible.sum())
  np.testing.assert_allclose(half_loss, expected, rtol=1e-5)


def test_visible_weight_trains_the_visible_patches(model_and_batch):
  """Only with a weight on them does the loss's gradient see the visible patches' error."""
  model, params, images, keep = model_and_batch

  def visible_error(p):
    prediction = model.apply(p, images, keep)
    target = image_mae.patchify(images, 4)
    rows = jnp.arange(3)
    return jnp.mean(jnp.square(prediction[rows, keep[:, 0]] - target[rows, keep[:, 0]]))

  def after_steps(weight):
    p = params
    loss_grad = jax.jit(jax.grad(lambda p: image_mae.reconstruction_loss(
        model, p, images, keep, visible_weight=weight)[0]))
    for _ in range(30):
      p = jax.tree.map(lambda w, g: w - 0.05 * g, p, loss_grad(p))
    return float(visible_error(p))

  assert after_steps(1.0) < 0.7 * after_steps(0.0)


@pytest.mark.parametrize("value", [-0.5, True, "x"])
def test_bad_visible_loss_weight_is_named(value):
  config = _pretrain_config("smoke")
  config.train = dict(config.train.to_dict(), visible_loss_weight=value)
  with pytest.raises(ConfigError, match="train.visible_loss_weight"):
    pretrain.check(config)
