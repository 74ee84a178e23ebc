"""DrQ-v2 (Yarats et al., 2021): twin-Q actor-critic with a deterministic actor explored by
scheduled Gaussian noise, n-step targets, random-shift augmentation, and an encoder trained only
by the critic.

One `update` is one critic step (encoder included), one actor step on detached features, and a
Polyak step of the target critic. Gradients are averaged over `axis_name` before each Adam step.
"""

from typing import Any, Dict, NamedTuple, Optional, Tuple

from flax import struct
import jax
import jax.numpy as jnp
import optax

from mimex_jax import parallel
from mimex_jax.agents.drq.augment import random_shift
from mimex_jax.agents.drq.networks import Actor, PixelEncoder, StateEncoder, TwinCritic


@struct.dataclass
class DrQParams:
  encoder: Any
  actor: Any
  critic: Any
  target_critic: Any  # Polyak average of `critic` (the encoder has no target copy, as DrQ-v2)


@struct.dataclass
class DrQOptState:
  critic: Any  # one Adam over encoder and critic
  actor: Any


class DrQBatch(NamedTuple):
  """Sampled transitions `[N, ...]` (see `replay.Sample`), reward with any bonus added."""
  obs: jax.Array
  action: jax.Array
  reward: jax.Array  # n-step discounted sum
  discount: jax.Array  # discount^n, or 0 after a termination
  bootstrap_obs: jax.Array
  valid: jax.Array  # 0: leave out of the losses


def exploration_std(frames: jax.Array, initial: float, final: float,
                    duration: int) -> jax.Array:
  """DrQ-v2's `linear(initial, final, duration)` schedule over env frames."""
  progress = jnp.clip(frames.astype(jnp.float32) / max(duration, 1), 0.0, 1.0)
  return initial + (final - initial) * progress


def sample_action(key: jax.Array, mean: jax.Array, std: jax.Array,
                  noise_clip: Optional[float] = None) -> jax.Array:
  """`mean + std * N(0, 1)` with the noise clipped to `noise_clip`, the action to [-1, 1]. The
  gradient passes to `mean` as if nothing were clipped (DrQ-v2's truncated normal)."""
  noise = std * jax.random.normal(key, mean.shape)
  if noise_clip is not None:
    noise = jnp.clip(noise, -noise_clip, noise_clip)
  action = mean + noise
  clipped = jnp.clip(action, -1.0 + 1e-6, 1.0 - 1e-6)
  return action + jax.lax.stop_gradient(clipped - action)


def _masked_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


class DrQ:
  """`obs_shape` `[H, W, C]` (uint8 pixels, conv encoder) or `[D]` (states, no encoder)."""

  def __init__(self, obs_shape, action_size: int, config: Any,
               axis_name: Optional[str] = None, loop_gradients: bool = False):
    self.config = config
    self.obs_shape = tuple(obs_shape)
    self.action_size = int(action_size)
    self.pixels = len(self.obs_shape) == 3
    self.axis_name = axis_name
    # `loop_gradients`: the encoder's gradients as forward convolutions (`LoopConv`), for
    # learner updates in a loop on CPU; the same parameters and numbers.
    self.encoder = (PixelEncoder(config.num_filters, config.num_conv_layers, loop_gradients)
                    if self.pixels else StateEncoder())
    self.actor = Actor(self.action_size, config.feature_dim, config.hidden_dim)
    self.critic = TwinCritic(config.feature_dim, config.hidden_dim)
    self.critic_optimizer = optax.adam(config.learning_rate)
    self.actor_optimizer = optax.adam(config.learning_rate)

  @property
  def obs_dtype(self):
    return jnp.uint8 if self.pixels else jnp.float32

  def init(self, key: jax.Array) -> Tuple[DrQParams, DrQOptState]:
    encoder_key, actor_key, critic_key = jax.random.split(key, 3)
    dummy_obs = jnp.zeros((1,) + self.obs_shape, self.obs_dtype)
    encoder = self.encoder.init(encoder_key, dummy_obs)
    features = self.encoder.apply(encoder, dummy_obs)
    actor = self.actor.init(actor_key, features)
    critic = self.critic.init(critic_key, features, jnp.zeros((1, self.action_size)))
    params = DrQParams(encoder=encoder, actor=actor, critic=critic, target_critic=critic)
    opt_state = DrQOptState(critic=self.critic_optimizer.init((encoder, critic)),
                            actor=self.actor_optimizer.init(actor))
    return params, opt_state

  @property
  def feature_size(self) -> int:
    """Width of the encoder's output (the bonus's input with `intrinsic_features=encoder`)."""
    dummy = jax.ShapeDtypeStruct((1,) + self.obs_shape, self.obs_dtype)
    shapes = jax.eval_shape(lambda x: self.encoder.init_with_output(jax.random.PRNGKey(0), x)[0],
                            dummy)
    return int(shapes.shape[-1])

  def features(self, params: DrQParams, obs: jax.Array) -> jax.Array:
    return self.encoder.apply(params.encoder, obs)

  def actor_features(self, params: DrQParams, obs: jax.Array) -> jax.Array:
    """The actor's trunk output (`feature_dim` wide), a compact embedding of `obs`."""
    return self.actor.apply(params.actor, self.features(params, obs))[1]

  def act(self, params: DrQParams, obs: jax.Array, key: jax.Array, std: jax.Array) -> jax.Array:
    mean, _ = self.actor.apply(params.actor, self.features(params, obs))
    return jnp.clip(mean + std * jax.random.normal(key, mean.shape), -1.0, 1.0)

  def deterministic_action(self, params: DrQParams, obs: jax.Array) -> jax.Array:
    return self.actor.apply(params.actor, self.features(params, obs))[0]

  def augment(self, key: jax.Array, obs: jax.Array) -> jax.Array:
    return random_shift(key, obs, self.config.aug_pad) if self.pixels else obs

  def update(self, params: DrQParams, opt_state: DrQOptState, batch: DrQBatch, key: jax.Array,
             std: jax.Array) -> Tuple[DrQParams, DrQOptState, Dict[str, jax.Array]]:
    config = self.config
    aug_key, next_aug_key, target_key, actor_key = jax.random.split(key, 4)
    obs = self.augment(aug_key, batch.obs)
    bootstrap_obs = self.augment(next_aug_key, batch.bootstrap_obs)

    # Critic (and encoder): regress both Qs onto r + discount * min target Q.
    next_features = self.features(params, bootstrap_obs)
    next_mean, _ = self.actor.apply(params.actor, next_features)
    next_action = sample_action(target_key, next_mean, std, config.std_clip)
    target_q1, target_q2 = self.critic.apply(params.target_critic, next_features, next_action)
    target = jax.lax.stop_gradient(
        batch.reward + batch.discount * jnp.minimum(target_q1, target_q2))

    def critic_loss(encoder_and_critic):
      encoder, critic = encoder_and_critic
      features = self.encoder.apply(encoder, obs)
      q1, q2 = self.critic.apply(critic, features, batch.action)
      loss = _masked_mean(jnp.square(q1 - target) + jnp.square(q2 - target), batch.valid)
      return loss, (features, q1)

    (critic_loss_value, (features, q1)), grads = jax.value_and_grad(critic_loss, has_aux=True)(
        (params.encoder, params.critic))
    grads = parallel.mean_across_devices(grads, self.axis_name)
    updates, critic_opt = self.critic_optimizer.update(grads, opt_state.critic)
    encoder, critic = optax.apply_updates((params.encoder, params.critic), updates)

    # Actor: maximize the (new) critic's min Q on detached features.
    features = jax.lax.stop_gradient(features)

    def actor_loss(actor):
      mean, _ = self.actor.apply(actor, features)
      action = sample_action(actor_key, mean, std, config.std_clip)
      q1_pi, q2_pi = self.critic.apply(critic, features, action)
      return _masked_mean(-jnp.minimum(q1_pi, q2_pi), batch.valid)

    actor_loss_value, actor_grads = jax.value_and_grad(actor_loss)(params.actor)
    actor_grads = parallel.mean_across_devices(actor_grads, self.axis_name)
    actor_updates, actor_opt = self.actor_optimizer.update(actor_grads, opt_state.actor)
    actor = optax.apply_updates(params.actor, actor_updates)

    target_critic = optax.incremental_update(critic, params.target_critic, config.tau)
    metrics = {"critic_loss": critic_loss_value, "actor_loss": actor_loss_value,
               "q_mean": _masked_mean(q1, batch.valid), "target_q_mean": target.mean(),
               "batch_reward": batch.reward.mean(), "exploration_std": std}
    return (DrQParams(encoder=encoder, actor=actor, critic=critic, target_critic=target_critic),
            DrQOptState(critic=critic_opt, actor=actor_opt), metrics)
