"""Training environments: a single-env wrapper with time limit, action repeat and episode
statistics, and a vectorized wrapper that resets finished episodes (optionally from a pool of
starts prepared a few envs per step).

A backend is any object with `reset(key) -> s`, `step(s, action) -> s`, `observation_size` and
`action_size`, whose states carry `obs`, `reward` and `done`. MuJoCo Playground's `MjxEnv` and
`brax.envs.Env` both are such objects, so neither needs an adapter class.
"""

import functools
import math
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
  pool: Optional["ResetPool"] = None  # `VectorEnv(reset_pool=True)` only: each env's next start

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
    """Success is `success_fn(backend_state)` (true or > 0 where the task is solved at that
    step) if given, else a step reward of at least `success_threshold`; with neither it is
    undefined."""
    self.backend = backend
    self.episode_length = int(episode_length)
    self.action_repeat = int(action_repeat)
    self.success_threshold = success_threshold
    self.success_fn = success_fn
    self.name = name

  @property
  def success_defined(self) -> bool:
    return self.success_fn is not None or self.success_threshold is not None

  @functools.cached_property
  def observation_shape(self) -> Tuple[int, ...]:
    # Asked once: Playground's `observation_size` traces a whole reset (MJX's forward pass) to
    # find it, which cost about 2 s each time a training built its networks, steps and evaluators.
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
      solved = jnp.asarray(self.success_fn(inner)) > 0  # a bool, 0/1 or any score > 0
      success = jnp.maximum(success, solved.astype(jnp.float32))
    elif self.success_threshold is not None:
      success = jnp.maximum(success, (reward >= self.success_threshold).astype(jnp.float32))
    episode = EpisodeStats(episode_return=state.episode.episode_return + reward, length=length,
                           success=success)
    return state.replace(inner=inner, obs=inner.obs, reward=reward, terminated=terminated,
                         truncated=truncated, final_obs=inner.obs, episode=episode,
                         completed=episode)


@struct.dataclass
class ResetPool:
  """Each env's next start, computed ahead of its episode's end: where `ready`, slot i holds
  `Env.reset(key)` for env i's current `key` (`[B, ...]` like the envs). A slot depends only on
  its env's key, so a start taken from the pool is the one an in-place reset would compute."""
  inner: Any
  obs: jax.Array
  key: jax.Array  # the env's key after that reset
  ready: jax.Array  # [B] bool: the slot matches the env's current key


def _select(mask: jax.Array, on_true: Any, on_false: Any) -> Any:
  """Per-env choice between two batched pytrees; `mask` is `[B]`."""
  def pick(a, b):
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)
  return jax.tree.map(pick, on_true, on_false)


class VectorEnv:
  """`num_envs` copies of an `Env`, stepped with vmap; finished episodes restart at once.

  Without a pool, the reset runs under a batch-level `lax.cond`, so it costs nothing on steps
  where no episode ended (with fixed-length episodes that is all but one step in
  `episode_length`); but on a step where any episode ended, all envs pay for a reset. Staggered
  episodes end on almost every step, and on tasks whose reset is dear (the arm's `make_data` and
  `forward` cost more than its step) that cost most of the time.

  `reset_pool=True` keeps each env's next start ready in `EnvState.pool` and prepares `refill`
  of them per step (one vmapped reset of `refill` envs, a small fixed cost); a finished env takes
  its slot. Slots are keyed by env, not handed out in turn from a shared pool: a slot holds what
  the in-place reset would compute from the same key, so episodes, their statistics and a run's
  independence from the device count are exactly as without the pool, and no start can be
  handed out twice. When an env ends before its slot was prepared (an episode shorter than the
  refill takes to come round; `refill` covers twice the time-limit ends per step), that step
  prepares `refill` more at a time until every finished env has its start: correct in every
  case, as dear as the in-place reset only in that rare one.
  """

  def __init__(self, env: Env, num_envs: int, stagger: bool = False, reset_pool: bool = False,
               refill: Optional[int] = None):
    self.env = env
    self.num_envs = int(num_envs)
    self.stagger = stagger
    self.reset_pool = reset_pool
    fixed_batch = getattr(env.backend, "fixed_batch", None)
    if reset_pool and fixed_batch:
      raise ValueError(f"{env.name}: a reset pool resets a few envs at a time, and this "
                       f"renderer (warp) draws exactly {fixed_batch}; use reset_pool=False or "
                       "the jax renderer")
    # Time limits end num_envs / episode_length episodes per step on average once staggered;
    # twice that keeps the slots of envs not yet finished ready through uneven steps.
    default = math.ceil(2 * self.num_envs / max(1, env.episode_length))
    self.refill = min(self.num_envs, max(1, int(refill) if refill is not None else default))

  @property
  def observation_size(self) -> int:
    return self.env.observation_size

  @property
  def observation_shape(self):
    return self.env.observation_shape

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
    if self.reset_pool:  # every slot ready from the start: first episodes may be short
      fresh = jax.vmap(self.env.reset)(state.key)
      state = state.replace(pool=ResetPool(inner=fresh.inner, obs=fresh.obs, key=fresh.key,
                                           ready=jnp.ones((self.num_envs,), bool)))
    return state

  def step(self, state: EnvState, action: jax.Array) -> EnvState:
    """`action` is `[B, action_size]`; returns the batched state after one step."""
    pool = state.pool
    state = jax.vmap(self.env.step)(state.replace(pool=None), action)
    done = state.done > 0
    if pool is None:
      return jax.lax.cond(jnp.any(done), self._reset_finished, lambda s, d: s, state, done)
    pool = self._refill(pool, state.key, done)
    state = jax.lax.cond(jnp.any(done), self._take_from_pool, lambda s, p, d: s, state, pool,
                         done)
    return state.replace(pool=pool.replace(ready=pool.ready & ~done))

  def _reset_finished(self, state: EnvState, done: jax.Array) -> EnvState:
    fresh = jax.vmap(self.env.reset)(state.key)
    restarted = state.replace(inner=fresh.inner, obs=fresh.obs, episode=fresh.episode,
                              key=fresh.key)
    return _select(done, restarted, state)

  def _refill(self, pool: ResetPool, keys: jax.Array, done: jax.Array) -> ResetPool:
    """Prepares `refill` slots that are not ready, finished envs' first; then `refill` more at
    a time while a finished env has no ready slot, so every finished env finds its start. That
    loop is rare (an episode that ended before its slot came round) and costs what the
    in-place reset would, with one reset in the program instead of two."""

    def prepare(carry):
      pool, rounds = carry
      rank = jnp.where(pool.ready, 2, jnp.where(done, 0, 1))
      slots = jnp.argsort(rank, stable=True)[:self.refill]
      fresh = jax.vmap(self.env.reset)(keys[slots])
      # Ready slots that fill up the row are not written (they hold the same start already).
      slots = jnp.where(rank[slots] < 2, slots, self.num_envs)
      put = lambda slot_leaf, new: slot_leaf.at[slots].set(new, mode="drop")  # noqa: E731
      pool = ResetPool(inner=jax.tree.map(put, pool.inner, fresh.inner),
                       obs=put(pool.obs, fresh.obs), key=put(pool.key, fresh.key),
                       ready=pool.ready.at[slots].set(True, mode="drop"))
      return pool, rounds + 1

    def unfinished(carry):
      pool, rounds = carry
      return jnp.any(~pool.ready & (done | (rounds == 0)))

    return jax.lax.while_loop(unfinished, prepare, (pool, 0))[0]

  def _take_from_pool(self, state: EnvState, pool: ResetPool, done: jax.Array) -> EnvState:
    stats = EpisodeStats.zeros(self.env.success_defined)
    start = state.replace(inner=pool.inner, obs=pool.obs, key=pool.key, episode=jax.tree.map(
        lambda x: jnp.broadcast_to(x, done.shape), stats))
    return _select(done, start, state)
