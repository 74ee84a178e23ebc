"""The `intrinsic` config block shared by every learner's config file (configs/ppo.py,
configs/drq.py): one set of keys, read by `mimex_jax.intrinsic.make`."""

from ml_collections import config_dict


def default_config() -> config_dict.ConfigDict:
  block = config_dict.ConfigDict()
  block.kind = "mimex"  # mimex | rnd | icm | none
  block.k_expl = 0.05  # total reward = r_ext + k_expl * r_int (reference 0.05)
  block.anneal = False  # decay k_expl linearly to 0 over training
  block.normalize = False  # divide r_int by a running std of intrinsic returns
  block.return_discount = 0.99  # discount of those returns (non-episodic, as RND)
  block.seq_len = 5  # T, the exploration length
  # What MIMEx hides: random (positions, the paper's default) | elementwise (entries of [T, D])
  # | last (the future given the past) | block (a contiguous span at a random offset)
  block.mask = "random"
  block.mask_ratio = 0.7  # keeps int(T * (1 - mask_ratio)) positions
  block.n_mask = 1  # independent maskings averaged per sequence
  block.learning_rate = 1e-4
  block.embedding = "obs"  # obs (normalized observation) | random_projection
  block.embedding_dim = 64  # width of the random projection
  block.norm_loss = False  # standardize each target position (sample variance, as reference)
  # Which window scores step t: the seq_len observations ending at `obs` (the one the action was
  # taken in; the reference's, in its PPO and its DrQ replay) or at `next_obs` (the one it led
  # to, so the reward depends on the action). Both learned the same on CartpoleSwingupSparse
  # (5 seeds each, docs/RESULTS.md), so the default is the reference's.
  block.window_end = "obs"
  # Share of the rollout's sequences the model trains on each update (1.0: all, the reference),
  # drawn per env over its steps. Every sequence is still scored, by a forward pass with the
  # same pre-update parameters.
  block.train_fraction = 0.25
  block.use_cls = True
  # Transformer sizes. The reference: 128 wide, 4 encoder blocks of 4 heads, decoder 64 wide with
  # 2 heads, train_fraction 1.0. On 2 CPU cores that costs 30x a no-bonus PPO step, so the CPU
  # default is 32 wide, 1 encoder block, 1 head, trained on a quarter of the sequences: 0.36 of
  # no-bonus PPO's steps/s (docs/PERFORMANCE.md). Same learning as the 64-wide, 2-block, fully
  # trained model on CartpoleSwingupSparse; on AcrobotSwingupSparse the same training success but
  # a lower deterministic eval success over 10 seeds (docs/RESULTS.md, "MIMEx's defaults").
  block.embed_dim = 32
  block.depth = 1
  block.num_heads = 1
  block.decoder_embed_dim = 32
  block.decoder_depth = 1
  block.decoder_num_heads = 1
  # Baselines, sized as the MIMEx reference.
  block.rnd = config_dict.ConfigDict()
  block.rnd.hidden_sizes = (256, 256)  # target and predictor MLPs
  block.rnd.output_size = 288
  block.rnd.learning_rate = 1e-3
  block.icm = config_dict.ConfigDict()
  block.icm.feature_size = 288  # linear encoder, trained by the inverse model
  block.icm.hidden_size = 256  # inverse and forward models
  block.icm.learning_rate = 1e-3
  return block


def use_reference_size(block: config_dict.ConfigDict) -> config_dict.ConfigDict:
  """Sets the MIMEx reference's model size on an `intrinsic` block: 128 wide, 4 encoder blocks
  of 4 heads, a decoder 64 wide with 2 heads, trained on every sequence (a GPU affords it)."""
  block.embed_dim = 128
  block.depth = 4
  block.num_heads = 4
  block.decoder_embed_dim = 64
  block.decoder_num_heads = 2
  block.train_fraction = 1.0
  return block
