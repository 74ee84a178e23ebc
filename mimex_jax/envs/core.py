"""Training environments: a single-env wrapper with time limit, action repeat and episode
statistics, and a vectorized wrapper that resets finished episodes.

A backend is any object with `reset(key) -> s`, `step(s, action) -> s`, `observation_size` and
`action_size`, whose states carry `obs`, `reward` and `done`. MuJoCo Playground's `MjxEnv` and
`brax.envs.Env` both are such objects, so neither needs an adapter class.
"""

from typing import Any, Callable, Optional, Tuple

from flax import struct
import jax
import jax.numpy as jnp


@struct.dataclass
class EpisodeStats:
  """Running statistics of one episode (scalars per env)."""
  episode_return: jax.Array
  length: jax.Array
  success: jax.Array  # 1.0 once the task's success reward was reached; NaN if undefined.

  @classmethod
  def zeros(cls, success_defined: bool) -> "EpisodeStats":
    return cls(episode_return=jnp.zeros(()), length=jnp.zeros((), jnp.int32),
               success=jnp.zeros(()) if success_defined else jnp.full((), jnp.nan))


@struct.dataclass
class EnvState:
  """State of one environment; a batched env holds the same fields with a leading `[B]` axis."""
  inner: Any  # the backend's own state
  obs: jax.Array  # observation to act on (after an automatic reset, the new episode's first)
  reward: jax.Array
  terminated: jax.Array  # 1.0 when the task ended the episode: no bootstrapping
  truncated: jax.Array  # 1.0 when the time limit cut the episode: bootstrap from `final_obs`
  final_obs: jax.Array  # observation reached by the last step, before any reset
  episode: EpisodeStats  # the episode in progress
  completed: EpisodeStats  # the episode that ended at this step (read where done)
  key: jax.Array  # consumed by the next reset

  @property
  def done(self) -> jax.Array:
    return jnp.maximum(self.terminated, self.truncated)


class Env:
  """One environment with a time limit, action repeat and in-graph episode statistics.

  Pure and unbatched: `reset(key)` and `step(state, action)` can be jitted and vmapped. It never
  resets by itself; `VectorEnv` does that for batches.
  """

  def __init__(self, backend: Any, episode_length: int, action_repeat: int = 1,
               success_threshold: Optional[float] = None, name: str = "",
               success_fn: Optional[Callable[[Any], jax.Array]] = None):
    """Success is `success_fn(backend_state)` (1 where the task is solved at that step) if
    given, else a step reward of at least `success_threshold`; with neither it is undefined."""
    self.backend = backend
    self.episode_length = int(episode_length)
    self.action_repeat = int(action_repeat)
    self.success_threshold = success_threshold
    self.success_fn = success_fn
    self.name = name

  @property
  def success_defined(self) -> bool:
    return self.success_fn is not None or self.success_threshold is not None

  @property
  def observation_shape(self) -> Tuple[int, ...]:
    size = self.backend.observation_size
    if isinstance(size, dict):  # Playground reports dict sizes for dict observations
      raise ValueError(f"{self.name}: dict observations are not supported yet ({size}).")
    return (int(size),) if isinstance(size, int) else tuple(int(n) for n in size)

  @property
  def observation_size(self) -> int:
    """Length of a flat observation vector; image observations have `observation_shape` only."""
    shape = self.observation_shape
    if len(shape) != 1:
      raise ValueError(f"{self.name}: observations are images {shape}; this learner needs flat "
                       "state observations (obs_type='state'). Pixels are for image learners.")
    return shape[0]

  @property
  def action_size(self) -> int:
    return int(self.backend.action_size)

  def reset(self, key: jax.Array) -> EnvState:
    reset_key, next_key = jax.random.split(key)
    inner = self.backend.reset(reset_key)
    zero = jnp.zeros(())
    stats = EpisodeStats.zeros(self.success_defined)
    return EnvState(inner=inner, obs=inner.obs, reward=zero, terminated=zero, truncated=zero,
                    final_obs=inner.obs, episode=stats, completed=stats, key=next_key)

  def _repeat_step(self, inner: Any, action: jax.Array):
    """Steps the backend `action_repeat` times, summing rewards until it reports done. A backend
    with `advance` and `observe` (pixel observations) advances each time and observes once."""
    if self.action_repeat == 1:
      inner = self.backend.step(inner, action)
      return inner, inner.reward, inner.done
    advance = getattr(self.backend, "advance", self.backend.step)

    def body(carry, _):
      inner, total, done = carry
      inner = advance(inner, action)
      total = total + inner.reward * (1.0 - done)
      return (inner, total, jnp.maximum(done, inner.done)), None

    (inner, total, done), _ = jax.lax.scan(
        body, (inner, jnp.zeros(()), jnp.zeros(())), None, length=self.action_repeat)
    if hasattr(self.backend, "observe"):
      inner = self.backend.observe(inner)
    return inner, total, done

  def step(self, state: EnvState, action: jax.Array) -> EnvState:
    inner, reward, backend_done = self._repeat_step(state.inner, action)
    # Backends may return weakly typed leaves (e.g. Playground's reward metrics); a state whose
    # types drift between calls would make a jitted training step compile again.
    inner = jax.tree.map(lambda new, old: jax.lax.convert_element_type(new, old.dtype), inner,
                         state.inner)
    reward = jnp.nan_to_num(reward)  # a diverged simulation ends the episode, not the run
    terminated = (backend_done > 0).astype(jnp.float32)
    length = state.episode.length + 1
    truncated = ((length >= self.episode_length) & (terminated == 0)).astype(jnp.float32)
    success = state.episode.success
    if self.success_fn is not None:
      success = jnp.maximum(success, jnp.asarray(self.success_fn(inner), jnp.float32))
    elif self.success_threshold is not None:
      success = jnp.maximum(success, (reward >= self.success_threshold).astype(jnp.float32))
    episode = EpisodeStats(episode_return=state.episode.episode_return + reward, length=length,
                           success=success)
    return state.replace(inner=inner, obs=inner.obs, reward=reward, terminated=terminated,
                         truncated=truncated, final_obs=inner.obs, episode=episode,
                         completed=episode)


def _select(mask: jax.Array, on_true: Any, on_false: Any) -> Any:
  """Per-env choice between two batched pytrees; `mask` is `[B]`."""
  def pick(a, b):
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)
  return jax.tree.map(pick, on_true, on_false)


class VectorEnv:
  """`num_envs` copies of an `Env`, stepped with vmap; finished episodes restart at once.

  The reset runs under a batch-level `lax.cond`, so it costs nothing on steps where no episode
  ended (with fixed-length episodes that is all but one step in `episode_length`).
  """

  def __init__(self, env: Env, num_envs: int, stagger: bool = False):
    self.env = env
    self.num_envs = int(num_envs)
    self.stagger = stagger

  @property
  def observation_size(self) -> int:
    return self.env.observation_size

  @property
  def action_size(self) -> int:
    return self.env.action_size

  def reset(self, key: jax.Array, first_env: Any = 0,
            total_envs: Optional[int] = None) -> EnvState:
    """With `stagger`, each env's first episode is cut short at a random point, so time-limit
    ends spread over all steps instead of every env restarting at once. Synchronized episodes
    put all of an episode's early steps (where a sparse reward is often found) into a few
    updates and none into the rest.

    These envs are `first_env ...` of `total_envs` drawn from `key` (default: all of them): a
    device that holds part of a batch starts its envs as the whole batch would.
    """
    total_envs = self.num_envs if total_envs is None else total_envs
    reset_key, stagger_key = jax.random.split(key)
    keys = jax.lax.dynamic_slice_in_dim(jax.random.split(reset_key, total_envs), first_env,
                                        self.num_envs)
    state = jax.vmap(self.env.reset)(keys)
    if self.stagger:
      offset = jax.random.randint(stagger_key, (total_envs,), 0, self.env.episode_length)
      offset = jax.lax.dynamic_slice_in_dim(offset, first_env, self.num_envs)
      state = state.replace(episode=state.episode.replace(length=offset.astype(jnp.int32)))
    return state

  def step(self, state: EnvState, action: jax.Array) -> EnvState:
    """`action` is `[B, action_size]`; returns the batched state after one step."""
    state = jax.vmap(self.env.step)(state, action)
    done = state.done > 0

    def reset_finished(state: EnvState) -> EnvState:
      fresh = jax.vmap(self.env.reset)(state.key)
      restarted = state.replace(inner=fresh.inner, obs=fresh.obs, episode=fresh.episode,
                                key=fresh.key)
      return _select(done, restarted, state)

    return jax.lax.cond(jnp.any(done), reset_finished, lambda s: s, state)
