"""Pictures of episodes: MuJoCo's own renderer over recorded joint positions, written as GIF.

Rendering runs on the host (OpenGL through EGL or OSMesa when there is no display; the package
sets `MUJOCO_GL=egl` on headless Linux before MuJoCo is imported). Physics runs on the devices;
only joint positions come back, so a video costs one `mj_forward` per frame here.
"""

from typing import Any, Optional, Sequence

import numpy as np


def mujoco_model(env: Any):
  """The `mujoco.MjModel` behind a task (Playground and Brax keep it in different places)."""
  backend = getattr(env, "backend", env)
  if hasattr(backend, "mj_model"):
    return backend.mj_model
  if hasattr(backend, "sys") and hasattr(backend.sys, "mj_model"):
    return backend.sys.mj_model
  raise ValueError(f"{getattr(env, 'name', env)}: no MuJoCo model to render")


def joint_positions(backend_state: Any):
  """`qpos` of a backend state (Playground keeps MJX data in `.data`, Brax in `.pipeline_state`)."""
  if hasattr(backend_state, "data"):
    return backend_state.data.qpos
  return backend_state.pipeline_state.q


def render(model, qpos: np.ndarray, height: int = 120, width: int = 160,
           camera: Optional[str] = None) -> np.ndarray:
  """Frames `[T, height, width, 3]` (uint8) of the joint positions `qpos` `[T, nq]`.

  `camera` defaults to the model's first camera (DM Control tasks frame the scene with it), or
  MuJoCo's free camera when the model has none.
  """
  import mujoco
  if camera is None and model.ncam > 0:
    camera = 0
  data = mujoco.MjData(model)
  try:
    renderer = mujoco.Renderer(model, height, width)
  except Exception as e:  # no OpenGL: say how to get one
    raise RuntimeError(
        f"MuJoCo could not open an OpenGL context ({e}); on a headless Linux machine install "
        f"EGL (apt-get install libegl1) or OSMesa (apt-get install libosmesa6, then "
        f"MUJOCO_GL=osmesa)") from e
  frames = []
  try:
    for positions in qpos:
      data.qpos[:] = positions
      mujoco.mj_forward(model, data)
      renderer.update_scene(data, camera=-1 if camera is None else camera)
      frames.append(renderer.render().copy())
  finally:
    renderer.close()
  return np.stack(frames)


def write_gif(frames: Sequence[np.ndarray], path: str, fps: float = 30.0) -> str:
  """Writes `frames` (uint8 `[H, W, 3]`) as a looping GIF."""
  from PIL import Image
  images = [Image.fromarray(np.asarray(frame)) for frame in frames]
  images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                 duration=max(20, int(round(1000 / fps))))
  return path
