"""Camera frames seen through a frozen encoder: each frame is encoded once, when it is rendered.

A task with pixel observations of one frame (`PixelSpec(frame_stack=1)`) is wrapped so that its
observation is the features of the last `frame_stack` frames, oldest first. A frozen encoder's
features of a frame never change, so encoding it once, inside the env step, gives the policy,
the critic and the intrinsic reward the same vectors with one forward pass per frame (a stack
re-encoded at every step would cost `frame_stack` of them), and the rollout holds float
features instead of frames.

With `proprio` (a function of the physics data, e.g. the arm's joint state), the observation is
the stacked features followed by `proprio(data)` of the current step, as PixMC gives its PPO.
"""

from typing import Any, Callable, Optional

from flax import struct
import jax
import jax.numpy as jnp

from mimex_jax.envs.core import Env


@struct.dataclass
class EncodedState:
  inner: Any  # the pixel backend's state (`PixelState`)
  features: jax.Array  # [frame_stack, F], oldest first
  obs: jax.Array  # [frame_stack * F (+ proprio size)]

  @property
  def reward(self) -> jax.Array:
    return self.inner.reward

  @property
  def done(self) -> jax.Array:
    return self.inner.done

  @property
  def metrics(self) -> Any:
    return self.inner.metrics

  @property
  def data(self) -> Any:
    return self.inner.data


class EncodedFrames:
  """A pixel backend (`PixelObservations` with one frame per observation) whose observations
  are `encode(frame)` of its last `frame_stack` frames; `encode` maps uint8 `[H, W, C]` to
  `[F]`."""

  def __init__(self, pixels: Any, encode: Callable[[jax.Array], jax.Array], feature_size: int,
               frame_stack: int, proprio: Optional[Callable[[Any], jax.Array]] = None,
               proprio_size: int = 0):
    if pixels.spec.frame_stack != 1:
      raise ValueError("EncodedFrames stacks features itself: wrap a pixel env with "
                       f"frame_stack=1, not {pixels.spec.frame_stack}")
    self.pixels = pixels
    self.encode = encode
    self.feature_size = int(feature_size)
    self.frame_stack = int(frame_stack)
    self.proprio = proprio
    self.proprio_size = int(proprio_size) if proprio else 0
    self.fixed_batch = pixels.fixed_batch

  @property
  def features_size(self) -> int:
    """The stacked features' share of the observation (the rest is proprioception)."""
    return self.frame_stack * self.feature_size

  @property
  def observation_size(self) -> int:
    return self.features_size + self.proprio_size

  def _obs(self, features: jax.Array, inner: Any) -> jax.Array:
    if self.proprio is None:
      return features.reshape(-1)
    return jnp.concatenate([features.reshape(-1), self.proprio(inner.data)])

  @property
  def action_size(self) -> int:
    return self.pixels.action_size

  @property
  def mj_model(self):
    return self.pixels.mj_model

  def reset(self, key: jax.Array) -> EncodedState:
    inner = self.pixels.reset(key)
    features = jnp.repeat(self.encode(inner.obs)[None], self.frame_stack, axis=0)
    return EncodedState(inner=inner, features=features, obs=self._obs(features, inner))

  def advance(self, state: EncodedState, action: jax.Array) -> EncodedState:
    return state.replace(inner=self.pixels.advance(state.inner, action))

  def observe(self, state: EncodedState) -> EncodedState:
    inner = self.pixels.observe(state.inner)
    features = jnp.concatenate([state.features[1:], self.encode(inner.obs)[None]], axis=0)
    return EncodedState(inner=inner, features=features, obs=self._obs(features, inner))

  def step(self, state: EncodedState, action: jax.Array) -> EncodedState:
    return self.observe(self.advance(state, action))


def encode_observations(env: Env, encode: Callable[[jax.Array], jax.Array], feature_size: int,
                        frame_stack: int, proprio: Optional[Callable[[Any], jax.Array]] = None,
                        proprio_size: int = 0) -> Env:
  """`env` (pixels, one frame per observation) with encoded, stacked observations (and
  `proprio(data)` after them); time limit, action repeat and success as `env` has them."""
  success_fn = env.success_fn
  return Env(EncodedFrames(env.backend, encode, feature_size, frame_stack, proprio, proprio_size),
             episode_length=env.episode_length, action_repeat=env.action_repeat,
             success_threshold=env.success_threshold, name=env.name,
             success_fn=(lambda state: success_fn(state.inner)) if success_fn else None)
