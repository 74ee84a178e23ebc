"""Checks a training config before anything compiles; each problem is one line naming the key,
the value and what is allowed."""

from typing import Any, Callable, List, Tuple

from mimex_jax import envs, intrinsic
from mimex_jax.envs.pixels import BACKENDS
from mimex_jax.intrinsic.masking import KINDS as MASK_KINDS, num_kept
from mimex_jax.networks.mlp import ACTIVATIONS


class ConfigError(ValueError):
  """A user error in the config: printed as one line, exit code 2."""


def _get(config: Any, dotted: str) -> Any:
  value = config
  for part in dotted.split("."):
    value = value[part]
  return value


def _positive_int(x):
  return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _nonneg_number(x):
  return isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0


def _positive_number(x):
  return _nonneg_number(x) and x > 0


def _unit_interval(x):
  return _nonneg_number(x) and x <= 1


def _sizes(x):
  return isinstance(x, (tuple, list)) and all(_positive_int(s) for s in x)


AGENTS = ("ppo", "drq")
# Smallest image the DrQ encoder takes: a stride-2 3x3 conv, then three 3x3 convs.
MIN_IMAGE_SIZE = 17


_COMMON_RULES: List[Tuple[str, Callable[[Any], bool], str]] = [
    ("env.episode_length", _positive_int, "an integer >= 1"),
    ("env.action_repeat", _positive_int, "an integer >= 1"),
    ("seed", lambda x: isinstance(x, int) and x >= 0, "an integer >= 0"),
    ("distributed", lambda x: isinstance(x, bool), "True or False"),
    ("num_seeds", _positive_int, "an integer >= 1"),
    ("num_envs", _positive_int, "an integer >= 1"),
    ("total_steps", _positive_int, "an integer >= 1"),
    ("log_every", _positive_int, "an integer >= 1 (updates)"),
    ("eval_every", lambda x: isinstance(x, int) and x >= 0, "an integer >= 0 (0: at the end)"),
    ("eval_episodes", _positive_int, "an integer >= 1"),
    ("checkpoint.every", lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0,
     "an integer >= 0 (updates; 0: only at the end)"),
    ("checkpoint.max_to_keep", _positive_int, "an integer >= 1"),
    ("checkpoint.keep_best", lambda x: isinstance(x, bool), "True or False"),
    ("checkpoint.async_save", lambda x: isinstance(x, bool), "True or False"),
    ("intrinsic.kind", lambda x: x in intrinsic.KINDS, f"one of {intrinsic.KINDS}"),
    ("intrinsic.k_expl", _nonneg_number, "a number >= 0"),
    ("intrinsic.normalize", lambda x: isinstance(x, bool), "True or False"),
    ("intrinsic.return_discount", lambda x: _unit_interval(x) and x < 1, "0 <= x < 1"),
    ("intrinsic.seq_len", _positive_int, "an integer >= 1"),
    ("intrinsic.mask", lambda x: x in MASK_KINDS, f"one of {MASK_KINDS}"),
    ("intrinsic.mask_ratio", lambda x: _nonneg_number(x) and x < 1, "0 <= mask_ratio < 1"),
    ("intrinsic.n_mask", _positive_int, "an integer >= 1"),
    ("intrinsic.window_end", lambda x: x in ("obs", "next_obs"), "obs or next_obs"),
    ("intrinsic.train_fraction", lambda x: _positive_number(x) and x <= 1,
     "a number with 0 < train_fraction <= 1"),
    ("intrinsic.learning_rate", _positive_number, "a number > 0"),
    ("intrinsic.embedding", lambda x: x in ("obs", "random_projection"),
     "obs or random_projection"),
    ("intrinsic.embedding_dim", _positive_int, "an integer >= 1"),
    ("intrinsic.embed_dim", lambda x: _positive_int(x) and x % 2 == 0, "an even integer >= 2"),
    ("intrinsic.depth", _positive_int, "an integer >= 1"),
    ("intrinsic.num_heads", _positive_int, "an integer >= 1"),
    ("intrinsic.decoder_embed_dim", lambda x: _positive_int(x) and x % 2 == 0,
     "an even integer >= 2"),
    ("intrinsic.decoder_depth", _positive_int, "an integer >= 1"),
    ("intrinsic.decoder_num_heads", _positive_int, "an integer >= 1"),
    ("intrinsic.rnd.hidden_sizes", _sizes, "a tuple of integers >= 1"),
    ("intrinsic.rnd.output_size", _positive_int, "an integer >= 1"),
    ("intrinsic.rnd.learning_rate", _positive_number, "a number > 0"),
    ("intrinsic.icm.feature_size", _positive_int, "an integer >= 1"),
    ("intrinsic.icm.hidden_size", _positive_int, "an integer >= 1"),
    ("intrinsic.icm.learning_rate", _positive_number, "a number > 0"),
]

_PPO_RULES: List[Tuple[str, Callable[[Any], bool], str]] = [
    ("unroll_length", _positive_int, "an integer >= 1"),
    ("ppo.learning_rate", _positive_number, "a number > 0"),
    ("ppo.lr_schedule", lambda x: x in ("constant", "cosine", "linear"),
     "constant, cosine or linear"),
    ("ppo.num_epochs", _positive_int, "an integer >= 1"),
    ("ppo.num_minibatches", _positive_int, "an integer >= 1"),
    ("ppo.clip_epsilon", _positive_number, "a number > 0"),
    ("ppo.value_coef", _nonneg_number, "a number >= 0"),
    ("ppo.entropy_coef", _nonneg_number, "a number >= 0"),
    ("ppo.max_grad_norm", _positive_number, "a number > 0"),
    ("ppo.discount", _unit_interval, "a number in [0, 1]"),
    ("ppo.gae_lambda", _unit_interval, "a number in [0, 1]"),
    ("ppo.reward_scale", _nonneg_number, "a number >= 0"),
    ("ppo.init_std", _positive_number, "a number > 0"),
    ("ppo.policy_hidden_sizes", _sizes, "a tuple of integers >= 1"),
    ("ppo.value_hidden_sizes", _sizes, "a tuple of integers >= 1"),
    ("ppo.activation", lambda x: x in ACTIVATIONS, f"one of {sorted(ACTIVATIONS)}"),
]

_DRQ_RULES: List[Tuple[str, Callable[[Any], bool], str]] = [
    ("env.obs_type", lambda x: x in ("pixels", "state"), "pixels or state"),
    ("env.pixels.backend", lambda x: x in BACKENDS, f"one of {BACKENDS}"),
    ("env.pixels.height", lambda x: _positive_int(x) and x >= MIN_IMAGE_SIZE,
     f"an integer >= {MIN_IMAGE_SIZE} (the conv encoder's smallest input)"),
    ("env.pixels.width", lambda x: _positive_int(x) and x >= MIN_IMAGE_SIZE,
     f"an integer >= {MIN_IMAGE_SIZE} (the conv encoder's smallest input)"),
    ("env.pixels.grayscale", lambda x: isinstance(x, bool), "True or False"),
    ("env.pixels.frame_stack", _positive_int, "an integer >= 1"),
    ("env_steps", _positive_int, "an integer >= 1 (env steps per env per update)"),
    ("updates_per_step", _positive_int, "an integer >= 1"),
    ("replay.capacity", _positive_int, "an integer >= 1 (transitions over all devices)"),
    ("drq.batch_size", _positive_int, "an integer >= 1"),
    ("drq.learning_rate", _positive_number, "a number > 0"),
    ("drq.feature_dim", _positive_int, "an integer >= 1"),
    ("drq.hidden_dim", _positive_int, "an integer >= 1"),
    ("drq.num_filters", _positive_int, "an integer >= 1"),
    ("drq.num_conv_layers", _positive_int, "an integer >= 1"),
    ("drq.discount", _unit_interval, "a number in [0, 1]"),
    ("drq.n_step", _positive_int, "an integer >= 1"),
    ("drq.tau", lambda x: _unit_interval(x) and x > 0, "a number in (0, 1]"),
    ("drq.std_initial", _nonneg_number, "a number >= 0"),
    ("drq.std_final", _nonneg_number, "a number >= 0"),
    ("drq.std_duration", _positive_int, "an integer >= 1 (frames)"),
    ("drq.std_clip", _positive_number, "a number > 0"),
    ("drq.aug_pad", lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0,
     "an integer >= 0"),
    ("drq.random_frames", lambda x: isinstance(x, int) and x >= 0, "an integer >= 0"),
    ("drq.learning_starts", lambda x: isinstance(x, int) and x >= 0, "an integer >= 0"),
    ("drq.intrinsic_features", lambda x: x in ("encoder", "trunk"), "encoder or trunk"),
    ("drq.augment_intrinsic", lambda x: isinstance(x, bool), "True or False"),
]

# Largest num_seeds that ran on XLA's CPU backend (jax 0.10.2, 2 cores): more vmapped seeds of
# these bonuses hung the first update at 0% CPU (a deadlock inside XLA, not in this code).
CPU_MAX_SEEDS = {"rnd": 2, "icm": 1}


def check(config: Any, device_count: int, platform: str = "cpu") -> None:
  """Raises `ConfigError` for the first problem found."""
  agent = config.get("agent", "ppo")
  if agent not in AGENTS:
    raise ConfigError(f"config key agent={agent!r} is invalid; allowed: one of {AGENTS}")
  rules = _COMMON_RULES + (_PPO_RULES if agent == "ppo" else _DRQ_RULES)
  for key, ok, allowed in rules:
    value = _get(config, key)
    if not ok(value):
      raise ConfigError(f"config key {key}={value!r} is invalid; allowed: {allowed}")

  try:
    envs.spec(config.env.name)
  except envs.UnknownTaskError as e:
    raise ConfigError(f"config key env.name={config.env.name!r} is not a known task; "
                      f"known: {', '.join(envs.task_names())}") from e

  limit = CPU_MAX_SEEDS.get(config.intrinsic.kind)
  if platform == "cpu" and limit is not None and config.num_seeds > limit:
    raise ConfigError(
        f"config key num_seeds={config.num_seeds} with intrinsic.kind={config.intrinsic.kind} "
        f"deadlocks XLA on CPU (measured with jax 0.10.2); use num_seeds<={limit} per run, "
        f"e.g. experiments/compare_exploration.py --seeds_per_run, or a GPU")
  if config.num_envs % device_count:
    raise ConfigError(f"config key num_envs={config.num_envs} does not divide among "
                      f"{device_count} devices; use a multiple of {device_count}")
  if agent == "ppo":
    # A minibatch is every env at unroll_length / num_minibatches of the time steps.
    if config.unroll_length % config.ppo.num_minibatches:
      raise ConfigError(
          f"config key ppo.num_minibatches={config.ppo.num_minibatches} does not divide "
          f"unroll_length={config.unroll_length}: each minibatch takes every env at "
          f"unroll_length/num_minibatches of the time steps; use a divisor of "
          f"{config.unroll_length}")
  else:
    _check_drq(config, device_count)

  block = config.intrinsic
  if block.kind != "mimex":
    return
  if block.mask == "elementwise":
    if block.mask_ratio == 0:
      raise ConfigError("config key intrinsic.mask_ratio=0 masks no element; raise it")
  else:
    kept = num_kept(block.seq_len, block.mask_ratio)
    if kept >= block.seq_len:
      raise ConfigError(
          f"config key intrinsic.mask_ratio={block.mask_ratio!r} masks no position of a "
          f"sequence of seq_len={block.seq_len} (keeps int(T*(1-ratio))={kept}); raise it")
    if kept == 0 and not block.use_cls:
      raise ConfigError(
          f"config key intrinsic.mask_ratio={block.mask_ratio!r} keeps no position of "
          f"seq_len={block.seq_len} and use_cls=False leaves the encoder nothing; lower it")
  for width, heads in (("embed_dim", "num_heads"), ("decoder_embed_dim", "decoder_num_heads")):
    if block[width] % block[heads]:
      raise ConfigError(f"config key intrinsic.{heads}={block[heads]} does not divide "
                        f"intrinsic.{width}={block[width]}")


def _check_drq(config: Any, device_count: int) -> None:
  if config.drq.batch_size % device_count:
    raise ConfigError(f"config key drq.batch_size={config.drq.batch_size} does not divide among "
                      f"{device_count} devices; use a multiple of {device_count}")
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
