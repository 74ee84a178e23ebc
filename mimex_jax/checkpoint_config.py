"""What a checkpoint's saved config means to this version: which keys may change on resume,
the keys added since older runs were saved (and the values those runs trained with), the
checkpoint format's history, and the comparison that names what differs and how to match it.
"""

import json
from typing import Any, Dict, List

RESUMABLE_KEYS = ("total_steps", "log_every", "eval_every", "eval_episodes", "eval_sampled",
                  "checkpoint", "distributed",  # the process count is checked on its own
                  "drq.learner_updates")  # how updates run, not what they compute
# Keys added after runs were saved, with the value that trains as the code did before the key
# existed: a checkpoint without the key resumes when the current config holds that value.
ADDED_KEYS = {"env.imports": "", "env.reset_pool": "auto",  # the pool keeps episodes the same
              "drq.intrinsic_padding": "zeros", "drq.bonus_encoder": "current",
              "intrinsic.train_fraction": 1.0, "intrinsic.window_end": "obs",
              "ppo.squash_mean": False, "ppo.min_std": 0.0,
              "ppo.advantage_std_floor": 0.0, "ppo.max_std": 0.0, "ppo.target_kl": 0.0,
              "ppo.bounds_coef": 0.0, "ppo.intrinsic_value_head": False,
              "ppo.encoder": "frozen", "ppo.encoder_checkpoint": "",
              # PPO from pixels: the pixel block as DrQ has had it from the start
              "env.obs_type": "state", "env.pixels.backend": "jax", "env.pixels.height": 84,
              "env.pixels.width": 84, "env.pixels.grayscale": False,
              "env.pixels.frame_stack": 3, "env.pixels.camera": "0", "env.proprio": False}

# Keys whose `auto` a run makes by platform before saving (`agents.resolve`); a checkpoint
# written before that holds `auto` itself, which is taken to mean what `auto` makes now.
RESOLVED_ON_SAVE = ("drq.bonus_encoder",)


# The layout of what a checkpoint holds. 1: everything saved before this number was recorded
# (up to mimex_jax 0.1.0 of December 2026); 2: the same, with `format` and `mimex_jax_version`
# in its meta. Raise it when a saved state's structure changes, and say below what changed.
CHECKPOINT_FORMAT = 2
FORMAT_CHANGES = {
    1: "no version recorded; written before December 2026",
}


def with_added_keys(saved_config: Dict[str, Any]) -> Dict[str, Any]:
  """A saved config with every key added since filled in with the value that trains as the code
  did before the key existed (`ADDED_KEYS`), so an older run's config builds today's learner."""
  config = json.loads(json.dumps(saved_config))
  for dotted, value in ADDED_KEYS.items():
    node = config
    *parents, leaf = dotted.split(".")
    for parent in parents:  # only into blocks the run has (a PPO run has no `drq` block)
      node = node.get(parent) if isinstance(node, dict) else None
    if isinstance(node, dict):
      node.setdefault(leaf, value)
  return config


def version_of(meta: Dict[str, Any]) -> str:
  """Which mimex_jax wrote a checkpoint, as a user can read it."""
  form = meta.get("format", 1)
  if form == 1:
    return f"an older version of mimex_jax (checkpoint format 1: {FORMAT_CHANGES[1]})"
  return f"mimex_jax {meta.get('mimex_jax_version', '?')} (checkpoint format {form})"


def config_to_dict(config: Any) -> Dict[str, Any]:
  """A JSON round trip, so tuples and lists compare equal between a config and a checkpoint."""
  if hasattr(config, "to_json_best_effort"):
    return json.loads(config.to_json_best_effort(sort_keys=True))
  return json.loads(json.dumps(config, sort_keys=True))


def _flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def _resumable(key: str) -> bool:
  """A key (or a key of a block) that may change when a run resumes."""
  return key in RESUMABLE_KEYS or key.split(".")[0] in RESUMABLE_KEYS


def config_differences(saved: Dict[str, Any], current: Dict[str, Any]) -> List[str]:
  """`key=saved (checkpoint) vs current` for every key that matters for training."""
  saved_flat, current_flat = _flatten(saved), _flatten(current)
  differences = []
  for key in sorted(set(saved_flat) | set(current_flat)):
    if _resumable(key):
      continue
    missing = "<absent>"
    old, new = saved_flat.get(key, missing), current_flat.get(key, missing)
    if old is missing and key in ADDED_KEYS and new == ADDED_KEYS[key]:
      continue
    if old == "auto" and key in RESOLVED_ON_SAVE:
      continue
    if old is missing and key in ADDED_KEYS:
      differences.append(f"{key} absent in the checkpoint ({ADDED_KEYS[key]!r} before the key "
                         f"existed) vs {new!r} now")
    elif old is missing:
      differences.append(f"{key} absent in the checkpoint vs {new!r} now")
    elif new is missing:
      differences.append(f"{key}={old!r} in the checkpoint, a key this version does not have")
    elif old != new:
      differences.append(f"{key}={old!r} in the checkpoint vs {new!r} now")
  return differences


def override_flags(saved: Dict[str, Any], current: Dict[str, Any]) -> List[str]:
  """The `--config.<key>=<value>` flags that make `current` train what `saved` trained (a key
  the saved config lacks takes the value the code had before the key existed)."""
  saved_flat = _flatten(with_added_keys(saved))
  current_flat = _flatten(current)
  flags = []
  for key in sorted(set(saved_flat) | set(current_flat)):
    if _resumable(key) or key not in saved_flat or key not in current_flat:
      continue
    if saved_flat[key] == "auto" and key in RESOLVED_ON_SAVE:
      continue
    if saved_flat[key] != current_flat.get(key, "<absent>"):
      value = saved_flat[key]
      text = ",".join(map(str, value)) if isinstance(value, list) else value
      flags.append(f"--config.{key}={text}")
  return flags
