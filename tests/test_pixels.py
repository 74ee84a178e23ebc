"""Pixel observations: the pure-JAX ray camera and MuJoCo Warp's renderer see the same scene,
images follow the state, and frame stacks restart with each episode."""

import jax
import jax.numpy as jnp
import mujoco
from mujoco import mjx
import numpy as np
import pytest

from mimex_jax import envs
from mimex_jax.envs import VectorEnv
from mimex_jax.envs import pixels

_WORLDS = 4


def _moving_silhouette(mj_model, geom_ids):
  """Pixels that show a geom of a body that can move (not welded to the world)."""
  moving = np.asarray(mj_model.body_weldid[mj_model.geom_bodyid] != 0)
  geom_ids = np.asarray(geom_ids)
  return (geom_ids >= 0) & moving[np.clip(geom_ids, 0, mj_model.ngeom - 1)]


@pytest.mark.parametrize("name", [  # one DM Control model in the fast suite, all in the slow one
    "CartpoleSwingupSparse", pytest.param("AcrobotSwingupSparse", marks=pytest.mark.long),
    "ReachSparse"])
def test_backends_agree_on_what_is_where(name):
  backend = envs.spec(name).build({})
  mj_model = backend.mj_model
  states = jax.jit(jax.vmap(backend.reset))(jax.random.split(jax.random.PRNGKey(3), _WORLDS))
  ray_camera = pixels.RayCamera(mj_model, 0, 48, 64)
  warp_camera = pixels.WarpCamera(mj_model, 0, 48, 64, _WORLDS, segmentation=True)
  ray_rgb, depth, ray_geoms = jax.jit(jax.vmap(ray_camera.render))(states.data)
  warp_rgb, warp_geoms = jax.jit(jax.vmap(warp_camera.render))(states.data)
  ray_mask = _moving_silhouette(mj_model, ray_geoms)
  warp_mask = _moving_silhouette(mj_model, warp_geoms)
  assert ray_mask.sum() > 20, "the moving parts should be in view"
  iou = (ray_mask & warp_mask).sum() / (ray_mask | warp_mask).sum()
  assert iou > 0.9, iou
  assert ray_rgb.shape == warp_rgb.shape == (_WORLDS, 48, 64, 3)
  # Where a geom is hit, the depth is positive; the background (no geom, no site) has depth 0.
  assert (np.asarray(depth)[np.asarray(ray_geoms) >= 0] > 0).all()
  assert (np.asarray(ray_geoms)[np.asarray(depth) == 0] == -1).all()


@pytest.fixture(scope="module")
def cartpole_pixels():
  """One small pixel env (action repeat 2, time limit 4) and its vector envs' jitted steps,
  shared by the tests below: rendering dominates their compiles."""
  spec = pixels.PixelSpec(height=24, width=32, frame_stack=3, grayscale=True)
  env = envs.make("CartpoleSwingupSparse", episode_length=4, obs_type="pixels", pixels=spec,
                  action_repeat=2)
  vector_envs = {pool: VectorEnv(env, 2, reset_pool=pool) for pool in (False, True)}
  steps = {pool: jax.jit(v.step) for pool, v in vector_envs.items()}
  # Jitted resets: run op by op, the renderer's reset took most of a minute.
  resets = {pool: jax.jit(v.reset) for pool, v in vector_envs.items()}
  return env, resets, steps, jax.jit(env.backend.frame)


def test_images_follow_the_state(cartpole_pixels):
  env, _, _, frame = cartpole_pixels
  state = jax.jit(env.reset)(jax.random.PRNGKey(0))
  data = state.inner.inner.data
  moved = data.replace(qpos=data.qpos.at[0].add(0.5).at[1].add(1.0))
  moved = jax.jit(mjx.forward)(env.backend.backend.mjx_model, moved)  # places geoms anew
  same, again, other = frame(data), frame(data), frame(moved)
  assert same.dtype == jnp.uint8 and same.shape == (24, 32, 1)
  np.testing.assert_array_equal(same, again)
  assert int(jnp.sum(same != other)) > 10
  # Lit surfaces shade with the angle between their normal and the ray: gradients over the
  # floor, cart and pole, not one flat tone per color (3 values with the normals all zero).
  assert len(np.unique(np.asarray(same))) >= 20


def test_surface_normals_are_unit_vectors_for_every_geom_type():
  """Normals at points on each shape's surface (geom frame), geom types given as the renderer
  gives them: an int32 JAX array, taken from the model."""
  types = [mujoco.mjtGeom.mjGEOM_PLANE, mujoco.mjtGeom.mjGEOM_SPHERE, mujoco.mjtGeom.mjGEOM_CAPSULE,
           mujoco.mjtGeom.mjGEOM_CYLINDER, mujoco.mjtGeom.mjGEOM_ELLIPSOID,
           mujoco.mjtGeom.mjGEOM_BOX]
  size = np.array([0.5, 1.0, 2.0], np.float32)
  points = np.array([[3.0, -2.0, 0.0],  # anywhere on the plane
                     [0.3, 0.0, 0.4],  # radius 0.5
                     [0.0, 0.5, 0.7],  # on the side of the capsule, inside its axis' length
                     [0.0, -0.5, -0.2],
                     [0.5, 0.0, 0.0],  # the end of the ellipsoid's x semi-axis
                     [0.2, 1.0, 0.5]], np.float32)  # the box's +y face
  expected = np.array([[0, 0, 1], [0.6, 0, 0.8], [0, 1, 0], [0, -1, 0], [1, 0, 0], [0, 1, 0]],
                      np.float32)
  geom_type = jnp.asarray(np.array([int(t) for t in types], np.int32))
  normals = jax.jit(jax.vmap(pixels._local_normal))(
      geom_type, jnp.asarray(np.tile(size, (len(types), 1))), jnp.asarray(points))
  np.testing.assert_allclose(normals, expected, atol=1e-6)


@pytest.mark.long  # a renderer detail on one model (FingerTurnHard's target site)
def test_visible_sites_are_drawn():
  """FingerTurnHard's target is a site on a mocap body: moving only it must change the image."""
  backend = envs.spec("FingerTurnHard").build({})
  camera = pixels.RayCamera(backend.mj_model, 0, 32, 32)
  state = jax.jit(backend.reset)(jax.random.PRNGKey(0))
  target = backend.mj_model.body("target").mocapid[0]
  moved = state.data.replace(mocap_pos=state.data.mocap_pos.at[target, 0].add(0.15))
  moved = jax.jit(mjx.forward)(backend.mjx_model, moved)
  render = jax.jit(camera.render)
  before, after = render(state.data), render(moved)
  changed = np.any(np.asarray(before[0]) != np.asarray(after[0]), axis=-1)
  assert 2 <= changed.sum() < 60  # a small sphere left one place and appeared in another
  np.testing.assert_array_equal(before[2], after[2])  # no geom moved


@pytest.mark.parametrize("reset_pool", [
    False, pytest.param(True, marks=pytest.mark.long)])  # test_envs checks the pool's resets
def test_frame_stack_restarts_with_each_episode(cartpole_pixels, reset_pool):
  env, resets, steps, _ = cartpole_pixels
  reset, step = resets[reset_pool], steps[reset_pool]
  assert env.observation_shape == (24, 32, 3)
  push = jnp.ones((2, env.action_size))
  slots = lambda obs: [np.asarray(obs[0, ..., k]) for k in range(3)]

  state = reset(jax.random.PRNGKey(1))
  assert all(np.array_equal(slots(state.obs)[0], s) for s in slots(state.obs))
  # Mark the stack so that any frame carried over is recognizable: white frames never render.
  marked = jax.jit(lambda s: s.replace(inner=s.inner.replace(
      frames=jnp.full_like(s.inner.frames, 255))))
  for _ in range(2):
    state = step(state, push)
  state = step(marked(state), push)  # step 3 of 4: frames shift left, the new one comes last
  third = slots(state.obs)
  assert (third[0] == 255).all() and (third[1] == 255).all() and not (third[2] == 255).all()

  state = step(marked(state), push)  # step 4 hits the time limit and starts a new episode
  assert float(state.truncated[0]) == 1.0
  fresh = slots(state.obs)
  assert not (fresh[0] == 255).all()
  assert all(np.array_equal(fresh[0], s) for s in fresh)  # only the new episode's first frame
  old = slots(state.final_obs)  # the old episode's last stack still has the carried frames
  assert (old[1] == 255).all() and not (old[2] == 255).all()


def _check_action_repeat(env, state, stepped, frame, channels):
  """With action repeat 2 the stack moves by one frame per agent step, and its newest frame
  shows the state the repeat ended in."""
  assert stepped.obs.dtype == jnp.uint8 and len(np.unique(np.asarray(stepped.obs))) >= 3
  np.testing.assert_array_equal(stepped.obs[..., :-channels], state.obs[..., channels:])
  # Two control steps of physics happened, and the newest frame shows where they ended.
  physics = env.backend.backend  # under the pixel wrapper
  np.testing.assert_allclose(stepped.inner.data.time - state.inner.data.time, 2 * physics.dt,
                             rtol=1e-5)
  np.testing.assert_array_equal(stepped.obs[..., -channels:], frame(stepped.inner.data))


def test_action_repeat_stacks_one_frame_per_agent_step(cartpole_pixels):
  env, resets, steps, frame = cartpole_pixels
  state = resets[False](jax.random.PRNGKey(0))
  stepped = steps[False](state, jnp.ones((2, 1)))
  assert stepped.obs.shape == (2, 24, 32, 3)
  each = lambda data: np.stack([frame(jax.tree.map(lambda x: x[i], data)) for i in range(2)])
  _check_action_repeat(env, state, stepped, each, channels=1)


@pytest.mark.long  # warp's images are checked in the fast suite by the backends' agreement
def test_action_repeat_with_warp_renders_a_batch_of_its_world_count():
  spec = pixels.PixelSpec(backend="warp", height=32, width=32, frame_stack=2)
  env = envs.make("CartpoleSwingupSparse", obs_type="pixels", pixels=spec, num_worlds=_WORLDS,
                  action_repeat=2)
  vector_env = VectorEnv(env, _WORLDS)
  state = vector_env.reset(jax.random.PRNGKey(0))
  stepped = jax.jit(vector_env.step)(state, jnp.ones((_WORLDS, 1)))
  assert stepped.obs.shape == (_WORLDS, 32, 32, 6)
  _check_action_repeat(env, state, stepped, jax.jit(jax.vmap(env.backend.frame)), channels=3)


def test_bad_pixel_options_name_the_fix():
  with pytest.raises(ValueError, match="cameras"):
    envs.make("CartpoleSwingupSparse", obs_type="pixels", pixels=pixels.PixelSpec(camera="nope"))
  with pytest.raises(ValueError, match="num_worlds"):
    envs.make("CartpoleSwingupSparse", obs_type="pixels",
              pixels=pixels.PixelSpec(backend="warp"))
  with pytest.raises(ValueError, match="backend"):
    envs.make("CartpoleSwingupSparse", obs_type="pixels", pixels=pixels.PixelSpec(backend="gl"))
  with pytest.raises(ValueError, match="obs_type"):
    envs.make("CartpoleSwingupSparse", obs_type="rgb")
  env = envs.make("CartpoleSwingupSparse", obs_type="pixels")
  with pytest.raises(ValueError, match="flat state observations"):
    env.observation_size  # noqa: B018  (a learner asking for a vector size gets the reason)
