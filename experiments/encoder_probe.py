r"""What a frozen encoder's features say about the task's state: a linear probe.

  python experiments/encoder_probe.py --config=configs/ppo.py:cartpole_balance_pixels \
      --config.ppo.encoder_checkpoint=encoders/cartpole32 [--envs=32 --steps=600] \
      [--out=docs/encoder_probe.json]

Runs the config's pixel env under uniformly random actions, and fits ridge regressions
(the penalty chosen on held-out envs) and a 2x256 MLP from the policy's observation (the stacked features that
PPO reads) to each joint position and velocity of the physics, and, for reference, from the
same frames' pixels (average-pooled 2x2, stacked alike). Prints R^2 on envs the fits never saw:
near 1, the state is in the features linearly; near 0, a policy has to dig for it or cannot.
Hinge angles are probed as their cosine and sine.
"""

import json
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from mimex_jax import agents
from mimex_jax.envs import VectorEnv

# Its own flag set: importing this module next to the trainer (which defines `--config` in
# absl's global set, as tests do) must not define a flag twice.
_FLAGS = flags.FlagValues()
_CONFIG = config_flags.DEFINE_config_file("config", None, "A PPO config with obs_type=pixels.",
                                          flag_values=_FLAGS)
_ENVS = flags.DEFINE_integer("envs", 32, "Envs run side by side; a quarter are held out.",
                             flag_values=_FLAGS)
_STEPS = flags.DEFINE_integer("steps", 600, "Agent steps per env.", flag_values=_FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the envs and the actions.", flag_values=_FLAGS)
_OUT = flags.DEFINE_string("out", None, "Also write the R^2 table here as JSON.",
                           flag_values=_FLAGS)
_MLP_STEPS = flags.DEFINE_integer("mlp_steps", 3000, "Adam steps of the MLP probe (0: none).",
                                  flag_values=_FLAGS)
_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def collect(env, num_envs: int, steps: int, seed: int):
  """`(observations [E, T, D], pooled frames [E, T, P], qpos [E, T, nq], qvel [E, T, nv])`."""
  vector_env = VectorEnv(env, num_envs)

  @jax.jit
  def run(key):
    reset_key, action_key = jax.random.split(key)

    def step(state, step_key):
      action = jax.random.uniform(step_key, (num_envs, env.action_size), minval=-1.0,
                                  maxval=1.0)
      state = vector_env.step(state, action)
      frame = state.inner.inner.obs.astype(jnp.float32) / 255.0  # the frame just encoded
      e, h, w, c = frame.shape
      pooled = frame[:, :h // 2 * 2, :w // 2 * 2].reshape(e, h // 2, 2, w // 2, 2, c).mean(
          axis=(2, 4))
      data = state.inner.data
      return state, (state.obs, pooled.reshape(e, -1), data.qpos, data.qvel)

    state = vector_env.reset(reset_key)
    _, out = jax.lax.scan(step, state, jax.random.split(action_key, steps))
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), out)

  return [np.asarray(x, np.float64) for x in run(jax.random.PRNGKey(seed))]


def stack_frames(pooled: np.ndarray, frame_stack: int) -> np.ndarray:
  """`[E, T, P]` -> `[E, T - frame_stack + 1, frame_stack * P]`, oldest first, as the features."""
  steps = pooled.shape[1] - frame_stack + 1
  return np.concatenate([pooled[:, i:i + steps] for i in range(frame_stack)], axis=-1)


def ridge_r2(x_train, y_train, x_test, y_test):
  """R^2 per target on the test rows, each target's penalty chosen on a slice of the training
  rows (the last fifth, whole envs when rows are env-major)."""
  mean, std = x_train.mean(0), x_train.std(0) + 1e-6
  x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
  y_mean = y_train.mean(0)
  split = int(0.8 * len(x_train))

  def fit(x, y, penalty):
    gram = x.T @ x + penalty * len(x) * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ (y - y.mean(0)))

  def r2(y, predicted):
    return 1.0 - ((y - predicted) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0).clip(1e-12)

  scores = np.stack([r2(y_train[split:], x_train[split:] @ fit(x_train[:split], y_train[:split],
                                                                 p) + y_train[:split].mean(0))
                     for p in _PENALTIES])
  best = scores.argmax(0)
  result = np.empty(y_train.shape[1])
  for penalty_index in np.unique(best):
    columns = best == penalty_index
    weights = fit(x_train, y_train[:, columns], _PENALTIES[penalty_index])
    result[columns] = r2(y_test[:, columns], x_test @ weights + y_mean[columns])
  return result


def mlp_r2(x_train, y_train, x_test, y_test, steps: int, seed: int = 0):
  """R^2 per target on the test rows of a 2x256 MLP regression (inputs and targets
  standardized on the training rows): what a policy's own MLP could read, linearly or not."""
  import flax.linen as nn
  import optax
  mean, std = x_train.mean(0), x_train.std(0) + 1e-6
  y_mean, y_std = y_train.mean(0), y_train.std(0) + 1e-6
  x_train, x_test = [jnp.asarray((x - mean) / std, jnp.float32) for x in (x_train, x_test)]
  y_train = jnp.asarray((y_train - y_mean) / y_std, jnp.float32)
  model = nn.Sequential([nn.Dense(256), nn.relu, nn.Dense(256), nn.relu,
                         nn.Dense(y_train.shape[1])])
  init_key, batch_key = jax.random.split(jax.random.PRNGKey(seed))
  params = model.init(init_key, x_train[:1])
  optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, steps))
  opt_state = optimizer.init(params)

  @jax.jit
  def train(params, opt_state, key):
    def step(carry, step_key):
      params, opt_state = carry
      rows = jax.random.randint(step_key, (256,), 0, x_train.shape[0])
      loss, grads = jax.value_and_grad(
          lambda p: ((model.apply(p, x_train[rows]) - y_train[rows]) ** 2).mean())(params)
      updates, opt_state = optimizer.update(grads, opt_state)
      return (optax.apply_updates(params, updates), opt_state), loss
    return jax.lax.scan(step, (params, opt_state), jax.random.split(key, steps))[0]

  params, _ = train(params, opt_state, batch_key)
  predicted = np.asarray(model.apply(params, x_test)) * y_std + y_mean
  return 1.0 - ((y_test - predicted) ** 2).sum(0) / ((y_test - y_test.mean(0)) ** 2).sum(0)


def targets(env, qpos: np.ndarray, qvel: np.ndarray):
  """`(names, values [..., K])`: hinge angles as cos and sin, other positions as they are."""
  import mujoco
  model = env.backend.mj_model
  names, columns = [], []
  for joint in range(model.njnt):
    name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint) or f"joint{joint}"
    kind, address = mujoco.mjtJoint(int(model.jnt_type[joint])), model.jnt_qposadr[joint]
    if kind == mujoco.mjtJoint.mjJNT_HINGE:
      names += [f"cos {name}", f"sin {name}"]
      columns += [np.cos(qpos[..., address]), np.sin(qpos[..., address])]
    elif kind == mujoco.mjtJoint.mjJNT_SLIDE:
      names.append(f"{name} position")
      columns.append(qpos[..., address])
    velocity = model.jnt_dofadr[joint]
    if kind in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
      names.append(f"{name} velocity")
      columns.append(qvel[..., velocity])
  return names, np.stack(columns, axis=-1)


def main(argv):
  del argv
  config = _CONFIG.value
  if config is None or config.get("agent", "ppo") != "ppo" or config.env.obs_type != "pixels":
    sys.exit("encoder_probe: give a PPO config with env.obs_type=pixels, e.g. "
             "--config=configs/ppo.py:cartpole_balance_pixels")
  if config.ppo.encoder != "frozen":
    sys.exit("encoder_probe: probes a frozen encoder (ppo.encoder=frozen)")
  env, _, _, _ = agents.build(config)
  frame_stack = config.env.pixels.frame_stack
  started = time.time()
  obs, pooled, qpos, qvel = collect(env, _ENVS.value, _STEPS.value, _SEED.value)
  print(f"collected {obs.shape[0]} envs x {obs.shape[1]} steps in {time.time() - started:.0f} s "
        f"(features {obs.shape[-1]}, pooled pixels {pooled.shape[-1] * frame_stack})")
  # The first steps' stacks repeat the reset frame: start where the stack is full.
  names, y = targets(env, qpos, qvel)
  inputs = {"features": obs[:, frame_stack - 1:],
            "pixels (2x2-pooled)": stack_frames(pooled, frame_stack)}
  y = y[:, frame_stack - 1:]
  held_out = max(1, obs.shape[0] // 4)
  table = {}
  for label, x in inputs.items():
    split = (x[:-held_out].reshape(-1, x.shape[-1]), y[:-held_out].reshape(-1, y.shape[-1]),
             x[-held_out:].reshape(-1, x.shape[-1]), y[-held_out:].reshape(-1, y.shape[-1]))
    table[f"{label}, linear"] = dict(zip(names, ridge_r2(*split).tolist()))
    if _MLP_STEPS.value:
      table[f"{label}, MLP"] = dict(zip(names, mlp_r2(*split, _MLP_STEPS.value).tolist()))
  width = max(len(n) for n in names)
  print(f"{'R^2 on held-out envs':<{width}}  " + "  ".join(f"{k:>28}" for k in table))
  for name in names:
    print(f"{name:<{width}}  " + "  ".join(f"{table[k][name]:>28.3f}" for k in table))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump({"config": config.to_dict(), "envs": _ENVS.value, "steps": _STEPS.value,
                 "r2": table}, f, indent=1, default=str)


def _parse(argv):
  flags.FLAGS(argv[:1])  # absl's own flags (logging) at their defaults
  try:
    return _FLAGS(argv)
  except flags.Error as e:
    print(f"encoder_probe: error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
