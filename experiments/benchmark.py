r"""Environment steps per second: raw env stepping, PPO with no bonus, PPO + MIMEx.

  python experiments/benchmark.py                       # CartpoleBalanceSparse, B = 64, 256, 1024
  python experiments/benchmark.py --batch_sizes=256 --env=CartpoleSwingupSparse
  python experiments/benchmark.py --batch_sizes=256 --kinds=none,mimex,rnd,icm --seeds=1,2,5 \
      --out=experiments/results/seeds_scaling.json     # throughput against num_seeds

Prints a table and writes JSON (default experiments/results/benchmark.json). Compile time is
reported apart from throughput; every figure is from the machine the script runs on. Training
configs are configs/ppo.py's default (network sizes, epochs, minibatches, unroll length) with
only num_envs changed.
"""

import argparse
import json
import os
import platform
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import ppo as ppo_configs  # noqa: E402
from mimex_jax import envs  # noqa: E402
from mimex_jax.train import build, enable_compilation_cache, seeded_training  # noqa: E402


def _timed(fn, repeats):
  """(seconds of the first call, seconds per later call)."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn()
  jax.block_until_ready(out)
  return first, (time.perf_counter() - start) / repeats


def raw_env(env_name, batch, unroll_length, repeats, **make_args):
  """Random actions through the same VectorEnv the trainer uses, pmapped over local devices.
  `make_args` go to `envs.make` (e.g. `obs_type="pixels", pixels=PixelSpec(...)`)."""
  devices = jax.local_device_count()
  if make_args.get("obs_type") == "pixels":
    make_args["num_worlds"] = batch // devices
  env = envs.make(env_name, **make_args)
  vector_env = envs.VectorEnv(env, batch // devices, stagger=True)

  def run(state, key):
    def body(state, step_key):
      action = jax.random.uniform(step_key, (vector_env.num_envs, env.action_size),
                                  minval=-1, maxval=1)
      return vector_env.step(state, action), None
    return jax.lax.scan(body, state, jax.random.split(key, unroll_length))[0]

  keys = jax.random.split(jax.random.PRNGKey(0), devices)
  state = jax.pmap(vector_env.reset)(keys)
  run = jax.pmap(run, donate_argnums=0)
  holder = {"state": state}

  def call():
    holder["state"] = run(holder["state"], keys)
    return holder["state"].obs

  first, per_call = _timed(call, repeats)
  return first, batch * unroll_length / per_call


def time_fused_step(config, repeats, warmup_calls=0):
  """`(seconds of the first timed call, seconds per later call, steps_per_update)` of the
  trainer's own fused step for `config`, after `warmup_calls` untimed calls."""
  _, fused, steps_per_update, _ = build(config)
  _, state, step, keys = seeded_training(config, fused)
  holder = {"state": state}

  def call():
    holder["state"], metrics = step(holder["state"], keys)
    return metrics

  for _ in range(warmup_calls):
    call()
  first, per_call = _timed(call, repeats)
  return first, per_call, steps_per_update


def training(env_name, batch, kind, repeats, num_seeds=1):
  """Env steps per second of the trainer's own fused step, over all `num_seeds` seeds."""
  config = ppo_configs.get_config()
  config.env.name = env_name
  config.num_envs = batch
  config.intrinsic.kind = kind
  config.num_seeds = num_seeds
  first, per_call, steps_per_update = time_fused_step(config, repeats)
  return first, steps_per_update * num_seeds / per_call


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default="CartpoleBalanceSparse")
  parser.add_argument("--batch_sizes", default="64,256,1024")
  parser.add_argument("--kinds", default="none,mimex", help="intrinsic kinds to train with")
  parser.add_argument("--seeds", default="1", help="num_seeds values, e.g. 1,2,5 (vmapped)")
  parser.add_argument("--repeats", type=int, default=10, help="timed calls after the compile")
  parser.add_argument("--out", default="experiments/results/benchmark.json")
  args = parser.parse_args()
  enable_compilation_cache()
  batches = [int(b) for b in args.batch_sizes.split(",")]
  unroll_length = ppo_configs.get_config().unroll_length
  machine = {"platform": jax.default_backend(), "devices": jax.local_device_count(),
             "device_kind": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
             "processor": platform.processor() or platform.machine(), "jax": jax.__version__}
  print(f"machine: {machine}")
  rows = []
  header = (f"{'mode':<16}{'batch':>7}{'seeds':>6}{'steps/s':>12}{'compile s':>11}"
            f"{'vs raw':>8}")
  print(header)
  for batch in batches:
    compile_s, raw = raw_env(args.env, batch, unroll_length, args.repeats)
    rows.append({"mode": "raw_env", "batch": batch, "steps_per_second": raw,
                 "compile_seconds": compile_s})
    print(f"{'raw_env':<16}{batch:>7}{'':>6}{raw:>12,.0f}{compile_s:>11.1f}{1.0:>8.2f}",
          flush=True)
    for kind in args.kinds.split(","):
      for num_seeds in (int(n) for n in args.seeds.split(",")):
        compile_s, sps = training(args.env, batch, kind, args.repeats, num_seeds)
        mode = "ppo" if kind == "none" else f"ppo+{kind}"
        rows.append({"mode": mode, "batch": batch, "num_seeds": num_seeds,
                     "steps_per_second": sps, "compile_seconds": compile_s})
        print(f"{mode:<16}{batch:>7}{num_seeds:>6}{sps:>12,.0f}{compile_s:>11.1f}"
              f"{sps / raw:>8.2f}", flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump({"env": args.env, "unroll_length": unroll_length, "machine": machine,
               "rows": rows}, f, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
