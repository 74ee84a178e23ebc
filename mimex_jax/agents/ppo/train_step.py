"""PPO's fused update: unroll -> intrinsic reward -> intrinsic model step -> PPO step, in ONE
pure function `(train_state, key) -> (train_state, metrics)` that runs under `pmap`.
"""

from typing import Any, Dict, Optional, Tuple

from brax.training.acme import running_statistics
from flax import struct
import jax
import jax.numpy as jnp

from mimex_jax import parallel
from mimex_jax.agents.ppo.learner import PPO, PPOBatch, PPOParams
from mimex_jax.envs import EnvState, VectorEnv
from mimex_jax.intrinsic import IntrinsicBatch, IntrinsicReward, normalization
from mimex_jax.intrinsic.base import bonus_weight
from mimex_jax.rollout import unroll

OBS_CLIP = 10.0  # normalized observations beyond 10 standard deviations are outliers


@struct.dataclass
class TrainState:
  """Everything one device needs to continue training; every leaf has a leading device axis
  once built by `parallel.pmap_init`."""
  update_step: jax.Array  # updates done so far (the same on every device)
  params: PPOParams
  opt_state: Any
  normalizer: running_statistics.RunningStatisticsState
  intrinsic: Any
  intrinsic_returns: normalization.ReturnStatistics  # for `normalize_intrinsic`
  env_state: EnvState


class FusedStep:
  """Builds the initial state and the fused update for one configuration.

  `num_envs` here is per device. `total_updates` sets the learning-rate schedule and the
  annealing of the intrinsic weight.

  Observations are vectors (states, or a frozen encoder's features, `envs/encoded.py`), which a
  running normalizer standardizes, or uint8 frames (`ppo.pixels`), which the learner's conv
  torsos read as they are; the bonus then scores the policy torso's features.
  """

  POLICY_FIELDS = ("params", "normalizer")  # what `deterministic_policy` needs of a state

  def __init__(self, env: VectorEnv, ppo: PPO, intrinsic: IntrinsicReward, unroll_length: int,
               reward_scale: float, k_expl: float, anneal_k_expl: bool, total_updates: int,
               normalize_intrinsic: bool = False, intrinsic_discount: float = 0.99,
               axis_name: str = parallel.AXIS, bonus_obs_size: Optional[int] = None):
    self.env = env
    self.ppo = ppo
    self.intrinsic = intrinsic
    self.unroll_length = unroll_length
    self.reward_scale = reward_scale
    self.k_expl = k_expl
    self.anneal_k_expl = anneal_k_expl
    self.total_updates = total_updates
    self.normalize_intrinsic = normalize_intrinsic
    self.intrinsic_discount = intrinsic_discount
    self.axis_name = axis_name
    self.bonus_obs_size = bonus_obs_size

  def init(self, shared_key: jax.Array, device_key: jax.Array) -> TrainState:
    """Parameters from `shared_key` (identical on all devices); each device starts its rows of
    the whole batch's envs, drawn from `shared_key` too, so the envs do not depend on the number
    of devices (`device_key` is not needed)."""
    del device_key
    ppo_key, intrinsic_key, env_key = jax.random.split(shared_key, 3)
    first_env, total_envs = parallel.batch_rows(self.axis_name, self.env.num_envs)
    params, opt_state = self.ppo.init(ppo_key)
    # Frames are not normalized: the statistics of one pixel stay as they were initialized.
    normalizer = running_statistics.init_state(
        jax.ShapeDtypeStruct((1,) if self.ppo.pixels else self.env.observation_shape,
                             jnp.float32))
    return TrainState(update_step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                      normalizer=normalizer,
                      intrinsic=self.intrinsic.init(intrinsic_key, self.env.num_envs),
                      intrinsic_returns=normalization.init(self.env.num_envs),
                      env_state=self.env.reset(env_key, first_env, total_envs))

  def normalize(self, normalizer, obs: jax.Array) -> jax.Array:
    if self.ppo.pixels:
      return obs
    return running_statistics.normalize(obs, normalizer, max_abs_value=OBS_CLIP)

  def bonus_features(self, params: PPOParams, obs: jax.Array) -> jax.Array:
    """What the intrinsic reward scores: the (normalized) vectors (a frozen encoder's features
    without the proprioception after them: `bonus_obs_size`), or the policy torso's features of
    frames."""
    if self.ppo.pixels:
      return self.ppo.features(params, obs)
    return obs if self.bonus_obs_size is None else obs[..., :self.bonus_obs_size]

  def deterministic_policy(self, policy_args: Tuple[PPOParams, Any],
                           obs: jax.Array) -> jax.Array:
    """The mean action for raw observations; `policy_args` is `(params, normalizer)`."""
    params, normalizer = policy_args
    return self.ppo.deterministic_action(params, self.normalize(normalizer, obs))

  def sampled_policy(self, policy_args: Tuple[PPOParams, Any], obs: jax.Array,
                     key: jax.Array) -> jax.Array:
    """The policy as it acts in training (a Gaussian sample, clipped to the bounds), for the
    sampled evaluation: a policy can lean on its noise, and its mean then fails."""
    params, normalizer = policy_args
    action, _ = self.ppo.act(params, self.normalize(normalizer, obs), key)
    return jnp.clip(action, -1.0, 1.0)

  def intrinsic_weight(self, update_step: jax.Array) -> jax.Array:
    return bonus_weight(self.k_expl, self.anneal_k_expl, update_step, self.total_updates)

  def __call__(self, state: TrainState, key: jax.Array) -> Tuple[TrainState, Dict[str, Any]]:
    # Keys depend only on (seed, update step), so a resumed run draws the same numbers; action
    # noise and MIMEx masks are drawn per env of the whole batch (its global index), so the run
    # does not depend on how many devices share the batch.
    key = jax.random.fold_in(key, state.update_step)
    rollout_key, intrinsic_key, learner_key = jax.random.split(key, 3)
    first_env, total_envs = parallel.batch_rows(self.axis_name, self.env.num_envs)
    env_rows = first_env + jnp.arange(self.env.num_envs)

    def policy(obs, step_key):
      return self.ppo.act(state.params, self.normalize(state.normalizer, obs),
                          parallel.keys_per_row(step_key, env_rows))

    env_state, rollout = unroll(self.env, state.env_state, policy, rollout_key,
                                self.unroll_length)
    obs = self.normalize(state.normalizer, rollout.obs)
    next_obs = self.normalize(state.normalizer, rollout.next_obs)

    sequence_rows = (jnp.arange(self.unroll_length)[:, None] * total_envs + env_rows[None, :])
    intrinsic_state, intrinsic_reward, intrinsic_metrics = self.intrinsic.update(
        state.intrinsic, IntrinsicBatch(self.bonus_features(state.params, obs), rollout.action,
                                        self.bonus_features(state.params, next_obs),
                                        rollout.done),
        parallel.keys_per_row(intrinsic_key, sequence_rows))
    # All-reduces run phase by phase (bonus model, learner, normalizer, metrics): see
    # `parallel.after`.
    intrinsic_reward = parallel.after(intrinsic_reward, intrinsic_state)
    raw_intrinsic_mean = intrinsic_reward.mean()
    intrinsic_returns = state.intrinsic_returns
    if self.normalize_intrinsic:
      intrinsic_returns, intrinsic_reward = normalization.normalize(
          intrinsic_returns, intrinsic_reward, self.intrinsic_discount, self.axis_name)
    weight = self.intrinsic_weight(state.update_step)
    extrinsic = self.reward_scale * rollout.reward
    if self.ppo.two_heads:  # each reward to its own value head
      reward, head_intrinsic = extrinsic, weight * intrinsic_reward
    else:
      reward, head_intrinsic = extrinsic + weight * intrinsic_reward, None

    params, opt_state, learner_metrics = self.ppo.update(
        state.params, state.opt_state,
        PPOBatch(obs=obs, action=rollout.action, log_prob=rollout.log_prob, reward=reward,
                 terminated=rollout.terminated, done=rollout.done, next_obs=next_obs,
                 intrinsic_reward=head_intrinsic),
        learner_key)
    # Normalizer statistics change after the update, so the policy and the learner above both
    # saw the observations normalized the same way.
    # Unit weights that wait for the learner: Brax all-reduces the sample count, and without
    # weights that count is a constant free to run before everything else.
    weights = parallel.after(jnp.ones(rollout.reward.shape), (params, opt_state))
    normalizer = state.normalizer if self.ppo.pixels else running_statistics.update(
        state.normalizer, rollout.obs, weights=weights,
        pmap_axis_name=parallel.active_axis(self.axis_name))

    new_state = TrainState(update_step=state.update_step + 1, params=params,
                           opt_state=opt_state, normalizer=normalizer,
                           intrinsic=intrinsic_state, intrinsic_returns=intrinsic_returns,
                           env_state=env_state)
    done = rollout.done
    sums = {  # summed over devices; the host turns them into per-episode means
        "episodes": done.sum(),
        "episode_return_sum": (done * rollout.episode_return).sum(),
        "episode_length_sum": (done * rollout.episode_length).sum(),
        "success_sum": (done * rollout.episode_success).sum(),
    }
    means = {
        **learner_metrics, **intrinsic_metrics,
        "intrinsic_reward": raw_intrinsic_mean,  # before normalization
        "intrinsic_reward_scaled": intrinsic_reward.mean(),  # what PPO received, before k_expl
        "intrinsic_weight": weight,
        "extrinsic_reward": rollout.reward.mean(),
    }
    sums, means = parallel.after((sums, means), (normalizer, params))
    metrics = parallel.reduce_metrics(sums, means, self.axis_name)
    return new_state, metrics
