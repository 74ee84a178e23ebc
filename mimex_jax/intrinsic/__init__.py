"""Intrinsic rewards behind one interface (see `base.py`): MIMEx (with its mask distributions),
RND, ICM and none."""

from typing import Optional

from mimex_jax.intrinsic.base import IntrinsicBatch, IntrinsicReward
from mimex_jax.intrinsic.icm import Icm
from mimex_jax.intrinsic.mimex import Mimex
from mimex_jax.intrinsic.none import NoBonus
from mimex_jax.intrinsic.rnd import Rnd

KINDS = ("mimex", "rnd", "icm", "none")


def make(config, obs_size: int, action_size: int,
         axis_name: Optional[str] = None) -> IntrinsicReward:
  """Builds the intrinsic reward named by `config.kind` from an `intrinsic` config block."""
  if config.kind == "none":
    return NoBonus()
  if config.kind == "rnd":
    return Rnd(obs_size, hidden_sizes=tuple(config.rnd.hidden_sizes),
               output_size=config.rnd.output_size, learning_rate=config.rnd.learning_rate,
               axis_name=axis_name)
  if config.kind == "icm":
    return Icm(obs_size, action_size, feature_size=config.icm.feature_size,
               hidden_size=config.icm.hidden_size, learning_rate=config.icm.learning_rate,
               axis_name=axis_name)
  if config.kind == "mimex":
    return Mimex(
        obs_size=obs_size, seq_len=config.seq_len, mask_ratio=config.mask_ratio,
        n_mask=config.n_mask, mask=config.mask, learning_rate=config.learning_rate, embedding=config.embedding,
        embedding_dim=config.embedding_dim, norm_loss=config.norm_loss,
        window_end=config.window_end, train_fraction=config.train_fraction, axis_name=axis_name,
        model_kwargs=dict(embed_dim=config.embed_dim, depth=config.depth,
                          num_heads=config.num_heads, decoder_embed_dim=config.decoder_embed_dim,
                          decoder_depth=config.decoder_depth,
                          decoder_num_heads=config.decoder_num_heads, use_cls=config.use_cls))
  raise ValueError(f"intrinsic.kind must be one of {KINDS}, got {config.kind!r}")


__all__ = ["IntrinsicBatch", "IntrinsicReward", "Icm", "Mimex", "NoBonus", "Rnd", "KINDS",
           "make"]
