"""Config checks every run shares, and what the learners' own checks are written with.

Each problem is one `ConfigError` line naming the key, the value and what is allowed. A learner's
keys are checked by `agents/<name>/config_checks.py`; `mimex_jax.agents.check` runs both.
"""

import math
from typing import Any, Callable, Iterator, List, Optional, Tuple

from mimex_jax import envs, intrinsic
from mimex_jax.intrinsic.masking import KINDS as MASK_KINDS, num_kept


class ConfigError(ValueError):
  """A user error in the config: printed as one line, exit code 2."""


# (dotted key, test of its value, what is allowed: said in the error line)
Rule = Tuple[str, Callable[[Any], bool], str]


def _get(config: Any, dotted: str) -> Any:
  value = config
  for part in dotted.split("."):
    value = value[part]
  return value


class MissingKeyError(ConfigError):
  """A key a check reads is not in the config (e.g. `agent` names a learner whose block the
  config file does not have)."""


def check_rules(config: Any, rules: List[Rule]) -> None:
  """Raises `ConfigError` for the first key whose value fails its rule."""
  for key, ok, allowed in rules:
    try:
      value = _get(config, key)
    except (KeyError, AttributeError) as e:
      raise MissingKeyError(f"config key {key} is missing") from e
    if not ok(value):
      raise ConfigError(f"config key {key}={value!r} is invalid; allowed: {allowed}")


def positive_int(x):
  return isinstance(x, int) and not isinstance(x, bool) and x > 0


def nonneg_int(x):
  return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def nonneg_number(x):
  return isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0


def positive_number(x):
  return nonneg_number(x) and x > 0


def unit_interval(x):
  return nonneg_number(x) and x <= 1


def sizes(x):
  return isinstance(x, (tuple, list)) and all(positive_int(s) for s in x)


def boolean(x):
  return isinstance(x, bool)


def pixel_rules(min_image_size: int) -> List[Rule]:
  """The `env.pixels` block's rules (DrQ's and PPO's); `min_image_size` is the smallest frame the
  learner's conv encoder takes."""
  from mimex_jax.envs.pixels import BACKENDS
  size_rule = (lambda x: positive_int(x) and x >= min_image_size,
               f"an integer >= {min_image_size} (the conv encoder's smallest input)")
  return [
      ("env.pixels.backend", lambda x: x in BACKENDS, f"one of {BACKENDS}"),
      ("env.pixels.height", *size_rule),
      ("env.pixels.width", *size_rule),
      ("env.pixels.grayscale", boolean, "True or False"),
      ("env.pixels.frame_stack", positive_int, "an integer >= 1"),
  ]


def _leaves(node: Any, prefix: str = "") -> Iterator[Tuple[str, Any]]:
  """`(dotted key, value)` of every value in a config, tuples and lists entry by entry."""
  if hasattr(node, "items"):
    for key, value in node.items():
      yield from _leaves(value, f"{prefix}{key}.")
  elif isinstance(node, (tuple, list)):
    for i, value in enumerate(node):
      yield from _leaves(value, f"{prefix[:-1]}[{i}].")
  else:
    yield prefix[:-1], node


def first_non_finite_key(config: Any) -> Optional[Tuple[str, float]]:
  """`(dotted key, value)` of the first NaN or inf in the config, or None. No key means NaN or
  inf (a learning rate of inf passes `x > 0` and only shows up as NaN losses later)."""
  for key, value in _leaves(config):
    if isinstance(value, float) and not math.isfinite(value):
      return key, value
  return None


COMMON_RULES: List[Rule] = [
    ("env.episode_length", nonneg_int, "an integer >= 1, or 0 for the task's own"),
    ("env.action_repeat", positive_int, "an integer >= 1"),
    ("env.reset_pool", lambda x: x in envs.RESET_POOL, "auto, on or off"),
    ("seed", lambda x: isinstance(x, int) and x >= 0, "an integer >= 0"),
    ("distributed", boolean, "True or False"),
    ("num_seeds", positive_int, "an integer >= 1"),
    ("num_envs", positive_int, "an integer >= 1"),
    ("total_steps", positive_int, "an integer >= 1"),
    ("log_every", positive_int, "an integer >= 1 (updates)"),
    ("eval_every", lambda x: isinstance(x, int) and x >= 0, "an integer >= 0 (0: at the end)"),
    ("eval_episodes", positive_int, "an integer >= 1"),
    ("checkpoint.every", nonneg_int, "an integer >= 0 (updates; 0: only at the end)"),
    ("checkpoint.max_to_keep", positive_int, "an integer >= 1"),
    ("checkpoint.keep_best", boolean, "True or False"),
    ("checkpoint.async_save", boolean, "True or False"),
    ("intrinsic.kind", lambda x: x in intrinsic.KINDS, f"one of {intrinsic.KINDS}"),
    ("intrinsic.k_expl", nonneg_number, "a number >= 0"),
    ("intrinsic.normalize", boolean, "True or False"),
    ("intrinsic.return_discount", lambda x: unit_interval(x) and x < 1, "0 <= x < 1"),
    ("intrinsic.seq_len", positive_int, "an integer >= 1"),
    ("intrinsic.mask", lambda x: x in MASK_KINDS, f"one of {MASK_KINDS}"),
    ("intrinsic.mask_ratio", lambda x: nonneg_number(x) and x < 1, "0 <= mask_ratio < 1"),
    ("intrinsic.n_mask", positive_int, "an integer >= 1"),
    ("intrinsic.window_end", lambda x: x in ("obs", "next_obs"), "obs or next_obs"),
    ("intrinsic.train_fraction", lambda x: positive_number(x) and x <= 1,
     "a number with 0 < train_fraction <= 1"),
    ("intrinsic.learning_rate", positive_number, "a number > 0"),
    ("intrinsic.embedding", lambda x: x in ("obs", "random_projection"),
     "obs or random_projection"),
    ("intrinsic.embedding_dim", positive_int, "an integer >= 1"),
    ("intrinsic.embed_dim", lambda x: positive_int(x) and x % 2 == 0, "an even integer >= 2"),
    ("intrinsic.depth", positive_int, "an integer >= 1"),
    ("intrinsic.num_heads", positive_int, "an integer >= 1"),
    ("intrinsic.decoder_embed_dim", lambda x: positive_int(x) and x % 2 == 0,
     "an even integer >= 2"),
    ("intrinsic.decoder_depth", positive_int, "an integer >= 1"),
    ("intrinsic.decoder_num_heads", positive_int, "an integer >= 1"),
    ("intrinsic.rnd.hidden_sizes", sizes, "a tuple of integers >= 1"),
    ("intrinsic.rnd.output_size", positive_int, "an integer >= 1"),
    ("intrinsic.rnd.learning_rate", positive_number, "a number > 0"),
    ("intrinsic.icm.feature_size", positive_int, "an integer >= 1"),
    ("intrinsic.icm.hidden_size", positive_int, "an integer >= 1"),
    ("intrinsic.icm.learning_rate", positive_number, "a number > 0"),
]

# Largest num_seeds that ran on XLA's CPU backend (jax 0.10.2, 2 cores): more vmapped seeds of
# these bonuses hung the first update at 0% CPU (a deadlock inside XLA, not in this code).
CPU_MAX_SEEDS = {"rnd": 2, "icm": 1}


def check_common(config: Any, device_count: int, platform: str = "cpu") -> None:
  """Raises `ConfigError` for the first problem in the keys every learner reads: the run, the
  env and the intrinsic reward."""
  bad = first_non_finite_key(config)
  if bad is not None:
    raise ConfigError(f"config key {bad[0]}={bad[1]!r} is invalid; allowed: a finite number")
  check_rules(config, COMMON_RULES)
  check_env_name(config)

  limit = CPU_MAX_SEEDS.get(config.intrinsic.kind)
  if platform == "cpu" and limit is not None and config.num_seeds > limit:
    raise ConfigError(
        f"config key num_seeds={config.num_seeds} with intrinsic.kind={config.intrinsic.kind} "
        f"deadlocks XLA on CPU (measured with jax 0.10.2); use num_seeds<={limit} per run, "
        f"e.g. experiments/compare_exploration.py --seeds_per_run, or a GPU")
  if config.num_envs % device_count:
    raise ConfigError(f"config key num_envs={config.num_envs} does not divide among "
                      f"{device_count} devices; use a multiple of {device_count}")
  _check_mimex(config.intrinsic)
  if config.intrinsic.kind == "mimex":
    episode = config.env.episode_length or envs.spec(config.env.name).default_episode_length
    if config.intrinsic.seq_len > episode:
      raise ConfigError(
          f"config key intrinsic.seq_len={config.intrinsic.seq_len} is longer than an episode "
          f"of {config.env.name} ({episode} agent steps, env.episode_length): every window "
          f"would be mostly padding; use seq_len <= {episode}")


def check_env_name(config: Any) -> None:
  """Imports the modules in `env.imports` (where the user's tasks register), then raises
  `ConfigError` if `env.name` is still not a known task."""
  imports = config.env.get("imports", "")  # configs saved before env.imports have none
  try:
    envs.import_task_modules(imports)
  except envs.TaskModuleError as e:
    raise ConfigError(f"config key env.imports={imports!r}: {e}") from e
  try:
    envs.spec(config.env.name)
  except envs.UnknownTaskError as e:
    raise ConfigError(f"config key env.name={config.env.name!r} is not a known task; "
                      f"known: {', '.join(envs.task_names())}. A task of your own: "
                      "mimex_jax.envs.register it in a module and name that module in "
                      "env.imports (README, \"Your own environment\")") from e


def _check_mimex(block: Any) -> None:
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
