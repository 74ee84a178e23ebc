"""DrQ-v2's config keys: observations (`env.obs_type`, `env.pixels`), `env_steps`,
`updates_per_step`, `replay`, `checkpoint.include_replay` and the `drq` block."""

from typing import Any, Dict, List

from mimex_jax.config_checks import (ConfigError, Rule, boolean, check_rules, nonneg_int,
                                     nonneg_number, pixel_rules, positive_int, positive_number,
                                     unit_interval)

# Smallest image the DrQ encoder takes: a stride-2 3x3 conv, then three 3x3 convs.
MIN_IMAGE_SIZE = 17

RULES: List[Rule] = [
    ("env.obs_type", lambda x: x in ("pixels", "state"), "pixels or state"),
    *pixel_rules(MIN_IMAGE_SIZE),
    ("env_steps", positive_int, "an integer >= 1 (env steps per env per update)"),
    ("updates_per_step", positive_int, "an integer >= 1"),
    ("replay.capacity", positive_int, "an integer >= 1 (transitions over all devices)"),
    ("checkpoint.include_replay", boolean, "True or False"),
    ("drq.batch_size", positive_int, "an integer >= 1"),
    ("drq.learning_rate", positive_number, "a number > 0"),
    ("drq.feature_dim", positive_int, "an integer >= 1"),
    ("drq.hidden_dim", positive_int, "an integer >= 1"),
    ("drq.num_filters", positive_int, "an integer >= 1"),
    ("drq.num_conv_layers", positive_int, "an integer >= 1"),
    ("drq.discount", unit_interval, "a number in [0, 1]"),
    ("drq.n_step", positive_int, "an integer >= 1"),
    ("drq.tau", lambda x: unit_interval(x) and x > 0, "a number in (0, 1]"),
    ("drq.std_initial", nonneg_number, "a number >= 0"),
    ("drq.std_final", nonneg_number, "a number >= 0"),
    ("drq.std_duration", positive_int, "an integer >= 1 (frames)"),
    ("drq.std_clip", positive_number, "a number > 0"),
    ("drq.aug_pad", nonneg_int, "an integer >= 0"),
    ("drq.random_frames", lambda x: isinstance(x, int) and x >= 0, "an integer >= 0"),
    ("drq.learning_starts", lambda x: isinstance(x, int) and x >= 0, "an integer >= 0"),
    ("drq.intrinsic_features", lambda x: x in ("encoder", "trunk"), "encoder or trunk"),
    ("drq.augment_intrinsic", boolean, "True or False"),
    ("drq.intrinsic_padding", lambda x: x in ("zeros", "blank_frame"), "zeros or blank_frame"),
    ("drq.bonus_encoder", lambda x: x in ("auto", "current", "step_start"),
     "auto, current or step_start"),
    ("drq.learner_updates", lambda x: x in ("auto", "unrolled", "loop"),
     "auto, unrolled or loop"),
]


def bonus_encoder(drq_block: Any, platform: str) -> str:
  """`drq.bonus_encoder` as it trains on `platform`: `auto` is `step_start` on CPU and
  `current` elsewhere. (Chosen when the learner's updates were written out on CPU, each with a
  copy of the bonus; with the updates in a loop, `current` on CPU was not measured.)"""
  choice = drq_block.get("bonus_encoder", "auto")  # checkpoints' configs may lack it
  if choice == "auto":
    return "step_start" if platform == "cpu" else "current"
  return choice


def learner_updates(drq_block: Any) -> str:
  """`drq.learner_updates`: `unrolled` (each update written out) or `loop`. `auto` is `loop`:
  on CPU, at `configs/drq.py:cartpole_swingup_sparse_pixels_cpu`, it compiled in 22-40 s
  instead of 53-82 s and peaked at 2.3-4.4 GB instead of 4.8-7.4 GB, for 3-5% fewer frames/s
  (experiments/drq_cost.py; docs/PERFORMANCE.md)."""
  choice = drq_block.get("learner_updates", "auto")  # checkpoints' configs may lack it
  return "loop" if choice == "auto" else choice


def resolve(config: Dict[str, Any], platform: str) -> Dict[str, Any]:
  """`config` (a dict) with the choices `auto` leaves to the platform made: what a checkpoint
  records, so that resuming it on another platform is compared with what actually trained."""
  if "bonus_encoder" in config.get("drq", {}):
    config = {**config, "drq": {**config["drq"],
                                "bonus_encoder": bonus_encoder(config["drq"], platform)}}
  return config


def check(config: Any, device_count: int) -> None:
  """Raises `ConfigError` for the first problem in DrQ's keys."""
  check_rules(config, RULES)
  if config.drq.batch_size % device_count:
    raise ConfigError(f"config key drq.batch_size={config.drq.batch_size} does not divide among "
                      f"{device_count} devices; use a multiple of {device_count}")
  if (config.env.reset_pool == "on" and config.env.obs_type == "pixels"
      and config.env.pixels.backend == "warp"):
    raise ConfigError("config key env.reset_pool='on' needs a renderer that draws a few envs at "
                      "a time, and warp draws all of a device's at once; use the jax renderer "
                      "or env.reset_pool=auto")
  if config.intrinsic.normalize:
    raise ConfigError("config key intrinsic.normalize=True is not supported with agent=drq "
                      "(the bonus is scored on replayed samples, not on rollouts); set it False")
  # A sample looks back over its context and frame stack and ahead over its n-step window.
  frame_stack = config.env.pixels.frame_stack if config.env.obs_type == "pixels" else 1
  seq_len = config.intrinsic.seq_len if config.intrinsic.kind == "mimex" else 1
  needed_slots = (seq_len - 1) + (frame_stack - 1) + config.drq.n_step + 1
  slots = config.replay.capacity // config.num_envs
  if slots < needed_slots:
    raise ConfigError(
        f"config key replay.capacity={config.replay.capacity} holds {slots} steps of "
        f"num_envs={config.num_envs} envs; a sample needs {needed_slots} (frame_stack, "
        f"intrinsic.seq_len and drq.n_step); raise it to at least "
        f"{needed_slots * config.num_envs}")
