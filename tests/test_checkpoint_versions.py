"""Checkpoints of other versions: a real one from an older mimex_jax (tests/data/
checkpoint_format1) is refused for resuming with a line that says so, evaluates and loads as it
is, and resumes after `python -m mimex_jax.migrate`; new checkpoints record their version."""

import json
import os
import shutil

import pytest

import mimex_jax
from mimex_jax import checkpoint as checkpoint_lib

from cli_runner import run_train

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "checkpoint_format1")
SMOKE = ["--config=configs/ppo.py:smoke", "--config.total_steps=1536",
         "--config.eval_sampled=False"]  # one evaluator less to compile
# Defaults of configs/ppo.py:smoke that changed since the fixture was written.
OLD_VALUES = ["--config.intrinsic.decoder_num_heads=2", "--config.intrinsic.train_fraction=1.0",
              "--config.ppo.lr_schedule=cosine"]


@pytest.fixture
def old_run(tmp_path):
  workdir = tmp_path / "old_run"
  shutil.copytree(os.path.join(FIXTURE, "6"), workdir / "checkpoints" / "6")
  for name in ("config.json", "metrics.jsonl"):
    shutil.copy(os.path.join(FIXTURE, name), workdir / name)
  return str(workdir)


def _errors(stderr):
  return [line for line in stderr.splitlines() if "error:" in line]


def test_resuming_an_older_checkpoint_says_which_version_and_what_is_possible(repo_root,
                                                                              old_run):
  result = run_train([*SMOKE, f"--workdir={old_run}"], repo_root)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = _errors(result.stderr)
  assert len(errors) == 1 and "Traceback" not in result.stderr
  line = errors[0]
  assert "written by an older version of mimex_jax (checkpoint format 1: no version recorded" in (
      line)
  assert "intrinsic.train_fraction absent in the checkpoint (1.0 before the key existed)" in line
  assert "'<absent>'" not in line and "the checkpoint's values" not in line
  assert "python -m mimex_jax.evaluate" in line and "python -m mimex_jax.migrate" in line
  assert sorted(os.listdir(os.path.join(old_run, "checkpoints"))) == ["6"]  # nothing moved


def test_an_older_checkpoints_policy_evaluates_and_loads(old_run):
  from mimex_jax.evaluate import evaluate_checkpoint
  summary = evaluate_checkpoint(old_run, "latest", episodes=4)
  assert summary["update"] == 6 and summary["length_mean"] == 20
  assert 0 <= summary["return_mean"] <= 20
  policy = mimex_jax.load_policy(old_run)
  import jax.numpy as jnp
  action = policy(jnp.zeros((3, 5)))
  assert action.shape == (3, 1) and bool(jnp.all(jnp.abs(action) <= 1))


def test_migrate_rewrites_an_older_run_that_then_resumes(repo_root, old_run, capsys):
  from mimex_jax import migrate
  migrate.main(["mimex_jax.migrate", f"--workdir={old_run}"])
  out = capsys.readouterr().out
  assert f"{old_run}/checkpoints/6: migrated" in out
  meta = checkpoint_lib.Checkpointer(checkpoint_lib.checkpoint_dir(old_run),
                                     read_only=True).read_meta(6)
  assert meta["format"] == checkpoint_lib.CHECKPOINT_FORMAT
  assert meta["mimex_jax_version"] == mimex_jax.__version__
  assert meta["config"]["intrinsic"]["train_fraction"] == 1.0  # the value it trained with
  assert os.path.isdir(os.path.join(old_run, "checkpoints", "6.format1"))  # the original kept
  # Today's smoke config: the refusal now lists the overrides that train what the run trained.
  refused = run_train([*SMOKE, f"--workdir={old_run}"], repo_root)
  assert refused.returncode == 2
  assert ("resume with the checkpoint's values: --config.intrinsic.decoder_num_heads=2 "
          "--config.intrinsic.train_fraction=1.0 --config.ppo.lr_schedule=cosine") in (
              _errors(refused.stderr)[0])
  resumed = run_train([*SMOKE, *OLD_VALUES, f"--workdir={old_run}"], repo_root)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resuming from {old_run}/checkpoints/6" in resumed.stderr
  assert "done: 1536 env steps" in resumed.stdout
  # Migrating again finds nothing to do.
  migrate.main(["mimex_jax.migrate", f"--workdir={old_run}"])
  assert "already written by this version" in capsys.readouterr().out


def test_a_checkpoint_that_cannot_be_mapped_is_left_as_it_is(old_run, capsys):
  """A state this version cannot build (here: the run's MIMEx depth changed in its config) is
  one line, exit 2, and nothing is written."""
  from mimex_jax import migrate
  meta_path = os.path.join(old_run, "checkpoints", "6", "meta", "metadata")
  meta = json.load(open(meta_path))
  meta["config"]["intrinsic"]["depth"] = 3
  json.dump(meta, open(meta_path, "w"))
  with pytest.raises(SystemExit) as exit_info:
    migrate.main(["mimex_jax.migrate", f"--workdir={old_run}"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "cannot be migrated" in err[0] and "mimex_jax.evaluate" in err[0]
  assert sorted(os.listdir(os.path.join(old_run, "checkpoints"))) == ["6"]


def test_new_checkpoints_record_format_and_version(uninterrupted):
  meta = checkpoint_lib.Checkpointer(checkpoint_lib.checkpoint_dir(uninterrupted),
                                     read_only=True).read_meta(60)
  assert meta["format"] == checkpoint_lib.CHECKPOINT_FORMAT == 2
  assert meta["mimex_jax_version"] == mimex_jax.__version__


def test_a_newer_checkpoint_asks_for_an_upgrade(repo_root, uninterrupted, tmp_path):
  workdir = tmp_path / "newer"
  shutil.copytree(uninterrupted, workdir)
  for update in os.listdir(workdir / "checkpoints"):
    meta_path = workdir / "checkpoints" / update / "meta" / "metadata"
    meta = json.loads(meta_path.read_text())
    meta.update(format=99, mimex_jax_version="9.0.0")
    meta_path.write_text(json.dumps(meta))
  from conftest import CHECKPOINTED_RUN_ARGS
  result = run_train([*CHECKPOINTED_RUN_ARGS, f"--workdir={workdir}"], repo_root)
  assert result.returncode == 2
  assert ("written by mimex_jax 9.0.0 (checkpoint format 99), newer than this mimex_jax "
          "(format 2); upgrade mimex_jax to resume it") in _errors(result.stderr)[0]
