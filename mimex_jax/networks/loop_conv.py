"""A VALID 2-D convolution whose gradients are forward convolutions, for XLA's CPU backend.

Inside a loop (`lax.scan` with `unroll=1`) XLA's CPU backend runs the gradient convolutions it
derives for a convolution 6-11x slower than written out (jax 0.10.2, 2 cores, alone,
`experiments/conv_cpu.py`: over 8 x 128 maps of 15x15x32, a 3x3 conv's kernel gradient took
2.95 s in a loop against 0.27 s written out, its input gradient 0.89 s against 0.14 s), while
a forward convolution runs as fast in a loop as written out. So DrQ's learner updates were
written out on CPU, one copy of the encoder's backward pass per update, and compiling them took
minutes and gigabytes. Here both gradients are forward convolutions of the same sizes: the
kernel gradient convolves the input, channels as the batch and the batch as channels, with the
output gradient as a kernel (dilated by the stride); the input gradient convolves the output
gradient (dilated by the stride, padded by the kernel size less one) with the flipped kernel.
They take 0.25 s and 0.13 s in the same loop, as written out. The numbers are the same
convolutions summed in another order: equal up to float rounding.
"""

import functools
from typing import Callable, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

_DIMS = ("NHWC", "HWIO", "NHWC")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_valid(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """`[N, H, W, I]` x `[kh, kw, I, O]` -> `[N, H', W', O]`, VALID padding, `stride` both ways."""
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                      dimension_numbers=_DIMS)


def _forward(x, kernel, stride):
  return conv_valid(x, kernel, stride), (x, kernel)


def _backward(stride, residuals, out_grad):
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  height, width = x.shape[1:3]
  # The input rows and columns the output reads (a stride can leave the last ones out).
  used_h = (out_grad.shape[1] - 1) * stride + kh
  used_w = (out_grad.shape[2] - 1) * stride + kw
  # Kernel gradient: sum over n, h, w of x[n, s*h + i, s*w + j, c] * g[n, h, w, o], a forward
  # convolution of x's channels (as its batch) over its batch (as channels) with g as the kernel.
  images = jnp.transpose(x[:, :used_h, :used_w], (3, 1, 2, 0))  # [I, H, W, N]
  grads = jnp.transpose(out_grad, (1, 2, 0, 3))  # [H', W', N, O]
  kernel_grad = jax.lax.conv_general_dilated(images, grads, (1, 1), "VALID",
                                             rhs_dilation=(stride, stride),
                                             dimension_numbers=_DIMS)  # [I, kh, kw, O]
  kernel_grad = jnp.transpose(kernel_grad, (1, 2, 0, 3)).astype(kernel.dtype)
  # Input gradient: g spread out by the stride, padded, convolved with the flipped kernel.
  flipped = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))  # [kh, kw, O, I]
  padding = ((kh - 1, kh - 1 + height - used_h), (kw - 1, kw - 1 + width - used_w))
  x_grad = jax.lax.conv_general_dilated(out_grad, flipped, (1, 1), padding,
                                        lhs_dilation=(stride, stride),
                                        dimension_numbers=_DIMS).astype(x.dtype)
  return x_grad, kernel_grad


conv_valid.defvjp(_forward, _backward)


class LoopConv(nn.Module):
  """`flax.linen.Conv` with VALID padding and a bias (the same parameters, initialized alike
  under the same module name) whose backward pass is `conv_valid`'s."""
  features: int
  kernel_size: Tuple[int, int] = (3, 3)
  strides: int = 1
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1], self.features))
    bias = self.param("bias", self.bias_init, (self.features,))
    return conv_valid(x, kernel, self.strides) + bias
