r"""How XLA's CPU backend runs DrQ's conv encoder: forward passes by batch size, in a loop or
written out, and a conv's gradients in a loop or written out, XLA's and `conv_valid`'s (forward
convolutions; mimex_jax/networks/loop_conv.py) (docs/PERFORMANCE.md, issue 25).

  python experiments/conv_cpu.py          # 32x32x9 frames (the CPU pixel variants), 2 cores

Prints milliseconds per call (after a compiling call), 3 calls each. Run it alone.
"""

import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mimex_jax.agents.drq.networks import PixelEncoder  # noqa: E402
from mimex_jax.networks.loop_conv import conv_valid  # noqa: E402

DIMS = ("NHWC", "HWIO", "NHWC")


def per_call_ms(fn, *args, repeats=3):
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats * 1000


def main():
  encoder = PixelEncoder()
  frames = jax.random.randint(jax.random.PRNGKey(0), (5120, 32, 32, 9), 0, 255).astype(jnp.uint8)
  params = encoder.init(jax.random.PRNGKey(1), frames[:1])
  embed = lambda p, x: encoder.apply(p, x)  # noqa: E731
  print("forward passes")
  for count in (640, 5120):
    one = per_call_ms(jax.jit(embed), params, frames[:count])
    print(f"  {count:>5} frames in one batch            {one:9.1f} ms")
    for chunk in (16, 128):
      mapped = jax.jit(lambda p, x, c=chunk: jax.lax.map(
          lambda part: embed(p, part), x.reshape((-1, c) + x.shape[1:])))
      written = jax.jit(lambda p, x, c=chunk: [embed(p, x[i:i + c])
                                               for i in range(0, x.shape[0], c)])
      mapped_ms = per_call_ms(mapped, params, frames[:count])
      print(f"  {count:>5} frames, lax.map over {chunk:>3}     {mapped_ms:9.1f} ms")
      if count == 640:
        print(f"  {count:>5} frames, {count // chunk:>2} written-out batches "
              f"{per_call_ms(written, params, frames[:count]):9.1f} ms")
  print("gradients of one 3x3 conv, 32 -> 32 channels, 8 batches of 128 x 15x15")
  inputs = jax.random.normal(jax.random.PRNGKey(2), (8, 128, 15, 15, 32))
  kernel = jax.random.normal(jax.random.PRNGKey(3), (3, 3, 32, 32)) * 0.1
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "VALID",  # noqa: E731
                                                   dimension_numbers=DIMS)
  ours = lambda x, k: conv_valid(x, k, 1)  # noqa: E731  (gradients as forward convolutions)

  def gradient(conv_fn, argnum):
    def body(carry, x):
      return carry, jax.grad(lambda x, k: jnp.sum(conv_fn(x, k) ** 2), argnum)(x, kernel)
    return body

  def patch_grad(carry, x):  # the kernel gradient as image patches times the output gradient
    out_grad = 2 * conv(x, kernel)
    patches = jax.lax.conv_general_dilated_patches(x, (3, 3), (1, 1), "VALID",
                                                   dimension_numbers=DIMS)
    return carry, jnp.einsum("nhwp,nhwo->po", patches, out_grad)

  rows = (("kernel", "XLA's", gradient(conv, 1)), ("kernel", "patches x output grad", patch_grad),
          ("kernel", "conv_valid's", gradient(ours, 1)), ("input", "XLA's", gradient(conv, 0)),
          ("input", "conv_valid's", gradient(ours, 0)))
  for what, name, body in rows:
    for unroll, how in ((1, "in a loop"), (8, "written out")):
      fn = jax.jit(lambda x, b=body, u=unroll: jax.lax.scan(b, 0.0, x, unroll=u)[1])
      print(f"  {what:<6} {name:<22} {how:<12} {per_call_ms(fn, inputs):9.1f} ms")


if __name__ == "__main__":
  main()
