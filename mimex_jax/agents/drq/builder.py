"""DrQ-v2's fused step, replay buffer and envs from a (checked) config."""

import math
from typing import Any

import jax

from mimex_jax import envs, intrinsic, parallel
from mimex_jax.agents.drq import config_checks
from mimex_jax.agents.drq.learner import DrQ
from mimex_jax.agents.drq.replay import ReplayBuffer
from mimex_jax.agents.drq.train_step import DrQFusedStep
from mimex_jax.config_checks import ConfigError
from mimex_jax.envs.pixels import PixelSpec


def build(config: Any):
  """`(eval_env, fused, steps_per_update, total_updates)`: the env that evaluation runs on, the
  fused step, the env frames one update takes (over all devices, action repeats included) and
  the updates `config.total_steps` asks for."""
  num_devices = jax.device_count()
  envs_per_device = config.num_envs // num_devices
  env = _make_env(config, envs_per_device)
  # The warp renderer draws a fixed number of worlds: evaluation gets its own.
  eval_env = (_make_env(config, config.eval_episodes)
              if config.env.obs_type == "pixels" and config.env.pixels.backend == "warp" else env)
  pixel_backend = config.env.pixels.backend if config.env.obs_type == "pixels" else None
  vector_env = envs.VectorEnv(
      env, envs_per_device, stagger=True,
      reset_pool=envs.uses_reset_pool(env.name, config.env.reset_pool, pixel_backend))
  steps_per_update = config.num_envs * config.env_steps * config.env.action_repeat
  total_updates = max(1, math.ceil(config.total_steps / steps_per_update))
  on_cpu = jax.default_backend() == "cpu"
  loop_updates = config_checks.learner_updates(config.drq) == "loop"
  # Learner updates in a loop on CPU need gradients that XLA runs fast in one (LoopConv).
  drq = DrQ(env.observation_shape, env.action_size, config.drq, parallel.AXIS,
            loop_gradients=on_cpu and loop_updates)
  feature_size = (config.drq.feature_dim if config.drq.intrinsic_features == "trunk"
                  else drq.feature_size)
  bonus = intrinsic.make(config.intrinsic, feature_size, env.action_size, parallel.AXIS)
  frame_stack = config.env.pixels.frame_stack if config.env.obs_type == "pixels" else 1
  # MIMEx reads windows ending where intrinsic.window_end says; RND and ICM read next_obs only.
  mimex = config.intrinsic.kind == "mimex"
  buffer = ReplayBuffer(
      config.replay.capacity // num_devices, envs_per_device, env.observation_shape,
      drq.obs_dtype, env.action_size, frame_stack=frame_stack, n_step=config.drq.n_step,
      discount=config.drq.discount, seq_len=config.intrinsic.seq_len if mimex else 1,
      context_end=config.intrinsic.window_end if mimex else "next_obs")
  fused = DrQFusedStep(
      vector_env, drq, buffer, bonus, env_steps=config.env_steps,
      updates=config.updates_per_step, batch_size=config.drq.batch_size // num_devices,
      frames_per_update=steps_per_update, random_frames=config.drq.random_frames,
      learning_starts=config.drq.learning_starts, std_initial=config.drq.std_initial,
      std_final=config.drq.std_final, std_duration=config.drq.std_duration,
      k_expl=config.intrinsic.k_expl, anneal_k_expl=config.intrinsic.anneal,
      total_updates=total_updates, intrinsic_features=config.drq.intrinsic_features,
      augment_intrinsic=config.drq.augment_intrinsic,
      intrinsic_padding=config.drq.get("intrinsic_padding", "zeros"),
      unroll_loops=on_cpu,
      unroll_updates=not loop_updates,
      bonus_encoder=config_checks.bonus_encoder(config.drq, jax.default_backend()))
  return eval_env, fused, steps_per_update, total_updates


def _make_env(config: Any, num_worlds: int):
  """The task with the config's observations; `num_worlds` sizes the warp renderer's batch."""
  pixels = None
  if config.env.obs_type == "pixels":
    block = config.env.pixels
    pixels = PixelSpec(backend=block.backend, height=block.height, width=block.width,
                       grayscale=block.grayscale, frame_stack=block.frame_stack,
                       camera=block.camera)
  try:
    # env.episode_length=0 stands for the task's own length (None to make).
    return envs.make(config.env.name, episode_length=config.env.episode_length or None,
                     action_repeat=config.env.action_repeat, obs_type=config.env.obs_type,
                     pixels=pixels, num_worlds=num_worlds if pixels else None)
  except ValueError as e:  # e.g. a camera the task's model does not have: the message says which
    raise ConfigError(f"config block env.pixels does not fit {config.env.name}: {e}") from e
