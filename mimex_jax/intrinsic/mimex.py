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

  `__call__(sequences [N, L, D], keep [N, K], predict [N, P] or None) -> [N, P or L, D]`:
  the reconstruction at the positions `predict` (by default all of them). Asking only for the
  masked positions, which is all the loss needs, skips the decoder's last MLP, LayerNorm and
  output layer at the other tokens. Parameter names follow the reference's modules
  (`encoder_embed`, `blocks_i`, `norm`, `decoder_embed`, `decoder_blocks_i`, `decoder_norm`,
  `decoder_pred`), so `reference.py` maps its weights one to one.
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
  def __call__(self, sequences: jax.Array, keep: jax.Array,
               predict: Optional[jax.Array] = None) -> jax.Array:
    num, length, _ = sequences.shape
    token_init = nn.initializers.normal(0.02)
    x = dense(self.embed_dim, "encoder_embed")(sequences)
    x = x + sinusoidal_positions(length, self.embed_dim).astype(x.dtype)
    x = jnp.take_along_axis(x, keep[..., None], axis=1)  # only visible positions are encoded
    if self.use_cls:  # the CLS token gets no position encoding
      cls = self.param("cls_token", token_init, (1, 1, self.embed_dim)).astype(x.dtype)
      x = jnp.concatenate([jnp.broadcast_to(cls, (num, 1, self.embed_dim)), x], axis=1)
    for i in range(self.depth):
      x = Block(self.num_heads, self.mlp_ratio, name=f"blocks_{i}")(x)
    x = nn.LayerNorm(epsilon=1e-6, name="norm")(x)
    x = dense(self.decoder_embed_dim, "decoder_embed")(x)

    mask_token = self.param("mask_token", token_init, (1, 1, self.decoder_embed_dim))
    tokens = jnp.broadcast_to(mask_token.astype(x.dtype), (num, length, self.decoder_embed_dim))
    visible = x[:, 1:] if self.use_cls else x
    tokens = tokens.at[jnp.arange(num)[:, None], keep].set(visible)  # back to original order
    tokens = tokens + sinusoidal_positions(length, self.decoder_embed_dim).astype(x.dtype)
    offset = 0
    if self.use_cls:
      tokens = jnp.concatenate([x[:, :1], tokens], axis=1)
      offset = 1
    for i in range(self.decoder_depth):
      last = i == self.decoder_depth - 1
      query_index = predict + offset if (last and predict is not None) else None
      tokens = Block(self.decoder_num_heads, self.mlp_ratio, name=f"decoder_blocks_{i}")(
          tokens, query_index)
    if predict is None or self.decoder_depth == 0:
      tokens = tokens[:, offset:]
      if predict is not None:
        tokens = jnp.take_along_axis(tokens, predict[..., None], axis=1)
    tokens = nn.LayerNorm(epsilon=1e-6, name="decoder_norm")(tokens)
    return dense(self.output_size, "decoder_pred")(tokens)


def normalize_targets(target: jax.Array) -> jax.Array:
  """`norm_loss`: each position's target standardized over its D features, with the sample
  variance (divided by D - 1), as the reference's `torch.var` computes it."""
  mean = target.mean(axis=-1, keepdims=True)
  var = target.var(axis=-1, keepdims=True, ddof=1)
  return (target - mean) / jnp.sqrt(var + 1e-6)


def masked_sequence_loss(reconstruction: jax.Array, target: jax.Array, mask: jax.Array,
                         norm_loss: bool = False) -> jax.Array:
  """Per-sequence loss `[N]` over the hidden parts only.

  With a position mask `[N, L]`: squared error averaged over D, then over masked positions.
  With an element mask `[N, L, D]`: squared error averaged over the masked entries.
  """
  if norm_loss:
    target = normalize_targets(target)
  if mask.ndim == 3:
    error = jnp.square(reconstruction - target)
    return jnp.sum(error * mask, axis=(1, 2)) / jnp.maximum(jnp.sum(mask, axis=(1, 2)), 1.0)
  error = jnp.mean(jnp.square(reconstruction - target), axis=-1)
  return jnp.sum(error * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


def masked_positions(mask: jax.Array, num_masked: int) -> jax.Array:
  """`[N, L]` position mask -> `[N, num_masked]` indices of its hidden positions, in order."""
  return jnp.argsort(1.0 - mask, axis=1, stable=True)[:, :num_masked]


@struct.dataclass
class MimexState:
  params: Any
  opt_state: Any
  projection: Optional[jax.Array]  # fixed [D, E] random projection, or None (embed = obs)
  history: jax.Array  # [L-1, B, D] last observations of the previous rollout
  history_done: jax.Array  # [L-1, B]


WINDOW_ENDS = ("obs", "next_obs")
_ORDER_SALT = 7  # keeps the training-share draw apart from the mask draw of the same key


class Mimex:
  """MIMEx: `mask_ratio` of each sequence hidden by the mask distribution `mask` (see
  `masking.py`: random, elementwise, last, block).

  `window_end` picks the window that scores step t: the `seq_len` observations ending at `obs`
  (the one the action was taken in: the reference's) or at `next_obs` (the one it led to).
  `train_fraction` < 1 trains the model on that share of the rollout's sequences (chosen at
  random, per env over its time steps) while every sequence is still scored by a forward pass
  of the same pre-update parameters; 1.0 trains on all of them, as the reference does.
  """
  sampled_inputs = ("context",)  # see base.IntrinsicReward

  def __init__(self, obs_size: int, seq_len: int = 5, mask_ratio: float = 0.7, n_mask: int = 1,
               mask: str = "random",
               learning_rate: float = 1e-4, embedding: str = "obs", embedding_dim: int = 64,
               norm_loss: bool = False, window_end: str = "obs", train_fraction: float = 1.0,
               model_kwargs: Optional[Dict[str, Any]] = None, axis_name: Optional[str] = None):
    if embedding not in ("obs", "random_projection"):
      raise ValueError(f"embedding must be 'obs' or 'random_projection', got {embedding!r}")
    if window_end not in WINDOW_ENDS:
      raise ValueError(f"window_end must be one of {WINDOW_ENDS}, got {window_end!r}")
    if not 0.0 < train_fraction <= 1.0:
      raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction!r}")
    self.obs_size = obs_size
    self.seq_len = seq_len
    self.mask_ratio = mask_ratio
    self.mask = mask
    self.n_mask = n_mask
    self.embedding = embedding
    self.embedding_size = obs_size if embedding == "obs" else embedding_dim
    if norm_loss and self.embedding_size < 2:
      raise ValueError("norm_loss standardizes each position over its features and needs at "
                       f"least 2 of them, got {self.embedding_size}")
    self.norm_loss = norm_loss
    self.window_end = window_end
    self.train_fraction = train_fraction
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

  def masks(self, key: jax.Array, num: int) -> Tuple[jax.Array, jax.Array]:
    """`(keep [n_mask, N, K], mask [n_mask, N, L] or [n_mask, N, L, E])` for N sequences.
    `key` is one key, or one per sequence (`[..., 2]` with N rows): then each sequence's masks
    depend only on its own key, not on which other sequences share the batch (or the
    device)."""
    def draw(draw_key, rows):
      return make_mask(self.mask, draw_key, rows, self.seq_len, self.embedding_size,
                       self.mask_ratio)

    if key.ndim > 1:
      keep, mask = jax.vmap(lambda k: draw(k, self.n_mask))(key.reshape(num, -1))
      return keep.swapaxes(0, 1), mask.swapaxes(0, 1)  # [N, n_mask, ...] -> [n_mask, N, ...]
    keep, mask = draw(key, self.n_mask * num)
    return (keep.reshape((self.n_mask, num) + keep.shape[1:]),
            mask.reshape((self.n_mask, num) + mask.shape[1:]))

  def sequence_losses(self, params: Any, sequences: jax.Array, keep: jax.Array,
                      mask: jax.Array) -> jax.Array:
    """`[N, L, E]` sequences and their `masks` -> per-sequence losses `[N]`, averaged over the
    `n_mask` maskings. Position masks hide a fixed number of positions, so only those are
    reconstructed."""
    num = sequences.shape[0]
    tiled = jnp.broadcast_to(sequences, (self.n_mask,) + sequences.shape)
    tiled = tiled.reshape((-1,) + sequences.shape[1:])
    # Explicit sizes: with mask_ratio near 1 no position is kept (`keep` `[n_mask, N, 0]`), and
    # a -1 cannot be inferred from an empty array.
    keep = keep.reshape((self.n_mask * num,) + keep.shape[2:])
    mask = mask.reshape((self.n_mask * num,) + mask.shape[2:])
    if mask.ndim == 3:  # element masks zero the hidden entries; every position is predicted
      reconstruction = self.model.apply(params, tiled * (1.0 - mask), keep)
      losses = masked_sequence_loss(reconstruction, tiled, mask, self.norm_loss)
    else:
      predict = masked_positions(mask, self.seq_len - keep.shape[1])
      reconstruction = self.model.apply(params, tiled, keep, predict)
      target = jnp.take_along_axis(tiled, predict[..., None], axis=1)
      if self.norm_loss:
        target = normalize_targets(target)
      losses = jnp.mean(jnp.square(reconstruction - target), axis=(1, 2))
    return losses.reshape(self.n_mask, num).mean(axis=0)

  def embed(self, state: MimexState, windows: jax.Array) -> jax.Array:
    """`[..., L, D]` observations -> `[..., L, E]` embeddings (linear, so padding stays zero)."""
    return windows if state.projection is None else windows @ state.projection

  def score_sequences(self, state: MimexState, sequences: jax.Array, key: jax.Array) -> jax.Array:
    """Novelty `[N]` of embedded sequences `[N, L, E]`, without training."""
    keep, mask = self.masks(key, sequences.shape[0])
    return self.sequence_losses(state.params, sequences, keep, mask)

  def train_on_sequences(self, state: MimexState, sequences: jax.Array, key: jax.Array,
                         steps: Optional[int] = None) -> Tuple[MimexState, jax.Array, jax.Array]:
    """One Adam step on the mean loss of the trained share of `sequences` `[N, L, E]`; returns
    every sequence's pre-step loss `[N]` and the trained mean. `steps`: the sequences are
    `[steps, N // steps]` time-major rows of a rollout, and the share is drawn per column (env)
    over its steps, so which rows train does not depend on how envs are split over devices;
    None: the rows are independent samples (a replay batch) and the first share trains."""
    num = sequences.shape[0]
    keep, mask = self.masks(key, num)
    if self.train_fraction >= 1.0:
      def loss_fn(params):
        losses = self.sequence_losses(params, sequences, keep, mask)
        return losses.mean(), losses
      params, opt_state, losses, loss = online_step(self.optimizer, state.params,
                                                    state.opt_state, loss_fn, self.axis_name)
      return state.replace(params=params, opt_state=opt_state), losses, loss

    order = self._training_order(key, num, steps)
    trained = max(1, int(round(self.train_fraction * order.shape[0])))
    rows = order.reshape(-1)  # trained rows first, then the rest
    trained_rows, rest_rows = rows[:trained * order.shape[1]], rows[trained * order.shape[1]:]

    def loss_fn(params):
      losses = self.sequence_losses(params, sequences[trained_rows],
                                    keep[:, trained_rows], mask[:, trained_rows])
      return losses.mean(), losses

    params, opt_state, trained_losses, loss = online_step(
        self.optimizer, state.params, state.opt_state, loss_fn, self.axis_name)
    rest_losses = self.sequence_losses(state.params, sequences[rest_rows],
                                       keep[:, rest_rows], mask[:, rest_rows])
    losses = jnp.zeros((num,), trained_losses.dtype).at[rows].set(
        jnp.concatenate([trained_losses, jax.lax.stop_gradient(rest_losses)]))
    return state.replace(params=params, opt_state=opt_state), losses, loss

  def _training_order(self, key: jax.Array, num: int, steps: Optional[int]) -> jax.Array:
    """Row indices `[steps, columns]`: each column's rows in a random order (row r of a
    column trains if r < the trained count)."""
    if steps is None:  # independent samples: their order is already random
      return jnp.arange(num)[:, None]
    columns = num // steps
    if key.ndim > 1:  # one key per row: each column's order from its first row's key
      column_keys = jax.vmap(lambda k: jax.random.fold_in(k, _ORDER_SALT))(
          key.reshape(steps, columns, -1)[0])
    else:
      column_keys = jax.random.split(jax.random.fold_in(key, _ORDER_SALT), columns)
    step_order = jax.vmap(lambda k: jax.random.permutation(k, steps))(column_keys)  # [C, U]
    return step_order.T * columns + jnp.arange(columns)[None, :]

  def _windows(self, state: MimexState, batch: IntrinsicBatch):
    """Sequences `[T * B, L, E]` and the history to carry into the next rollout."""
    if batch.context is not None:  # sampled from a replay buffer: no rollout history to keep
      windows, history, history_done = batch.context, state.history, state.history_done
    else:
      ends = batch.obs if self.window_end == "obs" else batch.next_obs
      windows, _, history, history_done = trailing_windows(
          state.history, state.history_done, ends, batch.done)
    steps, envs = batch.done.shape
    sequences = self.embed(state, windows).reshape(steps * envs, self.seq_len, -1)
    return sequences, history, history_done

  def reward(self, state: MimexState, batch: IntrinsicBatch, key: jax.Array) -> jax.Array:
    sequences, _, _ = self._windows(state, batch)
    return self.score_sequences(state, sequences, key).reshape(batch.done.shape)

  def update(self, state: MimexState, batch: IntrinsicBatch,
             key: jax.Array) -> Tuple[MimexState, jax.Array, Dict[str, jax.Array]]:
    sequences, history, history_done = self._windows(state, batch)
    steps = batch.done.shape[0]
    state, losses, loss = self.train_on_sequences(
        state, sequences, key, steps=steps if batch.context is None and steps > 1 else None)
    state = state.replace(history=history, history_done=history_done)
    return state, losses.reshape(batch.done.shape), {"intrinsic_loss": loss}
