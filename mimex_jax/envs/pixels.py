"""Pixel observations for any MJX task: a camera renders each state, frames are stacked.

Two renderers sit behind one option:
- `jax`: a pure-JAX camera that casts one ray per pixel with `mjx.ray` and shades the hit geom's
  color with a headlight. It is plain XLA, so it runs under vmap and pmap on CPU, GPU and TPU.
  `mjx.ray` has no cylinder intersection; cylinders are drawn as capsules of the same size.
  Visible sphere and box sites (targets in DM Control's finger tasks) are drawn too.
- `warp`: MuJoCo Warp's batch renderer (`mjx.render`). It needs a Warp model and a render
  context made for a fixed number of worlds, so it renders batches of exactly `num_worlds`
  states (the envs on one device); textures and lights come from the MJCF; sites are not drawn.

Observations are uint8 `[H, W, C * frame_stack]`, oldest frame first (C = 1 gray or 3 RGB).
The backend wrapped must expose its `mujoco.MjModel` and its states their `mjx.Data`: as
`mj_model` and `data` (MuJoCo Playground's and this package's tasks) or as `sys.mj_model` and
`pipeline_state` (Brax's `PipelineEnv` on the `mjx` backend).
"""

import copy
import dataclasses
from typing import Any, Optional, Tuple, Union

from flax import struct
import jax
import jax.numpy as jnp
import mujoco
from mujoco import mjx
import numpy as np

BACKENDS = ("jax", "warp")
_VISIBLE_GROUPS = (1, 1, 1, 0, 0, 0)  # geom groups 0-2, as MuJoCo's viewer shows by default
_AMBIENT = 0.45  # share of a color seen without light; the rest scales with the headlight angle
_BACKGROUND = (0.12, 0.14, 0.18)
# What the Warp renderer reads of a state, copied from the physics' data.
_POSES = ("qpos", "mocap_pos", "mocap_quat", "xpos", "xquat", "xmat", "geom_xpos", "geom_xmat",
          "cam_xpos", "cam_xmat")


@dataclasses.dataclass(frozen=True)
class PixelSpec:
  """What the agent sees. `camera` is a camera name or index into the model's cameras."""
  backend: str = "jax"
  height: int = 64
  width: int = 64
  grayscale: bool = False
  frame_stack: int = 3
  camera: Union[str, int] = 0

  def validate(self) -> None:
    if self.backend not in BACKENDS:
      raise ValueError(f"pixels backend must be one of {BACKENDS}, got {self.backend!r}")
    for field in ("height", "width", "frame_stack"):
      if getattr(self, field) < 1:
        raise ValueError(f"pixels {field} must be >= 1, got {getattr(self, field)}")

  @property
  def channels(self) -> int:
    return 1 if self.grayscale else 3


def camera_id(mj_model: mujoco.MjModel, camera: Union[str, int]) -> int:
  names = [mj_model.camera(i).name for i in range(mj_model.ncam)]
  if isinstance(camera, str) and not camera.lstrip("-").isdigit():
    if camera not in names:
      raise ValueError(f"camera {camera!r} not in the model; its cameras: {names}")
    return names.index(camera)
  index = int(camera)
  if not 0 <= index < mj_model.ncam:
    raise ValueError(f"camera index {index} out of range: the model has {mj_model.ncam} "
                     f"camera(s) {names}")
  return index


def _rgba(mj_model: mujoco.MjModel, rgba: np.ndarray, material_id: np.ndarray) -> np.ndarray:
  """`[N, 4]` colors of geoms or sites: the material's where one is set, else their own."""
  rgba = rgba.copy()
  has_material = material_id >= 0
  rgba[has_material] = mj_model.mat_rgba[material_id[has_material]]
  return rgba.astype(np.float32)


# Geom types as plain ints: mujoco's enum members are not (mujoco 4.0), and a JAX array compared
# with one is never equal to it. NumPy arrays compare with them correctly.
_PLANE, _SPHERE, _CAPSULE, _CYLINDER, _ELLIPSOID, _BOX = (
    int(t) for t in (mujoco.mjtGeom.mjGEOM_PLANE, mujoco.mjtGeom.mjGEOM_SPHERE,
                     mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_CYLINDER,
                     mujoco.mjtGeom.mjGEOM_ELLIPSOID, mujoco.mjtGeom.mjGEOM_BOX))


def _local_normal(geom_type: jax.Array, size: jax.Array, point: jax.Array) -> jax.Array:
  """Outward surface normal at `point` (geom frame) of a geom of `geom_type` and `size`."""
  plane = jnp.array([0.0, 0.0, 1.0])
  sphere = point
  # Capsule and cylinder: away from the nearest point of the axis segment.
  capsule = point - jnp.array([0.0, 0.0, jnp.clip(point[2], -size[1], size[1])])
  ellipsoid = point / jnp.maximum(size, 1e-6) ** 2
  # Box: along the axis of the face the point lies on (the largest relative coordinate).
  relative = jnp.abs(point) / jnp.maximum(size, 1e-6)
  box = jnp.where(jnp.arange(3) == jnp.argmax(relative), jnp.sign(point), 0.0)
  normal = jnp.select(
      [geom_type == _PLANE, geom_type == _SPHERE,
       (geom_type == _CAPSULE) | (geom_type == _CYLINDER), geom_type == _ELLIPSOID,
       geom_type == _BOX],
      [plane, sphere, capsule, ellipsoid, box], jnp.zeros(3))
  return normal / jnp.maximum(jnp.linalg.norm(normal), 1e-9)


def _visible_sites(mj_model: mujoco.MjModel) -> np.ndarray:
  """Ids of the sphere and box sites a viewer shows (groups 0-2, not transparent)."""
  alpha = _rgba(mj_model, mj_model.site_rgba, mj_model.site_matid)[:, 3]
  drawable = np.isin(mj_model.site_type, [mujoco.mjtGeom.mjGEOM_SPHERE, mujoco.mjtGeom.mjGEOM_BOX])
  return np.nonzero(drawable & (mj_model.site_group <= 2) & (alpha > 0))[0]


def _ray_box(origin: jax.Array, direction: jax.Array, half_size: jax.Array) -> jax.Array:
  """Distance along a ray (in the box frame) to an axis-aligned box, inf if it misses."""
  safe = jnp.where(jnp.abs(direction) < 1e-9, 1e-9, direction)
  near = jnp.minimum((-half_size - origin) / safe, (half_size - origin) / safe).max()
  far = jnp.maximum((-half_size - origin) / safe, (half_size - origin) / safe).min()
  return jnp.where((far >= near) & (near > 0), near, jnp.inf)


def _ray_sphere(origin: jax.Array, direction: jax.Array, radius: jax.Array) -> jax.Array:
  half_b = jnp.dot(direction, origin)
  discriminant = half_b ** 2 - (jnp.dot(origin, origin) - radius ** 2)
  distance = -half_b - jnp.sqrt(jnp.maximum(discriminant, 0.0))
  return jnp.where((discriminant >= 0) & (distance > 0), distance, jnp.inf)


class RayCamera:
  """Pure-JAX renderer: `render(data) -> (rgb [H, W, 3] in [0, 1], depth [H, W], geom [H, W])`.

  `depth` is the distance along each ray (0 where nothing is hit), `geom` the id of the geom hit
  (-1 for background). Unbatched; vmap it over envs.
  """

  def __init__(self, mj_model: mujoco.MjModel, camera: Union[str, int], height: int, width: int):
    self.camera = camera_id(mj_model, camera)
    render_model = copy.deepcopy(mj_model)
    cylinders = render_model.geom_type == mujoco.mjtGeom.mjGEOM_CYLINDER
    render_model.geom_type[cylinders] = mujoco.mjtGeom.mjGEOM_CAPSULE
    self._model = mjx.put_model(render_model, impl="jax")
    if mj_model.nmat == 0:  # mjx.ray indexes the material table even when a model has none
      self._model = self._model.replace(mat_rgba=np.ones((1, 4), np.float32))
    self._geom_type = jnp.asarray(mj_model.geom_type)  # true types: cylinder normals as capsule
    self._geom_size = jnp.asarray(mj_model.geom_size)
    self._colors = jnp.asarray(_rgba(mj_model, mj_model.geom_rgba, mj_model.geom_matid)[:, :3])
    sites = _visible_sites(mj_model)
    self._sites = jnp.asarray(sites, jnp.int32)
    self._site_is_box = jnp.asarray(mj_model.site_type[sites] == mujoco.mjtGeom.mjGEOM_BOX)
    self._site_size = jnp.asarray(mj_model.site_size[sites], jnp.float32)
    self._site_colors = jnp.asarray(
        _rgba(mj_model, mj_model.site_rgba, mj_model.site_matid)[sites, :3])
    # Ray directions in the camera frame (MuJoCo cameras look along -z with +y up).
    half_height = np.tan(np.deg2rad(mj_model.cam_fovy[self.camera]) / 2)
    half_width = half_height * width / height
    rows = (1 - 2 * (np.arange(height) + 0.5) / height) * half_height
    cols = (2 * (np.arange(width) + 0.5) / width - 1) * half_width
    grid_y, grid_x = np.meshgrid(rows, cols, indexing="ij")
    directions = np.stack([grid_x, grid_y, -np.ones_like(grid_x)], axis=-1)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    self._directions = jnp.asarray(directions.reshape(-1, 3), jnp.float32)
    self.shape = (height, width)

  def render(self, data: mjx.Data) -> Tuple[jax.Array, jax.Array, jax.Array]:
    origin = data.cam_xpos[self.camera]
    directions = self._directions @ data.cam_xmat[self.camera].reshape(3, 3).T
    cast = jax.vmap(lambda v: mjx.ray(self._model, data, origin, v, _VISIBLE_GROUPS))
    distance, geom = cast(directions)
    hit = geom >= 0
    geom_safe = jnp.maximum(geom, 0)
    points = origin + directions * distance[:, None]
    rotations = data.geom_xmat[geom_safe]  # [P, 3, 3] geom-to-world
    local = jnp.einsum("pji,pj->pi", rotations, points - data.geom_xpos[geom_safe])
    normals = jax.vmap(_local_normal)(self._geom_type[geom_safe], self._geom_size[geom_safe],
                                      local)
    normals = jnp.einsum("pij,pj->pi", rotations, normals)
    colors = self._colors[geom_safe]
    distance = jnp.where(hit, distance, jnp.inf)
    if self._sites.size:  # a site in front of the geom hit takes the pixel
      site_distance, site_normals, site_colors = self._cast_sites(data, origin, directions)
      in_front = site_distance < distance
      distance = jnp.minimum(distance, site_distance)
      normals = jnp.where(in_front[:, None], site_normals, normals)
      colors = jnp.where(in_front[:, None], site_colors, colors)
      geom = jnp.where(in_front, -1, geom)
    light = _AMBIENT + (1 - _AMBIENT) * jnp.abs(jnp.sum(normals * directions, axis=-1))
    seen = jnp.isfinite(distance)
    rgb = jnp.where(seen[:, None], colors * light[:, None], jnp.asarray(_BACKGROUND))
    height, width = self.shape
    return (rgb.reshape(height, width, 3), jnp.where(seen, distance, 0.0).reshape(height, width),
            geom.reshape(height, width))

  def _cast_sites(self, data: mjx.Data, origin: jax.Array, directions: jax.Array):
    """Nearest visible site along each ray: distance `[P]` (inf: none), world normal `[P, 3]`
    and color `[P, 3]`."""
    rotations = data.site_xmat[self._sites].reshape(-1, 3, 3)  # [S, 3, 3] site-to-world
    local_origins = jnp.einsum("sji,sj->si", rotations, origin - data.site_xpos[self._sites])
    local_directions = jnp.einsum("sji,pj->psi", rotations, directions)  # [P, S, 3]

    def distance_to(site_origin, is_box, size, direction):
      return jnp.where(is_box, _ray_box(site_origin, direction, size),
                       _ray_sphere(site_origin, direction, size[0]))

    per_site = jax.vmap(jax.vmap(distance_to), in_axes=(None, None, None, 0))
    distances = per_site(local_origins, self._site_is_box, self._site_size, local_directions)
    nearest = jnp.argmin(distances, axis=1)
    distance = jnp.min(distances, axis=1)
    points = local_origins[nearest] + local_directions[jnp.arange(len(nearest)), nearest] * \
        jnp.where(jnp.isfinite(distance), distance, 0.0)[:, None]
    box_normal = jax.vmap(lambda p, size: _local_normal(
        jnp.asarray(_BOX), size, p))(points, self._site_size[nearest])
    sphere_normal = points / jnp.maximum(jnp.linalg.norm(points, axis=-1, keepdims=True), 1e-9)
    normals = jnp.where(self._site_is_box[nearest][:, None], box_normal, sphere_normal)
    normals = jnp.einsum("pij,pj->pi", rotations[nearest], normals)
    return distance, normals, self._site_colors[nearest]


class WarpCamera:
  """MuJoCo Warp's batch renderer for exactly `num_worlds` states at a time.

  `render(data) -> rgb [H, W, 3] in [0, 1]` is written unbatched and must be vmapped over
  `num_worlds` states. The physics may run on either MJX backend: the renderer copies the poses
  it computed into Warp data (lights follow their bodies; their tracking modes are ignored).
  """

  def __init__(self, mj_model: mujoco.MjModel, camera: Union[str, int], height: int, width: int,
               num_worlds: int, segmentation: bool = False):
    self.camera = camera_id(mj_model, camera)
    self._mj_model = mj_model
    self._model = mjx.put_model(mj_model, impl="warp")
    self._context = mjx.create_render_context(
        mjm=mj_model, nworld=int(num_worlds), cam_res=(width, height), use_textures=True,
        use_shadows=False, render_rgb=(True,), render_depth=(True,), render_seg=segmentation,
        enabled_geom_groups=[0, 1, 2], cam_active=tuple(i == self.camera
                                                        for i in range(mj_model.ncam)))
    self._context_tree = self._context.pytree()
    self.num_worlds = int(num_worlds)
    self.segmentation = segmentation
    self._light_body = jnp.asarray(mj_model.light_bodyid)
    self._light_pos = jnp.asarray(mj_model.light_pos, jnp.float32)
    self._light_dir = jnp.asarray(mj_model.light_dir, jnp.float32)

  def render(self, data: mjx.Data) -> Any:
    # The physics already placed every body, geom and camera; the renderer only needs those
    # poses copied into Warp data (running Warp's own forward pass here would redo the physics).
    poses = {name: getattr(data, name) for name in _POSES}
    warp_data = mjx.make_data(self._mj_model, impl="warp").replace(**poses)
    body = self._light_body
    light_rotation = data.xmat[body]  # [nlight, 3, 3]: lights move with their bodies
    warp_data = warp_data.replace(_impl=warp_data._impl.replace(  # pylint: disable=protected-access
        light_xpos=data.xpos[body] + jnp.einsum("lij,lj->li", light_rotation, self._light_pos),
        light_xdir=jnp.einsum("lij,lj->li", light_rotation, self._light_dir)))
    warp_data = mjx.refit_bvh(self._model, warp_data, self._context_tree)
    if self.segmentation:
      rgb, _, segmentation, _ = mjx.render_with_segmentation(self._model, warp_data,
                                                             self._context_tree)
      return (mjx.get_rgb(self._context_tree, 0, rgb),
              mjx.get_segmentation(self._context_tree, 0, segmentation))
    rgb, _, _ = mjx.render(self._model, warp_data, self._context_tree)
    return mjx.get_rgb(self._context_tree, 0, rgb)


def make_camera(mj_model: mujoco.MjModel, spec: PixelSpec, num_worlds: Optional[int] = None):
  """The renderer `spec` asks for, as a function `data -> rgb [H, W, 3] in [0, 1]`."""
  spec.validate()
  if spec.backend == "jax":
    camera = RayCamera(mj_model, spec.camera, spec.height, spec.width)
    return lambda data: camera.render(data)[0]
  if not num_worlds:
    raise ValueError("the warp pixel backend renders a fixed batch: pass num_worlds, the number "
                     "of envs per device")
  camera = WarpCamera(mj_model, spec.camera, spec.height, spec.width, num_worlds)
  return camera.render


@struct.dataclass
class PixelState:
  inner: Any  # the wrapped backend's state
  frames: jax.Array  # [frame_stack, H, W, C] uint8, oldest first
  obs: jax.Array  # [H, W, C * frame_stack] uint8: the frames side by side on the channel axis

  @property
  def reward(self) -> jax.Array:
    return self.inner.reward

  @property
  def done(self) -> jax.Array:
    return self.inner.done

  @property
  def metrics(self) -> Any:
    return getattr(self.inner, "metrics", {})

  @property
  def data(self) -> mjx.Data:
    return physics_data(self.inner)


def model_of(backend: Any) -> Optional[mujoco.MjModel]:
  """The MuJoCo model of a Playground-style task (`mj_model`) or a Brax one (`sys.mj_model`)."""
  model = getattr(backend, "mj_model", None)
  if model is None:
    model = getattr(getattr(backend, "sys", None), "mj_model", None)
  return model


def physics_data(state: Any) -> mjx.Data:
  """The MJX data of a Playground-style state (`data`) or a Brax one (`pipeline_state`)."""
  return state.data if hasattr(state, "data") else state.pipeline_state


def _stacked(frames: jax.Array) -> jax.Array:
  stack, height, width, channels = frames.shape
  return jnp.moveaxis(frames, 0, 2).reshape(height, width, stack * channels)


class PixelObservations:
  """Wraps a backend so its observations are stacked camera frames.

  A reset fills every stack slot with the first frame, so a new episode never shows frames of
  the previous one.
  """

  def __init__(self, backend: Any, spec: PixelSpec, num_worlds: Optional[int] = None):
    self._mj_model = model_of(backend)
    if self._mj_model is None:
      raise ValueError(f"{type(backend).__name__} has no MuJoCo model (mj_model or "
                       "sys.mj_model): pixel observations need an MJX task (MuJoCo Playground's "
                       "MjxEnv, Brax's PipelineEnv with backend='mjx', or this package's)")
    physics = getattr(backend, "backend", "mjx")  # Brax names its physics pipeline here
    if isinstance(physics, str) and physics != "mjx":
      raise ValueError(f"{type(backend).__name__} runs Brax's {physics!r} pipeline: pixel "
                       "observations need MJX data (backend='mjx')")
    self.backend = backend
    self.spec = spec
    self._camera = make_camera(self._mj_model, spec, num_worlds)
    # The warp renderer can only reset (render) all of one device's envs together.
    self.fixed_batch = int(num_worlds) if spec.backend == "warp" else None

  @property
  def observation_size(self) -> Tuple[int, int, int]:
    return (self.spec.height, self.spec.width, self.spec.channels * self.spec.frame_stack)

  @property
  def action_size(self) -> int:
    return self.backend.action_size

  @property
  def mj_model(self) -> mujoco.MjModel:
    return self._mj_model

  def frame(self, data: mjx.Data) -> jax.Array:
    """`[H, W, C]` uint8 image of one state."""
    rgb = self._camera(data)
    if self.spec.grayscale:
      rgb = rgb @ jnp.array([[0.299], [0.587], [0.114]])  # luma weights
    return jnp.round(jnp.clip(rgb, 0.0, 1.0) * 255).astype(jnp.uint8)

  def reset(self, key: jax.Array) -> PixelState:
    inner = self.backend.reset(key)
    frames = jnp.repeat(self.frame(physics_data(inner))[None], self.spec.frame_stack, axis=0)
    return PixelState(inner=inner, frames=frames, obs=_stacked(frames))

  def advance(self, state: PixelState, action: jax.Array) -> PixelState:
    """Physics only: the frames stay as they were until `observe`. `Env` advances
    `action_repeat` times and observes once, so the stack holds one frame per agent step (as
    DM Control's pixel wrappers do) and a frame is rendered once per agent step."""
    return state.replace(inner=self.backend.step(state.inner, action))

  def observe(self, state: PixelState) -> PixelState:
    """Renders the current state and pushes it onto the stack."""
    frames = jnp.concatenate([state.frames[1:], self.frame(state.data)[None]], axis=0)
    return state.replace(frames=frames, obs=_stacked(frames))

  def step(self, state: PixelState, action: jax.Array) -> PixelState:
    return self.observe(self.advance(state, action))
