"""DrQ-v2's fused update: `k` env steps of every env -> insert into the on-device replay buffer ->
`m` updates, each (sample, intrinsic reward and intrinsic model step on the sampled sequences,
critic, actor, target), all in ONE pure function `(train_state, key) -> (train_state, metrics)`
that runs under `pmap`. Each device keeps its own envs and its own buffer shard; gradients are
averaged across devices, so parameters stay identical everywhere.
"""

from typing import Any, Dict, Optional, Tuple

from flax import struct
import jax
import jax.numpy as jnp

from mimex_jax import parallel
from mimex_jax.agents.drq.augment import random_shift_sequences
from mimex_jax.agents.drq.learner import DrQ, DrQBatch, DrQOptState, DrQParams, exploration_std
from mimex_jax.agents.drq.replay import ReplayBuffer, ReplayState, Sample
from mimex_jax.envs import EnvState, VectorEnv
from mimex_jax.intrinsic import IntrinsicBatch, IntrinsicReward
from mimex_jax.intrinsic.base import bonus_weight
from mimex_jax.rollout import unroll

FEATURES = ("encoder", "trunk")  # what the bonus sees of an observation
# Which encoder parameters embed the bonus's inputs: each update's own (the MIMEx reference's
# DrQ-v2) or the fused step's starting ones, for all its updates at once (see `_learn`).
BONUS_ENCODERS = ("current", "step_start")


@struct.dataclass
class DrQTrainState:
  """Everything one device needs to continue training (leading device axis once pmapped)."""
  update_step: jax.Array
  params: DrQParams
  opt_state: DrQOptState
  intrinsic: Any
  replay: ReplayState
  env_state: EnvState


class DrQFusedStep:
  """`num_envs` of `env` and `batch_size` are per device. Frame counts (`random_frames`,
  `learning_starts`, `std_duration`) are env frames over all devices, action repeats included.
  DrQ-v2's code counts agent steps in its schedules instead (its `linear(1.0, 0.1, 500000)` at
  action repeat 2 lasts 1M frames), so ours are half as long for the same numbers."""

  POLICY_FIELDS = ("params",)  # what `deterministic_policy` needs of a train state

  def __init__(self, env: VectorEnv, drq: DrQ, buffer: ReplayBuffer, intrinsic: IntrinsicReward,
               env_steps: int, updates: int, batch_size: int, frames_per_update: int,
               random_frames: int, learning_starts: int, std_initial: float, std_final: float,
               std_duration: int, k_expl: float, anneal_k_expl: bool, total_updates: int,
               intrinsic_features: str = "encoder", augment_intrinsic: bool = True,
               intrinsic_padding: str = "zeros", unroll_loops: bool = False,
               unroll_updates: Optional[bool] = None,
               bonus_encoder: str = "current", embed_chunk: int = 8,
               axis_name: str = parallel.AXIS):
    """`augment_intrinsic` shifts each sampled context (pixels only) by one random shift of
    up to `drq.config.aug_pad` pixels, shared by its frames, before embedding it, as the MIMEx
    reference does.

    `unroll_loops` writes the `updates` learner steps and the `env_steps` env steps out
    instead of looping over them: XLA's CPU backend runs a convolution's kernel gradient inside a
    loop about 11x slower (`experiments/conv_cpu.py`; forward passes run as fast), at the price
    of a compile that grows with `updates`. `unroll_updates` (default: `unroll_loops`) decides
    for the learner steps alone: with an encoder whose gradients are forward convolutions
    (`drq.learner_updates=loop`) they run in a loop at about the written-out speed.

    `bonus_encoder="step_start"` embeds every update's bonus inputs with the encoder as it is at
    the start of the fused step (up to `updates - 1` Adam steps older than `current`'s), in one
    pass of `embed_chunk` frames at a time, then runs the bonus model's steps in a loop ahead of
    the learner's. Unrolled, each update's copy of the bonus made DrQ + MIMEx's compile take
    5 minutes and 14.5 GB at `configs/drq.py:cartpole_swingup_sparse_pixels_cpu`; and XLA's CPU
    convolutions run 2-4x faster over chunks of 8-16 frames than over one batch of hundreds
    (8 was the fastest chunk of 8, 16 and 32 in the fused step: docs/PERFORMANCE.md).
    From states the encoder has no parameters, so both give the same numbers."""
    if bonus_encoder not in BONUS_ENCODERS:
      raise ValueError(f"bonus_encoder must be one of {BONUS_ENCODERS}, got {bonus_encoder!r}")
    if embed_chunk < 1:
      raise ValueError(f"embed_chunk must be >= 1, got {embed_chunk}")
    if intrinsic_padding not in ("zeros", "blank_frame"):
      raise ValueError(f"intrinsic_padding must be zeros or blank_frame, got "
                       f"{intrinsic_padding!r}")
    if intrinsic_features not in FEATURES:
      raise ValueError(f"intrinsic_features must be one of {FEATURES}, got "
                       f"{intrinsic_features!r}")
    self.env = env
    self.drq = drq
    self.buffer = buffer
    self.intrinsic = intrinsic
    self.env_steps = env_steps
    self.updates = updates
    self.batch_size = batch_size
    self.frames_per_update = frames_per_update
    self.random_frames = random_frames
    self.learning_starts = learning_starts
    self.std_schedule = (std_initial, std_final, std_duration)
    self.k_expl = k_expl
    self.anneal_k_expl = anneal_k_expl
    self.total_updates = total_updates
    self.intrinsic_features = intrinsic_features
    self.augment_intrinsic = augment_intrinsic
    self.intrinsic_padding = intrinsic_padding
    self.unroll_loops = unroll_loops
    self.unroll_updates = unroll_loops if unroll_updates is None else unroll_updates
    self.bonus_encoder = bonus_encoder
    self.embed_chunk = embed_chunk
    self.axis_name = axis_name

  def init(self, shared_key: jax.Array, device_key: jax.Array) -> DrQTrainState:
    """Parameters from `shared_key` (identical on all devices), envs from `device_key`."""
    drq_key, intrinsic_key = jax.random.split(shared_key)
    params, opt_state = self.drq.init(drq_key)
    return DrQTrainState(update_step=jnp.zeros((), jnp.int32), params=params,
                         opt_state=opt_state,
                         intrinsic=self.intrinsic.init(intrinsic_key, 0),  # no rollout history
                         replay=self.buffer.init(), env_state=self.env.reset(device_key))

  def deterministic_policy(self, policy_args: Tuple[DrQParams], obs: jax.Array) -> jax.Array:
    """The actor's mean action for raw observations; `policy_args` is `(params,)`."""
    (params,) = policy_args
    return self.drq.deterministic_action(params, obs)

  @property
  def frames_per_slot(self) -> int:
    """Env frames (all devices, action repeats included) one buffer slot holds."""
    return self.frames_per_update // self.env_steps

  @property
  def refill_frames(self) -> int:
    """Frames the buffer must hold before updates run: `learning_starts`, or all it can hold.
    A fresh run meets this whenever it has taken `learning_starts` frames; a run resumed from
    a checkpoint saved without its buffer waits here until the buffer is refilled."""
    return min(self.learning_starts, self.buffer.num_slots * self.frames_per_slot)

  def refill_updates(self) -> int:
    """Updates an empty buffer takes to allow learning again (`refill_frames`, and enough
    slots for one sample's look-back and look-ahead); the last of them learns."""
    slots = max(-(-self.refill_frames // self.frames_per_slot),
                self.buffer.lookback + self.buffer.lookahead + 1)
    return -(-slots // self.env_steps)

  def intrinsic_weight(self, update_step: jax.Array) -> jax.Array:
    return bonus_weight(self.k_expl, self.anneal_k_expl, update_step, self.total_updates)

  def _embed(self, params: DrQParams, obs: jax.Array) -> jax.Array:
    """What the bonus sees of observations `[N, ...]`: detached features `[N, F]`."""
    if self.intrinsic_features == "trunk":
      features = self.drq.actor_features(params, obs)
    else:
      features = self.drq.features(params, obs)
    return jax.lax.stop_gradient(features)

  def context_frames(self, sample: Sample, key: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """`(frames [N, L, ...], key left over)`: the sampled MIMEx windows as the bonus's encoder
    sees them (blanked before the episode's start with `blank_frame`, shifted with
    `augment_intrinsic`)."""
    frames = sample.context
    valid = sample.context_valid
    if self.intrinsic_padding == "blank_frame":
      frames = frames * valid.reshape(valid.shape + (1,) * (frames.ndim - 2)).astype(
          frames.dtype)
    if self.augment_intrinsic and self.drq.pixels and self.drq.config.aug_pad > 0:
      # Its own key, split off only here: with augmentation off the bonus draws what it did.
      augment_key, key = jax.random.split(key)
      frames = random_shift_sequences(augment_key, frames, self.drq.config.aug_pad)
    return frames, key

  def _pad_context(self, context: jax.Array, valid: jax.Array) -> jax.Array:
    """Positions from before an episode's start become zero features (`zeros`); `blank_frame`
    encoded all-zero observations there already."""
    return context * valid[..., None] if self.intrinsic_padding == "zeros" else context

  def context_features(self, params: DrQParams, sample: Sample,
                       key: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """`(features [N, L, F], key left over)` of the sampled MIMEx windows. Positions from before
    an episode's start are zero features (`intrinsic_padding=zeros`) or the features of an
    all-zero observation (`blank_frame`, as the reference pads with zero pixels)."""
    num, length = sample.context_valid.shape
    frames, key = self.context_frames(sample, key)
    context = self._embed(params, frames.reshape((num * length,) + frames.shape[2:]))
    return self._pad_context(context.reshape(num, length, -1), sample.context_valid), key

  def _embed_in_chunks(self, params: DrQParams, obs: jax.Array) -> jax.Array:
    """`_embed` of `[M, ...]` observations, `embed_chunk` at a time in a loop (forward passes run
    as fast in a loop as unrolled on XLA's CPU backend; see `bonus_encoder`)."""
    if not self.drq.pixels or obs.shape[0] <= self.embed_chunk:
      return self._embed(params, obs)
    count = obs.shape[0]
    chunks = -(-count // self.embed_chunk)
    padded = jnp.concatenate(
        [obs, jnp.zeros((chunks * self.embed_chunk - count,) + obs.shape[1:], obs.dtype)])
    features = jax.lax.map(lambda chunk: self._embed(params, chunk),
                           padded.reshape((chunks, self.embed_chunk) + obs.shape[1:]))
    return features.reshape((chunks * self.embed_chunk, -1))[:count]

  def _bonus_inputs_at_step_start(self, params: DrQParams, samples: Sample,
                                  keys: jax.Array) -> Tuple[IntrinsicBatch, jax.Array]:
    """`(inputs [U, 1, N, ...], keys left over [U, 2])` of the bonus for all `U` updates' samples
    `[U, N, ...]`, embedded by `params` in one chunked pass. Only what the bonus reads is
    embedded (the bonus's `sampled_inputs`): MIMEx the contexts, RND `next_obs`, ICM both."""
    updates, num, length = samples.context_valid.shape
    reads = self.intrinsic.sampled_inputs
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    unread = jnp.zeros((updates, 1, num, 1))
    obs = next_obs = unread
    context = None
    if "obs" in reads:
      obs = self._embed_in_chunks(params, flat(samples.obs)).reshape(updates, 1, num, -1)
    if "next_obs" in reads:
      next_obs = self._embed_in_chunks(params, flat(samples.next_obs)).reshape(updates, 1, num, -1)
    if "context" in reads:
      frames, keys = jax.vmap(self.context_frames)(samples, keys)
      context = self._embed_in_chunks(params, frames.reshape((-1,) + frames.shape[3:]))
      context = self._pad_context(context.reshape(updates, num, length, -1),
                                  samples.context_valid)[:, None]
    inputs = IntrinsicBatch(obs=obs, action=samples.action[:, None], next_obs=next_obs,
                            done=jnp.zeros((updates, 1, num)), context=context)
    return inputs, keys

  def _bonus(self, params: DrQParams, intrinsic_state: Any, sample: Sample, key: jax.Array):
    """Intrinsic reward `[N]` of the sampled transitions and one step of the bonus's model on
    them (the same modules PPO uses, fed sampled sequences instead of a rollout). MIMEx reads
    the context, RND and ICM `obs` and `next_obs`; XLA drops what the bonus leaves unread."""
    num = sample.context_valid.shape[0]
    context, key = self.context_features(params, sample, key)
    batch = IntrinsicBatch(
        obs=self._embed(params, sample.obs)[None], action=sample.action[None],
        next_obs=self._embed(params, sample.next_obs)[None], done=jnp.zeros((1, num)),
        context=context[None])
    intrinsic_state, reward, metrics = self.intrinsic.update(intrinsic_state, batch, key)
    return intrinsic_state, reward[0], metrics

  def _learn(self, state: DrQTrainState, replay: ReplayState, key: jax.Array, std: jax.Array):
    """`updates` learner steps on samples of this device's buffer."""
    weight = self.intrinsic_weight(state.update_step)
    update_keys = jax.random.split(key, self.updates)
    if self.bonus_encoder == "step_start":
      return self._learn_after_bonuses(state, replay, update_keys, std, weight)

    def one_update(carry, update_key):
      params, opt_state, intrinsic_state = carry
      sample_key, bonus_key, learner_key = jax.random.split(update_key, 3)
      sample = self.buffer.sample(replay, sample_key, self.batch_size)
      intrinsic_state, bonus, bonus_metrics = self._bonus(params, intrinsic_state, sample,
                                                          bonus_key)
      # One all-reduce after the other (bonus model, critic, actor): see `parallel.after`.
      bonus = parallel.after(bonus, intrinsic_state)
      params, opt_state, metrics = self._drq_update(params, opt_state, sample, bonus, weight,
                                                    learner_key, std)
      metrics = {**metrics, **bonus_metrics}
      intrinsic_state = parallel.after(intrinsic_state, params)
      return (params, opt_state, intrinsic_state), metrics

    carry = (state.params, state.opt_state, state.intrinsic)
    carry, metrics = jax.lax.scan(one_update, carry, update_keys,
                                  unroll=self.updates if self.unroll_updates else 1)
    return carry, jax.tree.map(jnp.mean, metrics)

  def _drq_update(self, params, opt_state, sample: Sample, bonus: jax.Array, weight: jax.Array,
                  key: jax.Array, std: jax.Array):
    batch = DrQBatch(obs=sample.obs, action=sample.action,
                     reward=sample.reward + weight * bonus, discount=sample.discount,
                     bootstrap_obs=sample.bootstrap_obs, valid=sample.valid)
    params, opt_state, metrics = self.drq.update(params, opt_state, batch, key, std)
    return params, opt_state, {**metrics, "intrinsic_reward": bonus.mean(),
                               "sampled_valid": sample.valid.mean()}

  def _learn_after_bonuses(self, state: DrQTrainState, replay: ReplayState,
                           update_keys: jax.Array, std: jax.Array, weight: jax.Array):
    """`bonus_encoder="step_start"`: every update's sample and bonus first (the bonus model's
    steps in a loop, one per update, in the same order), then the learner's updates. The keys
    are the ones `current` draws."""
    sample_keys, bonus_keys, learner_keys = jnp.split(
        jax.vmap(lambda k: jax.random.split(k, 3))(update_keys), 3, axis=1)
    samples = jax.vmap(lambda k: self.buffer.sample(replay, k, self.batch_size))(
        sample_keys[:, 0])
    inputs, bonus_keys = self._bonus_inputs_at_step_start(state.params, samples,
                                                          bonus_keys[:, 0])

    def one_bonus(intrinsic_state, step):
      batch, bonus_key = step
      intrinsic_state, bonus, metrics = self.intrinsic.update(intrinsic_state, batch, bonus_key)
      return intrinsic_state, (bonus[0], metrics)

    intrinsic_state, (bonuses, bonus_metrics) = jax.lax.scan(one_bonus, state.intrinsic,
                                                             (inputs, bonus_keys))
    # The learner's all-reduces after the bonus model's: see `parallel.after`.
    bonuses = parallel.after(bonuses, intrinsic_state)

    def one_update(carry, step):
      params, opt_state = carry
      sample, bonus, learner_key = step
      params, opt_state, metrics = self._drq_update(params, opt_state, sample, bonus, weight,
                                                    learner_key, std)
      return (params, opt_state), metrics

    (params, opt_state), metrics = jax.lax.scan(
        one_update, (state.params, state.opt_state), (samples, bonuses, learner_keys[:, 0]),
        unroll=self.updates if self.unroll_updates else 1)
    metrics = {**metrics, **bonus_metrics}
    return (params, opt_state, intrinsic_state), jax.tree.map(jnp.mean, metrics)

  def __call__(self, state: DrQTrainState,
               key: jax.Array) -> Tuple[DrQTrainState, Dict[str, Any]]:
    # Keys depend only on (seed, update step, device), so a resumed run draws the same numbers.
    key = jax.random.fold_in(jax.random.fold_in(key, state.update_step),
                             jax.lax.axis_index(self.axis_name))
    rollout_key, learn_key = jax.random.split(key)
    frames = state.update_step * self.frames_per_update
    std = exploration_std(frames, *self.std_schedule)
    uniform_phase = frames < self.random_frames

    def policy(obs, step_key):
      act_key, uniform_key = jax.random.split(step_key)
      action = self.drq.act(state.params, obs, act_key, std)
      uniform = jax.random.uniform(uniform_key, action.shape, minval=-1.0, maxval=1.0)
      return jnp.where(uniform_phase, uniform, action), jnp.zeros(obs.shape[0])

    env_state, rollout = unroll(self.env, state.env_state, policy, rollout_key, self.env_steps,
                                unroll=self.unroll_loops)

    def insert(replay, step):
      obs, action, reward, terminated, done = step
      return self.buffer.insert(replay, obs, jnp.clip(action, -1.0, 1.0), reward, terminated,
                                done - terminated), None

    replay, _ = jax.lax.scan(insert, state.replay, (rollout.obs, rollout.action, rollout.reward,
                                                    rollout.terminated, rollout.done))

    # Before learning starts the updates run anyway and their results are dropped: a `lax.cond`
    # around them would cost more than it saves, since XLA's CPU backend runs convolutions
    # inside a conditional about 11x slower (as inside a loop, see `unroll_loops`).
    ready = (self.buffer.can_sample(replay) & (frames >= self.learning_starts)
             & (replay.count * self.frames_per_slot >= self.refill_frames))
    learned, learner_metrics = self._learn(state, replay, learn_key, std)
    params, opt_state, intrinsic_state = jax.tree.map(
        lambda new, old: jnp.where(ready, new, old), learned,
        (state.params, state.opt_state, state.intrinsic))
    learner_metrics = jax.tree.map(lambda x: jnp.where(ready, x, jnp.zeros_like(x)),
                                   learner_metrics)

    new_state = DrQTrainState(update_step=state.update_step + 1, params=params,
                              opt_state=opt_state, intrinsic=intrinsic_state, replay=replay,
                              env_state=env_state)
    done = rollout.done
    sums = {  # summed over devices; the host turns them into per-episode means
        "episodes": done.sum(),
        "episode_return_sum": (done * rollout.episode_return).sum(),
        "episode_length_sum": (done * rollout.episode_length).sum(),
        "success_sum": (done * rollout.episode_success).sum(),
        "replay_transitions": replay.count * self.buffer.num_envs,
    }
    means = {**learner_metrics, "learning": ready.astype(jnp.float32),
             "intrinsic_weight": self.intrinsic_weight(state.update_step),
             "extrinsic_reward": rollout.reward.mean()}
    sums, means = parallel.after((sums, means), (params, opt_state, intrinsic_state))
    metrics = parallel.reduce_metrics(sums, means, self.axis_name)
    return new_state, metrics
