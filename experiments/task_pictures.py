r"""Pictures of every task of the suite for docs/TASKS.md: a strip of frames of one episode (the
scripted solver on manipulation tasks, random actions on DM Control), MuJoCo's own render above
the agent's 64x64 view from the pure-JAX camera.

  python experiments/task_pictures.py [--tasks=PushSparse,BallInCup] [--out_dir=docs/tasks]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PIL import Image  # noqa: E402

from experiments.env_suite import SUITE  # noqa: E402
from mimex_jax.envs import manipulation, pixels, show  # noqa: E402
from mimex_jax.envs import registry  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--tasks", default=",".join(SUITE))
  parser.add_argument("--out_dir", default="docs/tasks")
  parser.add_argument("--frames", type=int, default=5)
  args = parser.parse_args()
  os.makedirs(args.out_dir, exist_ok=True)
  spec = pixels.PixelSpec(height=64, width=64, frame_stack=1)
  for task in args.tasks.split(","):
    scripted = task in manipulation.TASKS
    # One step short of the time limit: the last frame is still the same episode.
    steps = registry.spec(task).default_episode_length - 1 if scripted else 100
    trace = show.record(task, steps, "scripted" if scripted else "random", spec)
    frames = show.compose(task, trace, height=144)
    path = os.path.join(args.out_dir, f"{task}.png")
    Image.fromarray(show.strip(frames, args.frames)).save(path)
    print(f"{task}: return {trace['reward'].sum():.1f} over {steps} steps -> {path}", flush=True)


if __name__ == "__main__":
  main()
