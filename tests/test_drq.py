"""DrQ-v2: augmentation bounds (one shift per MIMEx sequence), the bonus fed replayed sequences,
the fused step on two devices, learning from states, and a pixel run end to end through the
CLI."""

import json
import os
import sys
from types import SimpleNamespace

from cli_runner import run_train
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax import parallel
from mimex_jax.agents import build, check
from mimex_jax.agents.drq import DrQFusedStep, Sample, random_shift
from mimex_jax.agents.drq.augment import random_shift_sequences
from mimex_jax.config_checks import ConfigError
from mimex_jax.evaluate import make_evaluator
from mimex_jax.intrinsic import IntrinsicBatch, Mimex
from mimex_jax.intrinsic.sequences import trailing_windows


@pytest.fixture(scope="module")
def drq_configs(repo_root):
  sys.path.insert(0, repo_root)
  from configs import drq
  return drq


def test_random_shift_moves_each_image_by_at_most_the_pad():
  image = np.zeros((20, 20, 1), np.uint8)
  image[10, 10] = 255
  images = jnp.asarray(np.repeat(image[None], 400, axis=0))
  shifted = np.asarray(random_shift(jax.random.PRNGKey(0), images, pad=4))
  assert shifted.shape == images.shape and shifted.dtype == np.uint8
  shifts = []
  for out in shifted:
    (y,), (x,), _ = np.nonzero(out)
    dy, dx = y - 10, x - 10
    assert abs(dy) <= 4 and abs(dx) <= 4
    np.testing.assert_array_equal(out, np.roll(image, (dy, dx), axis=(0, 1)))
    shifts.append((dy, dx))
  dys, dxs = zip(*shifts)
  assert {min(dys), max(dys), min(dxs), max(dxs)} == {-4, 4}  # the whole range is used
  assert len(set(shifts)) > 40  # of the 81 possible shifts
  np.testing.assert_array_equal(random_shift(jax.random.PRNGKey(0), images, pad=0), images)


class _FlatEncoder:
  """Stands in for DrQ in `DrQFusedStep._bonus`: its features are the pixels, flattened."""

  def __init__(self, pixels, aug_pad=4):
    self.pixels = pixels
    self.config = SimpleNamespace(aug_pad=aug_pad)

  def features(self, params, obs):
    return obs.reshape(obs.shape[0], -1).astype(jnp.float32)


class _RecordingBonus:
  """Stands in for the intrinsic reward: hands back the batch and key it was given."""

  def update(self, state, batch, key):
    return (batch, key), jnp.zeros(batch.obs.shape[:2]), {}


def _bonus_inputs(sample, pixels=True, augment=True, key=jax.random.PRNGKey(5)):
  fused = DrQFusedStep(None, _FlatEncoder(pixels), None, _RecordingBonus(), env_steps=1,
                       updates=1, batch_size=1, frames_per_update=1, random_frames=0,
                       learning_starts=0, std_initial=1.0, std_final=0.1, std_duration=1,
                       k_expl=0.0, anneal_k_expl=False, total_updates=1,
                       augment_intrinsic=augment)
  (batch, used_key), _, _ = jax.jit(fused._bonus)(None, None, sample, key)
  return jax.device_get(batch), used_key


def _dot_sequences(num, length, size=16):
  """`[num, length, size, size, 2]` uint8: frame k of every sequence has one lit pixel at
  (6 + k, 5 + 2 k), at least the pad of 4 away from the border, so a shift is read off it."""
  frames = np.zeros((num, length, size, size, 2), np.uint8)
  for k in range(length):
    frames[:, k, 6 + k, 5 + 2 * k] = 200
  return frames


def test_mimex_sequences_get_one_shift_shared_by_their_frames():
  num, length, size = 32, 3, 16
  context = _dot_sequences(num, length, size)
  obs = context[:, -1]
  sample = Sample(obs=jnp.asarray(obs), action=jnp.zeros((num, 1)), reward=jnp.zeros(num),
                  discount=jnp.ones(num), bootstrap_obs=jnp.asarray(obs),
                  next_obs=jnp.asarray(obs), context=jnp.asarray(context),
                  context_valid=jnp.ones((num, length)), valid=jnp.ones(num))
  key = jax.random.PRNGKey(5)
  batch, used_key = _bonus_inputs(sample, key=key)
  shifted = batch.context[0].reshape(context.shape)
  shifts = []
  for i in range(num):
    moves = set()
    for k in range(length):
      ys, xs = np.nonzero(shifted[i, k, :, :, 0])
      assert len(ys) == 1  # moved whole, not smeared
      dy, dx = ys[0] - (6 + k), xs[0] - (5 + 2 * k)
      assert abs(dy) <= 4 and abs(dx) <= 4
      np.testing.assert_array_equal(shifted[i, k], np.roll(context[i, k], (dy, dx), (0, 1)))
      moves.add((dy, dx))
    assert len(moves) == 1, f"sequence {i}: its frames moved differently: {moves}"
    shifts.append(moves.pop())
  assert len(set(shifts)) > 10  # each sequence draws its own shift (of 81)
  # obs and next_obs (what RND and ICM read) are not shifted; the MIMEx draws get their own key.
  np.testing.assert_array_equal(batch.obs[0], obs.reshape(num, -1))
  np.testing.assert_array_equal(batch.next_obs[0], obs.reshape(num, -1))
  assert not np.array_equal(used_key, key)
  again, _ = _bonus_inputs(sample, key=key)
  np.testing.assert_array_equal(again.context, batch.context)  # the same key, the same shifts

  # Off, or from states: the context reaches the encoder as sampled, and the key is untouched.
  for pixels, augment in ((True, False), (False, True)):
    batch, used_key = _bonus_inputs(sample, pixels=pixels, augment=augment, key=key)
    np.testing.assert_array_equal(batch.context[0].reshape(context.shape), context)
    np.testing.assert_array_equal(used_key, key)

  np.testing.assert_array_equal(
      random_shift_sequences(key, jnp.asarray(context), pad=0), context)
  with pytest.raises(ValueError, match="N, T, H, W, C"):
    random_shift_sequences(key, jnp.asarray(context[0]))


class _BiasedEncoder(_FlatEncoder):
  """Features that are not zero for a blank frame: the flattened pixels plus 1."""

  def features(self, params, obs):
    return super().features(params, obs) + 1.0


@pytest.mark.parametrize("padding", ["zeros", "blank_frame"])
def test_padded_window_positions_are_zeros_or_the_encoded_blank_frame(padding):
  """Issue 26 item 8: positions before an episode's start. `zeros` (the default) hands the
  bonus zero features there; `blank_frame` (the reference's) an all-zero frame, encoded. Real
  positions are the same either way."""
  num, length = 8, 3
  context = _dot_sequences(num, length)
  valid = np.ones((num, length), np.float32)
  valid[:, 0] = 0.0  # the first position of every window is from the previous episode
  valid[:4, 1] = 0.0
  obs = context[:, -1]
  sample = Sample(obs=jnp.asarray(obs), action=jnp.zeros((num, 1)), reward=jnp.zeros(num),
                  discount=jnp.ones(num), bootstrap_obs=jnp.asarray(obs),
                  next_obs=jnp.asarray(obs), context=jnp.asarray(context),
                  context_valid=jnp.asarray(valid), valid=jnp.ones(num))
  encoder = _BiasedEncoder(pixels=True)
  features = {}
  for kind in ("zeros", "blank_frame"):
    fused = DrQFusedStep(None, encoder, None, _RecordingBonus(), env_steps=1, updates=1,
                         batch_size=1, frames_per_update=1, random_frames=0, learning_starts=0,
                         std_initial=1.0, std_final=0.1, std_duration=1, k_expl=0.0,
                         anneal_k_expl=False, total_updates=1, augment_intrinsic=False,
                         intrinsic_padding=kind)
    features[kind], _ = jax.device_get(
        jax.jit(fused.context_features)(None, sample, jax.random.PRNGKey(0)))
  got = features[padding]
  blank = np.asarray(encoder.features(None, jnp.zeros((1,) + context.shape[2:], jnp.uint8)))[0]
  padded = valid == 0
  expected_padding = np.zeros_like(blank) if padding == "zeros" else blank
  assert float(np.abs(blank).min()) == 1.0  # a blank frame's features are not zeros
  for i, k in zip(*np.nonzero(padded)):
    np.testing.assert_array_equal(got[i, k], expected_padding)
  np.testing.assert_array_equal(features["zeros"][~padded], features["blank_frame"][~padded])
  np.testing.assert_array_equal(
      got[~padded], np.asarray(encoder.features(None, jnp.asarray(context[~padded]))))


def test_intrinsic_padding_is_checked(drq_configs):
  config = drq_configs.get_config("smoke")
  assert config.drq.intrinsic_padding == "zeros"
  config.drq = {**config.drq.to_dict(), "intrinsic_padding": "noise"}
  with pytest.raises(ConfigError, match=r"^config key drq.intrinsic_padding='noise' is "
                                        r"invalid; allowed: zeros or blank_frame$"):
    check(config, 2)


def test_mimex_scores_given_contexts_as_it_scores_rollout_windows():
  """DrQ hands MIMEx sequences sampled from the buffer; the same sequences built from a rollout
  get the same reward and the same model step."""
  steps, envs, size = 6, 4, 3
  learning_rate = 1e-4
  mimex = Mimex(obs_size=size, seq_len=3, mask_ratio=0.5, learning_rate=learning_rate,
                model_kwargs=dict(embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=8))
  state = mimex.init(jax.random.PRNGKey(0), envs)
  next_obs = jax.random.normal(jax.random.PRNGKey(1), (steps, envs, size))
  done = (jax.random.uniform(jax.random.PRNGKey(2), (steps, envs)) < 0.3).astype(jnp.float32)
  windows, _, _, _ = trailing_windows(state.history, state.history_done, next_obs, done)
  zeros = jnp.zeros((steps, envs, 1))
  key = jax.random.PRNGKey(3)
  update = jax.jit(mimex.update)
  from_rollout = update(state, IntrinsicBatch(next_obs, zeros, next_obs, done), key)
  from_context = update(state, IntrinsicBatch(next_obs, zeros, next_obs, done, context=windows),
                        key)
  np.testing.assert_allclose(from_rollout[1], from_context[1], rtol=1e-6)
  # Adam's first step is learning_rate * g / (|g| + 1e-8): a parameter whose gradient is rounding
  # noise (|g| near 1e-9; the two programs are compiled apart and round apart) moves by a
  # rounding-sized g scaled up to the learning rate's order (3e-5 apart, seen under XLA's older
  # fusion emitters), so parameters agree to half a learning rate; the rewards above, to 1e-6.
  for a, b in zip(jax.tree.leaves(from_rollout[0].params), jax.tree.leaves(from_context[0].params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=0.5 * learning_rate)
  # The sampled path leaves the rollout history alone.
  np.testing.assert_array_equal(from_context[0].history, state.history)


def _state_config(drq_configs):
  config = drq_configs.get_config("cartpole_balance_state")
  config.num_envs = 8
  config.updates_per_step = 2
  config.replay.capacity = 2000
  config.drq.batch_size = 32
  config.drq.hidden_dim = 32
  config.drq.feature_dim = 16
  config.drq.random_frames = 64
  config.drq.learning_starts = 64
  config.intrinsic.kind = "mimex"
  config.intrinsic.embed_dim = 16
  config.intrinsic.num_heads = 2
  config.intrinsic.decoder_embed_dim = 16
  return config


@pytest.mark.parametrize("window_end", [
    "obs", pytest.param("next_obs", marks=pytest.mark.long)])  # the same step, other windows
def test_fused_step_two_devices_identical_params_and_single_trace(drq_configs, window_end):
  assert jax.local_device_count() == 2, "conftest forces two CPU devices"
  config = _state_config(drq_configs)
  config.intrinsic.window_end = window_end
  # One learner update per step: on CPU each is written out, and this test is about devices
  # (the pixel smoke run trains two per step).
  config.updates_per_step = 1
  _, fused, frames_per_update, _ = build(config)
  assert fused.buffer.context_end == window_end and fused.buffer.seq_len == 5
  traces = []

  def counted(state, key):
    traces.append(1)  # runs only while tracing
    return fused(state, key)

  key = jax.random.PRNGKey(0)
  state = parallel.pmap_init(fused.init, key)
  initial = jax.tree.map(np.asarray, state.params)
  step = parallel.pmap_step(counted)
  keys = jnp.stack([key] * 2)
  learning = []
  for _ in range(8):  # 32 frames per update: learning starts at the third
    state, metrics = step(state, keys)
    learning.append(float(metrics["learning"][0]))
  jax.block_until_ready(state)
  assert len(traces) == 1, f"the fused step was traced {len(traces)} times"
  assert learning[:2] == [0.0, 0.0] and learning[-1] == 1.0

  for name, tree in (("drq", state.params), ("mimex", state.intrinsic.params),
                     ("optimizer", state.opt_state)):
    for leaf in jax.tree.leaves(tree):
      leaf = np.asarray(leaf)
      np.testing.assert_array_equal(leaf[0], leaf[1], err_msg=f"{name} differs across devices")
  for part in ("encoder", "actor", "critic", "target_critic"):
    before, after = initial.__getattribute__(part), getattr(state.params, part)
    moved = [np.abs(np.asarray(a) - b).max() for a, b in zip(jax.tree.leaves(after),
                                                              jax.tree.leaves(before))]
    assert part == "encoder" or max(moved) > 0, f"{part} did not train"  # no encoder on states
  # Each device keeps its own envs and its own buffer shard.
  assert not np.array_equal(np.asarray(state.replay.frames[0]), np.asarray(state.replay.frames[1]))
  assert int(metrics["replay_transitions"][0]) == 8 * 2 * 8
  assert np.isfinite(np.asarray(metrics["critic_loss"])).all()
  assert float(metrics["intrinsic_reward"][0]) > 0


@pytest.mark.slow  # a learning curve
def test_short_run_from_states_improves_return_on_dense_cartpole_balance(drq_configs):
  config = _state_config(drq_configs)
  config.intrinsic.kind = "none"
  config.num_envs = 16
  config.updates_per_step = 8
  config.drq.batch_size = 128
  config.drq.hidden_dim = 128
  config.drq.feature_dim = 32
  config.drq.random_frames = 1000
  config.drq.learning_starts = 1000
  config.drq.std_duration = 10_000
  config.replay.capacity = 20_000
  env, fused, frames_per_update, _ = build(config)
  evaluator = jax.jit(make_evaluator(env, 16, fused.deterministic_policy))

  def evaluate(state):
    args = parallel.unreplicate((state.params,))
    return float(evaluator(args, jax.random.PRNGKey(7))["eval_return"])

  key = jax.random.PRNGKey(0)
  state = parallel.pmap_init(fused.init, key)
  step = parallel.pmap_step(fused)
  keys = jnp.stack([key] * jax.local_device_count())
  before = evaluate(state)
  for _ in range(16_000 // frames_per_update):
    state, _ = step(state, keys)
  after = evaluate(state)
  print(f"deterministic return before {before:.1f}, after {after:.1f} (of 500)")
  assert after > before + 100, (before, after)


def _train(repo_root, workdir, *overrides):
  return run_train(["--config=configs/drq.py:smoke", f"--workdir={workdir}", *overrides],
                   repo_root)


def _restored_params(workdir, update):
  from mimex_jax.checkpoint import Checkpointer, checkpoint_dir
  checkpointer = Checkpointer(checkpoint_dir(workdir), read_only=True)
  meta = checkpointer.read_meta(update)
  import orbax.checkpoint as ocp
  restored = checkpointer.manager.restore(update, args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))["state"]
  checkpointer.close()
  return meta, restored


@pytest.mark.long  # a pixel DrQ CLI training, stopped and resumed
def test_pixel_smoke_run_end_to_end_and_exact_resume(repo_root, tmp_path):
  """DrQ + MIMEx from pixels through the CLI on 2 devices; a run stopped at update 6 and resumed
  (replay buffer included) ends with the same parameters as one that never stopped."""
  full = _train(repo_root, tmp_path / "full")
  assert full.returncode == 0, full.stderr[-3000:]
  assert "done: 192 env steps" in full.stdout
  rows = [json.loads(line) for line in open(tmp_path / "full" / "metrics.jsonl")]
  last = rows[-1]
  assert last["step"] == 192 and np.isfinite(last["eval_return"])
  assert last["learning"] == 1.0 and last["intrinsic_reward"] > 0
  assert np.isfinite(last["critic_loss"]) and np.isfinite(last["actor_loss"])
  assert os.path.exists(tmp_path / "full" / "learning_curve.png")

  first = _train(repo_root, tmp_path / "resumed", "--config.total_steps=96")
  assert first.returncode == 0, first.stderr[-3000:]
  second = _train(repo_root, tmp_path / "resumed")
  assert second.returncode == 0, second.stderr[-3000:]
  assert "resuming from" in second.stderr
  _, expected = _restored_params(tmp_path / "full", 12)
  _, earlier = _restored_params(tmp_path / "full", 6)
  for part in ("encoder", "actor", "critic"):  # the conv encoder learns through the critic
    moved = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(expected["params"][part]),
                                                 jax.tree.leaves(earlier["params"][part]))]
    assert max(moved) > 0, f"{part} did not change between updates 6 and 12"
  _, got = _restored_params(tmp_path / "resumed", 12)
  for part in ("params", "intrinsic", "replay"):
    for a, b in zip(jax.tree.leaves(expected[part]), jax.tree.leaves(got[part])):
      np.testing.assert_array_equal(a, b, err_msg=f"{part} differs after resuming")

  from mimex_jax import load_policy
  policy = load_policy(str(tmp_path / "full"))
  obs = jnp.zeros((3, 24, 24, 9), jnp.uint8)
  action = np.asarray(policy(obs))
  assert action.shape == (3, 1) and np.all(np.abs(action) <= 1)


def test_rnd_reads_next_obs_contexts_whatever_the_window_end(drq_configs):
  config = _state_config(drq_configs)
  config.intrinsic.kind = "rnd"
  config.intrinsic.window_end = "obs"
  _, fused, _, _ = build(config)
  assert fused.buffer.context_end == "next_obs" and fused.buffer.seq_len == 1


def test_augment_intrinsic_must_be_a_bool(drq_configs):
  config = drq_configs.get_config("smoke")
  check(config, 2)
  config.drq = {**config.drq.to_dict(), "augment_intrinsic": "yes"}
  with pytest.raises(ConfigError, match=r"^config key drq.augment_intrinsic='yes' is invalid; "
                                        r"allowed: True or False$"):
    check(config, 2)


@pytest.mark.parametrize("override,expected", [
    ("--config.env.pixels.camera=nope", "camera 'nope' not in the model"),
    ("--config.replay.capacity=10", "replay.capacity=10 holds 2 steps"),
    ("--config.intrinsic.normalize=True", "intrinsic.normalize=True is not supported"),
])
def test_bad_drq_input_is_one_line_and_exit_code_2(repo_root, tmp_path, override, expected):
  result = _train(repo_root, tmp_path / "bad", override)
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if "error:" in line]
  assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
