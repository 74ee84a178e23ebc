r"""Raw environment throughput of the task suite: state observations and pixels from both
renderers, random actions, pmapped over the local devices; each with the envs' resets done in
place, from `VectorEnv`'s reset pool, or not at all (the bare task).

  python experiments/env_suite.py                          # every suite task, defaults below
  python experiments/env_suite.py --tasks=ReachSparse,PushSparse --kinds=state
  python experiments/env_suite.py --tasks=PushSparse --kinds=state --resets=bare,in_place,pool

Writes JSON (default experiments/results/env_suite.json) and a markdown table beside it. Compile
time is reported apart; figures are from the machine the script runs on.
"""

import argparse
import json
import os
import platform
import subprocess
import sys

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.benchmark import RESETS, raw_env  # noqa: E402
from mimex_jax.envs import dmc, manipulation, pixels  # noqa: E402
from mimex_jax.compilation import enable_compilation_cache  # noqa: E402

SUITE = tuple(name for name in manipulation.TASKS if name.endswith("Sparse")) + tuple(
    dmc.SPARSE_SUITE)


def measure(args, task, kind, resets):
  """One row: raw steps/s of `task` with state observations or pixels from renderer `kind`,
  resets done as `resets` says (see `raw_env`)."""
  if kind == "state":
    batch, make_args = args.state_batch, {}
  else:
    batch = args.pixel_batch
    make_args = {"obs_type": "pixels", "pixels": pixels.PixelSpec(
        backend=kind, height=args.size, width=args.size, frame_stack=3)}
  compile_s, steps_per_s = raw_env(task, batch, args.unroll, args.repeats, resets,
                                   **make_args)
  return {"task": task, "observations": kind if kind == "state" else f"pixels ({kind})",
          "resets": resets, "batch": batch, "steps_per_s": steps_per_s, "compile_s": compile_s}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--tasks", default=",".join(SUITE))
  parser.add_argument("--kinds", default="state,jax,warp",
                      help="state, and pixels from the jax (mjx.ray) or warp renderer")
  parser.add_argument("--resets", default="in_place,pool",
                      help=f"any of {','.join(RESETS)}: staggered episodes reset in the step, "
                      "from the reset pool, or the bare task without resets (warp: no pool)")
  parser.add_argument("--state_batch", type=int, default=256)
  parser.add_argument("--pixel_batch", type=int, default=64)
  parser.add_argument("--size", type=int, default=64, help="side of the square RGB image")
  parser.add_argument("--unroll", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default="experiments/results/env_suite.json")
  parser.add_argument("--row", default=None, help=argparse.SUPPRESS)  # task:kind:resets
  args = parser.parse_args()
  enable_compilation_cache()
  if args.row:
    print(json.dumps(measure(args, *args.row.split(":"))))
    return

  rows = []
  for task in args.tasks.split(","):
    for kind in args.kinds.split(","):
      for resets in args.resets.split(","):
        if kind == "warp" and resets == "pool":
          continue  # the warp renderer draws exactly one device's envs, not a few of them
        # Each row runs in its own process: a renderer that crashes costs one row, not the
        # table.
        child = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], f"--row={task}:{kind}:{resets}"],
            capture_output=True, text=True)
        observations = kind if kind == "state" else f"pixels ({kind})"
        label = f"{task:24s} {observations:14s} {resets:8s}"
        if child.returncode != 0:
          print(f"{label} failed (exit {child.returncode}): "
                f"{child.stderr.strip().splitlines()[-1:]}", flush=True)
          rows.append({"task": task, "observations": observations, "resets": resets,
                       "failed": child.returncode})
          continue
        row = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{label} B={row['batch']:4d} {row['steps_per_s']:10.0f} steps/s "
              f"(compile {row['compile_s']:.1f} s)", flush=True)

  result = {"machine": f"{platform.processor() or platform.machine()}, "
                       f"{os.cpu_count()} cores, {jax.devices()[0].platform}",
            "devices": jax.local_device_count(), "jax": jax.__version__,
            "image": f"{args.size}x{args.size} RGB, 3 stacked", "unroll": args.unroll,
            "rows": rows}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  # Each row as a share of its task's bare steps/s (same observations), where that was measured.
  bare = {(r["task"], r["observations"]): r["steps_per_s"] for r in rows
          if r.get("resets") == "bare" and "failed" not in r}

  def share(row):
    reference = bare.get((row["task"], row["observations"]))
    return f"{row['steps_per_s'] / reference:.0%}" if reference else ""

  table = ["| task | observations | resets | batch | steps/s | of bare | compile s |",
           "|---|---|---|---:|---:|---:|---:|"]
  table += [f"| {r['task']} | {r['observations']} | {r['resets']} | {r['batch']} | "
            f"{r['steps_per_s']:,.0f} | {share(r)} | {r['compile_s']:.1f} |"
            if "failed" not in r else
            f"| {r['task']} | {r['observations']} | {r['resets']} | | failed "
            f"(exit {r['failed']}) | | |" for r in rows]
  with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
    f.write("\n".join(table) + "\n")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
