"""Evaluation from a checkpoint: the CLI reports and writes a readable GIF; `load_policy` gives
the trained policy's actions."""

import json
import os

import jax
import numpy as np

import mimex_jax
from mimex_jax import checkpoint as checkpoint_lib

from cli_runner import run_module


def _evaluate(repo_root, *args):
  return run_module("mimex_jax.evaluate", args, repo_root)


def test_evaluate_cli_reports_and_writes_a_video(repo_root, uninterrupted):
  from PIL import Image
  result = _evaluate(repo_root, f"--workdir={uninterrupted}", "--checkpoint=50", "--episodes=4",
                     "--video", "--video_episodes=2", "--video_steps=10", "--video_size=64x48")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "CartpoleBalanceSparse at env step 6400" in result.stdout
  summary = json.loads(open(os.path.join(uninterrupted, "eval", "checkpoint_50.json")).read())
  assert summary["update"] == 50 and summary["episodes"] == 4
  # Smoke episodes last 20 steps and cartpole balance never terminates early; the reward is at
  # most 1 a step.
  assert summary["length_mean"] == 20
  assert 0 <= summary["return_mean"] <= 20 and 0 <= summary["success_rate"] <= 1
  assert f"return {summary['return_mean']:.1f}" in result.stdout
  gif = Image.open(summary["video"])
  assert gif.format == "GIF" and gif.size == (64, 48)
  # Two episodes of 10 steps plus their reset frames; GIF merges repeated frames into one with
  # a longer duration, so count time, not frames.
  assert summary["video_frames"] == 2 * (10 + 1)
  durations, frames = [], []
  for index in range(gif.n_frames):
    gif.seek(index)
    durations.append(gif.info["duration"])
    frames.append(np.asarray(gif.convert("RGB"), np.float32))
  assert sum(durations) == 22 * durations[0] and gif.n_frames > 10
  assert frames[0].std() > 5  # a picture, not a blank
  assert np.abs(frames[0] - frames[-1]).mean() > 0.1  # the cart and pole moved


def test_evaluate_cli_bad_checkpoint_is_one_line(repo_root, uninterrupted, tmp_path):
  result = _evaluate(repo_root, f"--workdir={uninterrupted}", "--checkpoint=7")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "checkpoint '7' is not in" in result.stderr and "choose latest, best or one of" in (
      result.stderr)
  result = _evaluate(repo_root, f"--workdir={tmp_path}")
  assert result.returncode == 2 and "holds no checkpoints/ folder" in result.stderr


def test_evaluate_on_a_path_that_does_not_exist_says_so(tmp_path, capsys):
  from mimex_jax import evaluate
  missing = str(tmp_path / "no_such_run")
  try:
    evaluate.main(["mimex_jax.evaluate", f"--workdir={missing}"])
  except SystemExit as e:
    assert e.code == 2
  else:
    raise AssertionError("evaluate accepted a workdir that does not exist")
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f"mimex_jax.evaluate: error: {missing} does not exist; give the --workdir of "
                 f"a training run"]
  assert not os.path.exists(missing)  # nothing created on the way


def test_load_policy_acts_like_the_restored_training_state(uninterrupted, smoke_config):
  from mimex_jax.agents import build
  from mimex_jax.train import seeded_training
  policy = mimex_jax.load_policy(uninterrupted)  # latest: update 60
  _, fused, _, _ = build(smoke_config)
  template = seeded_training(smoke_config, fused)[1]
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(uninterrupted, "checkpoints"),
                                             read_only=True)
  update, state, _ = checkpointer.restore(template)
  assert update == 60
  obs = np.asarray(state.env_state.obs[0, 0])  # [envs, obs_size] from the run itself
  expected = fused.deterministic_policy(
      jax.tree.map(lambda x: x[0, 0], (state.params, state.normalizer)), obs)
  actions = np.asarray(policy(obs))
  np.testing.assert_allclose(actions, expected, rtol=1e-6, atol=1e-6)
  assert actions.shape == (16 // 2, 1) and np.abs(actions).max() <= 1
  assert np.ptp(actions) > 0  # different states, different actions
  np.testing.assert_allclose(policy(obs[0]), actions[0], rtol=1e-6, atol=1e-6)  # unbatched
  # An earlier checkpoint is a different policy.
  assert np.abs(np.asarray(mimex_jax.load_policy(uninterrupted, 40)(obs)) - actions).max() > 0
