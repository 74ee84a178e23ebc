r"""Training entry point: `python -m mimex_jax.train --config=configs/ppo.py --workdir=DIR`.

The host loop only calls the fused, pmapped update step, logs and evaluates; all learning
happens inside the step (see `train_step.py`).
"""

import math
import os
import sys
import time
from typing import Any, Dict

from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics, events and plots.")


def enable_compilation_cache() -> None:
  """Persist compiled programs across runs: on 2 CPU cores compiling dominates short runs."""
  import jax
  cache_dir = os.environ.get("MIMEX_JAX_CACHE_DIR",
                             os.path.join(os.path.expanduser("~"), ".cache", "mimex_jax", "xla"))
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def build(config: Any):
  """Env, learner, intrinsic reward and fused step for `config` (validated already)."""
  import jax
  from mimex_jax import envs, intrinsic, parallel
  from mimex_jax.agents.ppo import PPO
  from mimex_jax.train_step import FusedStep

  num_devices = jax.device_count()
  env = envs.make(config.env.name, episode_length=config.env.episode_length,
                  action_repeat=config.env.action_repeat)
  vector_env = envs.VectorEnv(env, config.num_envs // num_devices, stagger=True)
  steps_per_update = config.num_envs * config.unroll_length * config.env.action_repeat
  total_updates = max(1, math.ceil(config.total_steps / steps_per_update))
  ppo = PPO(env.observation_size, env.action_size, config.ppo, total_updates, parallel.AXIS)
  bonus = intrinsic.make(config.intrinsic, env.observation_size, env.action_size, parallel.AXIS)
  fused = FusedStep(vector_env, ppo, bonus, unroll_length=config.unroll_length,
                    reward_scale=config.ppo.reward_scale, k_expl=config.intrinsic.k_expl,
                    anneal_k_expl=config.intrinsic.anneal, total_updates=total_updates)
  return env, fused, steps_per_update, total_updates


def train_and_evaluate(config: Any, workdir: str, show_progress: bool = True) -> Dict[str, Any]:
  """Trains for `config.total_steps` env steps; returns the last logged metrics."""
  import jax
  import numpy as np
  from mimex_jax import config_checks, metrics as metrics_lib, parallel
  from mimex_jax.evaluate import make_evaluator

  # ---------------------------------------------------------------- checks and output
  config_checks.check(config, jax.device_count())
  enable_compilation_cache()
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  if is_main:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))

  # ---------------------------------------------------------------- model and step
  env, fused, steps_per_update, total_updates = build(config)
  key = jax.random.PRNGKey(config.seed)
  state = parallel.pmap_init(fused.init, key)
  step_fn = parallel.pmap_step(fused)
  step_keys = jax.numpy.stack([jax.random.fold_in(key, 1)] * jax.local_device_count())

  evaluator = make_evaluator(env, config.eval_episodes, fused.deterministic_policy)

  def evaluate(state, update):
    policy_args = parallel.unreplicate((state.params, state.normalizer))
    result = evaluator(policy_args, jax.random.fold_in(jax.random.fold_in(key, 2), update))
    return {k: float(v) for k, v in jax.device_get(result).items()}

  # ---------------------------------------------------------------- loop
  writer = metrics_lib.MetricsWriter(workdir, total_updates * steps_per_update,
                                     enabled=is_main and show_progress)
  episodes = metrics_lib.EpisodeAccumulator()
  pending = []
  window_start, window_updates = time.time(), 0
  compile_seconds = None
  last: Dict[str, Any] = {}
  for update in range(1, total_updates + 1):
    state, step_metrics = step_fn(state, step_keys)
    pending.append(step_metrics)
    if update == 1:  # the first call compiles; keep it out of the throughput figures
      jax.block_until_ready(step_metrics)
      compile_seconds = time.time() - window_start
      window_start, window_updates = time.time(), 0
    else:
      window_updates += 1
    is_eval = (config.eval_every and update % config.eval_every == 0) or update == total_updates
    if update % config.log_every and not is_eval:
      continue
    fetched = [parallel.unreplicate(jax.device_get(m)) for m in pending]
    pending = []
    for m in fetched:
      episodes.add(m)
    elapsed = time.time() - window_start
    scalars = {name: float(np.mean([m[name] for m in fetched])) for name in fetched[-1]
               if not name.endswith("_sum") and name != "episodes"}
    scalars.update(episodes.means())
    scalars["steps_per_second"] = (window_updates * steps_per_update / elapsed
                                   if window_updates else None)
    scalars["compile_seconds"] = compile_seconds
    if is_eval:
      scalars.update(evaluate(state, update))
    writer.write(update * steps_per_update, scalars)
    last = {"step": update * steps_per_update, **scalars}
    window_start, window_updates = time.time(), 0
  writer.close()
  if is_main:
    last["plot"] = metrics_lib.plot_learning_curve(
        workdir, f"{config.env.name}, PPO + {config.intrinsic.kind}")
  return last


def _fail(message: str) -> None:
  print(f"mimex_jax.train: error: {message}", file=sys.stderr)
  sys.exit(2)


def _unknown_override(argv) -> str:
  """Names the `--config.a.b=` override whose key is not in the config, and what is there."""
  import importlib.util
  config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if config_arg is None:
    return "an override names a config key that does not exist"
  path, _, variant = config_arg.partition(":")
  spec = importlib.util.spec_from_file_location("_user_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(variant) if variant else module.get_config()
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    dotted = arg[len("--config."):].split("=", 1)[0]
    node, walked = config, []
    for part in dotted.split("."):
      if not hasattr(node, "keys") or part not in node.keys():
        where = ".".join(walked) or "the config"
        known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(not a block)"
        return f"config key {dotted} does not exist; {where} has: {known}"
      node, walked = node[part], walked + [part]
  return "an override names a config key that does not exist"


def run(argv=None) -> None:
  """Console entry point. User errors print one line and exit with code 2."""
  argv = list(sys.argv if argv is None else argv)
  if not any(a.startswith("--config=") for a in argv):  # no arguments: the default run
    default = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "ppo.py")
    if os.path.exists(default):
      argv.insert(1, f"--config={default}")
  try:
    flags.FLAGS(argv)
    config = _CONFIG.value
  except flags.Error as e:
    lines = [line for line in str(e).splitlines() if line.strip()]
    # A config file that raised carries a traceback; its last line says why.
    _fail(lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}")
  except (AttributeError, KeyError):
    _fail(_unknown_override(argv))
  if config is None:
    _fail("--config is required, e.g. --config=configs/ppo.py")
  workdir = _WORKDIR.value or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
  from mimex_jax.config_checks import ConfigError
  try:
    result = train_and_evaluate(config, workdir)
  except ConfigError as e:
    _fail(str(e))
  summary = ", ".join(f"{k}={v:.4g}" for k, v in result.items()
                      if isinstance(v, float) and k in ("episode_return", "success_rate",
                                                        "eval_return", "eval_success_rate",
                                                        "steps_per_second"))
  print(f"done: {result.get('step')} env steps; {summary}; outputs in {workdir}")


if __name__ == "__main__":
  run()
