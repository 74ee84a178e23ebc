"""Host-side logging: a progress bar, `metrics.jsonl`, TensorBoard events and the final plot."""

import json
import math
import os
import time
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


def _clean(value: Any) -> Any:
  """JSON has no NaN: undefined values (e.g. success on a dense task) are written as null."""
  if value is None:
    return None
  value = float(value)
  return None if math.isnan(value) or math.isinf(value) else value


class MetricsWriter:
  """Writes one JSON object per log step, the same scalars to TensorBoard, and a progress bar."""

  def __init__(self, workdir: str, total_steps: int, enabled: bool = True,
               initial_step: int = 0):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.tensorboard = None
    self.progress = None
    if not enabled:
      return
    from tensorboardX import SummaryWriter
    from tqdm import tqdm
    self.tensorboard = SummaryWriter(workdir)
    self.progress = tqdm(total=total_steps, unit="step", unit_scale=True, dynamic_ncols=True,
                         desc="env steps", smoothing=0.1, initial=initial_step)
    self._shown = initial_step

  def write(self, step: int, scalars: Dict[str, Any]):
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _clean(v) for k, v in scalars.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for key, value in record.items():
      if key != "step" and value is not None:
        self.tensorboard.add_scalar(key, value, step)
    self.tensorboard.flush()
    self.progress.update(step - self._shown)
    self._shown = step
    shown = {"return": record.get("episode_return"), "success": record.get("success_rate"),
             "r_int": record.get("intrinsic_reward"), "sps": record.get("steps_per_second")}
    self.progress.set_postfix({k: ("-" if v is None else f"{v:.3g}") for k, v in shown.items()},
                              refresh=True)

  def close(self):
    if self.progress is not None:
      self.progress.close()
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
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


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
        ax.plot(xs, ys, style, label=name, markersize=3)
    if train_key == "intrinsic_reward" and ax.lines:
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
