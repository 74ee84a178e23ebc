"""Pretrained image encoders on disk: an Orbax checkpoint of the `ImageMAE` parameters and an
`encoder.json` with the model's sizes and how it was trained.

  <dir>/encoder.json   {"model": {height, width, channels, patch_size, ...}, "pretraining": {...}}
  <dir>/params/        Orbax checkpoint of the parameters

A config names the directory (`ppo.encoder_checkpoint`); `check` compares it with the frames the
config renders before anything compiles.
"""

import json
import os
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mimex_jax.config_checks import ConfigError
from mimex_jax.networks.image_mae import ImageMAE

META = "encoder.json"
PARAMS = "params"


def save(directory: str, model: ImageMAE, params: Any, pretraining: Dict[str, Any]) -> str:
  directory = os.path.abspath(directory)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, PARAMS)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(path, jax.device_get(params), force=True)
  meta = {"model": {field: getattr(model, field) for field in _MODEL_FIELDS},
          "pretraining": pretraining}
  with open(os.path.join(directory, META), "w") as f:
    json.dump(meta, f, indent=1)
  return directory


_MODEL_FIELDS = ("height", "width", "channels", "patch_size", "embed_dim", "depth", "num_heads",
                 "decoder_embed_dim", "decoder_depth", "decoder_num_heads", "mlp_ratio", "pool")


def read_meta(directory: str) -> Dict[str, Any]:
  """The checkpoint's `encoder.json`; a `ConfigError` naming what is missing otherwise."""
  if not directory:
    raise ConfigError("config key ppo.encoder_checkpoint is empty: ppo.encoder=frozen reads a "
                      "pretrained encoder; write one with `python -m mimex_jax.pretrain "
                      "--config=configs/pretrain.py --workdir=DIR` and pass "
                      "--config.ppo.encoder_checkpoint=DIR (or use --config.ppo.encoder=conv)")
  if not os.path.isdir(directory):
    raise ConfigError(f"config key ppo.encoder_checkpoint={directory!r}: no such folder; write "
                      "one with `python -m mimex_jax.pretrain --config=configs/pretrain.py "
                      f"--workdir={directory}`")
  path = os.path.join(directory, META)
  if not os.path.exists(path):
    raise ConfigError(f"config key ppo.encoder_checkpoint={directory!r} holds no {META}: it is "
                      "not an encoder written by `python -m mimex_jax.pretrain`")
  with open(path) as f:
    return json.load(f)


def check(directory: str, height: int, width: int, channels: int) -> Dict[str, Any]:
  """Raises `ConfigError` unless the encoder in `directory` reads frames of this size."""
  model = read_meta(directory)["model"]
  saw = (model["height"], model["width"], model["channels"])
  if saw != (height, width, channels):
    raise ConfigError(
        f"config key ppo.encoder_checkpoint={directory!r} was pretrained on {saw[0]}x{saw[1]} "
        f"frames with {saw[2]} channel(s), and this config renders {height}x{width} with "
        f"{channels}: set env.pixels.height/width/grayscale to match, or pretrain an encoder "
        "for these frames")
  return model


def load(directory: str) -> Tuple[ImageMAE, Any]:
  """`(model, params)` of the encoder in `directory` (read with `read_meta`'s checks)."""
  model = ImageMAE(**read_meta(directory)["model"])
  images = jnp.zeros((1, model.height, model.width, model.channels), jnp.uint8)
  abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), images,
                            jnp.zeros((1, 1), jnp.int32))
  target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)
  with ocp.StandardCheckpointer() as checkpointer:
    params = checkpointer.restore(os.path.join(os.path.abspath(directory), PARAMS), target)
  return model, params
