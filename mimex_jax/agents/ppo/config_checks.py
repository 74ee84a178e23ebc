"""PPO's config keys: `unroll_length`, observations (`env.obs_type`, `env.pixels`) and the `ppo`
block."""

from typing import Any, Dict, List

from mimex_jax.config_checks import (ConfigError, Rule, boolean, check_rules, nonneg_number,
                                     pixel_rules, positive_int, positive_number, sizes,
                                     unit_interval)
from mimex_jax.networks.conv import MIN_IMAGE_SIZE
from mimex_jax.networks.mlp import ACTIVATIONS

ENCODERS = ("frozen", "conv")

RULES: List[Rule] = [
    ("unroll_length", positive_int, "an integer >= 1"),
    ("eval_sampled", boolean, "True or False"),
    ("ppo.learning_rate", positive_number, "a number > 0"),
    ("ppo.lr_schedule", lambda x: x in ("constant", "cosine", "linear"),
     "constant, cosine or linear"),
    ("ppo.num_epochs", positive_int, "an integer >= 1"),
    ("ppo.num_minibatches", positive_int, "an integer >= 1"),
    ("ppo.clip_epsilon", positive_number, "a number > 0"),
    ("ppo.target_kl", nonneg_number, "a number >= 0 (0: off)"),
    ("ppo.bounds_coef", nonneg_number, "a number >= 0 (0: off)"),
    ("ppo.value_coef", nonneg_number, "a number >= 0"),
    ("ppo.entropy_coef", nonneg_number, "a number >= 0"),
    ("ppo.max_grad_norm", positive_number, "a number > 0"),
    ("ppo.discount", unit_interval, "a number in [0, 1]"),
    ("ppo.gae_lambda", unit_interval, "a number in [0, 1]"),
    ("ppo.reward_scale", nonneg_number, "a number >= 0"),
    ("ppo.init_std", positive_number, "a number > 0"),
    ("ppo.advantage_std_floor", nonneg_number, "a number >= 0"),
    ("ppo.squash_mean", boolean, "True or False"),
    ("ppo.intrinsic_value_head", boolean, "True or False"),
    ("ppo.min_std", nonneg_number, "a number >= 0, below ppo.init_std"),
    ("ppo.max_std", nonneg_number, "a number >= 0 (0: no bound), above ppo.init_std"),
    ("ppo.policy_hidden_sizes", sizes, "a tuple of integers >= 1"),
    ("ppo.value_hidden_sizes", sizes, "a tuple of integers >= 1"),
    ("ppo.activation", lambda x: x in ACTIVATIONS, f"one of {sorted(ACTIVATIONS)}"),
    ("env.obs_type", lambda x: x in ("pixels", "state"), "pixels or state"),
    ("env.proprio", boolean, "True or False"),
]
PIXEL_RULES: List[Rule] = [
    *pixel_rules(MIN_IMAGE_SIZE),
    ("ppo.encoder", lambda x: x in ENCODERS, " or ".join(ENCODERS)),
    ("ppo.encoder_checkpoint", lambda x: isinstance(x, str), "a folder written by "
     "`python -m mimex_jax.pretrain`"),
]


def resolve(config: Dict[str, Any], platform: str) -> Dict[str, Any]:
  """`config` as a checkpoint records it: PPO leaves no choice to the platform."""
  del platform
  return config


def check(config: Any, device_count: int) -> None:
  """Raises `ConfigError` for the first problem in PPO's keys."""
  del device_count  # PPO splits envs only, which the common checks cover
  check_rules(config, RULES)
  if config.env.obs_type == "pixels":
    _check_pixels(config)
  elif config.env.proprio:
    raise ConfigError("config key env.proprio=True adds the joint state beside a frozen "
                      "encoder's features, and env.obs_type=state already observes the whole "
                      "state; use env.obs_type=pixels, or env.proprio=False")
  if config.ppo.min_std >= config.ppo.init_std:
    raise ConfigError(
        f"config key ppo.min_std={config.ppo.min_std} is not below ppo.init_std="
        f"{config.ppo.init_std}: the std starts at init_std and never falls under min_std; "
        f"use a smaller min_std")
  if config.ppo.max_std and config.ppo.max_std <= config.ppo.init_std:
    raise ConfigError(
        f"config key ppo.max_std={config.ppo.max_std} is not above ppo.init_std="
        f"{config.ppo.init_std}: the std starts at init_std and stays under max_std; use a "
        f"larger max_std, or 0 for no bound")
  # A minibatch is every env at unroll_length / num_minibatches of the time steps.
  if config.unroll_length % config.ppo.num_minibatches:
    raise ConfigError(
        f"config key ppo.num_minibatches={config.ppo.num_minibatches} does not divide "
        f"unroll_length={config.unroll_length}: each minibatch takes every env at "
        f"unroll_length/num_minibatches of the time steps; use a divisor of "
        f"{config.unroll_length}")


def _check_pixels(config: Any) -> None:
  check_rules(config, PIXEL_RULES)
  if config.env.pixels.backend == "warp" and config.env.reset_pool == "on":
    raise ConfigError("config key env.reset_pool='on' needs a renderer that draws a few envs at "
                      "a time, and warp draws all of a device's at once; use the jax renderer "
                      "or env.reset_pool=auto")
  if config.env.proprio and config.ppo.encoder != "frozen":
    raise ConfigError(f"config key env.proprio=True needs ppo.encoder=frozen (the conv torso "
                      f"reads frames only), not {config.ppo.encoder!r}; use env.proprio=False")
  if config.ppo.encoder == "frozen":
    from mimex_jax import encoder_store  # reads the checkpoint's sizes before anything compiles
    pixels = config.env.pixels
    encoder_store.check(config.ppo.encoder_checkpoint, pixels.height, pixels.width,
                        1 if pixels.grayscale else 3)
