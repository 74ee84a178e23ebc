r"""The command line: `python -m mimex_jax.train --config=configs/ppo.py --workdir=DIR`, also the
`mimex-train` console script.

Flags come from `ml_collections`: `--config=FILE[:variant]` and any `--config.a.b=value`
override, plus `--workdir` and `--restore`. Without `--workdir` the run goes to a new
`runs/<date>-<time>`, named on the first line. Every fault ends with one `error:` line; the
exit codes are `EXIT_CODES`.
"""

import importlib.util
import os
import re
import sys
import time
from typing import Optional

from absl import flags
import jax
from ml_collections import config_flags

from mimex_jax import preemption, train
from mimex_jax.checkpoint import NonFiniteError, WriteError
from mimex_jax.config_checks import ConfigError
from mimex_jax.workdir_lock import WorkdirBusyError

EXIT_CODES = {
    0: "done, nothing to do, or stopped by SIGTERM/SIGINT with a checkpoint",
    2: "bad input: flags, config, workdir, a checkpoint that does not fit",
    3: "NaN or inf in training; the last good checkpoint is kept",
    4: "the workdir could not be written (disk full, quota, I/O error); the last good "
       "checkpoint is kept",
    143: "a second SIGTERM after the first: stopped at once without saving (130: SIGINT)",
    5: "another run is training in the same workdir (its process and host are named); "
       "nothing was written",
}

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                                "Directory for metrics, events, plots and checkpoints; a workdir "
                                "that holds checkpoints is resumed from the latest one.")
_RESTORE = flags.DEFINE_string("restore", None,
                               "Start from this checkpoint (a workdir, its checkpoints/ folder "
                               "or checkpoints/<update>) when --workdir has none of its own.")


def _fail(message: str, code: int = 2) -> None:
  print(f"mimex_jax.train: error: {message}", file=sys.stderr)
  sys.exit(code)


def _config_file_problem(argv) -> Optional[str]:
  """Why the `--config=FILE[:variant]` file cannot be read, or None (ml_collections would
  answer with a traceback)."""
  config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if config_arg is None:
    return None
  path = config_arg.partition(":")[0]
  if not path:
    return "--config is empty; give a config file, e.g. --config=configs/ppo.py"
  if not os.path.isfile(path):
    return f"--config={config_arg}: there is no file {path} (from {os.getcwd()})"
  return None


# How absl words a value its boolean parser refuses: `flag --config.a.b=maybe: ('Non-boolean
# argument to boolean flag', 'maybe')`.
_NOT_A_BOOLEAN = re.compile(r"flag --config\.([\w.]+)=(.*?): \('Non-boolean argument")


def _flag_problem(error: flags.Error) -> str:
  """One line for flags that did not parse; a config key said the way the config checks
  say it (key, value, what is allowed)."""
  lines = [line for line in str(error).splitlines() if line.strip()]
  not_a_boolean = _NOT_A_BOOLEAN.match(lines[0])
  if not_a_boolean:
    key, value = not_a_boolean.groups()
    return f"config key {key}={value!r} is invalid; allowed: True or False"
  # A config file that raised carries a traceback; its last line says why.
  return lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}"


_resume_hint = preemption.resume_hint


def _unknown_override(argv) -> str:
  """Names the `--config.a.b=` override whose key is not in the config, and what is there."""
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
  """Parses the flags, trains, prints one summary line. User errors print one line and exit
  with code 2."""
  watch = preemption.watch_signals()  # already there when started as a command
  argv = list(sys.argv if argv is None else argv)
  if not any(a.startswith("--config=") for a in argv):  # no arguments: the default run
    default = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "ppo.py")
    if os.path.exists(default):
      argv.insert(1, f"--config={default}")
  problem = _config_file_problem(argv)
  if problem is not None:
    _fail(problem)
  try:
    flags.FLAGS(argv)
    config = _CONFIG.value
  except flags.Error as e:
    _fail(_flag_problem(e))
  except (AttributeError, KeyError):
    _fail(_unknown_override(argv))
  except OSError as e:  # a config file that could not be loaded
    _fail(f"--config: {str(e).splitlines()[0]}")
  if config is None:
    _fail("--config is required, e.g. --config=configs/ppo.py")
  workdir_given = bool(_WORKDIR.value)
  workdir = _WORKDIR.value or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
  if watch is not None:
    watch.workdir, watch.workdir_given = workdir, workdir_given

  def announce_workdir():  # said first, so the folder is known however the run ends
    if not workdir_given and jax.process_index() == 0:
      print(f"no --workdir given: writing to {workdir} (--workdir={workdir} resumes it)",
            file=sys.stderr)

  try:
    result = train.train_and_evaluate(config, workdir, restore_path=_RESTORE.value,
                                      on_workdir_ready=announce_workdir)
  except ConfigError as e:  # also a checkpoint that does not fit, or an unusable workdir
    _fail(str(e))
  except NonFiniteError as e:
    _fail(str(e), 3)
  except WorkdirBusyError as e:
    _fail(str(e), 5)
  except WriteError as e:
    _fail(f"{e}; when it can be written again, {_resume_hint(workdir, workdir_given)}", 4)
  if jax.process_index() != 0:  # process 0 speaks for a multi-process run
    return
  if result.get("preempted"):
    print(f"stopped by {result['preempted']} at env step {result['step']}: checkpoint saved to "
          f"{result['checkpoint']}; {_resume_hint(workdir, workdir_given)}")
    return
  if result.get("already_trained"):
    print(f"nothing to do: {workdir} is already trained to {result['step']} env steps; raise "
          f"--config.total_steps to train on (checkpoint {result['checkpoint']})")
    return
  summary = ", ".join(f"{k}={v:.4g}" for k, v in result.items()
                      if isinstance(v, float) and k in ("episode_return", "success_rate",
                                                        "eval_return", "eval_success_rate",
                                                        "steps_per_second"))
  print(f"done: {result.get('step')} env steps; {summary}; checkpoint {result['checkpoint']}; "
        f"outputs in {workdir}")


if __name__ == "__main__":
  run()
