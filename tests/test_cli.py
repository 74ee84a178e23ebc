"""The command line: a smoke run writes every promised file; bad input is one line, exit 2."""

import json
import os
import subprocess
import sys

import pytest

from cli_runner import run_module, run_train
from conftest import ENV



def _train(repo_root, *args, workdir=None):
  command = ["--config=configs/ppo.py:smoke", *args]
  if workdir:
    command.append(f"--workdir={workdir}")
  return run_train(command, repo_root)


@pytest.fixture(scope="module")
def smoke_run(repo_root, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("smoke")
  # The smoke config as it is: its compiled step is shared with this file's other runs (the
  # levers away from their defaults train in the slow test below).
  result = _train(repo_root, workdir=str(workdir))
  return result, workdir


def test_smoke_run_writes_metrics_events_config_and_plot(smoke_run):
  result, workdir = smoke_run
  assert result.returncode == 0, result.stderr[-3000:]
  assert "done:" in result.stdout
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert len(records) >= 3
  for key in ("step", "episode_return", "success_rate", "intrinsic_reward",
              "steps_per_second"):
    assert key in records[-1], key
  steps = [r["step"] for r in records]
  assert steps == sorted(steps) and steps[-1] == 16 * 8 * 6
  assert records[-1]["steps_per_second"] > 0
  assert records[-1]["intrinsic_reward"] > 0  # MIMEx is on in the smoke config
  # Both evaluations: the mean action's and the policy as it acts (config.eval_sampled).
  evaluated = [r for r in records if "eval_return" in r]
  assert evaluated and all("eval_sampled_return" in r for r in evaluated)
  assert 0.0 <= records[-1]["success_rate"] <= 1.0
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir))
  config = json.loads((workdir / "config.json").read_text())
  assert config["intrinsic"]["kind"] == "mimex" and config["num_envs"] == 16
  assert config["intrinsic"]["window_end"] == "obs"
  assert config["intrinsic"]["train_fraction"] == 0.25
  png = (workdir / "learning_curve.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
  # The progress bar reports env steps, throughput and the episode numbers.
  assert "env steps" in result.stderr and "r_int=" in result.stderr


@pytest.mark.slow  # a program of its own; the fast smoke run above trains the defaults
def test_window_end_next_obs_trains_from_the_command_line(repo_root, tmp_path):
  workdir = tmp_path / "next_obs"
  result = _train(repo_root, "--config.intrinsic.window_end=next_obs", workdir=str(workdir))
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert records[-1]["step"] == 16 * 8 * 6 and records[-1]["intrinsic_reward"] > 0
  config = json.loads((workdir / "config.json").read_text())
  assert config["intrinsic"]["window_end"] == "next_obs"


@pytest.mark.parametrize("override,expected", [
    ("--config.intrinsic.not_a_key=1", "config key intrinsic.not_a_key does not exist"),
    ("--config.intrinsic.mask_ratio=1.0", "intrinsic.mask_ratio=1.0 is invalid"),
    ("--config.intrinsic.mask_ratio=-0.1", "intrinsic.mask_ratio=-0.1 is invalid"),
    ("--config.intrinsic.seq_len=0", "intrinsic.seq_len=0 is invalid"),
    ("--config.num_envs=0", "num_envs=0 is invalid"),
    ("--config.unroll_length=-4", "unroll_length=-4 is invalid"),
    ("--config.num_envs=15", "num_envs=15 does not divide among 2 devices"),
    ("--config.env.name=CartpoleSwingupSparce", "env.name='CartpoleSwingupSparce' is not a "
                                                "known task"),
    ("--config.env.imports=no_such_user_module",
     "env.imports='no_such_user_module': cannot import module 'no_such_user_module'"),
    ("--config.intrinsic.kind=curiosity", "intrinsic.kind='curiosity' is invalid"),
    ("--config.checkpoint.every=-1", "checkpoint.every=-1 is invalid"),
    ("--config.intrinsic.kind=icm --config.num_seeds=2",
     "num_seeds=2 with intrinsic.kind=icm deadlocks XLA on CPU"),
    ("--config.intrinsic.mask=diagonal", "intrinsic.mask='diagonal' is invalid"),
    ("--config.intrinsic.window_end=action", "intrinsic.window_end='action' is invalid"),
    ("--config.intrinsic.train_fraction=0", "intrinsic.train_fraction=0.0 is invalid"),
    ("--config.intrinsic.train_fraction=1.5", "intrinsic.train_fraction=1.5 is invalid"),
    ("--config.env.reset_pool=maybe", "env.reset_pool='maybe' is invalid"),
    ("--config.checkpoint.max_to_keep=0", "checkpoint.max_to_keep=0 is invalid"),
    ("--config.distributed=3", "config key distributed='3' is invalid; allowed: True or False"),
    ("--config.ppo.num_minibatches=3", "ppo.num_minibatches=3 does not divide unroll_length"),
    # No coordinator, no cluster JAX knows: one line naming the variables to set.
    ("--config.distributed=True", "set JAX_COORDINATOR_ADDRESS"),
    # inf passes "> 0" and "> = 0": caught before it turns into NaN losses at update 1.
    ("--config.intrinsic.k_expl=inf", "intrinsic.k_expl=inf is invalid; allowed: a finite"),
    ("--config.ppo.learning_rate=inf", "ppo.learning_rate=inf is invalid; allowed: a finite"),
    ("--config.intrinsic.rnd.learning_rate=nan", "intrinsic.rnd.learning_rate=nan is invalid"),
    # Accepted before, then compiled for minutes or sat silent (issue 26, item 5).
    ("--config.intrinsic.seq_len=1000", "intrinsic.seq_len=1000 is longer than an episode of "
                                        "CartpoleBalanceSparse (20 agent steps"),
    ("--config.num_envs=100000000", "num_envs=100000000 needs at least"),
    # A learner whose keys the config file does not have.
    ("--config.agent=drq", "config key env_steps is missing: agent=drq reads the keys of "
                           "configs/drq.py"),
])
def test_bad_input_is_one_line_and_exit_code_2(repo_root, override, expected, tmp_path):
  result = _train(repo_root, *override.split(), workdir=str(tmp_path / "bad"))
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if "error:" in line]
  assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
  assert not (tmp_path / "bad" / "metrics.jsonl").exists()  # it stopped before training


@pytest.fixture(scope="module")
def read_only_folder(tmp_path_factory):
  """A read-only tmpfs (root may mount one); None where mounting is not allowed."""
  folder = tmp_path_factory.mktemp("read_only")
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                           capture_output=True)
  yield None if mounted.returncode else str(folder)
  if not mounted.returncode:
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("args,expected", [
    (["--config=configs/nope.py"], "--config=configs/nope.py: there is no file configs/nope.py"),
    (["--config="], "--config is empty"),
    (["--config=configs/drq.py:smoke", "--config.agent=ppo"],
     "config key unroll_length is missing: agent=ppo reads the keys of configs/ppo.py"),
    (["--config=configs/ppo.py:smoke", "--workdir=README.md"],
     "--workdir=README.md is a file, not a folder"),
    (["--config=configs/ppo.py:smoke", "--workdir=/proc/run"], "--workdir=/proc/run cannot be "
                                                              "written"),
    (["--config=configs/ppo.py:smoke", "--workdir=/sys/run"], "--workdir=/sys/run cannot be "
                                                             "written"),
    (["--config=configs/ppo.py:smoke", "--workdir={read_only}/run"],
     "--workdir={read_only}/run cannot be written: Read-only file system"),
])
def test_bad_paths_and_files_are_one_line_and_exit_code_2(repo_root, read_only_folder, args,
                                                          expected):
  if "{read_only}" in expected:
    if read_only_folder is None:
      pytest.skip("cannot mount a read-only tmpfs here")
    args = [a.format(read_only=read_only_folder) for a in args]
    expected = expected.format(read_only=read_only_folder)
  result = run_train(args, repo_root)
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if "error:" in line]
  assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
  assert "no --workdir given" not in result.stderr  # it stopped before choosing one


def test_total_steps_rounded_up_to_whole_updates_says_so(repo_root, tmp_path):
  result = _train(repo_root, "--config.total_steps=100", "--config.eval_every=0",
                  workdir=str(tmp_path / "short"))
  assert result.returncode == 0, result.stderr[-2000:]
  assert ("total_steps=100 is not a whole number of updates of 128 env steps each: training "
          "runs 1 update, 128 env steps") in result.stderr
  assert "done: 128 env steps" in result.stdout


def test_show_refuses_an_unwritable_out_before_rendering(repo_root, read_only_folder):
  outs = ["/proc/show.png"] + ([f"{read_only_folder}/show.png"] if read_only_folder else [])
  for out in outs:
    result = run_module("mimex_jax.envs.show", ["ReachSparse", f"--out={out}"], repo_root)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert f"--out={out}: cannot write into" in result.stderr.strip().splitlines()[-1]


def test_unknown_config_variant(repo_root):
  result = subprocess.run([sys.executable, "-m", "mimex_jax.train",
                           "--config=configs/ppo.py:cartpole_nope"], cwd=repo_root, env=ENV,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert "unknown variant 'cartpole_nope'" in result.stderr
  assert "Traceback" not in result.stderr
