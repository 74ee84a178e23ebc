"""experiments/gpu_check.py runs end to end here, at CPU sizes, before a GPU ever sees it."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ENV


@pytest.mark.long  # about 14 minutes and 13 GB on 2 cores (the warp stage)
def test_gpu_check_runs_every_stage_at_cpu_sizes(repo_root, tmp_path):
  out = tmp_path / "gpu_check"
  result = subprocess.run(
      [sys.executable, "experiments/gpu_check.py", "--sizes=cpu", f"--out={out}"],
      cwd=repo_root, env=ENV, capture_output=True, text=True, timeout=1800)
  assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
  report = json.loads((out / "gpu_check.json").read_text())
  assert report["sizes"] == "cpu" and report["machine"]["platform"] == "cpu"
  stages = report["stages"]
  assert set(stages) == {"ppo", "drq_jax", "drq_warp", "learning"}
  assert not any(stage.get("error") or stage.get("skipped") for stage in stages.values())
  ppo_modes = {row["mode"] for row in stages["ppo"]["rows"]}
  assert {"raw env", "PPO", "PPO + MIMEx (CPU default)",
          "PPO + MIMEx (reference size)"} <= ppo_modes
  assert all(row["steps_per_second"] > 0 for row in stages["ppo"]["rows"])
  # Both renderers, raw and training.
  drq = {(row["mode"], row["backend"])
         for name in ("drq_jax", "drq_warp") for row in stages[name]["rows"]}
  assert {("raw pixel env", "jax"), ("raw pixel env", "warp"), ("DrQ + MIMEx", "jax"),
          ("DrQ + MIMEx", "warp")} <= drq
  learning = stages["learning"]["result"]
  assert learning["returncode"] == 0 and learning["final_step"] == 64 * 32 * 6
  assert learning["eval_curve"]  # evaluations ran and were read back
  table = (out / "gpu_check.md").read_text()
  assert "| PPO + MIMEx (CPU default) | 64 |" in table and "| DrQ + MIMEx | warp |" in table
