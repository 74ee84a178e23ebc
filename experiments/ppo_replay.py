r"""Replays a PPO run from one of its checkpoints under a changed config, to find what makes a
learned policy collapse (issue 27: restart just before a fall, change one thing, watch).

  python experiments/ppo_replay.py --source=runs/dense_base --update=900 --updates=150 \
      --out=runs/replay/entropy0 --set=ppo.entropy_coef=0.0 [--set=...] [--freeze_normalizer]

The source run's `config.json` is the starting config; each `--set=key=value` changes one key
(values are read as JSON, else kept as strings). The checkpoint's parameters, optimizer state,
observation statistics, environments and update counter carry over, so with no `--set` the replay
continues the source run step for step (the keys depend only on seed and update). A key that
changes the optimizer state's structure (`ppo.lr_schedule`) keeps Adam's moments and restarts the
schedule's own counter at the checkpoint's optimizer step. `--freeze_normalizer` keeps the
observation statistics of the checkpoint for the whole replay.

Writes `<out>/metrics.jsonl`: every `--log_every` updates the per-seed means of every learner
metric over the window, the training episode return, and at each evaluation the deterministic
(mean action) and sampled (the policy as it acts) evaluation returns, per seed.
"""

import json
import os
import sys

from absl import app, flags
import jax
import ml_collections
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mimex_jax import agents, parallel  # noqa: E402
from mimex_jax import checkpoint as checkpoint_lib  # noqa: E402
from mimex_jax.compilation import enable_compilation_cache  # noqa: E402
from mimex_jax.evaluate import make_evaluator  # noqa: E402
from mimex_jax.train import over_seeds, seeded_training  # noqa: E402

flags.DEFINE_string("source", None, "workdir of the run to replay", required=True)
flags.DEFINE_integer("update", None, "checkpoint (update number) to start from", required=True)
flags.DEFINE_integer("updates", 150, "updates to replay")
flags.DEFINE_string("out", None, "folder for metrics.jsonl", required=True)
flags.DEFINE_multi_string("set", [], "key=value changes to the source config")
flags.DEFINE_bool("freeze_normalizer", False, "keep the checkpoint's observation statistics")
flags.DEFINE_integer("seed_index", -1, "replay only this seed of a several-seed run (-1: all)")
flags.DEFINE_integer("future", 0, "0: the source run's own keys; k > 0: another draw of the "
                     "replay's randomness (action noise, minibatches), to see how often a "
                     "collapse happens from the same state")
flags.DEFINE_integer("log_every", 5, "updates per metrics line")
flags.DEFINE_integer("eval_every", 25, "updates between evaluations")
FLAGS = flags.FLAGS


def load_config(workdir: str, changes) -> ml_collections.ConfigDict:
  with open(os.path.join(workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  if "eval_sampled" not in config:  # runs from before the key existed
    config.eval_sampled = True
  for key, value in checkpoint_lib.ADDED_KEYS.items():  # as the run trained before the key
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    if leaf not in node:
      node[leaf] = value
  for change in changes:
    key, _, text = change.partition("=")
    try:
      value = json.loads(text)
    except json.JSONDecodeError:
      value = text
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    if leaf not in node:
      raise SystemExit(f"error: --set={change}: the source config has no key {key}")
    node[leaf] = value
  return config


def _adam_states(opt_state):
  return [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(
      s, optax.ScaleByAdamState)) if isinstance(s, optax.ScaleByAdamState)]


def transplant(source_state, template):
  """The source's training state in the structure `template` (the changed config's) expects."""
  if jax.tree.structure(source_state) == jax.tree.structure(template):
    return source_state
  adam_source, adam_target = _adam_states(source_state.opt_state), _adam_states(
      template.opt_state)
  if len(adam_source) != 1 or len(adam_target) != 1:
    raise SystemExit("error: cannot carry the optimizer state over to the changed config")
  replaced = {id(adam_target[0]): adam_source[0]}
  opt_state = jax.tree.map(lambda s: replaced.get(id(s), s), template.opt_state,
                           is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
  return source_state.replace(opt_state=opt_state)


def main(_):
  enable_compilation_cache()
  source_config = load_config(FLAGS.source, [])
  config = load_config(FLAGS.source, FLAGS.set)

  _, source_fused, _, _ = agents.build(source_config)
  _, template, _, _ = seeded_training(source_config, source_fused)
  reader = checkpoint_lib.Checkpointer(checkpoint_lib.checkpoint_dir(FLAGS.source),
                                       read_only=True)
  start, host_state, _ = reader.restore(template, FLAGS.update)
  del template

  if FLAGS.seed_index >= 0:  # seed s of N is the run --config.seed=seed+s trains alone
    index = FLAGS.seed_index
    host_state = jax.tree.map(lambda x: x[:, index:index + 1], host_state)
    config.seed, config.num_seeds = config.seed + index, 1
  agents.check(config, jax.device_count(), jax.default_backend())
  env, fused, steps_per_update, total_updates = agents.build(config)
  seed_keys, fresh, step_fn, step_keys = seeded_training(config, fused)
  if FLAGS.future:
    step_keys = jax.vmap(jax.vmap(lambda k: jax.random.fold_in(k, 1000 + FLAGS.future)))(
        step_keys)
  host_fresh = jax.device_get(fresh)
  state = checkpoint_lib.to_devices(transplant(host_state, host_fresh), fresh)
  frozen = jax.device_get(state.normalizer)  # a host copy: the step donates its inputs

  num_seeds = config.num_seeds
  deterministic = jax.jit(over_seeds(make_evaluator(env, 16, fused.deterministic_policy),
                                     num_seeds))
  sampled = jax.jit(over_seeds(make_evaluator(env, 16, fused.sampled_policy, sampled=True),
                               num_seeds))

  def evaluate(state, update):
    args = parallel.unreplicate(tuple(getattr(state, f) for f in fused.POLICY_FIELDS))
    args = jax.device_put(args, jax.local_devices()[0])
    keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, 2), update))(seed_keys)
    det = jax.device_get(deterministic(args, keys))
    smp = jax.device_get(sampled(args, keys))
    return {"eval_return": [float(x) for x in det["eval_return"]],
            "sampled_eval_return": [float(x) for x in smp["eval_return"]]}

  os.makedirs(FLAGS.out, exist_ok=True)
  with open(os.path.join(FLAGS.out, "replay.json"), "w") as f:
    json.dump({"source": os.path.abspath(FLAGS.source), "update": start, "set": FLAGS.set,
               "freeze_normalizer": FLAGS.freeze_normalizer, "seed_index": FLAGS.seed_index,
               "future": FLAGS.future}, f)
  out = open(os.path.join(FLAGS.out, "metrics.jsonl"), "w")
  window = []
  for update in range(start + 1, min(start + FLAGS.updates, total_updates) + 1):
    state, metrics = step_fn(state, step_keys)
    if FLAGS.freeze_normalizer:
      state = state.replace(normalizer=checkpoint_lib.to_devices(frozen, state.normalizer))
    window.append(jax.device_get(parallel.unreplicate(metrics)))
    if update % FLAGS.log_every and update % FLAGS.eval_every:
      continue
    stacked = {k: np.stack([m[k] for m in window]) for k in window[0]}  # [window, seeds]
    line = {"update": update, "step": update * steps_per_update}
    episodes = stacked["episodes"].sum(0)
    returns = np.where(episodes > 0, stacked["episode_return_sum"].sum(0)
                       / np.maximum(episodes, 1), np.nan)
    line["episode_return"] = [None if np.isnan(r) else round(float(r), 2) for r in returns]
    for key, values in stacked.items():
      if not key.endswith("_sum") and key != "episodes":
        line[key] = [float(v) for v in values.mean(0)]
    if update % FLAGS.eval_every == 0:
      line.update(evaluate(state, update))
      print(update, "eval", [round(x) for x in line["eval_return"]], "sampled",
            [round(x) for x in line["sampled_eval_return"]], flush=True)
    out.write(json.dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v)
                          for k, v in line.items()}) + "\n")
    out.flush()
    window = []
  out.close()


if __name__ == "__main__":
  app.run(main)
