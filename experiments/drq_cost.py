r"""What DrQ's fused step costs on this machine, per bonus: trace, compile, memory, frames/s.

  python experiments/drq_cost.py                    # cartpole_swingup_sparse_pixels_cpu, none,mimex
  python experiments/drq_cost.py --kinds=none,mimex,rnd --variant=cartpole_swingup_sparse_state
  python experiments/drq_cost.py --set=drq.batch_size=64 --set=intrinsic.seq_len=3

Each kind runs in a process of its own with an empty compilation cache, so the compile is cold
and the peak resident memory (`ru_maxrss`) is that kind's alone. Times per stage: building the
envs and the state, tracing and lowering the fused step (`lower`), XLA's compile (`compile`),
then `--calls` timed calls after `--warmup` untimed ones; XLA's own estimate of the step's
temporary buffers (`temp MB`) beside the measured peak, and the peak before compiling
(`built MB`: envs, replay buffer, parameters). Nothing else should run meanwhile:
2 cores are shared. Writes JSON (default experiments/results/drq_cost.json).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(variant: str, kind: str, sets, warmup: int, calls: int,
            embed_chunk: int = 0) -> dict:
  """One kind's row; runs in the child process."""
  sys.path.insert(0, ROOT)
  import jax  # after the parent set the cache directory
  from configs import drq as drq_configs
  from mimex_jax.agents import build
  from mimex_jax.train import seeded_training

  config = drq_configs.get_config(variant)
  config.intrinsic.kind = kind
  for item in sets:
    key, _, value = item.partition("=")
    block = config
    *parents, leaf = key.split(".")
    for name in parents:
      block = block[name]
    block[leaf] = type(block[leaf])(json.loads(value))
  row = {"kind": kind}
  start = time.perf_counter()
  _, fused, frames_per_update, _ = build(config)
  if embed_chunk:  # frames per chunk of the bonus's embedding pass (read when tracing)
    fused.embed_chunk = embed_chunk
  _, state, step, keys = seeded_training(config, fused)
  jax.block_until_ready(state)
  row["build_s"] = time.perf_counter() - start
  row["rss_after_build_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  start = time.perf_counter()
  lowered = step.lower(state, keys)
  row["lower_s"] = time.perf_counter() - start
  start = time.perf_counter()
  compiled = lowered.compile()
  row["compile_s"] = time.perf_counter() - start
  row["rss_after_compile_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  try:
    memory = compiled.memory_analysis()
    row["temp_mb"] = memory.temp_size_in_bytes / 2**20
  except Exception:  # not every backend reports it
    row["temp_mb"] = float("nan")
  for _ in range(warmup):
    state, _ = compiled(state, keys)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(calls):
    state, metrics = compiled(state, keys)
  jax.block_until_ready(state)
  per_call = (time.perf_counter() - start) / calls
  row["seconds_per_call"] = per_call
  row["frames_per_second"] = frames_per_update / per_call
  row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="cartpole_swingup_sparse_pixels_cpu",
                      help="a configs/drq.py variant")
  parser.add_argument("--kinds", default="none,mimex")
  parser.add_argument("--set", action="append", default=[],
                      help="config key=JSON value, e.g. drq.batch_size=64 (repeatable)")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--calls", type=int, default=5)
  parser.add_argument("--embed_chunk", type=int, default=0,
                      help="frames per chunk of step_start's embedding pass (0: the default)")
  parser.add_argument("--out", default="experiments/results/drq_cost.json")
  parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    row = measure(args.variant, args.child, args.set, args.warmup, args.calls, args.embed_chunk)
    print("ROW " + json.dumps(row), flush=True)
    return
  print(f"{'kind':<8}{'build s':>9}{'lower s':>9}{'compile s':>11}{'temp MB':>9}"
        f"{'built MB':>10}{'peak MB':>9}{'frames/s':>10}{'vs first':>10}", flush=True)
  rows = []
  for kind in args.kinds.split(","):
    with tempfile.TemporaryDirectory() as cache:
      env = {**os.environ, "MIMEX_JAX_CACHE_DIR": cache, "JAX_COMPILATION_CACHE_DIR": cache}
      command = [sys.executable, os.path.abspath(__file__), "--child", kind,
                 "--variant", args.variant, "--warmup", str(args.warmup),
                 "--calls", str(args.calls), "--embed_chunk", str(args.embed_chunk)] + [
                     f"--set={item}" for item in args.set]
      done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("ROW ")]
    if done.returncode != 0 or not lines:
      sys.exit(f"drq_cost: kind {kind} failed (exit {done.returncode}):\n"
               f"{done.stderr[-3000:]}")
    row = json.loads(lines[-1][4:])
    rows.append(row)
    base = rows[0]["frames_per_second"]
    print(f"{kind:<8}{row['build_s']:>9.1f}{row['lower_s']:>9.1f}{row['compile_s']:>11.1f}"
          f"{row['temp_mb']:>9.0f}{row['rss_after_build_mb']:>10.0f}{row['peak_rss_mb']:>9.0f}"
          f"{row['frames_per_second']:>10.1f}{row['frames_per_second'] / base:>10.2f}",
          flush=True)
  import jax
  machine = {"platform": jax.default_backend(), "cpu_count": os.cpu_count(),
             "processor": platform.processor() or platform.machine(), "jax": jax.__version__}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump({"variant": args.variant, "sets": args.set, "embed_chunk": args.embed_chunk,
               "machine": machine, "rows": rows}, f, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
