"""PPO from pixels (issue 24): a pretrained encoder written by `mimex_jax.pretrain`, read frozen,
and a conv torso trained by PPO; the intrinsic reward scores the features."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax import encoder_store, parallel
from mimex_jax.agents import build
from mimex_jax.networks import image_mae

from cli_runner import run_train
from conftest import ENV, pretrain_smoke_encoder, xla_flags

SIZE = 16  # frames of the smoke encoder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
  """A smoke-sized encoder pretrained on CartpoleBalance frames, and its pretraining's log."""
  lines = []
  workdir = pretrain_smoke_encoder(str(tmp_path_factory.mktemp("encoder")), 60, lines.append)
  return workdir, lines


def _pixel_config(smoke_config, encoder, encoder_dir_path=""):
  config = smoke_config.copy_and_resolve_references()
  config.env.obs_type = "pixels"
  config.env.pixels.height = config.env.pixels.width = SIZE
  config.env.pixels.frame_stack = 2
  config.ppo.encoder = encoder
  config.ppo.encoder_checkpoint = encoder_dir_path
  return config


def test_pretraining_lowers_the_held_out_reconstruction_error(encoder_dir):
  workdir, lines = encoder_dir
  meta = json.load(open(os.path.join(workdir, "encoder.json")))
  assert meta["model"]["height"] == SIZE and meta["pretraining"]["frames"] == 48
  assert os.path.getsize(os.path.join(workdir, "reconstructions.png")) > 1000
  held_out = [float(line.split("held-out ")[1].split()[0]) for line in lines if "held-out" in line]
  assert len(held_out) == 6 and held_out[-1] < held_out[0], lines
  # What was saved is what `load` gives back, and it encodes frames to the stated size.
  model, params = encoder_store.load(workdir)
  frames = jnp.asarray(np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3)), jnp.uint8)
  features = model.apply(params, frames, method=image_mae.ImageMAE.encode)
  assert features.shape == (3, model.feature_size) and np.isfinite(features).all()


def _train_steps(fused, updates=2):
  traces = []

  def counted(state, key):
    traces.append(1)  # runs only while tracing
    return fused(state, key)

  key = jax.random.PRNGKey(0)
  state, metrics = parallel.pmap_init(fused.init, key), None
  initial = jax.tree.map(np.asarray, state)  # the step donates its input
  step = parallel.pmap_step(counted)
  for _ in range(updates):
    state, metrics = step(state, jnp.stack([key] * jax.local_device_count()))
  jax.block_until_ready(state)
  assert len(traces) == 1, f"the fused step was traced {len(traces)} times"
  for leaf in jax.tree.leaves((state.params, state.intrinsic.params)):
    np.testing.assert_array_equal(np.asarray(leaf)[0], np.asarray(leaf)[1])
  moved = [np.abs(np.asarray(a) - np.asarray(b)).max()
           for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(initial.params))]
  assert max(moved) > 0
  assert float(metrics["intrinsic_reward"][0]) > 0
  return initial, state


@pytest.mark.slow  # compiles a pixel PPO step (about a minute on 2 cores)
def test_frozen_encoder_features_are_the_checkpoints_own_after_training(smoke_config,
                                                                        encoder_dir):
  workdir, _ = encoder_dir
  config = _pixel_config(smoke_config, "frozen", workdir)
  _, fused, _, _ = build(config)
  model, params = encoder_store.load(workdir)
  # The bonus and the learner read the stacked features, not frames.
  assert fused.env.observation_shape == (2 * model.feature_size,)
  _, state = _train_steps(fused)
  # After training, the observations are still the saved encoder's features of the frames the
  # envs show (oldest first): nothing in training reaches the encoder's parameters.
  env_state = state.env_state
  frames = np.asarray(env_state.inner.inner.frames)[:, :, -1]  # [devices, envs, H, W, C]
  expected = model.apply(params, jnp.asarray(frames.reshape((-1,) + frames.shape[2:])),
                         method=image_mae.ImageMAE.encode)
  newest = np.asarray(env_state.obs)[:, :, model.feature_size:]
  np.testing.assert_allclose(newest.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)
  assert not np.allclose(newest[0], newest[1])  # each device renders its own envs
  # The policy's first layer reads exactly the features.
  shapes = [np.shape(leaf)[1:] for leaf in jax.tree.leaves(state.params.policy)]
  assert (2 * model.feature_size, 16) in shapes, shapes


@pytest.mark.long  # compiles a pixel PPO step with conv torsos
def test_conv_torso_trains_and_the_bonus_reads_its_detached_features(smoke_config):
  config = _pixel_config(smoke_config, "conv")
  _, fused, _, _ = build(config)
  assert fused.env.observation_shape == (SIZE, SIZE, 6)
  initial, state = _train_steps(fused)
  torso = lambda p: p.policy["params"]["torso"]  # noqa: E731
  moved = [np.abs(np.asarray(a) - np.asarray(b)).max()
           for a, b in zip(jax.tree.leaves(torso(state.params)),
                           jax.tree.leaves(torso(initial.params)))]
  assert max(moved) > 0, "PPO's loss did not train the conv torso"
  params = jax.tree.map(lambda x: x[0], state.params)  # device 0
  frames = jnp.asarray(np.asarray(state.env_state.obs)[0])
  features = fused.bonus_features(params, frames)
  assert features.shape == (frames.shape[0], 64)
  # The MIMEx model embeds vectors of the torso's size, and no gradient reaches the torso
  # through them.
  embed = state.intrinsic.params["params"]["encoder_embed"]["kernel"]
  assert embed.shape[-2] == 64
  grads = jax.grad(lambda p: fused.bonus_features(p, frames).sum())(params)
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("override, expected", [
    (["--config.ppo.encoder=vit"], "config key ppo.encoder='vit' is invalid"),
    (["--config.ppo.encoder_checkpoint="], "config key ppo.encoder_checkpoint is empty"),
    (["--config.ppo.encoder_checkpoint=/nonexistent/encoder"], "no such folder"),
    (["--config.env.pixels.height=8"], "config key env.pixels.height=8 is invalid"),
])
def test_bad_pixel_ppo_input_is_one_line_and_exit_code_2(repo_root, tmp_path, override,
                                                         expected):
  result = run_train(["--config=configs/ppo.py:smoke", "--config.env.obs_type=pixels",
                      *override, f"--workdir={tmp_path}"], repo_root)
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and expected in lines[0], lines


def test_an_encoder_of_other_frames_is_refused_before_compiling(repo_root, tmp_path,
                                                                encoder_dir):
  workdir, _ = encoder_dir
  result = run_train(["--config=configs/ppo.py:smoke", "--config.env.obs_type=pixels",
                      f"--config.ppo.encoder_checkpoint={workdir}",
                      "--config.env.pixels.height=24", "--config.env.pixels.width=24",
                      f"--workdir={tmp_path / 'run'}"], repo_root)
  assert result.returncode == 2, result.stderr[-2000:]
  line = result.stderr.strip().splitlines()
  assert len(line) == 1 and "was pretrained on 16x16 frames" in line[0], line
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def _pixel_run_args(encoder, encoder_path, workdir, *extra):
  # A constant learning rate: a run asked for fewer total steps would otherwise decay it faster.
  return ["--config=configs/ppo.py:smoke", "--config.env.obs_type=pixels",
          "--config.ppo.lr_schedule=constant",
          f"--config.env.pixels.height={SIZE}", f"--config.env.pixels.width={SIZE}",
          f"--config.ppo.encoder={encoder}", f"--config.ppo.encoder_checkpoint={encoder_path}",
          f"--workdir={workdir}", *extra]


def _arrays(workdir, update):
  from mimex_jax import checkpoint as checkpoint_lib
  return checkpoint_lib.read_arrays(os.path.join(workdir, "checkpoints"), update)


@pytest.mark.long  # four CLI trainings of pixel PPO (about 7 min each encoder)
@pytest.mark.parametrize("encoder", ["frozen", "conv"])
def test_pixel_run_resumes_exactly_and_one_device_trains_what_two_do(repo_root, tmp_path,
                                                                     encoder, encoder_dir):
  workdir, _ = encoder_dir
  full = run_train(_pixel_run_args(encoder, workdir, tmp_path / "full"), repo_root)
  assert full.returncode == 0, full.stderr[-3000:]
  assert "done: 768 env steps" in full.stdout
  first = run_train(_pixel_run_args(encoder, workdir, tmp_path / "resumed",
                                    "--config.total_steps=384"), repo_root)
  assert first.returncode == 0, first.stderr[-3000:]
  second = run_train(_pixel_run_args(encoder, workdir, tmp_path / "resumed"), repo_root)
  assert second.returncode == 0 and "resuming from" in second.stderr, second.stderr[-3000:]
  expected, got = _arrays(tmp_path / "full", 6), _arrays(tmp_path / "resumed", 6)
  for part in ("params", "opt_state", "intrinsic", "env_state"):
    for a, b in zip(jax.tree.leaves(expected[part]), jax.tree.leaves(got[part]), strict=True):
      np.testing.assert_array_equal(a, b, err_msg=f"{part} differs after resuming")

  one = subprocess.run([sys.executable, "-m", "mimex_jax.train",
                        *_pixel_run_args(encoder, workdir, tmp_path / "one_device")],
                       cwd=repo_root, env={**ENV, "XLA_FLAGS": xla_flags(1)},
                       capture_output=True, text=True, timeout=900)
  assert one.returncode == 0, one.stderr[-3000:]
  single = _arrays(tmp_path / "one_device", 6)
  # Up to the order of floating-point sums. Weights that read a nearly constant feature (a
  # background patch's token, scaled up by the normalizer) get gradients that are mostly that
  # rounding, which Adam scales to full-sized steps: 7 of 6144 first-layer weights differed
  # by up to 8e-4 in the frozen run.
  for a, b in zip(jax.tree.leaves(single["params"]), jax.tree.leaves(expected["params"]),
                  strict=True):
    np.testing.assert_allclose(a[0], b[0], rtol=2e-3, atol=1e-3)

  # Evaluation with a video, and the policy in Python, as for state PPO.
  evaluated = subprocess.run(
      [sys.executable, "-m", "mimex_jax.evaluate", f"--workdir={tmp_path / 'full'}",
       "--episodes=2", "--video", "--video_steps=10"],
      cwd=repo_root, env=ENV, capture_output=True, text=True, timeout=900)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  summary = json.loads((tmp_path / "full" / "eval" / "checkpoint_6.json").read_text())
  assert summary["length_mean"] == 20 and os.path.getsize(
      os.path.join(tmp_path / "full", summary["video"]) if not os.path.isabs(summary["video"])
      else summary["video"]) > 1000
  from mimex_jax import policy as policy_lib
  run = policy_lib.load(str(tmp_path / "full"))
  env_state = jax.jit(run.env.reset)(jax.random.PRNGKey(3))
  action = np.asarray(jax.jit(run.act)(env_state.obs[None]))
  assert action.shape == (1, 1) and np.all(np.abs(action) <= 1)
