r"""Frames per second of DrQ-v2 from pixels, with and without MIMEx, on both render backends,
next to raw pixel env stepping measured in the same run.

  python experiments/benchmark_drq.py                      # CPU-sized defaults (below)
  python experiments/benchmark_drq.py --size=84 --num_envs=32 --batch=1024 --hidden=1024 \
      --updates=32 --kinds=none,mimex,rnd,icm              # the reference's sizes, for a GPU

Frames count env steps times action repeat (2), over all envs, as DrQ-v2 counts them. A fused
update does `env_steps` steps of every env and `updates` learner updates, so frames/s depends on
that replay ratio; the table gives updates/s too. Training rows start with a full buffer's worth
of learning (`learning_starts=0`), so every timed call runs its updates. Compile time is
reported apart. Writes JSON (default experiments/results/benchmark_drq.json).
"""

import argparse
import json
import os
import platform
import sys

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import drq as drq_configs  # noqa: E402
from experiments.benchmark import raw_env, time_fused_step  # noqa: E402
from mimex_jax.envs.pixels import PixelSpec  # noqa: E402
from mimex_jax.compilation import enable_compilation_cache  # noqa: E402


def drq_config(args, backend, kind):
  config = drq_configs.get_config("cartpole_swingup_sparse")
  config.env.name = args.env
  config.env.pixels.backend = backend
  config.env.pixels.height = config.env.pixels.width = args.size
  config.num_envs = args.num_envs
  config.env_steps = args.env_steps
  config.updates_per_step = args.updates
  config.replay.capacity = args.capacity
  config.drq.batch_size = args.batch
  config.drq.hidden_dim = args.hidden
  config.drq.random_frames = 0
  config.drq.learning_starts = 0
  config.intrinsic.kind = kind
  config.intrinsic.embed_dim = args.mimex_width
  config.intrinsic.depth = args.mimex_depth
  config.drq.intrinsic_features = args.features
  return config


def training(config, repeats):
  """(compile seconds, frames/s, updates/s) of the trainer's fused step."""
  # Fill the buffer past what one sample looks back over before timing.
  lookback = config.intrinsic.seq_len + config.env.pixels.frame_stack + config.drq.n_step
  first, per_call, frames_per_update = time_fused_step(
      config, repeats, warmup_calls=lookback // config.env_steps + 1)
  return first, frames_per_update / per_call, config.updates_per_step / per_call


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default="CartpoleSwingupSparse")
  parser.add_argument("--backends", default="jax,warp")
  parser.add_argument("--kinds", default="none,mimex")
  parser.add_argument("--size", type=int, default=64, help="image height and width")
  parser.add_argument("--num_envs", type=int, default=16)
  parser.add_argument("--env_steps", type=int, default=2)
  parser.add_argument("--updates", type=int, default=8, help="learner updates per fused step")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--capacity", type=int, default=20_000)
  parser.add_argument("--mimex_width", type=int, default=64)
  parser.add_argument("--mimex_depth", type=int, default=2)
  parser.add_argument("--features", default="encoder", help="encoder | trunk")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--out", default="experiments/results/benchmark_drq.json")
  args = parser.parse_args()
  enable_compilation_cache()
  machine = {"platform": jax.default_backend(), "devices": jax.local_device_count(),
             "device_kind": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
             "processor": platform.processor() or platform.machine(), "jax": jax.__version__}
  print(f"machine: {machine}")
  print(f"settings: {vars(args)}")
  print(f"{'mode':<14}{'backend':>8}{'frames/s':>11}{'updates/s':>11}{'compile s':>11}"
        f"{'vs raw':>8}")
  rows = []
  for backend in args.backends.split(","):
    spec = PixelSpec(backend=backend, height=args.size, width=args.size)
    compile_s, raw_steps = raw_env(args.env, args.num_envs, args.env_steps * 8, args.repeats,
                                   obs_type="pixels", pixels=spec, action_repeat=2)
    raw = 2 * raw_steps  # frames: 2 per agent step at action repeat 2
    rows.append({"mode": "raw_pixels", "backend": backend, "frames_per_second": raw,
                 "compile_seconds": compile_s})
    print(f"{'raw_pixels':<14}{backend:>8}{raw:>11,.0f}{'':>11}{compile_s:>11.1f}{1.0:>8.2f}",
          flush=True)
    for kind in args.kinds.split(","):
      config = drq_config(args, backend, kind)
      compile_s, fps, ups = training(config, args.repeats)
      mode = "drq" if kind == "none" else f"drq+{kind}"
      rows.append({"mode": mode, "backend": backend, "frames_per_second": fps,
                   "updates_per_second": ups, "compile_seconds": compile_s})
      print(f"{mode:<14}{backend:>8}{fps:>11,.0f}{ups:>11,.1f}{compile_s:>11.1f}"
            f"{fps / raw:>8.2f}", flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump({"env": args.env, "settings": vars(args), "machine": machine, "rows": rows}, f,
              indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
