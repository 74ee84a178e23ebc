r"""Everything a first GPU session should measure, in one command that fits in minutes.

  python experiments/gpu_check.py --out=experiments/results/gpu_check        # on a GPU host
  python experiments/gpu_check.py --sizes=cpu --out=/tmp/gpu_check            # the CPU rehearsal

Stages, each timed and kept apart so that one failure does not lose the others:
  devices     what JAX sees (platform, device kinds, memory where the backend reports it)
  ppo         env steps/s of raw env stepping, PPO, PPO + MIMEx (the CPU default and the
              reference-sized model) at each state batch size (GPU: 4,096 and 16,384 envs)
  drq_jax     frames/s of DrQ-v2 from pixels, without and with MIMEx, with the pure-JAX
              ray camera
  drq_warp    the same with MuJoCo Warp's renderer (needs warp-lang, which is too large to
              carry to a lent GPU as a wheel; README, "A GPU check")
  learning    a short PPO + MIMEx run on CartpoleSwingupSparse through the CLI, with its
              steps/s and eval return

Writes `<out>/gpu_check.json` (every figure, the machine, errors) and `<out>/gpu_check.md` (the
tables). With `--budget_seconds`, stages that would start after the budget is spent are skipped
and marked so, so a lent GPU's minutes are never all spent on one stage. Sizes: `gpu` (the
default on a GPU) or `cpu` (small enough for a 2-core machine; the default on CPU).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback

import jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchmark  # noqa: E402
import benchmark_drq  # noqa: E402

# Reference-sized MIMEx (128 wide, 4 blocks, every sequence trained) next to the CPU default.
MIMEX_REFERENCE = dict(embed_dim=128, depth=4, num_heads=4, decoder_embed_dim=64,
                       decoder_num_heads=2, train_fraction=1.0)

DEFAULT_STAGES = "ppo,drq_jax,drq_warp,learning"
SIZES = {
    "gpu": dict(ppo_batches=(4096, 16384), ppo_repeats=5, drq_size=84, drq_envs=32,
                drq_batch=256, drq_updates=8, drq_hidden=1024, drq_capacity=100_000,
                drq_kinds=("none", "mimex"), drq_repeats=3,
                learning=dict(num_envs=4096, total_steps=20_000_000, eval_every=25)),
    "cpu": dict(ppo_batches=(64,), ppo_repeats=2, drq_size=24, drq_envs=4, drq_batch=8,
                drq_updates=2, drq_hidden=32, drq_capacity=2_000, drq_kinds=("mimex",),
                drq_repeats=1,
                learning=dict(num_envs=64, total_steps=64 * 32 * 6, eval_every=3)),
}


def machine_info():
  devices = jax.local_devices()
  info = {"platform": jax.default_backend(), "device_count": jax.device_count(),
          "device_kinds": sorted({d.device_kind for d in devices}),
          "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
          "jax": jax.__version__}
  try:
    stats = devices[0].memory_stats() or {}
    if "bytes_limit" in stats:
      info["device_memory_gib"] = round(stats["bytes_limit"] / 2**30, 1)
  except Exception:  # not every backend reports memory  # noqa: BLE001
    pass
  return info


def stage_ppo(sizes):
  rows = []
  env = "CartpoleSwingupSparse"
  unroll_length = benchmark.ppo_configs.get_config().unroll_length
  for batch in sizes["ppo_batches"]:
    compile_s, raw = benchmark.raw_env(env, batch, unroll_length, sizes["ppo_repeats"])
    rows.append({"mode": "raw env", "batch": batch, "steps_per_second": raw,
                 "compile_seconds": compile_s})
    print(f"  raw env      {batch:>6} envs {raw:>12,.0f} steps/s", flush=True)
    ppo = None
    for mode, kind, overrides in (("PPO", "none", {}), ("PPO + MIMEx (CPU default)", "mimex", {}),
                                  ("PPO + MIMEx (reference size)", "mimex", MIMEX_REFERENCE)):
      compile_s, sps = benchmark.training(env, batch, kind, sizes["ppo_repeats"], 1, overrides)
      ppo = sps if kind == "none" else ppo
      rows.append({"mode": mode, "batch": batch, "steps_per_second": sps,
                   "vs_ppo": sps / ppo, "compile_seconds": compile_s})
      print(f"  {mode:<30}{batch:>6} envs {sps:>12,.0f} steps/s ({sps / ppo:.3f} of PPO)",
            flush=True)
  return rows


def stage_drq(sizes, backend):
  """Raw pixel stepping and DrQ training rows for one renderer (`jax` or `warp`)."""
  from mimex_jax.envs.pixels import PixelSpec
  args = argparse.Namespace(
      env="CartpoleSwingupSparse", size=sizes["drq_size"], num_envs=sizes["drq_envs"],
      env_steps=2, updates=sizes["drq_updates"], batch=sizes["drq_batch"],
      hidden=sizes["drq_hidden"], capacity=sizes["drq_capacity"], mimex_width=128,
      mimex_depth=4, features="encoder")
  spec = PixelSpec(backend=backend, height=args.size, width=args.size)
  compile_s, raw_steps = benchmark.raw_env(args.env, args.num_envs, args.env_steps * 8,
                                           sizes["drq_repeats"], obs_type="pixels",
                                           pixels=spec, action_repeat=2)
  rows = [{"mode": "raw pixel env", "backend": backend, "frames_per_second": 2 * raw_steps,
           "compile_seconds": compile_s}]
  print(f"  raw pixels   {backend:<5} {2 * raw_steps:>12,.0f} frames/s", flush=True)
  for kind in sizes["drq_kinds"]:
    config = benchmark_drq.drq_config(args, backend, kind)
    compile_s, fps, ups = benchmark_drq.training(config, sizes["drq_repeats"])
    mode = "DrQ" if kind == "none" else "DrQ + MIMEx"
    rows.append({"mode": mode, "backend": backend, "frames_per_second": fps,
                 "updates_per_second": ups, "compile_seconds": compile_s})
    print(f"  {mode:<12} {backend:<5} {fps:>12,.0f} frames/s {ups:>8,.1f} updates/s",
          flush=True)
  return rows, {"size": args.size, "num_envs": args.num_envs, "batch": args.batch,
                "updates_per_step": args.updates, "hidden": args.hidden}


def stage_learning(sizes, out, seconds_left):
  settings = sizes["learning"]
  workdir = os.path.join(out, "learning_run")
  command = [sys.executable, "-m", "mimex_jax.train",
             "--config=configs/ppo.py:cartpole_swingup_sparse", f"--workdir={workdir}",
             f"--config.num_envs={settings['num_envs']}",
             f"--config.total_steps={settings['total_steps']}",
             f"--config.eval_every={settings['eval_every']}", "--config.checkpoint.every=0"]
  print(f"  {' '.join(command[2:])}", flush=True)
  start = time.time()
  try:
    # SIGTERM on time out: the trainer saves and exits, so the metrics so far are kept.
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
      stdout, stderr = process.communicate(timeout=max(seconds_left, 30))
      stopped_early = False
    except subprocess.TimeoutExpired:
      process.terminate()
      stdout, stderr = process.communicate(timeout=120)
      stopped_early = True
  except Exception as error:  # noqa: BLE001
    return {"error": repr(error)}
  result = {"command": " ".join(command[1:]), "returncode": process.returncode,
            "wall_seconds": time.time() - start, "stopped_at_time_budget": stopped_early}
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(metrics_path):
    with open(metrics_path) as f:
      records = [json.loads(line) for line in f if line.strip()]
    evals = [(r["step"], r["eval_return"]) for r in records if r.get("eval_return") is not None]
    if records:
      result.update(final_step=records[-1]["step"],
                    steps_per_second=records[-1].get("steps_per_second"),
                    compile_seconds=records[0].get("compile_seconds"),
                    eval_curve=evals, best_eval_return=max((v for _, v in evals), default=None))
  if process.returncode not in (0,) and not stopped_early:
    result["error"] = (stderr or stdout)[-2000:]
  return result


def markdown(report):
  lines = [f"# GPU check ({report['sizes']} sizes)", "",
           f"Machine: {report['machine']}", ""]
  ppo = report["stages"].get("ppo", {})
  if ppo.get("rows"):
    lines += ["## PPO from states (CartpoleSwingupSparse, unroll 32)", "",
              "| mode | envs | env steps/s | of PPO | compile s |", "|---|---:|---:|---:|---:|"]
    for row in ppo["rows"]:
      ratio = f"{row['vs_ppo']:.3f}" if "vs_ppo" in row else ""
      lines.append(f"| {row['mode']} | {row['batch']:,} | {row['steps_per_second']:,.0f} | "
                   f"{ratio} | {row['compile_seconds']:.1f} |")
    lines.append("")
  drq_stages = [report["stages"].get(f"drq_{b}", {}) for b in ("jax", "warp")]
  drq_rows = [row for stage in drq_stages for row in stage.get("rows", [])]
  if drq_rows:
    settings = next(stage["settings"] for stage in drq_stages if stage.get("rows"))
    lines += [f"## DrQ-v2 from pixels ({settings})", "",
              "| mode | renderer | frames/s | updates/s | compile s |", "|---|---|---:|---:|---:|"]
    for row in drq_rows:
      ups = f"{row['updates_per_second']:,.1f}" if "updates_per_second" in row else ""
      lines.append(f"| {row['mode']} | {row['backend']} | {row['frames_per_second']:,.0f} | "
                   f"{ups} | {row['compile_seconds']:.1f} |")
    lines.append("")
  learning = report["stages"].get("learning", {}).get("result")
  if learning:
    lines += ["## Short PPO + MIMEx run (CartpoleSwingupSparse)", "",
              f"`{learning.get('command', '')}`", "",
              f"- env steps: {learning.get('final_step')}, steps/s: "
              f"{learning.get('steps_per_second')}, wall: {learning.get('wall_seconds', 0):.0f} s"
              f"{' (stopped at the time budget)' if learning.get('stopped_at_time_budget') else ''}",
              f"- eval return by step: {learning.get('eval_curve')}", ""]
  for name, stage in report["stages"].items():
    if stage.get("error") or stage.get("skipped"):
      lines.append(f"- stage {name}: {stage.get('skipped') or stage.get('error')[-500:]}")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", choices=tuple(SIZES), default=None,
                      help="gpu or cpu (default: gpu on a GPU, cpu otherwise)")
  parser.add_argument("--stages", default=DEFAULT_STAGES)
  parser.add_argument("--budget_seconds", type=float, default=None,
                      help="no stage starts after this; the learning run stops at it (default: "
                           "420 with gpu sizes, so the whole check fits in 8 minutes; 1800 cpu)")
  parser.add_argument("--out", default=os.path.join(REPO, "experiments", "results", "gpu_check"))
  args = parser.parse_args()
  start = time.time()
  sizes_name = args.sizes or ("cpu" if jax.default_backend() == "cpu" else "gpu")
  sizes = SIZES[sizes_name]
  if args.budget_seconds is None:
    args.budget_seconds = 420.0 if sizes_name == "gpu" else 1800.0
  os.makedirs(args.out, exist_ok=True)
  benchmark.enable_compilation_cache()
  report = {"sizes": sizes_name, "machine": machine_info(), "stages": {}}
  print(f"devices: {jax.devices()}\nmachine: {report['machine']}", flush=True)

  def save():
    report["wall_seconds"] = time.time() - start
    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
      json.dump(report, f, indent=2, default=str)
    with open(os.path.join(args.out, "gpu_check.md"), "w") as f:
      f.write(markdown(report))

  for name in args.stages.split(","):
    elapsed = time.time() - start
    if elapsed > args.budget_seconds:
      report["stages"][name] = {"skipped": f"time budget spent ({elapsed:.0f} s)"}
      print(f"[{name}] skipped: time budget spent", flush=True)
      continue
    print(f"[{name}] at {elapsed:.0f} s", flush=True)
    stage_start = time.time()
    try:
      if name == "ppo":
        report["stages"][name] = {"rows": stage_ppo(sizes)}
      elif name in ("drq_jax", "drq_warp"):
        rows, settings = stage_drq(sizes, name.split("_")[1])
        report["stages"][name] = {"rows": rows, "settings": settings}
      elif name == "learning":
        result = stage_learning(sizes, args.out, args.budget_seconds - elapsed)
        report["stages"][name] = {"result": result}
        if result.get("error"):
          report["stages"][name]["error"] = result["error"]
      else:
        raise SystemExit(f"unknown stage {name!r}; choose from {DEFAULT_STAGES}")
    except SystemExit:
      raise
    except Exception:  # keep the other stages' figures  # noqa: BLE001
      report["stages"][name] = {"error": traceback.format_exc()}
      print(f"[{name}] failed:\n{traceback.format_exc()[-1500:]}", flush=True)
    report["stages"][name]["seconds"] = time.time() - stage_start
    save()
  save()
  failed = [name for name, stage in report["stages"].items() if stage.get("error")]
  print(f"wrote {args.out}/gpu_check.json and gpu_check.md in {time.time() - start:.0f} s"
        + (f"; failed stages: {failed}" if failed else ""), flush=True)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
