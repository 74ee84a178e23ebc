r"""What a checkpoint costs: bytes on disk, time the training loop waits, time until it is on disk.

  python experiments/checkpoint_cost.py                    # configs/ppo.py's default run
  python experiments/checkpoint_cost.py --variant=smoke --repeats=3

Builds the run's initial state on the local devices (the same shapes as any later checkpoint),
saves it `--repeats` times through the trainer's `Checkpointer` and reports the median of each
figure, then restores the last one and checks it equals what was saved. Writes JSON (default
experiments/results/checkpoint_cost.json).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import ppo as ppo_configs  # noqa: E402
from mimex_jax import checkpoint as checkpoint_lib, parallel  # noqa: E402
from mimex_jax.agents import build  # noqa: E402
from mimex_jax.compilation import enable_compilation_cache  # noqa: E402


def _bytes(path):
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="cartpole_balance_sparse")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "checkpoint_cost.json"))
  args = parser.parse_args()
  enable_compilation_cache()
  config = ppo_configs.get_config(args.variant)
  _, fused, _, _ = build(config)
  state = parallel.pmap_init(fused.init, jax.random.PRNGKey(config.seed))
  jax.block_until_ready(state)
  directory = tempfile.mkdtemp(prefix="checkpoint_cost_")
  checkpointer = checkpoint_lib.Checkpointer(directory, max_to_keep=args.repeats)
  blocking, total, sizes = [], [], []
  for update in range(1, args.repeats + 1):
    start = time.perf_counter()
    checkpointer.save(update, state, {"config": checkpoint_lib.config_to_dict(config)})
    blocking.append(time.perf_counter() - start)
    checkpointer.wait()
    total.append(time.perf_counter() - start)
    sizes.append(_bytes(os.path.join(directory, str(update))))
  start = time.perf_counter()
  _, restored, _ = checkpointer.restore(state)
  restore_seconds = time.perf_counter() - start
  same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(restored),
                                                  jax.tree.leaves(jax.device_get(state))))
  parts = {name: int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(getattr(state, name))))
           for name in ("params", "opt_state", "normalizer", "intrinsic", "env_state")}
  checkpointer.close()
  shutil.rmtree(directory)
  result = {
      "variant": args.variant, "env": config.env.name, "num_envs": config.num_envs,
      "intrinsic": config.intrinsic.kind, "devices": jax.local_device_count(),
      "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                 f"{jax.devices()[0].platform}",
      "bytes_on_disk": int(statistics.median(sizes)), "state_bytes_by_part": parts,
      "save_blocking_seconds": statistics.median(blocking),
      "save_total_seconds": statistics.median(total),
      "restore_seconds": restore_seconds, "restored_equal": same,
  }
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  print(f"{config.env.name}, {config.num_envs} envs, intrinsic={config.intrinsic.kind}: "
        f"{result['bytes_on_disk'] / 1e6:.2f} MB on disk; the loop waits "
        f"{result['save_blocking_seconds']:.3f} s, on disk after {result['save_total_seconds']:.3f}"
        f" s; restore {restore_seconds:.3f} s; restored equal: {same}")
  print("state bytes: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in parts.items()))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
