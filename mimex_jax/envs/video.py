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
           camera: Optional[str] = None, mocap_pos: Optional[np.ndarray] = None) -> np.ndarray:
  """Frames `[T, height, width, 3]` (uint8) of the joint positions `qpos` `[T, nq]`.

  `mocap_pos` `[T, nmocap, 3]` places mocap bodies (goal markers, targets) where given.
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
    for t, positions in enumerate(qpos):
      data.qpos[:] = positions
      if mocap_pos is not None:
        data.mocap_pos[:] = mocap_pos[t]
      mujoco.mj_forward(model, data)
      renderer.update_scene(data, camera=-1 if camera is None else camera)
      frames.append(renderer.render().copy())
  finally:
    renderer.close()
  return np.stack(frames)


def write_video(frames: Sequence[np.ndarray], path: str, fps: float = 30.0) -> str:
  """Writes `frames` as GIF, or as MP4 through an `ffmpeg` found on the PATH."""
  if path.endswith(".gif"):
    return write_gif(frames, path, fps)
  if not path.endswith(".mp4"):
    raise ValueError(f"{path}: a video is written as .gif or .mp4")
  import shutil
  import subprocess
  ffmpeg = shutil.which("ffmpeg")
  if ffmpeg is None:
    raise RuntimeError(f"{path}: writing MP4 needs ffmpeg on the PATH (apt-get install ffmpeg); "
                       "or write a .gif")
  height, width = frames[0].shape[:2]
  command = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
             "-s", f"{width}x{height}", "-r", str(fps), "-i", "-", "-pix_fmt", "yuv420p",
             "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", path]
  subprocess.run(command, input=np.ascontiguousarray(np.stack(frames)).tobytes(), check=True)
  return path


def write_gif(frames: Sequence[np.ndarray], path: str, fps: float = 30.0) -> str:
  """Writes `frames` (uint8 `[H, W, 3]`) as a looping GIF."""
  from PIL import Image
  images = [Image.fromarray(np.asarray(frame)) for frame in frames]
  images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                 duration=max(20, int(round(1000 / fps))))
  return path
