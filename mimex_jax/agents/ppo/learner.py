"""PPO: Gaussian actor and value MLPs, and the epochs x minibatches update inside `lax.scan`."""

from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple, Union

from flax import struct
import jax
import jax.numpy as jnp
import optax

from mimex_jax import parallel
from mimex_jax.agents.ppo.losses import LossInputs, compute_gae, ppo_loss
from mimex_jax.networks.conv import ConvTorso, Encoded
from mimex_jax.networks.mlp import ACTIVATIONS, MLP, GaussianPolicy, gaussian_log_prob


@struct.dataclass
class PPOParams:
  policy: Any
  value: Any


class PPOBatch(NamedTuple):
  """A rollout seen by the learner, time-major `[T, B, ...]`, observations normalized."""
  obs: jax.Array
  action: jax.Array
  log_prob: jax.Array
  reward: jax.Array  # extrinsic plus weighted intrinsic; extrinsic only with two value heads
  terminated: jax.Array
  done: jax.Array
  next_obs: jax.Array
  # The weighted intrinsic reward, given only to a learner with `ppo.intrinsic_value_head`.
  intrinsic_reward: Optional[jax.Array] = None


class PPO:
  """Clipped PPO with GAE; gradients are averaged over `axis_name` before each Adam step.

  `obs_shape` is a vector's size, or `(H, W, C)` for uint8 frames: the policy and the critic then
  each read them through a conv torso of their own (`networks/conv.py`), and `features` is the
  policy's torso output.

  `config.intrinsic_value_head`: the critic has a second output for the intrinsic return,
  discounted by `intrinsic_discount` (RND's two value heads, Burda et al. 2018; episodic here,
  cut at episode ends as the extrinsic one). Each head has its own GAE and value loss; the
  policy follows the sum of the two advantages. The bonus keeps
  paying after the goal is found, and one head would fit one blurred return to both.
  """

  def __init__(self, obs_shape: Union[int, Sequence[int]], action_size: int, config: Any,
               total_updates: int, axis_name: Optional[str] = None,
               intrinsic_discount: float = 0.99):
    self.config = config
    self.two_heads = bool(config.get("intrinsic_value_head", False))
    self.intrinsic_discount = intrinsic_discount
    self.axis_name = axis_name
    activation = ACTIVATIONS[config.activation]
    self.policy = GaussianPolicy(tuple(config.policy_hidden_sizes), action_size, activation,
                                 init_std=config.init_std, squash_mean=config.squash_mean,
                                 min_std=config.min_std, max_std=config.max_std)
    self.value_fn = MLP(tuple(config.value_hidden_sizes), 2 if self.two_heads else 1, activation)
    self.obs_shape = (int(obs_shape),) if isinstance(obs_shape, int) else tuple(obs_shape)
    self.pixels = len(self.obs_shape) == 3
    if self.pixels:
      self.policy = Encoded(ConvTorso(), self.policy)
      self.value_fn = Encoded(ConvTorso(), self.value_fn)
    optimizer_steps = max(1, total_updates * config.num_epochs * config.num_minibatches)
    if config.lr_schedule == "constant":
      learning_rate = config.learning_rate
    elif config.lr_schedule == "cosine":
      learning_rate = optax.cosine_decay_schedule(config.learning_rate, optimizer_steps)
    elif config.lr_schedule == "linear":
      learning_rate = optax.linear_schedule(config.learning_rate, 0.0, optimizer_steps)
    else:
      raise ValueError(f"ppo.lr_schedule must be constant, cosine or linear, "
                       f"got {config.lr_schedule!r}")
    self.optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                                 optax.adam(learning_rate))

  def init(self, key: jax.Array) -> Tuple[PPOParams, Any]:
    policy_key, value_key = jax.random.split(key)
    dummy = jnp.zeros((1,) + self.obs_shape, jnp.uint8 if self.pixels else jnp.float32)
    params = PPOParams(self.policy.init(policy_key, dummy), self.value_fn.init(value_key, dummy))
    return params, self.optimizer.init(params)

  def act(self, params: PPOParams, obs: jax.Array,
          key: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Samples `(action, log_prob)`; the env receives the action clipped to [-1, 1]. `key` is one
    key, or one per row of `obs` (`[B, 2]`)."""
    mean, log_std = self.policy.apply(params.policy, obs)
    if key.ndim == 2:
      noise = jax.vmap(lambda k: jax.random.normal(k, mean.shape[1:]))(key)
    else:
      noise = jax.random.normal(key, mean.shape)
    action = mean + jnp.exp(log_std) * noise
    return action, gaussian_log_prob(action, mean, log_std)

  def deterministic_action(self, params: PPOParams, obs: jax.Array) -> jax.Array:
    return jnp.clip(self.policy.apply(params.policy, obs)[0], -1.0, 1.0)

  def features(self, params: PPOParams, obs: jax.Array) -> jax.Array:
    """What the policy's torso makes of frames (detached: the bonus does not train it)."""
    return jax.lax.stop_gradient(
        self.policy.apply(params.policy, obs, method=Encoded.features))

  def value(self, params: PPOParams, obs: jax.Array) -> jax.Array:
    """V(s) `[...]`, or `[..., 2]` (extrinsic, intrinsic) with two heads."""
    values = self.value_fn.apply(params.value, obs)
    return values if self.two_heads else values[..., 0]

  def _advantages(self, batch: PPOBatch, values: jax.Array,
                  next_values: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Advantages `[T, B]` and value targets shaped as `values`."""
    config = self.config
    if not self.two_heads:
      return compute_gae(batch.reward, values, next_values, batch.terminated, batch.done,
                         config.discount, config.gae_lambda)
    if batch.intrinsic_reward is None:
      raise ValueError("PPO with intrinsic_value_head needs the batch's intrinsic_reward")
    heads = [compute_gae(reward, values[..., i], next_values[..., i], batch.terminated,
                         batch.done, discount, config.gae_lambda)
             for i, (reward, discount) in enumerate(
                 ((batch.reward, config.discount),
                  (batch.intrinsic_reward, self.intrinsic_discount)))]
    return heads[0][0] + heads[1][0], jnp.stack([heads[0][1], heads[1][1]], axis=-1)

  def update(self, params: PPOParams, opt_state: Any, batch: PPOBatch,
             key: jax.Array) -> Tuple[PPOParams, Any, Dict[str, jax.Array]]:
    config = self.config
    values = self.value(params, batch.obs)
    next_values = self.value(params, batch.next_obs)
    advantages, targets = self._advantages(batch, values, next_values)
    data = LossInputs(obs=batch.obs, action=batch.action, log_prob=batch.log_prob, value=values,
                      advantage=advantages, value_target=targets)
    # A minibatch is every env at a random subset of the time steps. Any device split of the
    # envs then holds its share of every minibatch, and the mean of the devices' gradients is the
    # gradient of the whole minibatch: the run does not depend on the number of devices.
    num_steps = batch.reward.shape[0]
    steps_per_minibatch = num_steps // config.num_minibatches
    axis_name = parallel.active_axis(self.axis_name)

    def loss_fn(params, minibatch):
      policy_out = self.policy.apply(params.policy, minibatch.obs)
      value = self.value(params, minibatch.obs)
      return ppo_loss(policy_out, value, minibatch, config.clip_epsilon, config.value_clip,
                      config.value_coef, config.entropy_coef, config.normalize_advantage,
                      config.advantage_std_floor, axis_name,
                      bounds_coef=config.get("bounds_coef", 0.0))

    target_kl = config.get("target_kl", 0.0)

    def sgd_step(carry, minibatch):
      params, opt_state, stopped = carry
      grads, metrics = jax.grad(loss_fn, has_aux=True)(params, minibatch)
      grads = parallel.mean_across_devices(grads, self.axis_name)
      updates, new_opt_state = self.optimizer.update(grads, opt_state, params)
      metrics["grad_norm"] = optax.tree_utils.tree_l2_norm(grads)
      new_params = optax.apply_updates(params, updates)
      if target_kl > 0:
        # The minibatch's KL from the acting policy, before this step: once past 1.5x the
        # target (as Stable-Baselines3 does), this update takes no more steps. Every device
        # decides on the same all-device mean, so the devices stay in step.
        kl = parallel.mean_across_devices(metrics["approx_kl"], axis_name)
        stopped = stopped | (kl > 1.5 * target_kl)
        keep_old = lambda new, old: jax.tree.map(  # noqa: E731
            lambda n, o: jnp.where(stopped, o, n), new, old)
        new_params, new_opt_state = keep_old(new_params, params), keep_old(new_opt_state,
                                                                           opt_state)
      metrics["sgd_steps_taken"] = 1.0 - stopped.astype(jnp.float32)
      return (new_params, new_opt_state, stopped), metrics

    def epoch(carry, epoch_key):
      order = jax.random.permutation(epoch_key, num_steps)[:steps_per_minibatch *
                                                           config.num_minibatches]
      order = order.reshape(config.num_minibatches, steps_per_minibatch)
      minibatches = jax.tree.map(
          lambda x: x[order].reshape((config.num_minibatches, -1) + x.shape[2:]), data)
      return jax.lax.scan(sgd_step, carry, minibatches)

    (params, opt_state, _), metrics = jax.lax.scan(
        epoch, (params, opt_state, jnp.zeros((), bool)), jax.random.split(key, config.num_epochs))
    metrics = jax.tree.map(jnp.mean, metrics)
    if self.two_heads:
      metrics["value_mean"] = values[..., 0].mean()
      metrics["intrinsic_value_mean"] = values[..., 1].mean()
    else:
      metrics["value_mean"] = values.mean()
    return params, opt_state, metrics
