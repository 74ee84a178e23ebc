"""Learners, one folder each (`ppo/`, `drq/`), and the table that finds one by `config.agent`.

A learner's folder holds all of it: losses, learner, fused step (`train_step.py`), `builder.py`
(`build(config)`: the fused step from a config) and `config_checks.py` (`check(config,
device_count)`: its own keys; `resolve(config, platform)`: its `auto` choices made). Each takes
time-major `[T, B]` rollouts or replayed samples and returns new parameters and metrics.
"""

from typing import Any, Dict


def _ppo():
  from mimex_jax.agents.ppo import builder, config_checks
  return builder, config_checks


def _drq():
  from mimex_jax.agents.drq import builder, config_checks
  return builder, config_checks


# config.agent -> its `(builder, config_checks)` modules. Imported only when asked for, so that
# a run (and `import mimex_jax.train`) loads no learner it does not train.
_LEARNERS = {"ppo": _ppo, "drq": _drq}
AGENTS = tuple(_LEARNERS)


def _agent(config: Any) -> str:
  return config.get("agent", "ppo")  # configs saved before DrQ existed have no `agent` key


def check(config: Any, device_count: int, platform: str = "cpu") -> None:
  """Raises `mimex_jax.config_checks.ConfigError` for the first problem in `config`: the keys
  every run shares, then the learner's own."""
  from mimex_jax.config_checks import ConfigError, MissingKeyError, check_common
  agent = _agent(config)
  if agent not in _LEARNERS:
    raise ConfigError(f"config key agent={agent!r} is invalid; allowed: one of {AGENTS}")
  check_common(config, device_count, platform)
  _, learner_checks = _LEARNERS[agent]()
  try:
    learner_checks.check(config, device_count)
  except MissingKeyError as e:  # e.g. --config.agent=drq on configs/ppo.py
    raise ConfigError(f"{e}: agent={agent} reads the keys of configs/{agent}.py; start from "
                      f"--config=configs/{agent}.py") from e


def build(config: Any):
  """`(eval_env, fused, steps_per_update, total_updates)` for `config` (checked already): the
  env that evaluation runs on, and the fused step of the learner `config.agent` names."""
  builder, _ = _LEARNERS[_agent(config)]()
  return builder.build(config)


def resolve(config: Dict[str, Any], platform: str) -> Dict[str, Any]:
  """`config` (a dict, as checkpoints hold it) with every `auto` choice the learner makes by
  platform made for `platform` (DrQ's `drq.bonus_encoder`): what a checkpoint records."""
  _, learner_checks = _LEARNERS[_agent(config)]()
  return learner_checks.resolve(config, platform)
