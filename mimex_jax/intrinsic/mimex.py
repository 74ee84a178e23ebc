"""MIMEx: the reconstruction error of a masked trajectory snippet is its novelty bonus.

For each transition, the sequence of the last `seq_len` embeddings ending at the observation it
reached (zero-padded before the episode's start) is masked at `mask_ratio`; a small MAE-style
transformer reconstructs it, and the per-sequence error over masked positions is the reward. The
model trains online on the same sequences, one Adam step per rollout (Lin & Jabri, 2023).
"""

from typing import Any, Dict, Optional, Tuple

from flax import struct
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mimex_jax.intrinsic.base import IntrinsicBatch, online_step
from mimex_jax.intrinsic.masking import make_mask, random_mask
from mimex_jax.intrinsic.sequences import trailing_windows
from mimex_jax.networks.transformer import Block, dense, sinusoidal_positions


class MaskedSequenceModel(nn.Module):
  """Encoder over the kept positions (plus a CLS token), decoder over all positions.

  `__call__(sequences [N, L, D], keep [N, K]) -> reconstruction [N, L, D]`.
  """
  output_size: int
  embed_dim: int = 128
  depth: int = 4
  num_heads: int = 4
  decoder_embed_dim: int = 64
  decoder_depth: int = 1
  decoder_num_heads: int = 2
  mlp_ratio: float = 4.0
  use_cls: bool = True

  @nn.compact
  def __call__(self, sequences: jax.Array, keep: jax.Array) -> jax.Array:
    num, length, _ = sequences.shape
    token_init = nn.initializers.normal(0.02)
    x = dense(self.embed_dim)(sequences) + sinusoidal_positions(length, self.embed_dim)
    x = jnp.take_along_axis(x, keep[..., None], axis=1)  # only visible positions are encoded
    if self.use_cls:
      cls = self.param("cls_token", token_init, (1, 1, self.embed_dim))
      x = jnp.concatenate([jnp.broadcast_to(cls, (num, 1, self.embed_dim)), x], axis=1)
    for _ in range(self.depth):
      x = Block(self.num_heads, self.mlp_ratio)(x)
    x = dense(self.decoder_embed_dim)(nn.LayerNorm(epsilon=1e-6)(x))

    mask_token = self.param("mask_token", token_init, (1, 1, self.decoder_embed_dim))
    tokens = jnp.broadcast_to(mask_token, (num, length, self.decoder_embed_dim))
    visible = x[:, 1:] if self.use_cls else x
    tokens = tokens.at[jnp.arange(num)[:, None], keep].set(visible)  # back to original order
    tokens = tokens + sinusoidal_positions(length, self.decoder_embed_dim)
    if self.use_cls:
      tokens = jnp.concatenate([x[:, :1], tokens], axis=1)
    for _ in range(self.decoder_depth):
      tokens = Block(self.decoder_num_heads, self.mlp_ratio)(tokens)
    out = dense(self.output_size)(nn.LayerNorm(epsilon=1e-6)(tokens))
    return out[:, 1:] if self.use_cls else out


def masked_sequence_loss(reconstruction: jax.Array, target: jax.Array, mask: jax.Array,
                         norm_loss: bool = False) -> jax.Array:
  """Per-sequence loss `[N]` over the hidden parts only.

  With a position mask `[N, L]`: squared error averaged over D, then over masked positions.
  With an element mask `[N, L, D]`: squared error averaged over the masked entries.
  """
  if norm_loss:
    mean = target.mean(axis=-1, keepdims=True)
    var = target.var(axis=-1, keepdims=True)
    target = (target - mean) / jnp.sqrt(var + 1e-6)
  if mask.ndim == 3:
    error = jnp.square(reconstruction - target)
    return jnp.sum(error * mask, axis=(1, 2)) / jnp.maximum(jnp.sum(mask, axis=(1, 2)), 1.0)
  error = jnp.mean(jnp.square(reconstruction - target), axis=-1)
  return jnp.sum(error * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


@struct.dataclass
class MimexState:
  params: Any
  opt_state: Any
  projection: Optional[jax.Array]  # fixed [D, E] random projection, or None (embed = obs)
  history: jax.Array  # [L-1, B, D] last observations of the previous rollout
  history_done: jax.Array  # [L-1, B]


class Mimex:
  """MIMEx: `mask_ratio` of each sequence hidden by the mask distribution `mask` (see
  `masking.py`: random, elementwise, last, block)."""

  def __init__(self, obs_size: int, seq_len: int = 5, mask_ratio: float = 0.7, n_mask: int = 1,
               mask: str = "random",
               learning_rate: float = 1e-4, embedding: str = "obs", embedding_dim: int = 64,
               norm_loss: bool = False, model_kwargs: Optional[Dict[str, Any]] = None,
               axis_name: Optional[str] = None):
    if embedding not in ("obs", "random_projection"):
      raise ValueError(f"embedding must be 'obs' or 'random_projection', got {embedding!r}")
    self.obs_size = obs_size
    self.seq_len = seq_len
    self.mask_ratio = mask_ratio
    self.mask = mask
    self.n_mask = n_mask
    self.embedding = embedding
    self.embedding_size = obs_size if embedding == "obs" else embedding_dim
    self.norm_loss = norm_loss
    self.axis_name = axis_name
    self.model = MaskedSequenceModel(output_size=self.embedding_size, **(model_kwargs or {}))
    self.optimizer = optax.adam(learning_rate)

  def init(self, key: jax.Array, num_envs: int) -> MimexState:
    model_key, projection_key = jax.random.split(key)
    dummy = jnp.zeros((1, self.seq_len, self.embedding_size))
    keep, _ = random_mask(model_key, 1, self.seq_len, self.mask_ratio)
    params = self.model.init(model_key, dummy, keep)
    projection = None
    if self.embedding == "random_projection":
      projection = jax.nn.initializers.orthogonal()(projection_key,
                                                    (self.obs_size, self.embedding_size))
    return MimexState(
        params=params, opt_state=self.optimizer.init(params), projection=projection,
        history=jnp.zeros((self.seq_len - 1, num_envs, self.obs_size)),
        history_done=jnp.ones((self.seq_len - 1, num_envs)))

  def _sequence_losses(self, params: Any, sequences: jax.Array, key: jax.Array) -> jax.Array:
    """`[N, L, E]` -> `[N]`, averaged over `n_mask` independent maskings. `key` is one key, or
    one per sequence (`[..., 2]` with N rows): then each sequence's masks depend only on its own
    key, not on which other sequences share the batch (or the device)."""
    num = sequences.shape[0]
    tiled = jnp.tile(sequences, (self.n_mask, 1, 1))
    if key.ndim > 1:
      keep, mask = jax.vmap(lambda k: make_mask(self.mask, k, self.n_mask, self.seq_len,
                                                tiled.shape[-1], self.mask_ratio))(
                                                    key.reshape(num, -1))
      # [N, n_mask, ...] -> [n_mask * N, ...], the order of `tiled`
      keep, mask = (x.swapaxes(0, 1).reshape((-1,) + x.shape[2:]) for x in (keep, mask))
    else:
      keep, mask = make_mask(self.mask, key, tiled.shape[0], self.seq_len, tiled.shape[-1],
                             self.mask_ratio)
    inputs = tiled * (1.0 - mask) if mask.ndim == 3 else tiled  # element masks zero entries
    reconstruction = self.model.apply(params, inputs, keep)
    losses = masked_sequence_loss(reconstruction, tiled, mask, self.norm_loss)
    return losses.reshape(self.n_mask, num).mean(axis=0)

  def embed(self, state: MimexState, windows: jax.Array) -> jax.Array:
    """`[..., L, D]` observations -> `[..., L, E]` embeddings (linear, so padding stays zero)."""
    return windows if state.projection is None else windows @ state.projection

  def score_sequences(self, state: MimexState, sequences: jax.Array, key: jax.Array) -> jax.Array:
    """Novelty `[N]` of embedded sequences `[N, L, E]`, without training."""
    return self._sequence_losses(state.params, sequences, key)

  def train_on_sequences(self, state: MimexState, sequences: jax.Array,
                         key: jax.Array) -> Tuple[MimexState, jax.Array, jax.Array]:
    """One Adam step on the mean loss; returns the pre-step per-sequence losses `[N]` too."""
    def loss_fn(params):
      losses = self._sequence_losses(params, sequences, key)
      return losses.mean(), losses

    params, opt_state, losses, loss = online_step(self.optimizer, state.params, state.opt_state,
                                                  loss_fn, self.axis_name)
    return state.replace(params=params, opt_state=opt_state), losses, loss

  def _windows(self, state: MimexState, batch: IntrinsicBatch):
    """Sequences `[T * B, L, E]` and the history to carry into the next rollout."""
    if batch.context is not None:  # sampled from a replay buffer: no rollout history to keep
      windows, history, history_done = batch.context, state.history, state.history_done
    else:
      windows, _, history, history_done = trailing_windows(
          state.history, state.history_done, batch.next_obs, batch.done)
    steps, envs = batch.done.shape
    sequences = self.embed(state, windows).reshape(steps * envs, self.seq_len, -1)
    return sequences, history, history_done

  def reward(self, state: MimexState, batch: IntrinsicBatch, key: jax.Array) -> jax.Array:
    sequences, _, _ = self._windows(state, batch)
    return self.score_sequences(state, sequences, key).reshape(batch.done.shape)

  def update(self, state: MimexState, batch: IntrinsicBatch,
             key: jax.Array) -> Tuple[MimexState, jax.Array, Dict[str, jax.Array]]:
    sequences, history, history_done = self._windows(state, batch)
    state, losses, loss = self.train_on_sequences(state, sequences, key)
    state = state.replace(history=history, history_done=history_done)
    return state, losses.reshape(batch.done.shape), {"intrinsic_loss": loss}
