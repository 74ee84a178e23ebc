r"""Environment steps per second: raw env stepping, PPO with no bonus, PPO + MIMEx; with --peers
also RND, ICM, our DrQ and Brax's own PPO trainer, measured in the same run.

  python experiments/benchmark.py                       # CartpoleBalanceSparse, B = 64, 256, 1024
  python experiments/benchmark.py --peers --batch_sizes=256 \
      --out=experiments/results/peers.json              # the table in docs/PERFORMANCE.md
  python experiments/benchmark.py --batch_sizes=256 --env=CartpoleSwingupSparse
  python experiments/benchmark.py --batch_sizes=256 --kinds=none,mimex,rnd,icm --seeds=1,2,5 \
      --out=experiments/results/seeds_scaling.json     # throughput against num_seeds
  python experiments/benchmark.py --pixels --batch_sizes=256 --env=CartpoleBalance \
      --out=experiments/results/pixels.json            # PPO from pixels beside state PPO

Prints a table and writes JSON (default experiments/results/benchmark.json) and, with --peers, a
PNG bar chart beside it. Compile time is reported apart from throughput; every figure is from
the machine the script runs on. Training configs are configs/ppo.py's default (network sizes,
epochs, minibatches, unroll length) with only num_envs changed; Brax's PPO gets the same env,
batch, unroll length, epochs, minibatches and network sizes (experiments/brax_peer.py runs it
in a venv with jax 0.9.2 that it builds once, since Brax 0.14.2's PPO fails on jax >= 0.10).
DrQ runs configs/drq.py:cartpole_balance_state's settings from states on the same env.
"""

import argparse
import json
import os
import platform
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import ppo as ppo_configs  # noqa: E402
from mimex_jax import envs  # noqa: E402
from mimex_jax.agents import build  # noqa: E402
from mimex_jax.compilation import enable_compilation_cache  # noqa: E402
from mimex_jax.train import seeded_training  # noqa: E402


def _timed(fn, repeats):
  """(seconds of the first call, seconds per later call)."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn()
  jax.block_until_ready(out)
  return first, (time.perf_counter() - start) / repeats


RESETS = ("bare", "in_place", "pool")


def raw_env(env_name, batch, unroll_length, repeats, resets="in_place", **make_args):
  """Random actions through the same VectorEnv the trainer uses, pmapped over local devices.
  `make_args` go to `envs.make` (e.g. `obs_type="pixels", pixels=PixelSpec(...)`). `resets`:
  `in_place` (staggered episodes, finished envs reset in the step), `pool` (staggered, from
  `VectorEnv`'s reset pool) or `bare` (the task's vmapped step alone: no time limit resets)."""
  if resets not in RESETS:
    raise ValueError(f"resets={resets!r}; choose one of {RESETS}")
  devices = jax.local_device_count()
  if make_args.get("obs_type") == "pixels":
    make_args["num_worlds"] = batch // devices
  env = envs.make(env_name, **make_args)
  vector_env = envs.VectorEnv(env, batch // devices, stagger=True,
                              reset_pool=resets == "pool")
  step = jax.vmap(env.step) if resets == "bare" else vector_env.step

  def run(state, key):
    def body(state, step_key):
      action = jax.random.uniform(step_key, (vector_env.num_envs, env.action_size),
                                  minval=-1, maxval=1)
      return step(state, action), None
    return jax.lax.scan(body, state, jax.random.split(key, unroll_length))[0]

  keys = jax.random.split(jax.random.PRNGKey(0), devices)
  state = jax.pmap(vector_env.reset)(keys)
  run = jax.pmap(run, donate_argnums=0)
  holder = {"state": state}

  def call():
    holder["state"] = run(holder["state"], keys)
    return holder["state"].obs

  first, per_call = _timed(call, repeats)
  return first, batch * unroll_length / per_call


def time_fused_step(config, repeats, warmup_calls=0):
  """`(seconds of the first timed call, seconds per later call, steps_per_update)` of the
  trainer's own fused step for `config`, after `warmup_calls` untimed calls."""
  _, fused, steps_per_update, _ = build(config)
  _, state, step, keys = seeded_training(config, fused)
  holder = {"state": state}

  def call():
    holder["state"], metrics = step(holder["state"], keys)
    return metrics

  for _ in range(warmup_calls):
    call()
  first, per_call = _timed(call, repeats)
  return first, per_call, steps_per_update


def parse_variants(specs):
  """`NAME=KIND:key=value,key=value` -> {NAME: (KIND, {key: value})} (intrinsic keys)."""
  variants = {}
  for spec in specs:
    name, _, rest = spec.partition("=")
    kind, _, pairs = rest.partition(":")
    if not name or not kind:
      raise SystemExit(f"--variant {spec!r}: expected NAME=KIND:key=value,key=value")
    overrides = {}
    for pair in filter(None, pairs.split(",")):
      key, _, value = pair.partition("=")
      try:  # numbers, true/false and lists as JSON; anything else is a string
        overrides[key] = json.loads(value)
      except json.JSONDecodeError:
        overrides[key] = value
    variants[name] = (kind, overrides)
  return variants


def training(env_name, batch, kind, repeats, num_seeds=1, overrides=None):
  """Env steps per second of the trainer's own fused step, over all `num_seeds` seeds.
  `overrides`: intrinsic config keys to change."""
  config = ppo_configs.get_config()
  config.env.name = env_name
  config.num_envs = batch
  config.intrinsic.kind = kind
  for key, value in (overrides or {}).items():
    if key not in config.intrinsic:
      raise SystemExit(f"--variant: intrinsic.{key} is not a config key")
    config.intrinsic[key] = value
  config.num_seeds = num_seeds
  first, per_call, steps_per_update = time_fused_step(config, repeats)
  return first, steps_per_update * num_seeds / per_call


def pixel_training(env_name, batch, kind, size, encoder, encoder_dir, repeats):
  """Env steps per second of PPO from `size`x`size` pixels (3 frames) with `encoder`."""
  config = ppo_configs.get_config()
  config.env.name = env_name
  config.num_envs = batch
  config.intrinsic.kind = kind
  config.env.obs_type = "pixels"
  config.env.pixels.height = config.env.pixels.width = size
  config.ppo.encoder = encoder
  config.ppo.encoder_checkpoint = encoder_dir
  first, per_call, steps_per_update = time_fused_step(config, repeats)
  return first, steps_per_update / per_call


def timing_encoder(size, folder):
  """An encoder of configs/pretrain.py's sizes (8x8 patches of the frame) with its initial
  weights: throughput does not depend on what the weights are."""
  from configs import pretrain as pretrain_configs
  from mimex_jax import encoder_store
  from mimex_jax.networks.image_mae import ImageMAE
  import jax.numpy as jnp
  model_config = pretrain_configs.get_config().model.to_dict()
  model_config["patch_size"] = size // 8
  model = ImageMAE(height=size, width=size, channels=3, **model_config)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3), jnp.uint8),
                      jnp.zeros((1, 1), jnp.int32))
  return encoder_store.save(os.path.join(folder, f"encoder{size}"), model, params,
                            {"note": "initial weights, for timing only"})


def pixel_rows(args):
  """State PPO, then PPO from pixels (frozen encoder and conv torso, without and with MIMEx) at
  each --pixel_sizes, all in this one run."""
  import tempfile
  batch = int(args.batch_sizes.split(",")[0])
  rows = []
  print(f"{'mode':<30}{'batch':>7}{'steps/s':>12}{'compile s':>11}{'vs state ppo':>14}")

  def add(mode, compile_s, sps, base):
    rows.append({"mode": mode, "batch": batch, "steps_per_second": sps,
                 "compile_seconds": compile_s, "vs_state_ppo": sps / base if base else 1.0})
    print(f"{mode:<30}{batch:>7}{sps:>12,.0f}{compile_s:>11.1f}{rows[-1]['vs_state_ppo']:>14.3f}",
          flush=True)

  compile_s, state_sps = training(args.env, batch, "none", args.repeats)
  add("ppo (states)", compile_s, state_sps, None)
  with tempfile.TemporaryDirectory() as folder:
    for size in (int(x) for x in args.pixel_sizes.split(",")):
      encoder_dir = timing_encoder(size, folder)
      for encoder in ("frozen", "conv"):
        for kind in ("none", "mimex"):
          compile_s, sps = pixel_training(args.env, batch, kind, size, encoder, encoder_dir,
                                          args.repeats)
          mode = f"ppo{'+mimex' if kind == 'mimex' else ''} {encoder} {size}x{size}"
          add(mode, compile_s, sps, state_sps)
  return rows


def drq_training(env_name, batch, repeats):
  """Env steps per second of our DrQ-v2 fused step from states (one seed)."""
  from configs import drq as drq_configs
  config = drq_configs.get_config("cartpole_balance_state")
  config.env.name = env_name
  config.num_envs = batch
  config.replay.capacity = max(config.replay.capacity, 64 * batch)
  first, per_call, steps_per_update = time_fused_step(config, repeats)
  return first, steps_per_update / per_call


def brax_training(env_name, batch, unroll_length):
  """`(compile seconds, steps/s, details)` of Brax's PPO trainer at our PPO's settings."""
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import brax_peer
  ppo = ppo_configs.get_config().ppo
  result = brax_peer.run_brax_ppo(
      env_name, batch, unroll_length, ppo.num_epochs, ppo.num_minibatches,
      tuple(ppo.policy_hidden_sizes), tuple(ppo.value_hidden_sizes),
      num_timesteps=250 * batch * unroll_length)
  return result["compile_seconds"], result["steps_per_second"], result


def bar_chart(rows, path, title):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = [r["mode"] for r in rows]
  values = [r["steps_per_second"] for r in rows]
  colors = ["0.6" if n == "raw_env" else "tab:orange" if n.startswith("brax") else "tab:blue"
            for n in names]
  fig, ax = plt.subplots(figsize=(8, 4))
  bars = ax.bar(names, values, color=colors)
  ax.bar_label(bars, labels=[f"{v / 1e3:,.1f}k" for v in values], fontsize=8)
  ax.set_yscale("log")
  ax.set_ylabel("env steps per second (log)")
  ax.set_title(title, fontsize=10)
  plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def peers(args, machine):
  """--peers: every mode at one batch size, ratios against Brax's PPO and the raw env."""
  unroll_length = ppo_configs.get_config().unroll_length
  results = []
  for batch in [int(b) for b in args.batch_sizes.split(",")]:
    rows = []

    def add(mode, compile_s, sps, **extra):
      rows.append({"mode": mode, "batch": batch, "steps_per_second": sps,
                   "compile_seconds": compile_s, **extra})
      print(f"{mode:<16}{batch:>7}{sps:>12,.0f}{compile_s:>11.1f}", flush=True)

    print(f"{'mode':<16}{'batch':>7}{'steps/s':>12}{'compile s':>11}")
    add("raw_env", *raw_env(args.env, batch, unroll_length, args.repeats))
    for kind in ("none", "mimex", "rnd", "icm"):
      add("ppo" if kind == "none" else f"ppo+{kind}",
          *training(args.env, batch, kind, args.repeats))
    add("drq", *drq_training(args.env, batch, args.repeats))
    compile_s, sps, details = brax_training(args.env, batch, unroll_length)
    add("brax_ppo", compile_s, sps, details=details)
    raw = rows[0]["steps_per_second"]
    brax = rows[-1]["steps_per_second"]
    print(f"\n{'mode':<16}{'steps/s':>12}{'vs Brax PPO':>13}{'vs raw env':>12}")
    for row in rows:
      row["vs_brax_ppo"] = row["steps_per_second"] / brax
      row["vs_raw_env"] = row["steps_per_second"] / raw
      print(f"{row['mode']:<16}{row['steps_per_second']:>12,.0f}{row['vs_brax_ppo']:>13.2f}"
            f"{row['vs_raw_env']:>12.2f}")
    png = os.path.splitext(args.out)[0] + (f"_{batch}" if "," in args.batch_sizes else "") + ".png"
    bar_chart(rows, png, f"{args.env}, {batch} envs, unroll {unroll_length}; "
              f"{machine['device_kind']}, {machine['cpu_count']} cores")
    print(f"wrote {png}")
    results.extend(rows)
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default="CartpoleBalanceSparse")
  parser.add_argument("--batch_sizes", default="64,256,1024")
  parser.add_argument("--kinds", default="none,mimex", help="intrinsic kinds to train with")
  parser.add_argument("--variant", action="append", default=[],
                      help="NAME=KIND:key=value,... a named bonus with intrinsic keys changed, "
                           "usable in --kinds (e.g. cheap=mimex:train_fraction=0.25)")
  parser.add_argument("--seeds", default="1", help="num_seeds values, e.g. 1,2,5 (vmapped)")
  parser.add_argument("--repeats", type=int, default=10, help="timed calls after the compile")
  parser.add_argument("--peers", action="store_true",
                      help="every mode (PPO with each bonus, DrQ, Brax's PPO) at each batch size")
  parser.add_argument("--pixels", action="store_true",
                      help="state PPO, then pixel PPO (frozen, conv; none, mimex) at the first "
                           "batch size and each --pixel_sizes")
  parser.add_argument("--pixel_sizes", default="32,64")
  parser.add_argument("--out", default="experiments/results/benchmark.json")
  args = parser.parse_args()
  enable_compilation_cache()
  batches = [int(b) for b in args.batch_sizes.split(",")]
  unroll_length = ppo_configs.get_config().unroll_length
  machine = {"platform": jax.default_backend(), "devices": jax.local_device_count(),
             "device_kind": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
             "processor": platform.processor() or platform.machine(), "jax": jax.__version__}
  print(f"machine: {machine}")
  if args.pixels or args.peers:
    rows = pixel_rows(args) if args.pixels else peers(args, machine)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump({"env": args.env, "unroll_length": unroll_length, "machine": machine,
                 "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")
    return
  variants = parse_variants(args.variant)
  rows = []
  header = (f"{'mode':<22}{'batch':>7}{'seeds':>6}{'steps/s':>12}{'compile s':>11}"
            f"{'vs raw':>8}{'vs ppo':>8}")
  print(header)
  for batch in batches:
    compile_s, raw = raw_env(args.env, batch, unroll_length, args.repeats)
    rows.append({"mode": "raw_env", "batch": batch, "steps_per_second": raw,
                 "compile_seconds": compile_s})
    print(f"{'raw_env':<22}{batch:>7}{'':>6}{raw:>12,.0f}{compile_s:>11.1f}{1.0:>8.2f}",
          flush=True)
    ppo_sps = {}
    for name in args.kinds.split(","):
      kind, overrides = variants.get(name, (name, {}))
      for num_seeds in (int(n) for n in args.seeds.split(",")):
        compile_s, sps = training(args.env, batch, kind, args.repeats, num_seeds, overrides)
        mode = "ppo" if name == "none" else f"ppo+{name}"
        if name == "none":
          ppo_sps[num_seeds] = sps
        ratio = sps / ppo_sps[num_seeds] if num_seeds in ppo_sps else float("nan")
        rows.append({"mode": mode, "batch": batch, "num_seeds": num_seeds,
                     "intrinsic": {"kind": kind, **overrides}, "steps_per_second": sps,
                     "vs_ppo": ratio, "compile_seconds": compile_s})
        print(f"{mode:<22}{batch:>7}{num_seeds:>6}{sps:>12,.0f}{compile_s:>11.1f}"
              f"{sps / raw:>8.2f}{ratio:>8.3f}", flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump({"env": args.env, "unroll_length": unroll_length, "machine": machine,
               "rows": rows}, f, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
