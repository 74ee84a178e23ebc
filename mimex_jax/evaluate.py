r"""Deterministic evaluation: run the policy's mean action for whole episodes.

From the command line, on a run's checkpoint:

  python -m mimex_jax.evaluate --workdir=runs/default [--checkpoint=latest|best|UPDATE] \
      [--episodes=16] [--video]

prints mean return, success rate and episode length, writes them to
`<workdir>/eval/checkpoint_<update>.json`, and with `--video` a GIF of a few episodes beside it.
"""

import json
import os
import sys
from typing import Callable, Dict

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from mimex_jax import agents, policy
from mimex_jax.checkpoint import CheckpointError
from mimex_jax.compilation import enable_compilation_cache
from mimex_jax.envs import Env, VectorEnv, video


def make_episode_runner(env: Env, num_episodes: int, act: Callable[..., jax.Array],
                        record_positions: bool = False,
                        sampled: bool = False) -> Callable[..., Dict[str, jax.Array]]:
  """Returns a jitted `(policy_args, key) -> per-episode arrays` over `num_episodes` episodes.

  `act(policy_args, obs)` maps a batch of raw observations to actions in [-1, 1]; with `sampled`
  it is `act(policy_args, obs, key)`, a stochastic policy given a fresh key each step. Each env is run
  for exactly one episode (at most `env.episode_length` steps); stats are read at its first end.
  With `record_positions`, `positions` `[T + 1, num_episodes, nq]` holds the joint positions
  from the reset on (entries past an episode's `length` belong to the next episode).
  """
  vector_env = VectorEnv(env, num_episodes)
  # Each env's first episode is all that is read, so the steps need no automatic reset: one
  # reset less to trace and compile per evaluator. The video's positions go on into the next
  # episode as they always have, so it keeps the resetting step.
  step_envs = vector_env.step if record_positions else jax.vmap(env.step)

  def run(policy_args, key: jax.Array) -> Dict[str, jax.Array]:
    reset_key, action_key = jax.random.split(key)

    def step(carry, t):
      state, finished, ret, length, success = carry
      if sampled:
        action = act(policy_args, state.obs, jax.random.fold_in(action_key, t))
      else:
        action = act(policy_args, state.obs)
      state = step_envs(state, action)
      first_end = (state.done > 0) & ~finished
      ret = jnp.where(first_end, state.completed.episode_return, ret)
      length = jnp.where(first_end, state.completed.length, length)
      success = jnp.where(first_end, state.completed.success, success)
      positions = video.joint_positions(state.inner) if record_positions else None
      return (state, finished | first_end, ret, length, success), positions

    zeros = jnp.zeros(num_episodes)
    # The deterministic runner resets from `key` itself, as it always has (recorded evaluations
    # stay comparable); the sampled one splits it for its action noise.
    start = vector_env.reset(reset_key if sampled else key)
    carry = (start, jnp.zeros(num_episodes, bool), zeros, jnp.zeros(num_episodes, jnp.int32),
             zeros)
    (_, _, ret, length, success), positions = jax.lax.scan(step, carry,
                                                           jnp.arange(env.episode_length))
    result = {"return": ret, "length": length, "success": success}
    if record_positions:
      result["positions"] = jnp.concatenate([video.joint_positions(start.inner)[None], positions])
    return result

  return jax.jit(run)


def make_evaluator(env: Env, num_episodes: int, act: Callable[..., jax.Array],
                   sampled: bool = False) -> Callable[..., Dict[str, jax.Array]]:
  """Returns a jitted `(policy_args, key) -> means` (`eval_return`, `eval_length`,
  `eval_success_rate`) over `num_episodes` parallel episodes; `sampled` as in
  `make_episode_runner`."""
  runner = make_episode_runner(env, num_episodes, act, sampled=sampled)

  def evaluate(policy_args, key: jax.Array) -> Dict[str, jax.Array]:
    episodes = runner(policy_args, key)
    return {"eval_return": episodes["return"].mean(),
            "eval_length": episodes["length"].mean().astype(jnp.float32),
            "eval_success_rate": episodes["success"].mean()}

  return evaluate


# ------------------------------------------------------------------------------ command line
# Flags of their own (not absl's global ones): training's command line (cli.py) defines
# --workdir too.
_FLAGS = flags.FlagValues()
_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's --workdir.",
                               flag_values=_FLAGS)
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "latest, best, or an update number.",
                                  flag_values=_FLAGS)
_EPISODES = flags.DEFINE_integer("episodes", 16, "Deterministic episodes to average over.",
                                 flag_values=_FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the episodes' initial states.",
                             flag_values=_FLAGS)
_POLICY_SEED = flags.DEFINE_integer("policy_seed", 0, "Which seed of a multi-seed run to load.",
                                    flag_values=_FLAGS)
_VIDEO = flags.DEFINE_bool("video", False, "Also write a GIF of a few episodes.",
                           flag_values=_FLAGS)
_VIDEO_EPISODES = flags.DEFINE_integer("video_episodes", 2, "Episodes shown in the GIF.",
                                       flag_values=_FLAGS)
_VIDEO_STEPS = flags.DEFINE_integer("video_steps", 300, "At most this many frames an episode.",
                                    flag_values=_FLAGS)
_VIDEO_SIZE = flags.DEFINE_string("video_size", "160x120", "Width x height of the GIF.",
                                  flag_values=_FLAGS)


def _fail(message: str, code: int = 2) -> None:
  print(f"mimex_jax.evaluate: error: {message}", file=sys.stderr)
  sys.exit(code)


def env_for(run: policy.LoadedRun, num_episodes: int) -> Env:
  """The run's env, rebuilt for `num_episodes` worlds if its renderer draws a fixed number of
  them (warp pixels: the run's env draws `eval_episodes`)."""
  if getattr(run.env.backend, "fixed_batch", None) in (None, num_episodes):
    return run.env
  config = run.config.copy_and_resolve_references()
  config.eval_episodes = num_episodes  # the count the eval env is built for; trains nothing
  return agents.build(config)[0]


def evaluate_checkpoint(workdir: str, checkpoint="latest", episodes: int = 16, seed: int = 0,
                        video_episodes: int = 0, video_steps: int = 300,
                        video_size=(160, 120), policy_seed: int = 0) -> Dict[str, object]:
  """Evaluates a checkpoint; returns the summary (and `video`, the GIF's path, if asked)."""
  run = policy.load(workdir, checkpoint, policy_seed)
  key = jax.random.PRNGKey(seed)
  runner = make_episode_runner(env_for(run, episodes), episodes, run.fused.deterministic_policy)
  result = jax.device_get(runner(run.policy_args, key))
  success = result["success"]
  summary = {
      "checkpoint": run.path, "update": run.update, "env_steps": run.env_steps,
      "env": run.config.env.name, "episodes": episodes, "policy_seed": policy_seed,
      "return_mean": float(result["return"].mean()), "return_std": float(result["return"].std()),
      "success_rate": None if np.isnan(success).any() else float(success.mean()),
      "length_mean": float(result["length"].mean()),
  }
  out_dir = os.path.join(workdir, "eval")
  os.makedirs(out_dir, exist_ok=True)
  if video_episodes:
    recorder = make_episode_runner(env_for(run, video_episodes), video_episodes,
                                   run.fused.deterministic_policy, record_positions=True)
    recorded = jax.device_get(recorder(run.policy_args, key))
    model = video.mujoco_model(run.env)
    frames = []
    for episode in range(video_episodes):
      shown = min(int(recorded["length"][episode]), video_steps) + 1  # + the reset frame
      frames.append(video.render(model, recorded["positions"][:shown, episode],
                                 height=video_size[1], width=video_size[0]))
    summary["video_frames"] = sum(len(f) for f in frames)
    fps = 1.0 / (float(getattr(run.env.backend, "dt", 1 / 30)) * run.env.action_repeat)
    summary["video"] = video.write_gif(
        np.concatenate(frames), os.path.join(out_dir, f"checkpoint_{run.update}.gif"),
        fps=min(fps, 50.0))
  with open(os.path.join(out_dir, f"checkpoint_{run.update}.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return summary


def main(argv=None) -> None:
  argv = list(sys.argv if argv is None else argv)
  try:
    _FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0])
  if not _WORKDIR.value:
    _fail("--workdir is required: the training run's --workdir")
  if _EPISODES.value < 1 or _VIDEO_EPISODES.value < 1 or _VIDEO_STEPS.value < 1:
    _fail("--episodes, --video_episodes and --video_steps must be >= 1")
  try:
    width, height = (int(v) for v in _VIDEO_SIZE.value.lower().split("x"))
  except ValueError:
    _fail(f"--video_size={_VIDEO_SIZE.value!r} is not WIDTHxHEIGHT, e.g. 160x120")
  enable_compilation_cache()
  try:
    summary = evaluate_checkpoint(_WORKDIR.value, _CHECKPOINT.value, _EPISODES.value,
                                  _SEED.value, _VIDEO_EPISODES.value if _VIDEO.value else 0,
                                  _VIDEO_STEPS.value, (width, height), _POLICY_SEED.value)
  except CheckpointError as e:
    _fail(str(e))
  except OSError as e:  # the eval/ folder or its files could not be written
    _fail(f"cannot write the results into {_WORKDIR.value}/eval: {e.strerror or e}")
  success = summary["success_rate"]
  print(f"{summary['env']} at env step {summary['env_steps']} ({summary['checkpoint']}): "
        f"return {summary['return_mean']:.1f} +- {summary['return_std']:.1f}, success rate "
        f"{'n/a' if success is None else f'{success:.2f}'}, episode length "
        f"{summary['length_mean']:.0f}, over {summary['episodes']} episodes")
  if "video" in summary:
    print(f"video: {summary['video']}")


if __name__ == "__main__":
  main()
