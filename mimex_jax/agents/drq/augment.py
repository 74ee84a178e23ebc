"""DrQ's random-shift augmentation: pad the image by repeating its border, crop back to the
original size at a random offset. Each image gets its own integer shift in [-pad, pad] per axis;
each frame sequence (MIMEx's sampled contexts) one shift shared by all its frames.
"""

import jax
import jax.numpy as jnp


def random_shift(key: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
  """`images` `[N, H, W, C]` -> the same shape, each shifted by up to `pad` pixels."""
  if images.ndim != 4:
    raise ValueError(f"random_shift takes [N, H, W, C] images, got shape {images.shape}")
  if pad == 0:
    return images
  num, height, width, channels = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
  offsets = jax.random.randint(key, (num, 2), 0, 2 * pad + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

  return jax.vmap(crop)(padded, offsets)


def random_shift_sequences(key: jax.Array, sequences: jax.Array, pad: int = 4) -> jax.Array:
  """`sequences` `[N, T, H, W, C]` -> the same shape, each sequence's T frames shifted by ONE
  offset of up to `pad` pixels (the frames are shifted as channels of one image, as the MIMEx
  reference shifts its `[N, T*C, H, W]` view), so motion within a sequence is kept."""
  if sequences.ndim != 5:
    raise ValueError(f"random_shift_sequences takes [N, T, H, W, C] sequences, got shape "
                     f"{sequences.shape}")
  num, length, height, width, channels = sequences.shape
  images = jnp.moveaxis(sequences, 1, 3).reshape(num, height, width, length * channels)
  shifted = random_shift(key, images, pad)
  return jnp.moveaxis(shifted.reshape(num, height, width, length, channels), 3, 1)
