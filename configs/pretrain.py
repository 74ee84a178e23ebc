r"""Pretraining a frozen visual encoder for PPO from pixels: frames from a task, a masked
autoencoder trained on them (mimex_jax/networks/image_mae.py).

  python -m mimex_jax.pretrain --config=configs/pretrain.py --workdir=encoders/cartpole32

writes `encoder.json`, `params/` and `reconstructions.png` into the workdir; PPO reads it with
`--config=configs/ppo.py:cartpole_balance_pixels --config.ppo.encoder_checkpoint=<workdir>`.

Variants (`--config=configs/pretrain.py:<variant>`):
  cartpole_32   the default: CartpoleBalance and CartpoleSwingup frames at 32x32 from random
                actions; sized for a 2-core CPU (a few minutes)
  cartpole_84   84x84 frames, a wider and deeper model and longer training: for a GPU
  smoke         a few seconds, for tests
"""

from ml_collections import config_dict

VARIANTS = ("cartpole_32", "cartpole_84", "smoke")


def get_config(arg: str = "cartpole_32") -> config_dict.ConfigDict:
  arg = arg or "cartpole_32"
  if arg not in VARIANTS:
    raise ValueError(f"unknown variant {arg!r} of configs/pretrain.py; choose one of {VARIANTS}")
  config = config_dict.ConfigDict()
  config.seed = 0

  config.env = config_dict.ConfigDict()
  # Frames come from each of these tasks in turn (comma-separated); modules in env.imports
  # register tasks of your own. Cartpole's swing-up frames show the pole at every angle, its
  # balance frames the upright pole PPO will keep.
  config.env.names = "CartpoleBalance,CartpoleSwingup"
  config.env.imports = ""
  config.env.pixels = config_dict.ConfigDict()
  config.env.pixels.backend = "jax"
  config.env.pixels.height = 32
  config.env.pixels.width = 32
  config.env.pixels.grayscale = False
  config.env.pixels.camera = "0"

  config.collect = config_dict.ConfigDict()
  config.collect.num_envs = 64  # per task
  config.collect.steps = 400  # env steps per env (uniformly random actions)
  config.collect.keep_every = 4  # keep every 4th frame: neighbours are nearly the same
  config.collect.action_repeat = 2  # random actions held for 2 steps move the cart further

  config.model = config_dict.ConfigDict()
  # 8x8 patches: 16 tokens of 32 features a frame (512). 4x4 patches gave 2048 a frame, and
  # PPO's first layers over 3 stacked frames then cost more than rendering and encoding
  # together (438 steps/s per seed, 3 seeds, on the shared 2-core CPU).
  config.model.patch_size = 8
  config.model.embed_dim = 32
  config.model.depth = 2
  config.model.num_heads = 4
  config.model.decoder_embed_dim = 32
  config.model.decoder_depth = 1
  config.model.decoder_num_heads = 4
  config.model.mlp_ratio = 4.0
  config.model.pool = "flatten"  # flatten (keeps where things are) | mean

  config.train = config_dict.ConfigDict()
  config.train.steps = 3000
  config.train.batch_size = 128
  config.train.learning_rate = 1e-3  # Adam, cosine decay to 0
  config.train.mask_ratio = 0.75  # MAE's
  # Each patch's target standardized (MAE's norm_pix_loss): at 32x32 the cart and pole cover a
  # few pixels, and plain pixel error is spent almost all on the uniform background.
  config.train.norm_pix_loss = True
  # > 0: the visible patches' reconstruction error counts too, at this weight per patch (MAE: 0).
  # The held-out loss printed stays MAE's (hidden patches only).
  config.train.visible_loss_weight = 0.0
  config.train.log_every = 250
  config.train.holdout = 0.1  # share of frames kept out of training, for the held-out loss

  if arg == "cartpole_84":
    config.env.pixels.height = config.env.pixels.width = 84
    config.collect.num_envs = 256
    config.model.patch_size = 12
    config.model.embed_dim = 128
    config.model.depth = 4
    config.model.decoder_embed_dim = 64
    config.model.decoder_depth = 2
    config.model.pool = "mean"
    config.train.steps = 20000
    config.train.batch_size = 256
  if arg == "smoke":
    config.env.names = "CartpoleBalance"
    config.env.pixels.height = config.env.pixels.width = 16
    config.collect.num_envs = 4
    config.collect.steps = 24
    config.collect.keep_every = 2
    config.model.patch_size = 4
    config.model.embed_dim = 8
    config.model.depth = 1
    config.model.num_heads = 2
    config.model.decoder_embed_dim = 8
    config.model.decoder_num_heads = 2
    config.train.steps = 20
    config.train.batch_size = 8
    config.train.log_every = 10
  return config
