"""Unrolling a policy in a vectorized environment with `lax.scan`."""

from typing import Callable, NamedTuple, Tuple

import jax
import jax.numpy as jnp

from mimex_jax.envs import EnvState, VectorEnv


class Transition(NamedTuple):
  """One step for every env; a rollout stacks these time-major, `[T, B, ...]`."""
  obs: jax.Array  # raw observation acted on
  action: jax.Array  # the policy's sample (the env got it clipped to [-1, 1])
  log_prob: jax.Array
  reward: jax.Array  # extrinsic
  terminated: jax.Array
  done: jax.Array  # terminated or truncated
  next_obs: jax.Array  # raw observation reached, before any automatic reset
  episode_return: jax.Array  # of the episode that ended here (read where done)
  episode_length: jax.Array
  episode_success: jax.Array


def unroll(env: VectorEnv, env_state: EnvState,
           policy: Callable[[jax.Array, jax.Array], Tuple[jax.Array, jax.Array]],
           key: jax.Array, length: int, unroll: bool = False) -> Tuple[EnvState, Transition]:
  """Runs `policy(obs, key) -> (action, log_prob)` for `length` steps of all envs; `unroll`
  writes the steps out instead of looping (see `DrQFusedStep`: convolutional policies on CPU)."""

  def step(env_state: EnvState, step_key: jax.Array):
    action, log_prob = policy(env_state.obs, step_key)
    next_state = env.step(env_state, jnp.clip(action, -1.0, 1.0))
    transition = Transition(
        obs=env_state.obs, action=action, log_prob=log_prob, reward=next_state.reward,
        terminated=next_state.terminated, done=next_state.done, next_obs=next_state.final_obs,
        episode_return=next_state.completed.episode_return,
        episode_length=next_state.completed.length.astype(jnp.float32),
        episode_success=next_state.completed.success)
    return next_state, transition

  return jax.lax.scan(step, env_state, jax.random.split(key, length),
                      unroll=length if unroll else 1)
