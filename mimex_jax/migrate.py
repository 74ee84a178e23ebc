r"""Rewrites an older run's checkpoints for this version of mimex_jax, where that can be done.

  python -m mimex_jax.migrate --workdir=runs/old [--dry_run]

For each checkpoint in `<workdir>/checkpoints` written by an older version (see
`checkpoint.FORMAT_CHANGES`), it
- fills in the config keys added since, with the values the old code trained with
  (`checkpoint.ADDED_KEYS`);
- renames the MIMEx model's parameters (and their Adam moments) from the names before the
  model was matched to the reference (flax's `Block_0`, `Dense_0`, ... became `blocks_0`,
  `encoder_embed`, ...); the weights carry over as they are;
- checks that the result has exactly the structure and shapes this version's learner builds
  from that config, and only then writes it back (the old checkpoint is kept beside it as
  `<update>.format<N>`).

A resume of the migrated run against today's config file then names the `--config.<key>=<value>`
overrides for keys whose defaults changed since. A checkpoint it cannot map is left untouched,
with one line saying why; its policy still loads for `mimex_jax.evaluate`.
Exit codes: 0 migrated or nothing to do, 2 not possible (or bad flags).
"""

import os
import re
import shutil
import sys
from typing import Any, Dict, Tuple

from absl import flags
import jax
import numpy as np
import orbax.checkpoint as ocp

from mimex_jax import agents
from mimex_jax.version import __version__
from mimex_jax import checkpoint as checkpoint_lib

_FLAGS = flags.FlagValues()
_WORKDIR = flags.DEFINE_string("workdir", None, "The older run's --workdir.", flag_values=_FLAGS)
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Say what would change; write nothing.",
                             flag_values=_FLAGS)

# Inside a transformer block, and at the model's top level, before the renaming.
_BLOCK_NAMES = {"MultiHeadDotProductAttention_0": "attn", "Dense_0": "fc1", "Dense_1": "fc2",
                "LayerNorm_0": "norm1", "LayerNorm_1": "norm2"}
_TOP_NAMES = {"Dense_0": "encoder_embed", "Dense_1": "decoder_embed", "Dense_2": "decoder_pred",
              "LayerNorm_0": "norm", "LayerNorm_1": "decoder_norm"}


def rename_mimex_params(tree: Dict[str, Any], depth: int) -> Dict[str, Any]:
  """The MIMEx model's parameter dict with the old names mapped to today's: blocks 0 to
  depth - 1 are the encoder's, the rest the decoder's."""
  renamed = {}
  for name, value in tree.items():
    block = re.fullmatch(r"Block_(\d+)", name)
    if block:
      index = int(block.group(1))
      new = f"blocks_{index}" if index < depth else f"decoder_blocks_{index - depth}"
      renamed[new] = {_BLOCK_NAMES.get(k, k): v for k, v in value.items()}
    else:
      renamed[_TOP_NAMES.get(name, name)] = value
  return renamed


def _rename_in_intrinsic(intrinsic: Dict[str, Any], depth: int) -> Dict[str, Any]:
  """Renames wherever a copy of the parameter tree sits: the parameters and Adam's moments."""
  def walk(node):
    if isinstance(node, dict):
      if "params" in node and isinstance(node["params"], dict) and any(
          re.fullmatch(r"Block_\d+", k) for k in node["params"]):
        node = {**node, "params": rename_mimex_params(node["params"], depth)}
      return {k: walk(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
      return type(node)(walk(v) for v in node)
    return node
  return walk(intrinsic)


def _paths(tree: Any, leading: int = 2) -> Dict[str, Tuple[int, ...]]:
  """`{path: shape}` with paths written the same way whether a tree holds dataclasses, named
  tuples and tuples (a built state) or the dicts and lists Orbax reads back; `leading` axes
  (devices, seeds) are left out of the shapes."""
  def name(entry):
    for attr in ("key", "idx", "name"):
      if hasattr(entry, attr):
        return str(getattr(entry, attr))
    return str(entry)
  return {"/".join(name(e) for e in path): tuple(np.shape(leaf))[leading:]
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _built_state(config: Dict[str, Any]) -> Any:
  """One seed's state as this version builds it from `config`, as saved (zeros; empty leaves
  dropped)."""
  from ml_collections import config_dict  # pylint: disable=import-outside-toplevel
  _, fused, _, _ = agents.build(config_dict.ConfigDict(config))
  key = jax.random.PRNGKey(0)
  abstract = jax.eval_shape(fused.init, key, key)
  return checkpoint_lib._drop_empty(  # pylint: disable=protected-access
      jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract))


def migrate_checkpoint(directory: str, update: int, dry_run: bool = False) -> Tuple[bool, str]:
  """`(changed, what)`: migrates checkpoint `update` in `directory` if it is older."""
  reader = checkpoint_lib.Checkpointer(directory, read_only=True)
  meta = reader.read_meta(update)
  form = meta.get("format", 1)
  if form == checkpoint_lib.CHECKPOINT_FORMAT:
    return False, f"{directory}/{update}: already written by this version"
  if form > checkpoint_lib.CHECKPOINT_FORMAT:
    raise checkpoint_lib.CheckpointError(
        f"{directory}/{update} was written by {checkpoint_lib.version_of(meta)}, newer than "
        f"this mimex_jax {__version__}; upgrade mimex_jax instead")
  config = checkpoint_lib.with_added_keys(meta["config"])
  saved = checkpoint_lib.read_arrays(directory, update)
  state = dict(saved)
  depth = config.get("intrinsic", {}).get("depth", 1)
  if "intrinsic" in state:
    state["intrinsic"] = _rename_in_intrinsic(state["intrinsic"], depth)
  built = _built_state(config)
  have, want = _paths(state), _paths(built, leading=0)
  if have != want:
    missing = sorted(set(want) - set(have))[:3]
    unknown = sorted(set(have) - set(want))[:3]
    shapes = [p for p in set(have) & set(want) if have[p] != want[p]][:3]
    raise checkpoint_lib.CheckpointError(
        f"{directory}/{update} cannot be migrated: its training state does not map onto this "
        f"version's (missing {missing or 'nothing'}; unknown {unknown or 'nothing'}; other "
        f"shapes {shapes or 'none'}). Its policy still loads: python -m mimex_jax.evaluate")
  if dry_run:
    return True, f"{directory}/{update}: would be migrated"
  # The arrays in the built state's own structure (dataclasses, named tuples), as a run saves.
  arrays = {p: leaf for p, leaf in zip(_paths(state), jax.tree.leaves(state))}
  order = list(_paths(built, leading=0))
  state = jax.tree.unflatten(jax.tree.structure(built), [arrays[p] for p in order])
  path = os.path.join(directory, str(update))
  kept = f"{path}.format{form}"
  shutil.move(path, kept)
  new_meta = {**meta, "config": config, "format": checkpoint_lib.CHECKPOINT_FORMAT,
              "mimex_jax_version": __version__, "migrated_from_format": form}
  writer = ocp.CheckpointManager(directory, item_names=("state", "meta"))
  writer.save(update, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                              meta=ocp.args.JsonSave(new_meta)), force=True)
  writer.wait_until_finished()
  writer.close()
  return True, f"{path}: migrated (the original is kept as {kept})"


def main(argv=None) -> None:
  argv = list(sys.argv if argv is None else argv)
  try:
    _FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0])
  if not _WORKDIR.value:
    _fail("--workdir is required: the older run's --workdir")
  directory = checkpoint_lib.checkpoint_dir(_WORKDIR.value)
  if not os.path.exists(_WORKDIR.value):
    _fail(f"{_WORKDIR.value} does not exist; give the --workdir of a training run")
  if not os.path.isdir(directory):
    _fail(f"{_WORKDIR.value} holds no checkpoints/ folder")
  steps = checkpoint_lib.Checkpointer(directory, read_only=True).steps()
  if not steps:
    _fail(f"no checkpoint in {directory}")
  try:
    for update in steps:
      _, what = migrate_checkpoint(directory, update, _DRY_RUN.value)
      print(what)
  except checkpoint_lib.CheckpointError as e:
    _fail(str(e))
  print(f"to resume: python -m mimex_jax.train --config=<the run's config file> "
        f"--workdir={_WORKDIR.value}; where that file's defaults changed since the run, the "
        f"refusal lists the --config overrides that train what the run trained")


def _fail(message: str, code: int = 2) -> None:
  print(f"mimex_jax.migrate: error: {message}", file=sys.stderr)
  sys.exit(code)


if __name__ == "__main__":
  main()
