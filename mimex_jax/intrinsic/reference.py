"""Weights of the MIMEx reference's PyTorch model (its `BERT` module) as our parameters.

The reference names its modules `encoder_embed`, `blocks.<i>.{norm1, attn.qkv, attn.proj,
norm2, mlp.fc1, mlp.fc2}`, `norm`, `decoder_embed`, `decoder_blocks.<i>...`, `decoder_norm`,
`decoder_pred`, plus `cls_token` and `mask_token`. Its linear weights are `[out, in]`; a
block's `attn.qkv` is one `[3 * width, width]` matrix, query then key then value rows, each
split into heads as `(heads, head_dim)`. Our `MaskedSequenceModel` uses the same module names
(with `_<i>` for `.<i>`), flax's `[in, out]` kernels and separate query, key and value
projections of shape `[width, heads, head_dim]`.
"""

import re
from typing import Any, Dict, Mapping

import numpy as np


def _dense(weights: Mapping[str, np.ndarray], name: str) -> Dict[str, np.ndarray]:
  return {"kernel": np.asarray(weights[f"{name}.weight"]).T,
          "bias": np.asarray(weights[f"{name}.bias"])}


def _layer_norm(weights: Mapping[str, np.ndarray], name: str) -> Dict[str, np.ndarray]:
  return {"scale": np.asarray(weights[f"{name}.weight"]),
          "bias": np.asarray(weights[f"{name}.bias"])}


def _block(weights: Mapping[str, np.ndarray], name: str, num_heads: int) -> Dict[str, Any]:
  qkv_weight = np.asarray(weights[f"{name}.attn.qkv.weight"])
  qkv_bias = np.asarray(weights[f"{name}.attn.qkv.bias"])
  width = qkv_weight.shape[1]
  if qkv_weight.shape[0] != 3 * width or width % num_heads:
    raise ValueError(f"{name}.attn.qkv.weight has shape {qkv_weight.shape}; expected "
                     f"[3 * width, width] with width divisible by {num_heads} heads")
  head_dim = width // num_heads
  attention = {}
  for index, part in enumerate(("query", "key", "value")):
    rows = slice(index * width, (index + 1) * width)
    attention[part] = {"kernel": qkv_weight[rows].T.reshape(width, num_heads, head_dim),
                       "bias": qkv_bias[rows].reshape(num_heads, head_dim)}
  proj = np.asarray(weights[f"{name}.attn.proj.weight"])
  attention["out"] = {"kernel": proj.T.reshape(num_heads, head_dim, width),
                      "bias": np.asarray(weights[f"{name}.attn.proj.bias"])}
  return {"norm1": _layer_norm(weights, f"{name}.norm1"), "attn": attention,
          "norm2": _layer_norm(weights, f"{name}.norm2"),
          "fc1": _dense(weights, f"{name}.mlp.fc1"), "fc2": _dense(weights, f"{name}.mlp.fc2")}


def _count_blocks(weights: Mapping[str, np.ndarray], prefix: str) -> int:
  indices = {int(m.group(1)) for key in weights
             for m in [re.match(rf"{prefix}\.(\d+)\.", key)] if m}
  return max(indices) + 1 if indices else 0


def params_from_reference(weights: Mapping[str, np.ndarray], num_heads: int,
                          decoder_num_heads: int) -> Dict[str, Any]:
  """The reference's `state_dict()` (names -> arrays; a `param/` prefix is dropped) as
  `{"params": ...}` for `MaskedSequenceModel(embed_dim, depth, num_heads, decoder_embed_dim,
  decoder_depth, decoder_num_heads, use_cls=<"cls_token" in weights>)`. Head counts are not
  in the weights, so they are arguments."""
  weights = {key.split("/", 1)[1] if key.startswith("param/") else key: value
             for key, value in weights.items()}
  missing = [name for name in ("encoder_embed.weight", "decoder_pred.weight", "mask_token")
             if name not in weights]
  if missing:
    raise KeyError(f"not a MIMEx reference state dict: {missing} missing")
  params: Dict[str, Any] = {
      "encoder_embed": _dense(weights, "encoder_embed"),
      "norm": _layer_norm(weights, "norm"),
      "decoder_embed": _dense(weights, "decoder_embed"),
      "decoder_norm": _layer_norm(weights, "decoder_norm"),
      "decoder_pred": _dense(weights, "decoder_pred"),
      "mask_token": np.asarray(weights["mask_token"]),
  }
  if "cls_token" in weights:
    params["cls_token"] = np.asarray(weights["cls_token"])
  for i in range(_count_blocks(weights, "blocks")):
    params[f"blocks_{i}"] = _block(weights, f"blocks.{i}", num_heads)
  for i in range(_count_blocks(weights, "decoder_blocks")):
    params[f"decoder_blocks_{i}"] = _block(weights, f"decoder_blocks.{i}", decoder_num_heads)
  return {"params": params}
