"""PPO's fused step from a (checked) config."""

import math
from typing import Any

import jax

from mimex_jax import envs, intrinsic, parallel
from mimex_jax.agents.ppo.learner import PPO
from mimex_jax.agents.ppo.train_step import FusedStep


def build(config: Any):
  """`(eval_env, fused, steps_per_update, total_updates)`: the env that evaluation runs on, the
  fused step, the env steps one update takes (over all devices, action repeats included) and
  the updates `config.total_steps` asks for."""
  num_devices = jax.device_count()
  # env.episode_length=0 stands for the task's own length (None to make).
  env = envs.make(config.env.name, episode_length=config.env.episode_length or None,
                  action_repeat=config.env.action_repeat)
  vector_env = envs.VectorEnv(env, config.num_envs // num_devices, stagger=True,
                              reset_pool=envs.uses_reset_pool(env.name, config.env.reset_pool))
  steps_per_update = config.num_envs * config.unroll_length * config.env.action_repeat
  total_updates = max(1, math.ceil(config.total_steps / steps_per_update))
  ppo = PPO(env.observation_size, env.action_size, config.ppo, total_updates, parallel.AXIS)
  bonus = intrinsic.make(config.intrinsic, env.observation_size, env.action_size, parallel.AXIS)
  fused = FusedStep(vector_env, ppo, bonus, unroll_length=config.unroll_length,
                    reward_scale=config.ppo.reward_scale, k_expl=config.intrinsic.k_expl,
                    anneal_k_expl=config.intrinsic.anneal, total_updates=total_updates,
                    normalize_intrinsic=config.intrinsic.normalize,
                    intrinsic_discount=config.intrinsic.return_discount)
  return env, fused, steps_per_update, total_updates
