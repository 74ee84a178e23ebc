"""Host-side logging: a progress bar, `metrics.jsonl`, TensorBoard events and the final plot."""

import json
import math
import os
from typing import Any, Dict, List, Optional

import numpy as np


class EpisodeAccumulator:
  """Sums the per-update episode counts from the fused step into means over a log window."""

  def __init__(self):
    self.reset()
    self.last = {"episode_return": None, "episode_length": None, "success_rate": None}

  def reset(self):
    self.episodes = 0.0
    self.sums = {"episode_return": 0.0, "episode_length": 0.0, "success_rate": 0.0}

  def add(self, metrics: Dict[str, float]):
    self.episodes += metrics["episodes"]
    self.sums["episode_return"] += metrics["episode_return_sum"]
    self.sums["episode_length"] += metrics["episode_length_sum"]
    self.sums["success_rate"] += metrics["success_sum"]

  def dump(self) -> Dict[str, Any]:
    """The accumulator's state, for a checkpoint (JSON)."""
    return {"episodes": self.episodes, "sums": dict(self.sums), "last": dict(self.last)}

  def load(self, dumped: Dict[str, Any]) -> None:
    self.episodes = dumped["episodes"]
    self.sums = dict(dumped["sums"])
    self.last = dict(dumped["last"])

  def means(self) -> Dict[str, Optional[float]]:
    """Means over episodes that ended in this window; the last known values if none did."""
    if self.episodes > 0:
      self.last = {k: v / self.episodes for k, v in self.sums.items()}
      self.last = {k: (None if v is None or math.isnan(v) else v) for k, v in self.last.items()}
    self.reset()
    return dict(self.last)


# Every metric goes into `metrics.jsonl` and TensorBoard per seed when a run trains several
# (a collapse averaged with healthy seeds is blurred past reading, issue 27), except these:
# throughput and compile time belong to the program, not to a seed.
NOT_PER_SEED = ("steps_per_second", "compile_seconds")


def _mean_of_defined(values: List[Optional[float]]) -> Optional[float]:
  defined = [v for v in values if v is not None and not math.isnan(v)]
  return float(np.mean(defined)) if defined else None


class LogWindow:
  """The updates since the last log line, per seed, and each seed's episode sums.

  `add(update, metrics)` takes `{name: [value per seed]}`; `summarize(eval_metrics)` turns the
  window into one line: means over the window (episode figures per ended episode), for each seed
  and averaged over seeds. Its state (`dump`/`load`) goes into checkpoints, so a resumed run logs
  the same numbers.
  """

  def __init__(self, num_seeds: int):
    self.num_seeds = num_seeds
    self.updates: List[Any] = []  # [update, {name: [per seed]}]
    self.episodes = [EpisodeAccumulator() for _ in range(num_seeds)]

  def add(self, update: int, metrics: Dict[str, List[float]]) -> None:
    self.updates.append([update, metrics])

  def non_finite(self, allowed=("success_sum",)):
    """`(name, value, update)` of the first NaN or inf outside `allowed`, or None."""
    for update, metrics in self.updates:
      for name, values in metrics.items():
        bad = [v for v in values if not math.isfinite(v)]
        if bad and name not in allowed:
          return name, bad[0], update
    return None

  def summarize(self, eval_metrics: Optional[Dict[str, List[float]]] = None):
    """Returns `(scalars, per_seed)` and empties the window."""
    per_seed = []
    names = [n for n in self.updates[-1][1] if not n.endswith("_sum") and n != "episodes"]
    for seed in range(self.num_seeds):
      for _, metrics in self.updates:
        self.episodes[seed].add({k: v[seed] for k, v in metrics.items()})
      scalars = {n: float(np.mean([m[n][seed] for _, m in self.updates])) for n in names}
      scalars.update(self.episodes[seed].means())
      scalars.update({k: v[seed] for k, v in (eval_metrics or {}).items()})
      per_seed.append(scalars)
    self.updates = []
    mean = {name: _mean_of_defined([s[name] for s in per_seed]) for name in per_seed[0]}
    return mean, per_seed

  def dump(self) -> Dict[str, Any]:
    return {"updates": self.updates, "episodes": [e.dump() for e in self.episodes]}

  def load(self, dumped: Dict[str, Any]) -> None:
    self.updates = [list(entry) for entry in dumped["updates"]]
    for accumulator, state in zip(self.episodes, dumped["episodes"], strict=True):
      accumulator.load(state)


def _clean(value: Any) -> Any:
  """JSON has no NaN: undefined values (e.g. success on a dense task) are written as null."""
  if value is None:
    return None
  value = float(value)
  return None if math.isnan(value) or math.isinf(value) else value


class MetricsWriter:
  """Writes one JSON object per log step, the same scalars to TensorBoard, and a progress bar.

  `enabled=False` writes nothing (processes other than 0 of a multi-process run);
  `show_progress=False` only hides the progress bar: the files are written all the same.
  """

  def __init__(self, workdir: str, total_steps: int, enabled: bool = True,
               initial_step: int = 0, show_progress: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.tensorboard = None
    self.progress = None
    if not enabled:
      return
    from tensorboardX import SummaryWriter
    self.tensorboard = SummaryWriter(workdir)
    if show_progress:
      from tqdm import tqdm
      self.progress = tqdm(total=total_steps, unit="step", unit_scale=True, dynamic_ncols=True,
                           desc="env steps", smoothing=0.1, initial=initial_step)
    self._shown = initial_step

  def write(self, step: int, scalars: Dict[str, Any],
            per_seed: Optional[List[Dict[str, Any]]] = None):
    """One line of `scalars`; with several seeds, `per_seed` adds each seed's key figures."""
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _clean(v) for k, v in scalars.items()}}
    if per_seed is not None and len(per_seed) > 1:
      record["per_seed"] = {k: [_clean(s.get(k)) for s in per_seed] for k in per_seed[0]
                            if k not in NOT_PER_SEED}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for key, value in record.items():
      if key not in ("step", "per_seed") and value is not None:
        self.tensorboard.add_scalar(key, value, step)
    for key, values in record.get("per_seed", {}).items():
      for seed, value in enumerate(values):
        if value is not None:
          self.tensorboard.add_scalar(f"seed_{seed}/{key}", value, step)
    self.tensorboard.flush()
    if self.progress is None:
      return
    self.progress.update(step - self._shown)
    self._shown = step
    shown = {"return": record.get("episode_return"), "success": record.get("success_rate"),
             "r_int": record.get("intrinsic_reward"), "sps": record.get("steps_per_second")}
    self.progress.set_postfix({k: ("-" if v is None else f"{v:.3g}") for k, v in shown.items()},
                              refresh=True)

  def close(self):
    if self.progress is not None:
      self.progress.close()
    if self.tensorboard is not None:
      self.tensorboard.close()


def truncate_metrics(workdir: str, max_step: int) -> None:
  """Drops records past `max_step`: a resumed run logs those steps again."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return
  kept = [r for r in read_metrics(workdir) if r["step"] <= max_step]
  with open(path + ".tmp", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in kept)
  os.replace(path + ".tmp", path)  # atomic: a crash here leaves the old file whole


def read_metrics(workdir: str) -> List[Dict[str, Any]]:
  """The records of `metrics.jsonl`; a last line cut short (a write that failed, e.g. on a full
  disk) is left out: a resumed run logs that step again."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [line for line in f if line.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i < len(lines) - 1:
        raise
  return records


def plot_learning_curve(workdir: str, title: str = "") -> str:
  """Plots return, success rate and intrinsic reward against env steps into learning_curve.png."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  records = read_metrics(workdir)
  panels = [("episode_return", "eval_return", "episode return"),
            ("success_rate", "eval_success_rate", "success rate"),
            ("intrinsic_reward", None, "intrinsic reward (mean per step)")]
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
  for ax, (train_key, eval_key, label) in zip(axes, panels):
    for key, style, name in ((train_key, "-", "training episodes"),
                             (eval_key, "o--", "deterministic eval")):
      if key is None:
        continue
      points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
      if points:
        xs, ys = np.array(points).T
        line, = ax.plot(xs, ys, style, label=name + (" (mean of seeds)" if any(
            "per_seed" in r for r in records) else ""), markersize=3)
        for seed in range(max(len(r.get("per_seed", {}).get(key, [])) for r in records)):
          seed_points = [(r["step"], r["per_seed"][key][seed]) for r in records
                         if r.get("per_seed", {}).get(key) and
                         r["per_seed"][key][seed] is not None]
          if seed_points:  # each seed thin, in the colour of its mean
            ax.plot(*np.array(seed_points).T, "-", color=line.get_color(), alpha=0.3,
                    linewidth=0.8)
    positive = [r[train_key] for r in records if (r.get(train_key) or 0) > 0]
    if train_key == "intrinsic_reward" and positive:  # no bonus (kind none) stays linear
      ax.set_yscale("log")  # the bonus shrinks by orders of magnitude as the model learns
    ax.set_xlabel("env steps")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  path = os.path.join(workdir, "learning_curve.png")
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
