r"""Where the time of one fused PPO step goes: its stages timed one by one, with the same shapes.

  python experiments/profile_step.py                     # CartpoleBalanceSparse, B = 256, MIMEx
  python experiments/profile_step.py --kinds=none,mimex,rnd,icm --batch=1024
  python experiments/profile_step.py --kinds=none,mimex,cheap \
      --variant=cheap=mimex:train_fraction=0.25,embed_dim=32,decoder_embed_dim=32

Stages (each jitted alone on one device, the fused step's own functions and shapes):
  env + policy        the rollout: `unroll_length` steps of every env with PPO's sampling policy
  intrinsic reward    the bonus model's forward pass on the rollout (`intrinsic.reward`)
  intrinsic update    its training step (`intrinsic.update`: forward, backward, Adam), minus
                      the forward pass above, which the fused step shares with it
  learner             PPO's update: GAE, then epochs x minibatches of Adam steps
  rest                the whole fused step minus the stages (normalizer, metrics, glue)

Prints a table and writes JSON (default experiments/results/profile_step.json).
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import ppo as ppo_configs  # noqa: E402
from mimex_jax import parallel  # noqa: E402
from mimex_jax.agents import build  # noqa: E402
from mimex_jax.agents.ppo import PPOBatch  # noqa: E402
from mimex_jax.compilation import enable_compilation_cache  # noqa: E402
from mimex_jax.intrinsic import IntrinsicBatch  # noqa: E402
from mimex_jax.rollout import unroll  # noqa: E402
from mimex_jax.train import seeded_training  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark import parse_variants  # noqa: E402


def _per_call(fn, *args, repeats):
  """Seconds per call after a compiling call."""
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats


def _on_one_device(fn):
  """`fn` under a one-device pmap, so the cross-device means inside it have their axis."""
  mapped = jax.pmap(fn, axis_name=parallel.AXIS, devices=jax.local_devices()[:1])
  return lambda *args: mapped(*jax.tree.map(lambda x: x[None], args))


def profile(env_name: str, batch: int, kind: str, repeats: int, overrides=None):
  config = ppo_configs.get_config()
  config.env.name, config.num_envs, config.intrinsic.kind = env_name, batch, kind
  for key, value in (overrides or {}).items():
    config.intrinsic[key] = value
  config.num_seeds = 1
  _, fused, steps_per_update, _ = build(config)
  key = jax.random.PRNGKey(0)
  state = jax.jit(fused.init)(key, key)

  def rollout(params, normalizer, env_state, key):
    def policy(obs, step_key):
      return fused.ppo.act(params, fused.normalize(normalizer, obs), step_key)
    return unroll(fused.env, env_state, policy, key, config.unroll_length)[1]

  rollout_fn = _on_one_device(rollout)
  data = jax.tree.map(lambda x: x[0], rollout_fn(state.params, state.normalizer,
                                                 state.env_state, key))
  obs = fused.normalize(state.normalizer, data.obs)
  next_obs = fused.normalize(state.normalizer, data.next_obs)
  intrinsic_batch = IntrinsicBatch(obs, data.action, next_obs, data.done)
  ppo_batch = PPOBatch(obs=obs, action=data.action, log_prob=data.log_prob, reward=data.reward,
                       terminated=data.terminated, done=data.done, next_obs=next_obs)

  seconds = {}
  seconds["env + policy"] = _per_call(rollout_fn, state.params, state.normalizer,
                                      state.env_state, key, repeats=repeats)
  reward = _per_call(_on_one_device(fused.intrinsic.reward), state.intrinsic, intrinsic_batch,
                     key, repeats=repeats)
  update = _per_call(_on_one_device(fused.intrinsic.update), state.intrinsic, intrinsic_batch,
                     key, repeats=repeats)
  seconds["intrinsic reward"] = reward if kind != "none" else 0.0
  seconds["intrinsic update"] = max(update - reward, 0.0) if kind != "none" else 0.0
  seconds["learner"] = _per_call(_on_one_device(fused.ppo.update), state.params, state.opt_state,
                                 ppo_batch, key, repeats=repeats)
  # The whole fused step, as the trainer runs it (on one device here).
  _, train_state, step, step_keys = seeded_training(config, fused)
  holder = {"state": jax.tree.map(lambda x: x[:1], train_state)}

  def whole():
    holder["state"], metrics = step(holder["state"], step_keys[:1])
    return metrics
  jax.block_until_ready(whole())
  start = time.perf_counter()
  for _ in range(repeats):
    out = whole()
  jax.block_until_ready(out)
  fused_seconds = (time.perf_counter() - start) / repeats
  seconds["rest"] = max(fused_seconds - sum(seconds.values()), 0.0)
  return fused_seconds, steps_per_update, seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default="CartpoleBalanceSparse")
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--kinds", default="none,mimex")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--variant", action="append", default=[],
                      help="NAME=KIND:key=value,... as in benchmark.py")
  parser.add_argument("--out", default="experiments/results/profile_step.json")
  args = parser.parse_args()
  variants = parse_variants(args.variant)
  enable_compilation_cache()
  print(f"{jax.devices()[0].device_kind}, {os.cpu_count()} CPU cores, jax {jax.__version__}; "
        f"{args.env}, {args.batch} envs, one device")
  rows = []
  for name in args.kinds.split(","):
    kind, overrides = variants.get(name, (name, {}))
    fused_seconds, steps, seconds = profile(args.env, args.batch, kind, args.repeats, overrides)
    shares = {k: v / fused_seconds for k, v in seconds.items()}
    rows.append({"kind": name, "intrinsic": {"kind": kind, **overrides},
                 "fused_step_seconds": fused_seconds,
                 "steps_per_second": steps / fused_seconds, "stage_seconds": seconds,
                 "stage_shares": shares})
    print(f"\nPPO + {name}: {fused_seconds * 1e3:.1f} ms per fused step "
          f"({steps / fused_seconds:,.0f} env steps/s)")
    for name, value in seconds.items():
      print(f"  {name:<18}{value * 1e3:>9.1f} ms {shares[name]:>7.1%}")
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump({"env": args.env, "batch": args.batch, "device": jax.devices()[0].device_kind,
               "cpu_count": os.cpu_count(), "jax": jax.__version__, "rows": rows}, f, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
