"""A replay buffer that lives in device memory and is written and sampled inside the jitted step.

Layout: a ring of `num_slots` time slots, each holding one step of all `num_envs` envs of this
device (`[num_slots, num_envs, ...]`). A slot stores the *newest frame* of the observation acted
on, the action, the reward and the episode-end flags of the step, and how many steps into its
episode the observation is. Everything else is rebuilt on sampling by looking back (or ahead)
along the same env's column:

- a frame-stacked observation: the `frame_stack` newest frames, where frames from before the
  episode's start are replaced by its first frame (what `PixelObservations` shows after a reset);
- the n-step return, its discount and the observation n steps later;
- MIMEx's context: the `seq_len` observations ending at the observation acted on
  (`context_end="obs"`, the reference's) or at the one the transition reached
  (`context_end="next_obs"`), with positions from before that observation's episode start
  zeroed and marked as padding.

So each frame is stored once, however deep the stack or context (bytes per transition:
`bytes_per_transition`). One limitation follows from storing each observation once: the
observation that ends an episode by time limit is replaced by the next episode's first one, so
n-step windows that end by truncation are not sampleable (`Sample.valid` is 0 for them; a share
of about n / episode_length). Windows that end by termination are kept: they need no bootstrap.
"""

from typing import NamedTuple, Tuple

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

CONTEXT_ENDS = ("obs", "next_obs")


@struct.dataclass
class ReplayState:
  """One device's buffer. Time slots are the leading axis of every per-step array."""
  frames: jax.Array  # [S, E, *frame_shape] newest frame of the observation acted on
  action: jax.Array  # [S, E, A] float32
  reward: jax.Array  # [S, E] float32
  terminated: jax.Array  # [S, E] uint8, 1 where the task ended the episode with this step
  truncated: jax.Array  # [S, E] uint8, 1 where the time limit ended it
  episode_step: jax.Array  # [S, E] int32, steps between the episode's first observation and this
  next_episode_step: jax.Array  # [E] int32, episode_step of the next observation inserted
  cursor: jax.Array  # int32, next slot to write
  count: jax.Array  # int32, slots written so far (at most S)


class Sample(NamedTuple):
  """A batch of `N` transitions with n-step targets; observations as the env shows them."""
  obs: jax.Array  # [N, *obs_shape] observation acted on
  action: jax.Array  # [N, A]
  reward: jax.Array  # [N] discounted sum of the n rewards (stops at a termination)
  discount: jax.Array  # [N] discount^n, or 0 when the episode terminated within the n steps
  bootstrap_obs: jax.Array  # [N, *obs_shape] observation n steps later (unused if discount 0)
  next_obs: jax.Array  # [N, *obs_shape] observation one step later (the obs itself if terminal)
  # [N, L, *obs_shape] the L observations ending at obs or at next_obs (the buffer's
  # `context_end`), oldest first, zeros before that observation's episode start
  context: jax.Array
  context_valid: jax.Array  # [N, L] 1 where a context position is in the end's episode
  valid: jax.Array  # [N] 0 where the n-step window ends by truncation (leave out of losses)


def n_step_return(rewards: jax.Array, terminated: jax.Array, truncated: jax.Array,
                  discount: float) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """n-step target pieces of one window of `n` consecutive steps of one env.

  `return = sum_k discount^k r_k` over steps up to and including the first termination;
  `bootstrap discount = discount^n`, or 0 if a termination came first; `valid = 0` if the time
  limit cut the episode inside the window (the bootstrap observation is not stored).

  Args: `rewards`, `terminated`, `truncated` `[n]` (flags 0/1). Returns three scalars.
  """
  if rewards.ndim != 1:
    raise ValueError(f"n_step_return takes one window [n], got shape {rewards.shape}")
  terminated = terminated.astype(jnp.float32)
  truncated = truncated.astype(jnp.float32)
  # alive[k]: no termination among steps 0..k-1, so step k belongs to the sampled episode.
  alive = jnp.cumprod(jnp.concatenate([jnp.ones(1), 1.0 - terminated[:-1]]))
  powers = discount ** jnp.arange(rewards.shape[0], dtype=jnp.float32)
  total = jnp.sum(powers * alive * rewards)
  bootstrap = discount ** rewards.shape[0] * jnp.prod(1.0 - terminated)
  valid = 1.0 - jnp.max(alive * truncated)
  return total, bootstrap, valid


class ReplayBuffer:
  """Functions of a `ReplayState` for one device's `num_envs` envs.

  `capacity` counts transitions on this device; it is rounded down to whole slots of
  `num_envs`. Observations are `[..., C * frame_stack]` with the newest C channels last (as
  `PixelObservations` makes them); states use `frame_stack=1`. `context_end` picks where a
  sample's `seq_len`-long context ends: at its `obs` or at its `next_obs`.
  """

  def __init__(self, capacity: int, num_envs: int, obs_shape: Tuple[int, ...], obs_dtype,
               action_size: int, frame_stack: int = 1, n_step: int = 1, discount: float = 0.99,
               seq_len: int = 1, context_end: str = "next_obs"):
    if context_end not in CONTEXT_ENDS:
      raise ValueError(f"context_end must be one of {CONTEXT_ENDS}, got {context_end!r}")
    if obs_shape[-1] % frame_stack:
      raise ValueError(f"observation channels {obs_shape[-1]} are not a stack of {frame_stack}")
    self.num_envs = int(num_envs)
    self.num_slots = int(capacity) // self.num_envs
    self.obs_shape = tuple(obs_shape)
    self.frame_shape = self.obs_shape[:-1] + (self.obs_shape[-1] // frame_stack,)
    self.obs_dtype = jnp.dtype(obs_dtype)
    self.action_size = int(action_size)
    self.frame_stack = int(frame_stack)
    self.n_step = int(n_step)
    self.discount = float(discount)
    self.seq_len = int(seq_len)
    self.context_end = context_end
    # Slots a sample may look back (context start, then its stack) or ahead (bootstrap). A context
    # ending at obs starts seq_len - 1 slots back, one ending at next_obs one slot later: the
    # bound is the first's (and the next slot is inside the lookahead).
    self.lookback = (self.seq_len - 1) + (self.frame_stack - 1)
    self.lookahead = max(self.n_step, 1)
    if self.num_slots < self.lookback + self.lookahead + 1:
      raise ValueError(
          f"replay capacity {capacity} gives {self.num_slots} slots of {num_envs} envs; a sample "
          f"needs {self.lookback + self.lookahead + 1} (frame_stack, seq_len and n_step)")

  @property
  def bytes_per_transition(self) -> int:
    frame = int(np.prod(self.frame_shape)) * self.obs_dtype.itemsize
    return frame + 4 * self.action_size + 4 + 1 + 1 + 4

  def init(self) -> ReplayState:
    slots, envs = self.num_slots, self.num_envs
    return ReplayState(
        frames=jnp.zeros((slots, envs) + self.frame_shape, self.obs_dtype),
        action=jnp.zeros((slots, envs, self.action_size), jnp.float32),
        reward=jnp.zeros((slots, envs), jnp.float32),
        terminated=jnp.zeros((slots, envs), jnp.uint8),
        truncated=jnp.zeros((slots, envs), jnp.uint8),
        episode_step=jnp.zeros((slots, envs), jnp.int32),
        next_episode_step=jnp.zeros((envs,), jnp.int32),
        cursor=jnp.zeros((), jnp.int32), count=jnp.zeros((), jnp.int32))

  def newest_frame(self, obs: jax.Array) -> jax.Array:
    return obs[..., obs.shape[-1] - self.frame_shape[-1]:]

  def insert(self, state: ReplayState, obs: jax.Array, action: jax.Array, reward: jax.Array,
             terminated: jax.Array, truncated: jax.Array) -> ReplayState:
    """Appends one step of all envs: `obs` `[E, *obs_shape]` acted on, `action` `[E, A]`,
    `reward`, `terminated`, `truncated` `[E]` of that step."""
    terminated = terminated.astype(jnp.uint8)
    truncated = truncated.astype(jnp.uint8)
    slot = state.cursor

    def put(buffer, value):
      return jax.lax.dynamic_update_index_in_dim(buffer, value.astype(buffer.dtype), slot, 0)

    done = jnp.maximum(terminated, truncated) > 0
    return state.replace(
        frames=put(state.frames, self.newest_frame(obs)),
        action=put(state.action, action), reward=put(state.reward, reward),
        terminated=put(state.terminated, terminated), truncated=put(state.truncated, truncated),
        episode_step=put(state.episode_step, state.next_episode_step),
        next_episode_step=jnp.where(done, 0, state.next_episode_step + 1),
        cursor=(slot + 1) % self.num_slots,
        count=jnp.minimum(state.count + 1, self.num_slots))

  def can_sample(self, state: ReplayState) -> jax.Array:
    return state.count > self.lookback + self.lookahead

  def _stacked(self, state: ReplayState, slot: jax.Array, env: jax.Array) -> jax.Array:
    """Frame-stacked observations at `slot`, `env` (`[N]` each): `[N, *obs_shape]`."""
    episode_step = state.episode_step[slot, env]
    frames = []
    for back in range(self.frame_stack - 1, -1, -1):  # oldest first
      source = (slot - jnp.minimum(back, episode_step)) % self.num_slots
      frames.append(state.frames[source, env])
    return jnp.concatenate(frames, axis=-1)

  def sample(self, state: ReplayState, key: jax.Array, batch_size: int) -> Sample:
    """`batch_size` transitions drawn uniformly (with replacement) from the sampleable ones:
    those whose look-back is still in the buffer and whose n-step window is fully written."""
    age_key, env_key = jax.random.split(key)
    oldest = (state.cursor - state.count) % self.num_slots
    # Ages (slots after the oldest) lookback .. count - 1 - lookahead are sampleable.
    age = jax.random.randint(age_key, (batch_size,), self.lookback,
                             jnp.maximum(state.count - self.lookahead, self.lookback + 1))
    slot = (oldest + age) % self.num_slots
    env = jax.random.randint(env_key, (batch_size,), 0, self.num_envs)

    ahead = (slot[:, None] + jnp.arange(self.n_step)[None]) % self.num_slots  # [N, n]
    returns, discounts, valid = jax.vmap(
        lambda r, te, tr: n_step_return(r, te, tr, self.discount))(
            state.reward[ahead, env[:, None]], state.terminated[ahead, env[:, None]],
            state.truncated[ahead, env[:, None]])

    # The observation reached: the next slot, unless this step terminated (then not stored).
    ends_here = state.terminated[slot, env] > 0
    next_slot = jnp.where(ends_here, slot, (slot + 1) % self.num_slots)
    bootstrap_slot = (slot + self.n_step) % self.num_slots

    end_slot = slot if self.context_end == "obs" else next_slot
    context_positions = []
    context_valid = []
    end_episode_step = state.episode_step[end_slot, env]
    for back in range(self.seq_len - 1, -1, -1):  # oldest first
      source = (end_slot - back) % self.num_slots
      real = back <= end_episode_step
      position = self._stacked(state, source, env)
      mask = real.reshape(real.shape + (1,) * (position.ndim - 1))
      context_positions.append(jnp.where(mask, position, jnp.zeros_like(position)))
      context_valid.append(real.astype(jnp.float32))
    # A context's last position is its end observation itself (never padding).
    next_obs = (context_positions[-1] if self.context_end == "next_obs"
                else self._stacked(state, next_slot, env))

    return Sample(
        obs=self._stacked(state, slot, env), action=state.action[slot, env], reward=returns,
        discount=discounts, bootstrap_obs=self._stacked(state, bootstrap_slot, env),
        next_obs=next_obs, context=jnp.stack(context_positions, axis=1),
        context_valid=jnp.stack(context_valid, axis=1), valid=valid)
