r"""Pretrains a frozen visual encoder: frames from tasks under random actions, a masked
autoencoder trained on them, the encoder written where PPO reads it.

  python -m mimex_jax.pretrain --config=configs/pretrain.py --workdir=encoders/cartpole32

Writes `<workdir>/encoder.json` (sizes, losses, frames), `<workdir>/params/` (Orbax) and
`<workdir>/reconstructions.png` (rows: frame, what the encoder saw, reconstruction).
Exit codes: 0 done, 2 bad flags or config (one line).
"""

import functools
import os
import sys
import time
from typing import Any, Dict, List, Tuple

from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import optax

from mimex_jax import encoder_store, envs
from mimex_jax.config_checks import (ConfigError, Rule, boolean, check_rules, nonneg_number,
                                     positive_int, positive_number, unit_interval)
from mimex_jax.envs.pixels import BACKENDS, PixelSpec
from mimex_jax.networks import image_mae

_FLAGS = flags.FlagValues()
_CONFIG = config_flags.DEFINE_config_file("config", None, "Pretraining config file.",
                                          flag_values=_FLAGS, lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the encoder is written.",
                               flag_values=_FLAGS)

RULES: List[Rule] = [
    ("env.pixels.backend", lambda x: x in BACKENDS, f"one of {BACKENDS}"),
    ("env.pixels.height", positive_int, "an integer >= 1"),
    ("env.pixels.width", positive_int, "an integer >= 1"),
    ("collect.num_envs", positive_int, "an integer >= 1"),
    ("collect.steps", positive_int, "an integer >= 1"),
    ("collect.keep_every", positive_int, "an integer >= 1"),
    ("collect.action_repeat", positive_int, "an integer >= 1"),
    ("model.patch_size", positive_int, "an integer >= 1"),
    ("model.embed_dim", lambda x: positive_int(x) and x % 2 == 0, "an even integer >= 2"),
    ("model.depth", positive_int, "an integer >= 1"),
    ("model.num_heads", positive_int, "an integer >= 1"),
    ("model.decoder_embed_dim", lambda x: positive_int(x) and x % 2 == 0,
     "an even integer >= 2"),
    ("model.decoder_depth", positive_int, "an integer >= 1"),
    ("model.decoder_num_heads", positive_int, "an integer >= 1"),
    ("model.pool", lambda x: x in image_mae.POOLS, f"one of {image_mae.POOLS}"),
    ("train.steps", positive_int, "an integer >= 1"),
    ("train.batch_size", positive_int, "an integer >= 1"),
    ("train.learning_rate", positive_number, "a number > 0"),
    ("train.mask_ratio", lambda x: unit_interval(x) and x < 1, "a number in [0, 1)"),
    ("train.holdout", lambda x: unit_interval(x) and x < 1, "a number in [0, 1)"),
    ("train.norm_pix_loss", boolean, "True or False"),
    ("train.visible_loss_weight", nonneg_number, "a number >= 0"),
]


def check(config: Any) -> None:
  check_rules(config, RULES)
  pixels, model = config.env.pixels, config.model
  for side in ("height", "width"):
    if pixels[side] % model.patch_size:
      raise ConfigError(f"config key model.patch_size={model.patch_size} does not divide "
                        f"env.pixels.{side}={pixels[side]}; use a divisor of it")
  for prefix in ("", "decoder_"):
    width, heads = model[f"{prefix}embed_dim"], model[f"{prefix}num_heads"]
    if width % heads:
      raise ConfigError(f"config key model.{prefix}num_heads={heads} does not divide "
                        f"model.{prefix}embed_dim={width}")


def make_model(config: Any) -> image_mae.ImageMAE:
  pixels = config.env.pixels
  return image_mae.ImageMAE(height=pixels.height, width=pixels.width,
                            channels=1 if pixels.grayscale else 3, **config.model.to_dict())


def collect_frames(config: Any, key: jax.Array, log=print) -> np.ndarray:
  """uint8 `[N, H, W, C]`: every `keep_every`-th frame of `num_envs` envs per task under
  uniformly random actions (each held for `action_repeat` steps)."""
  pixels = config.env.pixels
  spec = PixelSpec(backend=pixels.backend, height=pixels.height, width=pixels.width,
                   grayscale=pixels.grayscale, frame_stack=1, camera=pixels.camera)
  frames = []
  for name in [n.strip() for n in config.env.names.split(",") if n.strip()]:
    start = time.time()
    try:
      env = envs.make(name, obs_type="pixels", pixels=spec,
                      action_repeat=config.collect.action_repeat,
                      num_worlds=config.collect.num_envs)
    except envs.UnknownTaskError as e:
      raise ConfigError(f"config key env.names: {name!r} is not a known task; known: "
                        f"{', '.join(envs.task_names())}") from e
    except ValueError as e:  # e.g. a camera the task does not have
      raise ConfigError(f"config key env.names: {name}: {e}") from e
    vector_env = envs.VectorEnv(env, config.collect.num_envs, stagger=True)
    key, run_key = jax.random.split(key)
    frames.append(np.asarray(_random_run(vector_env, run_key, config.collect.steps,
                                         config.collect.keep_every)))
    log(f"collected {frames[-1].shape[0]} frames of {name} in {time.time() - start:.0f} s")
  return np.concatenate(frames)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _random_run(vector_env, key, steps: int, keep_every: int) -> jax.Array:
  reset_key, action_key = jax.random.split(key)

  def step(state, step_key):
    action = jax.random.uniform(step_key, (vector_env.num_envs, vector_env.action_size),
                                minval=-1.0, maxval=1.0)
    state = vector_env.step(state, action)
    return state, state.obs

  _, observations = jax.lax.scan(step, vector_env.reset(reset_key),
                                 jax.random.split(action_key, steps))
  kept = observations[keep_every - 1::keep_every]  # [T', B, H, W, C]
  return kept.reshape((-1,) + kept.shape[2:])


def train_model(config: Any, model: image_mae.ImageMAE, frames: np.ndarray, key: jax.Array,
                log=print) -> Tuple[Any, Dict[str, float]]:
  """Adam on the masked reconstruction loss; returns the parameters and the final losses
  (training batch and held-out frames)."""
  train_config = config.train
  init_key, order_key, key = jax.random.split(key, 3)
  order = np.asarray(jax.random.permutation(order_key, frames.shape[0]))
  num_holdout = int(round(frames.shape[0] * train_config.holdout))
  holdout = jnp.asarray(frames[order[:num_holdout]][:1024])
  train_frames = jnp.asarray(frames[order[num_holdout:]])
  keep = image_mae.random_keep(init_key, 1, model.num_patches, train_config.mask_ratio)
  params = model.init(init_key, train_frames[:1], keep)
  optimizer = optax.adam(optax.cosine_decay_schedule(train_config.learning_rate,
                                                     train_config.steps))
  opt_state = optimizer.init(params)

  @jax.jit
  def update(params, opt_state, step_key):
    batch_key, mask_key = jax.random.split(step_key)
    batch = train_frames[jax.random.randint(batch_key, (train_config.batch_size,), 0,
                                            train_frames.shape[0])]
    keep = image_mae.random_keep(mask_key, batch.shape[0], model.num_patches,
                                 train_config.mask_ratio)
    (loss, _), grads = jax.value_and_grad(image_mae.reconstruction_loss, argnums=1,
                                          has_aux=True)(model, params, batch, keep,
                                                        train_config.norm_pix_loss,
                                                        train_config.visible_loss_weight)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  @jax.jit
  def holdout_loss(params, mask_key):
    keep = image_mae.random_keep(mask_key, holdout.shape[0], model.num_patches,
                                 train_config.mask_ratio)
    return image_mae.reconstruction_loss(model, params, holdout, keep,
                                         train_config.norm_pix_loss)[0]

  start, loss = time.time(), jnp.nan
  for step in range(1, train_config.steps + 1):
    params, opt_state, loss = update(params, opt_state, jax.random.fold_in(key, step))
    if step % train_config.log_every == 0 or step == train_config.steps:
      held = holdout_loss(params, jax.random.PRNGKey(1)) if num_holdout else jnp.nan
      log(f"step {step}/{train_config.steps}: loss {float(loss):.5f}, held-out "
          f"{float(held):.5f} ({time.time() - start:.0f} s)")
  losses = {"train_loss": float(loss),
            "holdout_loss": float(holdout_loss(params, jax.random.PRNGKey(1)))
            if num_holdout else None}
  return params, losses


def reconstructions_png(model: image_mae.ImageMAE, params: Any, frames: np.ndarray, path: str,
                        mask_ratio: float, norm_pix: bool, num: int = 8, scale: int = 4) -> str:
  """Rows: frames, the visible patches (hidden ones gray), the visible patches with the
  hidden ones reconstructed (with `norm_pix`, put back at each true patch's mean and spread, as
  MAE's own pictures do)."""
  from PIL import Image
  images = jnp.asarray(frames[np.linspace(0, len(frames) - 1, num).astype(int)])
  keep = image_mae.random_keep(jax.random.PRNGKey(2), num, model.num_patches, mask_ratio)
  _, prediction = image_mae.reconstruction_loss(model, params, images, keep, norm_pix)
  patches = image_mae.patchify(images, model.patch_size)
  if norm_pix:
    spread = jnp.sqrt(patches.var(axis=-1, keepdims=True) + 1e-6)
    prediction = prediction * spread + patches.mean(axis=-1, keepdims=True)
  rows_index = jnp.arange(num)[:, None]
  kept_patches = jnp.take_along_axis(patches, keep[..., None], axis=1)
  visible = jnp.full_like(patches, 0.5).at[rows_index, keep].set(kept_patches)
  completed = prediction.at[rows_index, keep].set(kept_patches)
  rows = [images.astype(jnp.float32) / 255.0]
  for row in (visible, completed):
    rows.append(image_mae.unpatchify(row, model.height, model.width, model.channels))
  grid = np.concatenate([np.concatenate(list(np.asarray(r)), axis=1) for r in rows], axis=0)
  grid = (np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)
  if grid.shape[-1] == 1:
    grid = grid[..., 0]
  image = Image.fromarray(grid)
  image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(path)
  return path


def pretrain(config: Any, workdir: str, log=print) -> Dict[str, Any]:
  check(config)
  try:
    envs.import_task_modules(config.env.imports)
  except envs.TaskModuleError as e:
    raise ConfigError(f"config key env.imports={config.env.imports!r}: {e}") from e
  key = jax.random.PRNGKey(config.seed)
  collect_key, train_key = jax.random.split(key)
  frames = collect_frames(config, collect_key, log)
  model = make_model(config)
  params, losses = train_model(config, model, frames, train_key, log)
  info = {"tasks": config.env.names, "frames": int(frames.shape[0]), **losses,
          "config": config.to_dict()}
  encoder_store.save(workdir, model, params, info)
  reconstructions_png(model, params, frames, os.path.join(workdir, "reconstructions.png"),
                      config.train.mask_ratio, config.train.norm_pix_loss)
  return info


def run(argv=None) -> None:
  argv = list(sys.argv if argv is None else argv)
  try:
    _FLAGS(argv)
    config = _CONFIG.value
  except (flags.Error, AttributeError, KeyError, OSError) as e:
    _fail(f"{str(e).splitlines()[0] if str(e) else type(e).__name__}")
  if config is None or not _WORKDIR.value:
    _fail("--config and --workdir are required, e.g. --config=configs/pretrain.py "
          "--workdir=encoders/cartpole32")
  try:
    info = pretrain(config, _WORKDIR.value, log=lambda m: print(m, flush=True))
  except ConfigError as e:
    _fail(str(e))
  print(f"done: encoder in {_WORKDIR.value} ({info['frames']} frames, held-out loss "
        f"{info['holdout_loss']}); train PPO from pixels with "
        f"--config.ppo.encoder_checkpoint={_WORKDIR.value}")


def _fail(message: str) -> None:
  print(f"mimex_jax.pretrain: error: {message}", file=sys.stderr)
  sys.exit(2)


if __name__ == "__main__":
  run()
