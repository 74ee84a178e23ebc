"""`python -m mimex_jax.envs.show`: the recorded steps, the picture strip, and bad input."""

import subprocess
import sys

import numpy as np

from mimex_jax.envs import pixels, show
from conftest import ENV


def test_records_and_composes_scene_above_agent_view():
  spec = pixels.PixelSpec(height=16, width=16, frame_stack=1)
  trace = show.record("ReachSparse", 6, "scripted", spec)
  assert trace["qpos"].shape[0] == 7 and trace["pixels"].shape == (7, 16, 16, 3)
  assert not np.array_equal(trace["qpos"][0], trace["qpos"][-1])  # the arm moved
  frames = show.compose("ReachSparse", trace, height=48)
  # Scene 48 rows, a 4-row gap, the agent's 16x16 view scaled 3x to 48 rows.
  assert frames.shape == (7, 48 + 4 + 48, 64, 3) and frames.dtype == np.uint8
  np.testing.assert_array_equal(frames[3, 52:, :48], np.repeat(np.repeat(
      trace["pixels"][3], 3, axis=0), 3, axis=1))
  assert frames[:, :48].std() > 10  # the scene is not blank
  picture = show.strip(frames, 3)
  assert picture.shape == (100, 3 * 64 + 2 * 4, 3)


def test_unknown_task_and_bad_output_exit_2(repo_root):
  for args in (["NoSuchTask", "--out=x.png"], ["ReachSparse", "--out=x.jpg"]):
    result = subprocess.run([sys.executable, "-m", "mimex_jax.envs.show", *args], cwd=repo_root,
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert ("unknown env name" in result.stderr) or (".png, .gif or .mp4" in result.stderr)
