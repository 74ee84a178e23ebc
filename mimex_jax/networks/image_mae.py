"""A small masked autoencoder of images (He et al., 2022), for a frozen visual encoder.

The paper's PPO reads camera frames through MVP's ViT, pretrained by masked image modeling on
frames of the robots and then frozen. Those weights cannot be downloaded here, so
`mimex_jax.pretrain` trains this model on frames of our own tasks. Images `[N, H, W, C]` uint8
are cut into `patch_size` squares; the encoder sees the kept patches (plus their positions), the
decoder reconstructs every patch's pixels. `encode` runs the encoder on all patches, unmasked,
and returns the features a policy reads.
"""

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mimex_jax.networks.transformer import Block, dense, sinusoidal_positions

POOLS = ("flatten", "mean")


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
  """uint8 `[N, H, W, C]` -> float `[N, (H/p) * (W/p), p * p * C]` in [0, 1], row-major."""
  num, height, width, channels = images.shape
  rows, cols = height // patch_size, width // patch_size
  x = images.astype(jnp.float32) / 255.0
  x = x.reshape(num, rows, patch_size, cols, patch_size, channels)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(num, rows * cols, patch_size * patch_size * channels)


def unpatchify(patches: jax.Array, height: int, width: int, channels: int) -> jax.Array:
  """The inverse of `patchify` (float images, `[N, H, W, C]`)."""
  num, _, size = patches.shape
  patch_size = int(round((size // channels) ** 0.5))
  rows, cols = height // patch_size, width // patch_size
  x = patches.reshape(num, rows, cols, patch_size, patch_size, channels)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(num, height, width, channels)


class ImageMAE(nn.Module):
  """`__call__(images, keep [N, K]) -> [N, P, p*p*C]`: every patch reconstructed from the kept
  ones. `encode(images) -> [N, F]`: the frozen features (F = P * embed_dim with `pool="flatten"`,
  which keeps where things are in the frame; embed_dim with `pool="mean"`)."""
  height: int
  width: int
  channels: int
  patch_size: int = 8
  embed_dim: int = 32
  depth: int = 2
  num_heads: int = 4
  decoder_embed_dim: int = 32
  decoder_depth: int = 1
  decoder_num_heads: int = 4
  mlp_ratio: float = 4.0
  pool: str = "flatten"

  @property
  def num_patches(self) -> int:
    return (self.height // self.patch_size) * (self.width // self.patch_size)

  @property
  def feature_size(self) -> int:
    return self.num_patches * self.embed_dim if self.pool == "flatten" else self.embed_dim

  def setup(self):
    self.patch_embed = dense(self.embed_dim, "patch_embed")
    self.blocks = [Block(self.num_heads, self.mlp_ratio, name=f"blocks_{i}")
                   for i in range(self.depth)]
    self.norm = nn.LayerNorm(epsilon=1e-6, name="norm")
    self.decoder_embed = dense(self.decoder_embed_dim, "decoder_embed")
    self.mask_token = self.param("mask_token", nn.initializers.normal(0.02),
                                 (1, 1, self.decoder_embed_dim))
    self.decoder_blocks = [Block(self.decoder_num_heads, self.mlp_ratio,
                                 name=f"decoder_blocks_{i}") for i in range(self.decoder_depth)]
    self.decoder_norm = nn.LayerNorm(epsilon=1e-6, name="decoder_norm")
    self.decoder_pred = dense(self.patch_size ** 2 * self.channels, "decoder_pred")

  def _encode_tokens(self, images: jax.Array, keep=None) -> jax.Array:
    x = self.patch_embed(patchify(images, self.patch_size))
    x = x + sinusoidal_positions(self.num_patches, self.embed_dim).astype(x.dtype)
    if keep is not None:  # only the visible patches are encoded
      x = jnp.take_along_axis(x, keep[..., None], axis=1)
    for block in self.blocks:
      x = block(x)
    return self.norm(x)

  def encode(self, images: jax.Array) -> jax.Array:
    """uint8 `[..., H, W, C]` -> `[..., F]`."""
    batch_shape = images.shape[:-3]
    tokens = self._encode_tokens(images.reshape((-1,) + images.shape[-3:]))
    features = (tokens.reshape(tokens.shape[0], -1) if self.pool == "flatten"
                else tokens.mean(axis=1))
    return features.reshape(batch_shape + features.shape[-1:])

  def __call__(self, images: jax.Array, keep: jax.Array) -> jax.Array:
    num = images.shape[0]
    x = self.decoder_embed(self._encode_tokens(images, keep))
    tokens = jnp.broadcast_to(self.mask_token, (num, self.num_patches, self.decoder_embed_dim))
    tokens = tokens.at[jnp.arange(num)[:, None], keep].set(x)
    tokens = tokens + sinusoidal_positions(self.num_patches,
                                           self.decoder_embed_dim).astype(x.dtype)
    for block in self.decoder_blocks:
      tokens = block(tokens)
    return self.decoder_pred(self.decoder_norm(tokens))


def random_keep(key: jax.Array, num: int, num_patches: int, mask_ratio: float) -> jax.Array:
  """`[num, K]` indices of the patches each image keeps visible, K = num_patches * (1 - ratio),
  at least one."""
  num_kept = max(1, int(num_patches * (1.0 - mask_ratio)))
  order = jax.vmap(lambda k: jax.random.permutation(k, num_patches))(jax.random.split(key, num))
  return order[:, :num_kept]


def normalize_patches(patches: jax.Array) -> jax.Array:
  """Each patch standardized over its pixels (MAE's `norm_pix_loss`): a uniform patch of
  background becomes zeros, so the loss is spent on the patches where something is drawn."""
  mean = patches.mean(axis=-1, keepdims=True)
  var = patches.var(axis=-1, keepdims=True)
  return (patches - mean) / jnp.sqrt(var + 1e-6)


def reconstruction_loss(model: ImageMAE, params, images: jax.Array, keep: jax.Array,
                        norm_pix: bool = False,
                        visible_weight: float = 0.0) -> Tuple[jax.Array, jax.Array]:
  """Mean squared error over the hidden patches (of standardized patches with `norm_pix`),
  and the reconstructed patches. With `visible_weight` > 0 the visible patches' error counts
  too, at that weight per patch: their tokens then have to keep their own patch's content (a
  thin pole's exact angle), not only what predicts the hidden ones."""
  prediction = model.apply(params, images, keep)
  target = patchify(images, model.patch_size)
  if norm_pix:
    target = normalize_patches(target)
  hidden = jnp.ones(target.shape[:2]).at[jnp.arange(images.shape[0])[:, None], keep].set(0.0)
  error = jnp.mean(jnp.square(prediction - target), axis=-1)
  weight = hidden + visible_weight * (1.0 - hidden)
  return jnp.sum(error * weight) / jnp.maximum(jnp.sum(weight), 1.0), prediction
