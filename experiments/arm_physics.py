r"""Where the arm's physics step spends its time, and what MJX settings buy (issue 25, part 2).

Two measurements, one process, one CPU device:
  * stages: one physics substep of a batch of envs split into MJX's own stages (kinematics
    and collision, velocity terms, actuation, smooth acceleration, the constraint solver, the
    integrator), each jitted and timed alone on the same batch of states;
  * variants: steps/s of `VectorEnv` with the reset pool (what the trainers run) under each
    physics variant below, all in this one run, with the scripted policy's success rate and
    the drift of its trajectory from the baseline's, so a faster variant shows what it changes.

  python experiments/arm_physics.py --tasks=ReachSparse,PushSparse,PickSparse
  python experiments/arm_physics.py --variants=baseline,eulerdamp_off --skip_stages

Writes experiments/results/arm_physics.{json,md}.
"""

import argparse
import json
import os
import platform
import sys
import time

import jax
import mujoco
from mujoco import mjx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mimex_jax import envs  # noqa: E402
from mimex_jax.envs.manipulation import scripted_policy  # noqa: E402

# Each variant: MjModel option fields to set, and the env's sim_dt (ctrl_dt stays 0.04 s, so
# fewer, longer substeps per action). The values say what each one changes physically.
VARIANTS = {
    "baseline": {},
    # Joint damping integrated explicitly: saves a second factorization of the mass matrix.
    "eulerdamp_off": {"disableflags": mujoco.mjtDisableBit.mjDSBL_EULERDAMP},
    "iter2_ls4": {"iterations": 2, "ls_iterations": 4},
    "cg": {"solver": mujoco.mjtSolver.mjSOL_CG},
    "implicitfast": {"integrator": mujoco.mjtIntegrator.mjINT_IMPLICITFAST},
    "substeps2": {"sim_dt": 0.02},
    "substeps2_implicitfast": {"sim_dt": 0.02,
                               "integrator": mujoco.mjtIntegrator.mjINT_IMPLICITFAST},
    "substeps2_eulerdamp_off": {"sim_dt": 0.02,
                                "disableflags": mujoco.mjtDisableBit.mjDSBL_EULERDAMP},
    # Not physics: how XLA compiles the same step. Its older loop emitters for fusions instead
    # of the MLIR fusion emitters (the same arithmetic, other code).
    "xla_loop_emitters": {"compiler_options": {"xla_cpu_use_fusion_emitters": False}},
    # Fast math lets LLVM reorder floating-point arithmetic and assume no NaN or infinity,
    # which the trainers' NaN checks rely on: measured to see what it is worth, not offered.
    "xla_fast_math": {"compiler_options": {"xla_cpu_enable_fast_math": True}},
}


def make_env(task, variant):
  """The trainer's `Env` of `task` with `variant`'s physics options set on its MuJoCo model."""
  options = dict(VARIANTS[variant])
  options.pop("compiler_options", None)  # a compile option, not the model's (see `_jit`)
  overrides = {"sim_dt": options.pop("sim_dt")} if "sim_dt" in options else {}
  wrapped = envs.make(task, **overrides)
  env = wrapped.backend
  if options:
    model = env.mj_model
    for field, value in options.items():
      if field == "disableflags":
        model.opt.disableflags |= int(value)
      else:
        setattr(model.opt, field, int(value) if not isinstance(value, float) else value)
    # The env holds its MJX model privately; the experiment rebuilds it from the edited one.
    env._mjx_model = mjx.put_model(model, impl=env._config.impl)  # pylint: disable=protected-access
  return wrapped


def _jit(fn, variant):
  """`jax.jit(fn)` with the variant's XLA compile options, if it has any."""
  return jax.jit(fn, compiler_options=VARIANTS[variant].get("compiler_options"))


def _timed(fn, *args, repeats):
  out = fn(*args)
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats


def stage_profile(task, batch, repeats):
  """Milliseconds per stage of one substep over `batch` envs mid-episode (baseline physics)."""
  from mujoco.mjx._src import forward as mjx_forward, solver as mjx_solver, smooth
  from mujoco.mjx._src import collision_driver, constraint
  env = make_env(task, "baseline").backend
  m = env.mjx_model
  states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), batch))
  policy = scripted_policy(task, env)
  roll = jax.jit(lambda s: jax.lax.fori_loop(
      0, 15, lambda i, s: jax.vmap(env.step)(s, jax.vmap(policy)(s)), s))
  d = roll(states).data  # mid-reach: contacts and constraints as in training
  stages = {
      "kinematics (kinematics, com, cinert, cdof)": lambda d: smooth.com_pos(
          m, smooth.kinematics(m, d)),
      "collision": lambda d: collision_driver.collision(m, d),
      "constraint rows": lambda d: constraint.make_constraint(m, d),
      "mass matrix + factor": lambda d: smooth.factor_m(m, smooth.crb(m, d)),
      "fwd_velocity (rne, passive)": lambda d: mjx_forward.fwd_velocity(m, d),
      "fwd_actuation": lambda d: mjx_forward.fwd_actuation(m, d),
      "fwd_acceleration": lambda d: mjx_forward.fwd_acceleration(m, d),
      "solver": lambda d: mjx_solver.solve(m, d),
      "euler integrator": lambda d: mjx_forward.euler(m, d),
      "whole mjx.step": lambda d: mjx.step(m, d),
  }
  out = {}
  for name, fn in stages.items():
    jitted = jax.jit(jax.vmap(fn))
    out[name] = 1000 * _timed(jitted, d, repeats=repeats)
  return out


def throughput(task, variant, batch, unroll, repeats):
  """Steps/s of `VectorEnv` (reset pool, staggered episodes, random actions), one device."""
  env = make_env(task, variant)
  vector_env = envs.VectorEnv(env, batch, stagger=True, reset_pool=True)

  def run(state, key):
    def body(state, step_key):
      action = jax.random.uniform(step_key, (batch, env.action_size), minval=-1, maxval=1)
      return vector_env.step(state, action), None
    return jax.lax.scan(body, state, jax.random.split(key, unroll))[0]

  run = _jit(run, variant)
  state = jax.jit(vector_env.reset)(jax.random.PRNGKey(0))
  start = time.perf_counter()
  state = jax.block_until_ready(run(state, jax.random.PRNGKey(1)))
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for i in range(repeats):
    state = run(state, jax.random.PRNGKey(2 + i))
  jax.block_until_ready(state)
  return compile_s, batch * unroll * repeats / (time.perf_counter() - start)


def scripted_check(task, variant, batch, steps):
  """The scripted policy from `batch` resets: success ever and at the end, and the grip
  point's trajectory `[steps, batch, 3]` (to compare variants with the baseline)."""
  env = make_env(task, variant).backend
  policy = scripted_policy(task, env)

  def run(key):
    states = jax.vmap(env.reset)(jax.random.split(key, batch))

    def body(states, _):
      states = jax.vmap(env.step)(states, jax.vmap(policy)(states))
      return states, (states.metrics["success"], jax.vmap(env.grip_pos)(states.data),
                      states.done)
    return jax.lax.scan(body, states, None, length=steps)[1]

  success, grip, done = jax.device_get(_jit(run, variant)(jax.random.PRNGKey(7)))
  return {"success_ever": float(success.max(0).mean()), "success_end": float(success[-1].mean()),
          "nan_episodes": int(done.max(0).sum())}, np.asarray(grip)


SCRIPTED_STEPS = {"Reach": 40, "Push": 80, "Pick": 60, "Drawer": 90}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--tasks", default="ReachSparse,PushSparse,PickSparse")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--unroll", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--skip_stages", action="store_true")
  parser.add_argument("--out", default="experiments/results/arm_physics.json")
  args = parser.parse_args()
  rows, stages = [], {}
  for task in args.tasks.split(","):
    if not args.skip_stages:
      stages[task] = stage_profile(task, args.batch, args.repeats)
      print(task, json.dumps({k: round(v, 2) for k, v in stages[task].items()}), flush=True)
    steps = SCRIPTED_STEPS[task.replace("Sparse", "").replace("Dense", "")]
    reference_grip = None
    for variant in args.variants.split(","):
      compile_s, steps_per_s = throughput(task, variant, args.batch, args.unroll, args.repeats)
      check, grip = scripted_check(task, variant, 16, steps)
      if reference_grip is None:
        reference_grip = grip
      drift = float(np.abs(grip - reference_grip).max()) if variant != "baseline" else 0.0
      row = {"task": task, "variant": variant, "steps_per_s": steps_per_s,
             "compile_s": compile_s, **check, "grip_drift_m": drift}
      rows.append(row)
      print(json.dumps(row), flush=True)
  result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "jax": jax.__version__,
            "mujoco": mujoco.__version__, "batch": args.batch, "unroll": args.unroll,
            "repeats": args.repeats, "stages_ms": stages, "rows": rows}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  lines = ["| task | variant | steps/s | x baseline | compile s | scripted success (ever / end) "
           "| NaN episodes | grip drift vs baseline (m) |", "|---|---|---:|---:|---:|---|---:|---:|"]
  base = {r["task"]: r["steps_per_s"] for r in rows if r["variant"] == "baseline"}
  for r in rows:
    ratio = r["steps_per_s"] / base[r["task"]] if r["task"] in base else float("nan")
    lines.append(f"| {r['task']} | {r['variant']} | {r['steps_per_s']:,.0f} | {ratio:.2f} | "
                 f"{r['compile_s']:.1f} | {r['success_ever']:.2f} / {r['success_end']:.2f} | "
                 f"{r['nan_episodes']} | {r['grip_drift_m']:.3f} |")
  with open(args.out.replace(".json", ".md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
