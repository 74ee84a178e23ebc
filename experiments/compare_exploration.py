r"""Exploration bonuses side by side: none, MIMEx, RND and ICM on sparse tasks, N seeds each.

  python experiments/compare_exploration.py                                  # docs/RESULTS.md run
  python experiments/compare_exploration.py --tasks=cartpole_swingup_sparse --seeds=2 \
      --steps=200_000 --out=runs/compare_small

Each (task, method) is one `mimex_jax.train` run with `--config.num_seeds=N` (the seeds share one
compiled program), in `<out>/<task>/<method>`; a finished run is not repeated and an interrupted
one resumes, so the script can be rerun after a crash. `--set KEY=VALUE` overrides any config key
for all runs, `--set METHOD:KEY=VALUE` for one method. `--k_expl=0.01,0.05,0.2` runs every
bonus at each value (the same grid for each, so each gets the same tuning budget), labelled
`METHOD@k=VALUE`. `--threshold=600` reports, per seed, the env steps of the first deterministic
evaluation at or above it ("-": not reached; no seed is dropped). Writes `<out>/comparison.json` (final and
per-log-step success and return of every seed), `<out>/comparison.md` (a table) and
`<out>/comparison.png` (mean training and evaluation curves with a standard-error band).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("none", "mimex", "rnd", "icm")


def _command(task, method, workdir, args, overrides, first_seed, num_seeds):
  """The `mimex_jax.train` command line of one run."""
  command = [sys.executable, "-m", "mimex_jax.train",
             f"--config=configs/{args.learner}.py:{task}", f"--workdir={workdir}",
             f"--config.intrinsic.kind={method}", f"--config.seed={first_seed}",
             f"--config.num_seeds={num_seeds}", f"--config.total_steps={args.task_steps[task]}",
             "--config.checkpoint.every=100"]
  # Unset: the variant's own (DrQ's are sized per variant; its steps count frames).
  command += [f"--config.{key}={getattr(args, key)}" for key in ("num_envs", "eval_every",
                                                                  "log_every")
              if getattr(args, key) is not None]
  command += [f"--config.{o}" for o in overrides]
  return command


def _run(task, method, label, args, overrides, first_seed, num_seeds):
  workdir = os.path.join(args.out, task, label if num_seeds == args.seeds else
                         f"{label}_seeds_{first_seed}-{first_seed + num_seeds - 1}")
  timing = os.path.join(workdir, "wall_seconds.json")
  if os.path.exists(timing):  # finished in an earlier call of this script
    with open(timing) as f:
      return workdir, json.load(f)["wall_seconds"]
  command = _command(task, method, workdir, args, overrides, first_seed, num_seeds)
  start = time.time()
  print(f"[{time.strftime('%H:%M:%S')}] {task} / {label}: {' '.join(command[3:])}", flush=True)
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
  if result.returncode != 0:
    raise SystemExit(f"{task} / {label} failed:\n{result.stderr[-3000:]}")
  seconds = time.time() - start
  print(f"  {result.stdout.strip().splitlines()[-1]} ({seconds:.0f} s)", flush=True)
  with open(timing, "w") as f:
    json.dump({"wall_seconds": seconds}, f)
  return workdir, seconds


def _per_seed(record, key, seeds):
  values = record.get("per_seed", {}).get(key) if seeds > 1 else [record.get(key)]
  values = [np.nan if v is None else v for v in (values or [None] * seeds)]
  return values


def _merge(runs):
  """Joins the logs of runs that trained disjoint seeds with the same schedule."""
  per_run = []
  for workdir, seeds in runs:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      per_run.append(([json.loads(line) for line in f if line.strip()], seeds))
  merged = []
  for rows in zip(*[records for records, _ in per_run]):
    record = dict(rows[0])
    record["per_seed"] = {}
    for key in ("episode_return", "success_rate", "eval_return", "eval_success_rate"):
      record["per_seed"][key] = sum((_per_seed(r, key, seeds)
                                     for r, (_, seeds) in zip(rows, per_run)), [])
    record["steps_per_second"] = sum(r.get("steps_per_second") or 0 for r in rows) / len(rows)
    merged.append(record)
  return merged


def _summarize(runs, seeds, wall_seconds, threshold):
  records = _merge(runs)
  evals = [r for r in records if r.get("eval_return") is not None]
  curves = {key: [_per_seed(r, key, seeds) for r in records]
            for key in ("episode_return", "success_rate")}
  final = evals[-1]
  tail = records[-max(1, len(records) // 10):]  # the last tenth of training
  summary = {
      "steps": [r["step"] for r in records],
      "curves": curves,
      "eval_steps": [r["step"] for r in evals],
      "eval_return": [_per_seed(r, "eval_return", seeds) for r in evals],
      "eval_success_rate": [_per_seed(r, "eval_success_rate", seeds) for r in evals],
      "final_eval_return": _per_seed(final, "eval_return", seeds),
      "final_eval_success_rate": _per_seed(final, "eval_success_rate", seeds),
      "final_train_success_rate": np.nanmean(
          [_per_seed(r, "success_rate", seeds) for r in tail], axis=0).tolist(),
      "final_train_return": np.nanmean(
          [_per_seed(r, "episode_return", seeds) for r in tail], axis=0).tolist(),
      # First evaluation at or above the threshold, per seed; None: not reached.
      "steps_to_threshold": [
          next((step for step, row in zip([r["step"] for r in evals],
                                          [_per_seed(r, "eval_return", seeds) for r in evals])
                if row[seed] >= threshold), None) for seed in range(seeds)],
      "threshold": threshold,
      "steps_per_second": float(np.median([r["steps_per_second"] for r in records
                                           if r.get("steps_per_second")])),
      "wall_seconds": wall_seconds,
  }
  return summary


def _mean_se(values):
  values = np.asarray(values, float)
  values = values[~np.isnan(values)]
  if not len(values):
    return float("nan"), float("nan")
  return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values))) if len(
      values) > 1 else 0.0


def _table(results, seeds, task_steps):
  budgets = ", ".join(f"{task} {steps:,}" for task, steps in task_steps.items())
  lines = [f"{seeds} seeds per cell; env steps per seed: {budgets}; mean +- standard error over "
           "seeds. Eval: the deterministic policy's last evaluation (eval_episodes a seed: 16 in "
           "the PPO variants, 8 in DrQ's); train: training episodes over the last tenth of the "
           "run.", "",
           "| task | method | eval success | eval return | train success | train return | "
           "steps/s (all seeds) | wall |", "|---|---|---:|---:|---:|---:|---:|---:|"]
  for task, methods in results.items():
    for method, r in methods.items():
      cells = [_mean_se(r[k]) for k in ("final_eval_success_rate", "final_eval_return",
                                        "final_train_success_rate", "final_train_return")]
      lines.append(f"| {task} | {method} | {cells[0][0]:.2f} +- {cells[0][1]:.2f} | "
                   f"{cells[1][0]:.1f} +- {cells[1][1]:.1f} | {cells[2][0]:.2f} +- "
                   f"{cells[2][1]:.2f} | {cells[3][0]:.1f} +- {cells[3][1]:.1f} | "
                   f"{r['steps_per_second']:,.0f} | {r['wall_seconds'] / 60:.1f} min |")
  lines += ["", f"Steps to a deterministic eval return of at least {_threshold(results)} per "
            "seed (first evaluation at or above it; '-': not reached within the run).", "",
            "| task | method | reached | median steps | per seed |", "|---|---|---:|---:|---|"]
  for task, methods in results.items():
    for method, r in methods.items():
      hits = r["steps_to_threshold"]
      reached = [h for h in hits if h is not None]
      # A seed that never reached counts as beyond the budget in the median.
      median = np.median([np.inf if h is None else h for h in hits])
      median = "-" if not np.isfinite(median) else _steps(median)
      per_seed = ", ".join("-" if h is None else _steps(h) for h in hits)
      lines.append(f"| {task} | {method} | {len(reached)}/{len(hits)} | {median} | {per_seed} |")
  return "\n".join(lines) + "\n"


def _steps(count):
  """1.2M, or 250.0k under a million (DrQ's budgets are frames, hundreds of thousands)."""
  return f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count / 1e3:.1f}k"


def _threshold(results):
  return next(iter(next(iter(results.values())).values()))["threshold"]


def _plot(results, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  tasks = list(results)
  fig, axes = plt.subplots(3, len(tasks), figsize=(5.5 * len(tasks), 10), squeeze=False)
  for column, task in enumerate(tasks):
    for row, key in enumerate(("success_rate", "episode_return", "eval_return")):
      ax = axes[row][column]
      for method, r in results[task].items():
        # [log steps, seeds]
        values = np.asarray(r[key] if key == "eval_return" else r["curves"][key], float)
        steps = r["eval_steps"] if key == "eval_return" else r["steps"]
        if np.isnan(values).all():
          continue
        mean = np.nanmean(values, axis=1)
        count = np.maximum(np.sum(~np.isnan(values), axis=1), 1)
        se = np.nanstd(values, axis=1) / np.sqrt(count)
        ax.plot(steps, mean, label=method)
        ax.fill_between(steps, mean - se, mean + se, alpha=0.2)
      kind = "deterministic" if key == "eval_return" else "training"
      ax.set_title(f"{task}: {kind} {key.replace('_', ' ')}")
      ax.set_xlabel("env steps per seed")
      ax.grid(alpha=0.3)
      ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--learner", choices=("ppo", "drq"), default="ppo",
                      help="configs/<learner>.py holds the task variants (DrQ's steps are "
                           "frames: env steps times action repeat)")
  parser.add_argument("--tasks", default="cartpole_swingup_sparse,acrobot_swingup_sparse",
                      help="variants of configs/<learner>.py, comma-separated; TASK:STEPS sets "
                           "a task's own budget")
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=2_000_000, help="env steps per seed")
  parser.add_argument("--num_envs", type=int, default=None,
                      help="default: 256 for PPO, the variant's own for DrQ")
  parser.add_argument("--eval_every", type=int, default=None,
                      help="updates between evaluations; default: 25 for PPO, the variant's own")
  parser.add_argument("--log_every", type=int, default=None,
                      help="updates between log lines; default: 5 for PPO, the variant's own")
  parser.add_argument("--k_expl", default="",
                      help="comma-separated k_expl values tried for every bonus (one run each, "
                           "labelled METHOD@k=VALUE); empty: the config's own")
  parser.add_argument("--threshold", type=float, default=600.0,
                      help="deterministic eval return whose first crossing is reported per seed")
  parser.add_argument("--set", action="append", default=[], dest="overrides",
                      help="KEY=VALUE for every run, or METHOD:KEY=VALUE for one method")
  parser.add_argument("--seeds_per_run", default="rnd:2,icm:1",
                      help="METHOD:N splits a method's seeds into runs of N (see README: XLA "
                           "on 2 CPU cores deadlocked RND and ICM with 3 or more vmapped seeds)")
  parser.add_argument("--out", default=os.path.join(REPO, "experiments", "results", "compare"))
  args = parser.parse_args()
  args.out = os.path.abspath(args.out)
  if args.learner == "ppo":  # the settings of the PPO comparisons in docs/RESULTS.md
    for key, value in (("num_envs", 256), ("eval_every", 25), ("log_every", 5)):
      if getattr(args, key) is None:
        setattr(args, key, value)
  tasks = [item.split(":")[0] for item in args.tasks.split(",")]
  args.task_steps = {item.split(":")[0]: int(item.split(":")[1]) if ":" in item else args.steps
                     for item in args.tasks.split(",")}
  args.seeds_per_run = {m: int(n) for m, n in (item.split(":") for item in
                                                args.seeds_per_run.split(",") if item)}
  methods = args.methods.split(",")
  try:
    k_values = [float(k) for k in args.k_expl.split(",") if k]
  except ValueError:
    parser.error(f"--k_expl={args.k_expl!r}: expected comma-separated numbers, e.g. 0.01,0.05")
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    parser.error(f"unknown methods {unknown}; choose from {METHODS}")
  results = {}
  for task in tasks:
    results[task] = {}
    for method in methods:
      overrides = [o.split(":", 1)[1] if ":" in o.split("=", 1)[0] else o
                   for o in args.overrides
                   if ":" not in o.split("=", 1)[0] or o.split(":", 1)[0] == method]
      grid = [None] if method == "none" or not k_values else k_values
      for k_expl in grid:
        label = method if k_expl is None else f"{method}@k={k_expl:g}"
        extra = [] if k_expl is None else [f"intrinsic.k_expl={k_expl}"]
        chunk = args.seeds_per_run.get(method, args.seeds)
        runs, seconds = [], 0.0
        for first in range(0, args.seeds, chunk):
          count = min(chunk, args.seeds - first)
          workdir, wall = _run(task, method, label, args, overrides + extra, first, count)
          runs.append((workdir, count))
          seconds += wall
        results[task][label] = _summarize(runs, args.seeds, seconds, args.threshold)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "comparison.json"), "w") as f:
    json.dump({"args": vars(args), "results": results}, f)
  table = _table(results, args.seeds, args.task_steps)
  with open(os.path.join(args.out, "comparison.md"), "w") as f:
    f.write(table)
  _plot(results, os.path.join(args.out, "comparison.png"))
  print(table)
  print(f"wrote {args.out}/comparison.json, .md, .png")


if __name__ == "__main__":
  main()
