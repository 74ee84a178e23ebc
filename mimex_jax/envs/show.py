r"""Look at a task: a few steps of a random (or scripted) policy, as a picture or a video.

  python -m mimex_jax.envs.show PushSparse --out=push.png
  python -m mimex_jax.envs.show CartpoleSwingupSparse --pixels --backend=warp --out=cartpole.gif

A `.png` is a strip of frames spread over the steps; `.gif` or `.mp4` (with ffmpeg) is the whole
clip. The top row is MuJoCo's own renderer; with `--pixels` the row below is what the agent sees
(the newest frame of its stack, scaled up without smoothing). `--list` prints the task names;
`--imports=my_tasks` imports the module that registers your own first.
"""

import os
import sys
import tempfile
from typing import Dict, Optional

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from mimex_jax import envs
from mimex_jax.envs import pixels as pixel_obs
from mimex_jax.envs import video

_OUT = flags.DEFINE_string("out", None, "Where to write: .png (frame strip), .gif or .mp4.")
_STEPS = flags.DEFINE_integer("steps", 60, "Environment steps to run.")
_POLICY = flags.DEFINE_enum("policy", "random", ["random", "scripted", "zero"],
                            "random: uniform actions; scripted: the task's solver (manipulation "
                            "tasks); zero: no action.")
_PIXELS = flags.DEFINE_boolean("pixels", False, "Also show the agent's pixel observations.")
_BACKEND = flags.DEFINE_enum("backend", "jax", list(pixel_obs.BACKENDS), "Pixel renderer.")
_SIZE = flags.DEFINE_integer("size", 64, "Side of the agent's square image.")
_GRAYSCALE = flags.DEFINE_boolean("grayscale", False, "Gray agent images.")
_CAMERA = flags.DEFINE_string("camera", "0", "Camera name or index, for both rows.")
_FRAMES = flags.DEFINE_integer("frames", 6, "Frames in a .png strip.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the reset and the random actions.")
_LIST = flags.DEFINE_boolean("list", False, "Print the registered task names and exit.")
_IMPORTS = flags.DEFINE_string("imports", "", "Modules that register your own tasks "
                               "(comma-separated), imported first: a config's env.imports.")


def record(name: str, steps: int, policy: str, spec=None, seed: int = 0) -> Dict[str, np.ndarray]:
  """Runs one env for `steps` steps: `qpos` `[T + 1, nq]`, `mocap_pos`, `reward` `[T]`, and
  with `spec` the agent's newest frames `pixels` `[T + 1, H, W, C]`."""
  env = envs.make(name, obs_type="pixels" if spec else "state", pixels=spec, num_worlds=1)
  vector_env = envs.VectorEnv(env, 1)
  if policy == "scripted":
    from mimex_jax.envs import manipulation
    solve = manipulation.scripted_policy(name)
    inner_state = (lambda s: s.inner.inner) if spec else (lambda s: s.inner)
    act = lambda state, key: jax.vmap(solve)(inner_state(state))
  elif policy == "random":
    act = lambda state, key: jax.random.uniform(key, (1, env.action_size), minval=-1, maxval=1)
  else:
    act = lambda state, key: jnp.zeros((1, env.action_size))
  data_of = ((lambda s: pixel_obs.physics_data(s.inner.inner)) if spec
             else (lambda s: pixel_obs.physics_data(s.inner)))

  def snapshot(state):
    data = data_of(state)
    out = {"qpos": data.qpos[0], "mocap_pos": data.mocap_pos[0]}
    if spec:
      out["pixels"] = state.obs[0, ..., -spec.channels:]
    return out

  @jax.jit
  def run(key):
    start = vector_env.reset(key)
    def body(state, key):
      state = vector_env.step(state, act(state, key))
      return state, {**snapshot(state), "reward": state.reward[0]}
    _, trace = jax.lax.scan(body, start, jax.random.split(jax.random.fold_in(key, 1), steps))
    first = snapshot(start)
    return {k: jnp.concatenate([first[k][None], v]) if k in first else v
            for k, v in trace.items()}

  return {k: np.asarray(v) for k, v in run(jax.random.PRNGKey(seed)).items()}


def _scaled(image: np.ndarray, height: int) -> np.ndarray:
  """Nearest-neighbour scaling to `height` rows, gray made RGB."""
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  factor = max(1, height // image.shape[0])
  return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def compose(name: str, trace: Dict[str, np.ndarray], camera: str = "0",
            height: int = 192) -> np.ndarray:
  """`[T + 1, rows * H, W, 3]` frames: the scene, and under it the agent's view if recorded."""
  model = video.mujoco_model(envs.make(name))
  camera_index = pixel_obs.camera_id(model, camera) if model.ncam else None
  scene = video.render(model, trace["qpos"], height=height, width=height * 4 // 3,
                       camera=camera_index, mocap_pos=trace["mocap_pos"])
  if "pixels" not in trace:
    return scene
  frames = []
  for scene_frame, agent in zip(scene, trace["pixels"]):
    agent = _scaled(agent, height)
    canvas = np.zeros((scene_frame.shape[0] + agent.shape[0] + 4, max(scene_frame.shape[1],
                                                                      agent.shape[1]), 3),
                      np.uint8)
    canvas[:scene_frame.shape[0], :scene_frame.shape[1]] = scene_frame
    canvas[scene_frame.shape[0] + 4:, :agent.shape[1]] = agent
    frames.append(canvas)
  return np.stack(frames)


def strip(frames: np.ndarray, count: int) -> np.ndarray:
  """`count` frames evenly spread over the clip, side by side with a thin gap."""
  picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
  gap = np.full((frames.shape[1], 4, 3), 255, np.uint8)
  parts = []
  for index in picks:
    parts += [frames[index], gap]
  return np.concatenate(parts[:-1], axis=1)


def out_problem(out: str) -> Optional[str]:
  """Why `out` cannot be written, or None; checked before anything is rendered. Creates its
  folder if need be."""
  folder = os.path.dirname(os.path.abspath(out))
  try:
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
      pass
  except OSError as e:
    return f"--out={out}: cannot write into {folder}: {e.strerror or e}"
  if os.path.isdir(out):
    return f"--out={out} is a folder; name a file"
  return None


def main(argv):
  try:
    envs.import_task_modules(_IMPORTS.value)
  except envs.TaskModuleError as e:
    print(f"--imports={_IMPORTS.value}: {e}", file=sys.stderr)
    return 2
  if _LIST.value:
    print("\n".join(envs.task_names()))
    return 0
  if len(argv) != 2 or not _OUT.value:
    print("usage: python -m mimex_jax.envs.show NAME --out=FILE.png|.gif|.mp4 [--pixels]",
          file=sys.stderr)
    return 2
  name = argv[1]
  try:
    envs.spec(name)
  except envs.UnknownTaskError as e:
    print(e, file=sys.stderr)
    return 2
  if not _OUT.value.endswith((".png", ".gif", ".mp4")):
    print(f"--out={_OUT.value}: write .png, .gif or .mp4", file=sys.stderr)
    return 2
  problem = out_problem(_OUT.value)
  if problem is not None:
    print(problem, file=sys.stderr)
    return 2
  spec = None
  if _PIXELS.value:
    spec = pixel_obs.PixelSpec(backend=_BACKEND.value, height=_SIZE.value, width=_SIZE.value,
                               grayscale=_GRAYSCALE.value, frame_stack=1, camera=_CAMERA.value)
  try:
    trace = record(name, _STEPS.value, _POLICY.value, spec, _SEED.value)
  except (ValueError, KeyError) as e:
    print(f"{name}: {e}", file=sys.stderr)
    return 2
  frames = compose(name, trace, _CAMERA.value)
  try:
    if _OUT.value.endswith(".png"):
      from PIL import Image
      Image.fromarray(strip(frames, _FRAMES.value)).save(_OUT.value)
    else:
      video.write_video(list(frames), _OUT.value)
  except OSError as e:  # e.g. the disk filled up while writing
    print(f"--out={_OUT.value}: {e.strerror or e}", file=sys.stderr)
    return 4
  print(f"{name}: {_STEPS.value} steps of the {_POLICY.value} policy, return "
        f"{trace['reward'].sum():.2f}; wrote {_OUT.value}")
  return 0


if __name__ == "__main__":
  app.run(main)
