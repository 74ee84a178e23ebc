"""Deterministic evaluation: run the policy's mean action for whole episodes."""

from typing import Callable, Dict

import jax
import jax.numpy as jnp

from mimex_jax.envs import Env, VectorEnv


def make_evaluator(env: Env, num_episodes: int,
                   act: Callable[[jax.Array], jax.Array]) -> Callable[..., Dict[str, jax.Array]]:
  """Returns a jitted `(policy_args, key) -> metrics` over `num_episodes` parallel episodes.

  `act(policy_args, obs)` maps a batch of raw observations to actions in [-1, 1]. Each env is run
  for exactly one episode (at most `env.episode_length` steps); stats are read at its first end.
  """
  vector_env = VectorEnv(env, num_episodes)

  def evaluate(policy_args, key: jax.Array) -> Dict[str, jax.Array]:
    def step(carry, _):
      state, finished, ret, length, success = carry
      state = vector_env.step(state, act(policy_args, state.obs))
      first_end = (state.done > 0) & ~finished
      ret = jnp.where(first_end, state.completed.episode_return, ret)
      length = jnp.where(first_end, state.completed.length, length)
      success = jnp.where(first_end, state.completed.success, success)
      return (state, finished | first_end, ret, length, success), None

    zeros = jnp.zeros(num_episodes)
    carry = (vector_env.reset(key), jnp.zeros(num_episodes, bool), zeros,
             jnp.zeros(num_episodes, jnp.int32), zeros)
    (_, _, ret, length, success), _ = jax.lax.scan(step, carry, None, length=env.episode_length)
    return {"eval_return": ret.mean(), "eval_length": length.mean().astype(jnp.float32),
            "eval_success_rate": success.mean()}

  return jax.jit(evaluate)
