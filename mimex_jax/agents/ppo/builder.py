"""PPO's fused step from a (checked) config."""

import math
from typing import Any

import jax

from mimex_jax import encoder_store, envs, intrinsic, parallel
from mimex_jax.agents.ppo.learner import PPO
from mimex_jax.agents.ppo.train_step import FusedStep
from mimex_jax.config_checks import ConfigError
from mimex_jax.envs.encoded import encode_observations
from mimex_jax.envs.pixels import PixelSpec
from mimex_jax.networks.conv import ConvTorso
from mimex_jax.networks.image_mae import ImageMAE


def build(config: Any):
  """`(eval_env, fused, steps_per_update, total_updates)`: the env that evaluation runs on, the
  fused step, the env steps one update takes (over all devices, action repeats included) and
  the updates `config.total_steps` asks for."""
  num_devices = jax.device_count()
  envs_per_device = config.num_envs // num_devices
  pixels = config.env.get("obs_type", "state") == "pixels"
  env = _make_env(config, envs_per_device)
  # The warp renderer draws a fixed number of worlds: evaluation gets its own.
  eval_env = (_make_env(config, config.eval_episodes)
              if pixels and config.env.pixels.backend == "warp" else env)
  vector_env = envs.VectorEnv(
      env, envs_per_device, stagger=True,
      reset_pool=envs.uses_reset_pool(env.name, config.env.reset_pool,
                                      config.env.pixels.backend if pixels else None))
  steps_per_update = config.num_envs * config.unroll_length * config.env.action_repeat
  total_updates = max(1, math.ceil(config.total_steps / steps_per_update))
  ppo = PPO(env.observation_shape, env.action_size, config.ppo, total_updates, parallel.AXIS,
            intrinsic_discount=config.intrinsic.return_discount)
  # The bonus reads a frozen encoder's features only, not the proprioception after them.
  bonus_size = (ConvTorso().feature_dim if ppo.pixels else
                getattr(env.backend, "features_size", env.observation_size))
  bonus = intrinsic.make(config.intrinsic, bonus_size, env.action_size, parallel.AXIS)
  fused = FusedStep(vector_env, ppo, bonus, unroll_length=config.unroll_length,
                    reward_scale=config.ppo.reward_scale, k_expl=config.intrinsic.k_expl,
                    anneal_k_expl=config.intrinsic.anneal, total_updates=total_updates,
                    normalize_intrinsic=config.intrinsic.normalize,
                    intrinsic_discount=config.intrinsic.return_discount,
                    bonus_obs_size=bonus_size)
  return eval_env, fused, steps_per_update, total_updates


def _make_env(config: Any, num_worlds: int) -> envs.Env:
  """The task with the config's observations: states, frames (`ppo.encoder=conv`) or a frozen
  encoder's features of frames (`frozen`); `num_worlds` sizes the warp renderer's batch."""
  # env.episode_length=0 stands for the task's own length (None to make).
  episode_length = config.env.episode_length or None
  if config.env.get("obs_type", "state") != "pixels":
    return envs.make(config.env.name, episode_length=episode_length,
                     action_repeat=config.env.action_repeat)
  block = config.env.pixels
  frozen = config.ppo.encoder == "frozen"
  spec = PixelSpec(backend=block.backend, height=block.height, width=block.width,
                   grayscale=block.grayscale, frame_stack=1 if frozen else block.frame_stack,
                   camera=block.camera)
  try:
    env = envs.make(config.env.name, episode_length=episode_length,
                    action_repeat=config.env.action_repeat, obs_type="pixels", pixels=spec,
                    num_worlds=num_worlds)
  except ValueError as e:  # e.g. a camera the task's model does not have: the message says which
    raise ConfigError(f"config block env.pixels does not fit {config.env.name}: {e}") from e
  if not frozen:
    return env
  model, params = encoder_store.load(config.ppo.encoder_checkpoint)
  encode = lambda frame: model.apply(params, frame, method=ImageMAE.encode)  # noqa: E731
  proprio, proprio_size = _proprio(config, env.backend.backend)
  return encode_observations(env, encode, model.feature_size, block.frame_stack, proprio,
                             proprio_size)


def _proprio(config: Any, task: Any):
  """`(proprio, size)` of the task's own state for `env.proprio`, or `(None, 0)`."""
  if not config.env.get("proprio", False):
    return None, 0
  proprio = getattr(task, "proprio", None)
  if proprio is None:
    raise ConfigError(f"config key env.proprio=True: {config.env.name} defines no "
                      "proprioceptive state (a `proprio(data)` method, as the arm tasks have); "
                      "use env.proprio=False")
  shape = jax.eval_shape(lambda key: proprio(task.reset(key).data), jax.random.PRNGKey(0)).shape
  return proprio, int(shape[0])
