r"""Brax PPO on a MuJoCo Playground task; runs inside the venv that brax_peer.ensure_venv makes.

Standalone (imports no mimex_jax): experiments/brax_peer.py runs it with the venv's python and
reads the one JSON line it prints on stdout. Everything else goes to stderr.

  python experiments/brax_peer_worker.py --env_name=CartpoleBalanceSparse --num_envs=256 \
      --unroll_length=32 --num_epochs=4 --num_minibatches=4 --policy_hidden_sizes=64,64 \
      --value_hidden_sizes=64,64 --num_timesteps=1500000

Timing: Brax runs `num_evals - 1` equal training epochs (each a jitted scan of training
steps); after each it calls policy_params_fn, then evaluates, then calls progress_fn. An epoch's
window runs from the previous callback (the end of the previous eval) to policy_params_fn, so
evaluation is never timed. The first epoch carries the compiles and is reported as
compile_seconds (from the train() call to its end, which includes its own training work). Every
XLA compile is recorded through jax.monitoring; a later epoch that overlaps one is left out of
steps_per_second too (epochs_excluded).
"""

import argparse
import functools
import json
import os
import sys
import time
from importlib import metadata


def _log(*args):
  print(*args, file=sys.stderr, flush=True)


def _sizes(text):
  return tuple(int(s) for s in text.split(",") if s)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env_name", default="CartpoleBalanceSparse")
  parser.add_argument("--num_envs", type=int, default=256)
  parser.add_argument("--unroll_length", type=int, default=32)
  parser.add_argument("--num_epochs", type=int, default=4)
  parser.add_argument("--num_minibatches", type=int, default=4)
  parser.add_argument("--policy_hidden_sizes", default="64,64")
  parser.add_argument("--value_hidden_sizes", default="64,64")
  parser.add_argument("--num_timesteps", type=int, default=1_500_000)
  parser.add_argument("--episode_length", type=int, default=1000)
  parser.add_argument("--action_repeat", type=int, default=1)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_evals", type=int, default=11, help="Brax's; num_evals - 1 epochs")
  parser.add_argument("--num_eval_envs", type=int, default=8)
  args = parser.parse_args()
  if args.num_envs % args.num_minibatches:
    parser.error("num_envs must be a multiple of num_minibatches")
  if args.num_evals < 3:
    parser.error("num_evals must be at least 3: the first epoch is not timed, nor the second")

  import jax
  from brax.training import pmap
  from brax.training.agents.ppo import networks as ppo_networks
  from brax.training.agents.ppo import train as ppo
  from mujoco_playground import registry, wrapper

  # Every XLA compile as (end time, seconds, function name), to keep them out of the timing.
  compiles = []

  def on_event(event, seconds, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append((time.perf_counter(), seconds, str(kwargs.get("fun_name", "?"))))
      if seconds > 1:
        _log(f"compiled {compiles[-1][2]} in {seconds:.1f} s")

  jax.monitoring.register_event_duration_secs_listener(on_event)
  # Brax's end-of-training replication check compiles a pmap only to assert; one device here.
  pmap.assert_is_replicated = lambda *a, **k: None

  # Playground 0.2.0 defaults to impl="warp"; "jax" is pure-JAX MJX like our trainer.
  env = registry.load(args.env_name, config_overrides={
      "impl": "jax", "episode_length": args.episode_length,
      "action_repeat": args.action_repeat})

  # Callback times: ("params", t, step) after each epoch, ("progress", t, step) after each eval.
  marks = []
  evals = []

  def policy_params_fn(step, *_):
    marks.append(("params", time.perf_counter(), int(step)))

  def progress_fn(step, metrics):
    marks.append(("progress", time.perf_counter(), int(step)))
    evals.append({k: float(v) for k, v in metrics.items() if k in (
        "eval/episode_reward", "training/sps")})
    _log(f"step {int(step):>9,}  {evals[-1]}")

  network_factory = functools.partial(
      ppo_networks.make_ppo_networks,
      policy_hidden_layer_sizes=_sizes(args.policy_hidden_sizes),
      value_hidden_layer_sizes=_sizes(args.value_hidden_sizes),
      activation=jax.nn.elu)
  start = time.perf_counter()
  ppo.train(
      env, num_timesteps=args.num_timesteps, num_envs=args.num_envs,
      episode_length=args.episode_length, action_repeat=args.action_repeat,
      wrap_env_fn=wrapper.wrap_for_brax_training,
      # One training step: num_envs x unroll_length steps, then num_epochs passes of
      # num_minibatches minibatches (Brax: batch_size * num_minibatches == num_envs).
      unroll_length=args.unroll_length, batch_size=args.num_envs // args.num_minibatches,
      num_minibatches=args.num_minibatches, num_updates_per_batch=args.num_epochs,
      network_factory=network_factory, normalize_observations=True, learning_rate=1e-3,
      entropy_cost=0.0, discounting=0.99, gae_lambda=0.95, clipping_epsilon=0.2,
      max_grad_norm=1.0, reward_scaling=1.0, seed=args.seed,
      num_evals=args.num_evals, num_eval_envs=args.num_eval_envs,
      progress_fn=progress_fn, policy_params_fn=policy_params_fn)
  total_seconds = time.perf_counter() - start

  # Epoch windows: from the callback before each "params" mark (or the train() call) to it.
  epochs, prev_t, prev_step = [], start, 0
  for kind, t, step in marks:
    if kind == "params" and step > prev_step:
      hit = [c for c in compiles if c[0] > prev_t and c[0] - c[1] < t]
      epochs.append({"start": prev_t, "end": t, "steps": step - prev_step, "compiles": hit})
      prev_step = step
    prev_t = t
  first, timed = epochs[0], [e for e in epochs[1:] if not e["compiles"]]
  timed_steps = sum(e["steps"] for e in timed)
  timed_seconds = sum(e["end"] - e["start"] for e in timed)
  sps = timed_steps / timed_seconds if timed_seconds else float("nan")
  compile_seconds = first["end"] - start
  after_first = [c for c in compiles if c[0] > first["end"]]
  device = jax.devices()[0]
  print(json.dumps({
      "steps_per_second": sps,
      "compile_seconds": compile_seconds,
      # The first epoch also trains first["steps"] steps; this leaves them out at timed speed.
      "compile_overhead_seconds": compile_seconds - first["steps"] / sps,
      "xla_compile_seconds": sum(c[1] for c in compiles),
      "num_compiles": len(compiles),
      # Compiles after the first epoch (in evals or later epochs), as [function, seconds].
      "later_compiles": [[c[2], round(c[1], 3)] for c in after_first],
      "num_timesteps": prev_step,
      "first_epoch_steps": first["steps"],
      "timed_steps": timed_steps,
      "timed_seconds": timed_seconds,
      "timed_epochs": len(timed),
      "epochs_excluded": len(epochs) - 1 - len(timed),
      "brax_sps": [e.get("training/sps") for e in evals if "training/sps" in e],
      "eval_episode_reward": evals[-1].get("eval/episode_reward") if evals else None,
      "total_seconds": total_seconds,
      "jax_version": jax.__version__,
      "brax_version": metadata.version("brax"),
      "versions": {p: metadata.version(p) for p in (
          "jax", "jaxlib", "brax", "playground", "mujoco", "mujoco-mjx", "flax", "optax")},
      "device_kind": device.device_kind,
      "platform": device.platform,
      "num_devices": jax.local_device_count(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "settings": vars(args),
  }))


if __name__ == "__main__":
  main()
