r"""Brax's own PPO as a peer for our benchmark, run in a venv pinned to jax 0.9.2.

Brax 0.14.2's PPO trainer calls `jax.device_put_replicated`, which jax 0.10 removed, so it
cannot run next to our jax 0.10.2. `ensure_venv` builds (once) a venv with jax 0.9.2, Brax and
MuJoCo Playground; `run_brax_ppo` runs experiments/brax_peer_worker.py there in a subprocess
and returns the dict it prints:

  sys.path.insert(0, "experiments"); import brax_peer  # like benchmark.py, from the repo root
  brax_peer.run_brax_ppo("CartpoleBalanceSparse", 256, 32, 4, 4, (64, 64), (64, 64),
                         num_timesteps=2_000_000)

How the worker times Brax (see its docstring): Brax trains in `num_evals - 1` equal epochs.
steps_per_second counts only epochs after the first, each timed from the end of the previous
evaluation to Brax's policy_params_fn callback right after the epoch, so evaluation is never
timed; an epoch that overlaps any XLA compile (recorded with jax.monitoring) is left out too
(epochs_excluded, later_compiles). compile_seconds is the wall time from the train() call to the
end of the first epoch: env reset, network init, the first eval and the epoch's compile, plus
that epoch's own training (compile_overhead_seconds takes that out at the timed speed).
Brax (0.14.2, jax 0.9.2) compiles its training epoch and its eval unroll a second time, in the
second epoch and the second eval, when they first see inputs Brax produced itself; the second
epoch then overlaps a compile and is left out, so steps_per_second covers epochs 3 to
num_evals - 1 (8 of 10 with the default num_evals=11).
The worker inherits this process's environment (XLA_FLAGS included, so the same XLA flags as our
trainer once mimex_jax is imported) but not PYTHONPATH. The venv's jaxlib is CPU-only.
"""

import fcntl
import json
import os
import shlex
import subprocess
import sys
import time

# Top-level pins; pip picks the rest (flax, optax, orbax, ...) to fit jax 0.9.2.
REQUIREMENTS = ("jax==0.9.2", "jaxlib==0.9.2", "brax==0.14.2", "playground>=0.2.0,<1.0",
                "mujoco", "mujoco-mjx")
_MARKER = ".mimex_brax_peer_ready"
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "brax_peer_worker.py")


def _log(message):
  print(f"brax_peer: {message}", flush=True)


def ensure_venv(path=None) -> str:
  """Python of a venv with REQUIREMENTS installed; builds it on the first call (minutes).

  `path` defaults to $MIMEX_BRAX_VENV or ~/.cache/mimex_jax/brax_peer_venv. A marker file,
  written only after a successful install, makes later calls instant.
  """
  path = os.path.abspath(os.path.expanduser(path or os.environ.get(
      "MIMEX_BRAX_VENV", os.path.join("~", ".cache", "mimex_jax", "brax_peer_venv"))))
  python = os.path.join(path, "bin", "python")
  marker = os.path.join(path, _MARKER)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  # One builder at a time: a second caller waits, then finds the marker.
  with open(path + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      with open(marker) as f:
        if json.load(f)["requirements"] == list(REQUIREMENTS):
          return python
    except (OSError, ValueError, KeyError):
      pass
    if os.path.exists(marker):
      os.remove(marker)  # pins changed: reinstall over the old venv
    start = time.perf_counter()
    if not os.path.exists(python):
      _log(f"creating venv {path}")
      subprocess.run([sys.executable, "-m", "venv", path], check=True)
    pip = [python, "-m", "pip", "install", "--progress-bar", "off", *REQUIREMENTS]
    log_path = os.path.join(path, "pip-install.log")
    _log(f"installing {' '.join(REQUIREMENTS)} (a few minutes; log: {log_path})")
    with open(log_path, "w") as log:
      done = subprocess.run(pip, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
      with open(log_path) as log:
        tail = log.read()[-3000:]
      raise RuntimeError(f"pip install into {path} failed (exit {done.returncode}); "
                         f"retry with:\n  {shlex.join(pip)}\nlast lines of {log_path}:\n{tail}")
    freeze = subprocess.run([python, "-m", "pip", "freeze"], capture_output=True, text=True,
                            check=True).stdout.split()
    with open(marker, "w") as f:
      json.dump({"requirements": list(REQUIREMENTS), "freeze": freeze}, f, indent=1)
    pins = [p for p in freeze if p.split("==")[0].lower() in (
        "jax", "jaxlib", "brax", "playground", "mujoco", "mujoco-mjx", "flax")]
    _log(f"venv ready in {time.perf_counter() - start:.0f} s: {', '.join(pins)}")
  return python


def run_brax_ppo(env_name, num_envs, unroll_length, num_epochs, num_minibatches,
                 policy_hidden_sizes, value_hidden_sizes, num_timesteps, episode_length=1000,
                 action_repeat=1, seed=0, timeout=None, num_evals=11, num_eval_envs=8) -> dict:
  """Trains Brax PPO with our settings in the peer venv; returns the worker's dict
  (steps_per_second, compile_seconds, num_timesteps, jax_version, brax_version, device_kind,
  ...). Brax trains in num_evals - 1 equal epochs, the first of which is not timed."""
  python = ensure_venv()
  args = dict(env_name=env_name, num_envs=num_envs, unroll_length=unroll_length,
              num_epochs=num_epochs, num_minibatches=num_minibatches,
              policy_hidden_sizes=",".join(map(str, policy_hidden_sizes)),
              value_hidden_sizes=",".join(map(str, value_hidden_sizes)),
              num_timesteps=num_timesteps, episode_length=episode_length,
              action_repeat=action_repeat, seed=seed, num_evals=num_evals,
              num_eval_envs=num_eval_envs)
  cmd = [python, _WORKER, *(f"--{k}={v}" for k, v in args.items())]
  # The venv's own packages only: our PYTHONPATH could shadow them with jax 0.10 ones.
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["PYTHONNOUSERSITE"] = "1"
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
  lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
  if done.returncode or not lines:
    raise RuntimeError(f"Brax worker failed (exit {done.returncode}): {shlex.join(cmd)}\n"
                       f"stderr tail:\n{done.stderr[-3000:]}")
  return json.loads(lines[-1])
