"""`checkpoint.include_replay=False`: DrQ checkpoints without the replay buffer. A run resumed
from one says so and refills the buffer before it learns again; the key may change on resume;
a bad value is one line, exit code 2."""

import os

import jax
import numpy as np
import pytest

from cli_runner import run_train
from mimex_jax import checkpoint as checkpoint_lib
from mimex_jax.config_checks import ConfigError
from mimex_jax.metrics import read_metrics

FRAMES_PER_UPDATE = 4 * 1 * 2  # num_envs * env_steps * action_repeat
# An empty buffer refills in 6 updates, 2 more than a sample needs (n_step=3: 4 slots).
LEARNING_STARTS = 6 * FRAMES_PER_UPDATE
# DrQ from states, as small as it goes: every update logged, a checkpoint every 4.
RUN_ARGS = [
    "--config=configs/drq.py:cartpole_balance_state", "--config.env.episode_length=50",
    "--config.num_envs=4", "--config.env_steps=1", "--config.updates_per_step=1",
    "--config.replay.capacity=400", "--config.drq.batch_size=16", "--config.drq.hidden_dim=16",
    "--config.drq.feature_dim=8", f"--config.drq.random_frames={LEARNING_STARTS}",
    f"--config.drq.learning_starts={LEARNING_STARTS}", "--config.log_every=1",
    "--config.eval_every=0", "--config.eval_episodes=1", "--config.checkpoint.every=4",
    "--config.checkpoint.max_to_keep=10"]
# (updates to train to, include_replay); each stage resumes the one before in the same workdir.
STAGES = (
    (8, False),  # a fresh run that saves no buffer
    (16, False),  # resumed: the buffer starts empty and refills before learning
    (24, True),  # resumed from a checkpoint without a buffer by a run that saves one
    (28, False),  # resumed from a checkpoint with a buffer by a run that leaves it out
)
NOT_SAVED = "the replay buffer was not saved in"


# The staged run costs about 1.5 min of compiles (four CLI trainings); the fast suite keeps the
# key's checks (below) and the DrQ resume with the buffer (tests/test_drq.py).
_STAGED = pytest.mark.long


@pytest.fixture(scope="module")
def staged_run(repo_root, tmp_path_factory):
  """`(workdir, {updates: CompletedProcess})` of the stages, run one after the other."""
  workdir = str(tmp_path_factory.mktemp("replay_left_out"))
  results = {}
  for updates, include_replay in STAGES:
    result = run_train([*RUN_ARGS, f"--config.total_steps={updates * FRAMES_PER_UPDATE}",
                        f"--config.checkpoint.include_replay={include_replay}",
                        f"--workdir={workdir}"], repo_root)
    assert result.returncode == 0, result.stderr[-3000:]
    results[updates] = result
  return workdir, results


def _stored_replay(workdir, update):
  """The replay arrays checkpoint `update` stores (None where it stores none), and its meta."""
  directory = os.path.join(workdir, checkpoint_lib.CHECKPOINT_DIR)
  arrays = checkpoint_lib.read_arrays(directory, update)
  checkpointer = checkpoint_lib.Checkpointer(directory, read_only=True)
  meta = checkpointer.read_meta(update)
  checkpointer.close()
  return arrays, meta


def _learning_by_update(workdir):
  return {r["step"] // FRAMES_PER_UPDATE: r["learning"] for r in read_metrics(workdir)}


@_STAGED
def test_checkpoints_without_replay_store_no_replay_arrays(staged_run):
  workdir, _ = staged_run
  for update in (4, 8, 12, 16, 28):
    arrays, meta = _stored_replay(workdir, update)
    assert meta["replay_left_out"] is True
    assert jax.tree.leaves(arrays["replay"]) == [], f"checkpoint {update} stores replay arrays"
    assert jax.tree.leaves(arrays["params"])  # the rest is there
  with_buffer, meta = _stored_replay(workdir, 24)
  assert meta["replay_left_out"] is False
  buffer_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(with_buffer["replay"]))
  assert buffer_bytes > 0
  without_buffer, _ = _stored_replay(workdir, 16)
  stored = {name: sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree))
            for name, tree in (("with", with_buffer), ("without", without_buffer))}
  assert stored["without"] == stored["with"] - buffer_bytes


@_STAGED
def test_resume_without_replay_says_so_and_refills_before_learning(staged_run):
  workdir, results = staged_run
  assert NOT_SAVED not in results[8].stderr  # a fresh start
  lines = [line for line in results[16].stderr.splitlines() if NOT_SAVED in line]
  assert lines == [f"{NOT_SAVED} {workdir}/checkpoints/8 (checkpoint.include_replay=False): it "
                   f"starts empty, and learning resumes at update 14, once it holds "
                   f"{LEARNING_STARTS} frames again (drq.learning_starts, at most a full "
                   f"buffer)"], results[16].stderr[-3000:]
  learning = _learning_by_update(workdir)
  # The fresh run learns from the update whose start has seen learning_starts frames; the
  # resumed one waits until its empty buffer holds that many again (not just one sample's).
  assert [learning[u] for u in range(1, 17)] == [0.0] * 6 + [1.0] * 2 + [0.0] * 5 + [1.0] * 3
  rows = {r["step"] // FRAMES_PER_UPDATE: r for r in read_metrics(workdir)}
  assert rows[9]["replay_transitions"] == 4  # one update's steps of the 4 envs


@_STAGED
def test_include_replay_may_change_on_resume(staged_run):
  workdir, results = staged_run
  # Saved without, resumed saving it: the buffer starts empty all the same, then is saved.
  assert f"{NOT_SAVED} {workdir}/checkpoints/16" in results[24].stderr
  arrays, _ = _stored_replay(workdir, 24)
  assert int(arrays["replay"]["count"][0, 0]) == 8  # the 8 slots written since the resume
  # Saved with, resumed leaving it out: the saved buffer is restored and learning goes on.
  assert NOT_SAVED not in results[28].stderr
  assert f"resuming from {workdir}/checkpoints/24" in results[28].stderr
  learning = _learning_by_update(workdir)
  assert [learning[u] for u in range(17, 29)] == [0.0] * 5 + [1.0] * 7


@pytest.mark.parametrize("value", ["maybe", "3"])
def test_bad_include_replay_is_one_line_and_exit_code_2(repo_root, tmp_path, value):
  result = run_train([*RUN_ARGS, f"--config.checkpoint.include_replay={value}",
                      f"--workdir={tmp_path}"], repo_root)
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if "error:" in line]
  assert errors == [f"mimex_jax.train: error: config key checkpoint.include_replay={value!r} is "
                    f"invalid; allowed: True or False"], result.stderr[-2000:]


def test_include_replay_from_a_config_file_must_be_a_bool(repo_root):
  import sys
  sys.path.insert(0, repo_root)
  from configs import drq
  from mimex_jax.agents import check
  config = drq.get_config("smoke")
  check(config, 2)
  config.checkpoint = {**config.checkpoint.to_dict(), "include_replay": "no"}
  with pytest.raises(ConfigError, match=r"^config key checkpoint.include_replay='no' is invalid; "
                                        r"allowed: True or False$"):
    check(config, 2)
