"""mimex_jax: MIMEx intrinsic rewards with PPO on vectorized MuJoCo-MJX environments.

Arrays that come out of a rollout are time-major: `[T, B, ...]` with T the unroll length and B
the number of environments on one device. That is the only convention used in this package.
"""

import os
import sys

from mimex_jax.version import __version__  # noqa: F401

# MuJoCo picks its OpenGL backend when it is first imported. A headless Linux machine has no
# window system, so evaluation videos render through EGL unless the user chose a backend.
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
  os.environ.setdefault("MUJOCO_GL", "egl")


# XLA's concurrency-optimized CPU scheduler deadlocked the fused step here (jax 0.10.2: PPO + ICM
# with two seeds vmapped hung at 0% CPU on the first update); the classic scheduler runs it.
# XLA reads these flags when its CPU backend starts, which is after this import.
_CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if "xla_cpu_enable_concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _CPU_SCHEDULER_FLAG).strip()


def _started_as_training_command() -> bool:
  argv = getattr(sys, "orig_argv", [])
  if "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "mimex_jax.train":
    return True
  return any(os.path.basename(a) == "mimex-train" for a in argv[:2])


# A scheduler's SIGTERM during the imports, the env build or the first compile (20-140 s on a
# loaded machine) ends the run with one line, not a silent 143: the watch starts before JAX is
# imported (mimex_jax.preemption).
def _workdir_argument():
  argv = getattr(sys, "orig_argv", [])
  for i, arg in enumerate(argv):
    if arg.startswith("--workdir="):
      return arg.split("=", 1)[1]
    if arg == "--workdir" and i + 1 < len(argv):
      return argv[i + 1]
  return None


if _started_as_training_command():
  from mimex_jax import preemption as _preemption
  _watch = _preemption.watch_signals()
  if _watch is not None:  # so a signal during the imports names the latest checkpoint
    _watch.workdir = _workdir_argument()


def load_policy(workdir: str, step=None, seed: int = 0):
  """A jitted `policy(obs) -> action` (deterministic) restored from a run's checkpoint;
  `step` is an update number, "best", or None for the latest; `seed` picks one of a multi-seed
  run's seeds. See `mimex_jax.policy`."""
  from mimex_jax.policy import load_policy as _load_policy  # JAX loads only when asked
  return _load_policy(workdir, step, seed)
