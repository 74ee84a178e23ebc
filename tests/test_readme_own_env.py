"""README, "Your own environment", followed as written: its command lines and its Python block
run in a fresh folder holding only `examples/` and `configs/`, and train, evaluate (with a
video), render and load the example task."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ENV

pytestmark = pytest.mark.slow  # a 300k-step training of a new task, its compile included


def _blocks(readme: str):
  """The shell lines and the Python block under the section's two test markers."""
  section = readme[readme.index("## Your own environment"):]
  section = section[:section.index("\n## ", 1)]
  commands = re.search(r"<!-- own-env-commands[^>]*-->\n```sh\n(.*?)```", section, re.S).group(1)
  python = re.search(r"<!-- own-env-python[^>]*-->\n```python\n(.*?)```", section, re.S).group(1)
  return commands, python


def test_readme_own_environment_section_runs_as_written(repo_root, tmp_path):
  commands, python = _blocks(open(os.path.join(repo_root, "README.md")).read())
  for folder in ("examples", "configs"):
    shutil.copytree(os.path.join(repo_root, folder), tmp_path / folder)
  bin_dir = tmp_path / "bin"  # `python` in the README is this interpreter
  bin_dir.mkdir()
  # A script, not a symlink: a virtual environment's interpreter reached through a symlink in
  # another folder no longer finds the environment (its pyvenv.cfg), nor mimex_jax installed in it.
  (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
  (bin_dir / "python").chmod(0o755)
  env = {**ENV, "PATH": f"{bin_dir}{os.pathsep}{ENV.get('PATH', '')}"}
  env.pop("PYTHONPATH", None)  # the example is found in the current folder, as the README says
  script = "set -euo pipefail\n" + commands
  result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=3000)
  assert result.returncode == 0, result.stderr[-3000:]
  examples = tmp_path / "examples"
  workdir = examples / "runs" / "reach"
  assert "done: 303104 env steps" in result.stdout
  summary = json.loads((workdir / "eval" / "checkpoint_37.json").read_text())
  assert summary["env"] == "TwoLinkReach" and summary["length_mean"] == 100
  assert summary["success_rate"] is not None  # the task's success function is read
  assert os.path.getsize(examples / summary["video"]) > 10_000  # relative to where it ran
  assert os.path.getsize(examples / "reach.png") > 1_000
  # The Python block, from the same folder.
  loaded = subprocess.run([sys.executable, "-c", python], cwd=examples, env=env,
                          capture_output=True, text=True, timeout=600)
  assert loaded.returncode == 0, loaded.stderr[-3000:]
  returns = re.search(r"returns: \[(.*)\]", loaded.stdout).group(1).split()
  assert len(returns) == 4 and all(-100 <= float(r) <= 0 for r in returns)
