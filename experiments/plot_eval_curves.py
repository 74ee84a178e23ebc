r"""Per-seed deterministic eval return against env steps, one panel per run, with a threshold line.

  python experiments/plot_eval_curves.py runs/a:"no bonus" runs/b:MIMEx --threshold=600 \
      --out=docs/curves.png

Each WORKDIR[:LABEL] is a `mimex_jax.train` workdir (its metrics.jsonl); a run of several seeds
(`config.num_seeds`) draws one line per seed. `DIR1+DIR2+...:LABEL` puts runs of one seed each
in one panel (their evaluations must be at the same steps). Prints, per run and seed, the first step at or above
the threshold ("-": not reached), the best and the final eval return.
"""

import argparse
import json
import os

import numpy as np


def eval_curves(workdir):
  """`(steps, returns [evals, seeds])` from a workdir's metrics.jsonl."""
  steps, returns = [], []
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      record = json.loads(line) if line.strip() else {}
      if record.get("eval_return") is None:
        continue
      steps.append(record["step"])
      returns.append(record.get("per_seed", {}).get("eval_return") or [record["eval_return"]])
  return np.asarray(steps), np.asarray(returns, float)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", help="WORKDIR[+WORKDIR...][:LABEL]")
  parser.add_argument("--threshold", type=float, default=600.0)
  parser.add_argument("--out", required=True, help="the .png to write")
  parser.add_argument("--columns", type=int, default=0,
                      help="panels per row (0: all in one row)")
  args = parser.parse_args()
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  columns = min(args.columns or len(args.runs), len(args.runs))
  rows = -(-len(args.runs) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.6 * rows), squeeze=False,
                           sharey=True)
  for ax in axes.flat[len(args.runs):]:
    ax.set_visible(False)
  for ax, run in zip(axes.flat, args.runs):
    workdir, _, label = run.partition(":")
    label = label or os.path.basename(os.path.normpath(workdir.split("+")[0]))
    parts = [eval_curves(d) for d in workdir.split("+")]
    steps = parts[0][0][:min(len(p[0]) for p in parts)]
    returns = np.concatenate([p[1][:len(steps)] for p in parts], axis=1)
    if not len(steps):
      raise SystemExit(f"error: {workdir}/metrics.jsonl has no evaluation yet")
    for seed in range(returns.shape[1]):
      ax.plot(steps / 1e6, returns[:, seed], label=f"seed {seed}", lw=1.2)
      hit = np.nonzero(returns[:, seed] >= args.threshold)[0]
      first = f"{steps[hit[0]] / 1e6:.1f}M" if len(hit) else "-"
      print(f"{label}: seed {seed}: first >= {args.threshold:g} at {first}, best "
            f"{returns[:, seed].max():.1f}, final {returns[-1, seed]:.1f}")
    ax.axhline(args.threshold, color="gray", ls="--", lw=0.8)
    ax.set_title(label, fontsize=10)
    ax.set_xlabel("env steps per seed (M)")
    ax.grid(alpha=0.3)
  for row in axes:
    row[0].set_ylabel("deterministic eval return")
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  fig.savefig(args.out, dpi=110)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
