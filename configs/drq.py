r"""DrQ-v2 (+ MIMEx) from pixels, with the replay buffer on the device.

Run (the paper's DMC setting on CartpoleSwingupSparse; sized for a GPU):

  python -m mimex_jax.train --config=configs/drq.py:cartpole_swingup_sparse --workdir=runs/drq_cs

Variants (`--config=configs/drq.py:<variant>`):

  cartpole_swingup_sparse  pixels 84x84x(3 frames), action repeat 2, 500-step episodes; the
                           paper's hard-exploration DMC task (3.1M frames in the reference)
  acrobot_swingup          DM Control's acrobot swing-up (its smooth reward), pixels
  finger_turn_hard         pixels, the paper's finger task
  reach_sparse             our arm's sparse reach, from the `front` camera
  cartpole_balance_state   states, dense reward: DrQ without pixels, a quick check that the
                           learner learns; measured on a 2-core CPU: training return 37 -> 490
                           of 500, deterministic eval 483-492 from 45k frames, 4 minutes
  cartpole_balance_pixels  32x32 pixels, batch 128, one update per 2 agent steps (DrQ-v2's
                           rate), 150k frames: DrQ from pixels sized for a 2-core CPU. Measured
                           (docs/RESULTS.md, seeds 0-2): deterministic eval 75-150 -> first 400
                           of 500 at 80k-118k frames, 402-449 at 150k, last five evals 377-441
                           on average; about 41 min a seed alone
  cartpole_swingup_sparse_state
                           states, the paper's sparse task and bonus settings (k_expl 0.05, RND
                           0.01 via --config.intrinsic.k_expl, T 5, mask 0.7) with DrQ sized for
                           a 2-core CPU (the CPU-default MIMEx); run by
                           experiments/compare_exploration.py --learner=drq (docs/RESULTS.md)
  cartpole_balance_pixels_gpu
                           DrQ-v2's own cartpole_balance setting sized for a GPU: 84x84, batch
                           256, hidden 1024, n-step 3, std 1.0 -> 0.1 over DrQ-v2's 100k agent
                           steps (200k frames), 1000-frame episodes (eval maximum 1000, as
                           DrQ-v2's curves: about 740 by 40k frames, 960 by 60k); 200k frames.
                           Not yet run (no GPU lent so far)
  cartpole_swingup_sparse_pixels_cpu
                           cartpole_balance_pixels's learner on the sparse task with the
                           CPU-default MIMEx: a short pixel MIMEx learning curve on 2 cores
  smoke                    tiny pixels and networks: a few seconds of everything, for tests

Hyperparameters are the MIMEx reference's DrQ-v2 settings (../shared/reference/MIMEX.md): batch
1024, lr 1e-4, feature dim 50, hidden 1024, tau 0.01, n-step 1, std 1.0 -> 0.1 over 500k frames
clipped at 0.3, 4000 random frames, pad-4 shifts, one update per 2 env steps. Frames count env
steps times action repeat, summed over envs. Override anything: `--config.intrinsic.kind=none`.
"""

from ml_collections import config_dict

from mimex_jax.intrinsic import config as intrinsic_config

_TASKS = {
    "cartpole_swingup_sparse": "CartpoleSwingupSparse",
    "acrobot_swingup": "AcrobotSwingup",
    "finger_turn_hard": "FingerTurnHard",
    "reach_sparse": "ReachSparse",
    "cartpole_balance_state": "CartpoleBalance",
    "cartpole_balance_pixels": "CartpoleBalance",
    "cartpole_swingup_sparse_state": "CartpoleSwingupSparse",
    "cartpole_balance_pixels_gpu": "CartpoleBalance",
    "cartpole_swingup_sparse_pixels_cpu": "CartpoleSwingupSparse",
    "smoke": "CartpoleSwingupSparse",
}
VARIANTS = tuple(_TASKS)


def _cpu_cadence(config: config_dict.ConfigDict) -> None:
  """Log, evaluation and checkpoint intervals (updates) for the short CPU-sized runs."""
  config.log_every = 20
  config.eval_every = 100
  config.checkpoint.every = 100


def _state_learner_on_cpu(config: config_dict.ConfigDict) -> None:
  """DrQ from states sized for 2 CPU cores: 16 envs x 2 steps and 8 updates of batch 256 per
  fused step (one update per 4 agent steps), hidden 256, DrQ-v2's n-step 3."""
  config.env.obs_type = "state"
  config.num_envs = 16
  config.env_steps = 2
  config.updates_per_step = 8
  _cpu_cadence(config)
  config.drq.batch_size = 256
  config.drq.hidden_dim = 256
  config.drq.n_step = 3


def get_config(arg: str = "cartpole_swingup_sparse") -> config_dict.ConfigDict:
  arg = arg or "cartpole_swingup_sparse"
  if arg not in VARIANTS:
    raise ValueError(f"unknown variant {arg!r} of configs/drq.py; choose one of {VARIANTS}")
  config = config_dict.ConfigDict()
  config.agent = "drq"  # the learner: drq (this file) | ppo (configs/ppo.py)

  config.env = config_dict.ConfigDict()
  config.env.name = _TASKS[arg]
  # Modules imported before env.name is looked up, comma-separated: where your own tasks call
  # mimex_jax.envs.register (README, "Your own environment"). Evaluation imports them too.
  config.env.imports = ""
  # Agent steps (DM Control's 1000 at action repeat 2); 0: the task's own length.
  config.env.episode_length = 500
  config.env.action_repeat = 2
  config.env.obs_type = "pixels"  # pixels | state
  config.env.pixels = config_dict.ConfigDict()
  config.env.pixels.backend = "jax"  # jax (ray camera, any device) | warp (MuJoCo Warp)
  config.env.pixels.height = 84
  config.env.pixels.width = 84
  config.env.pixels.grayscale = False
  config.env.pixels.frame_stack = 3
  config.env.pixels.camera = "0"  # camera name or index
  # Each env's next start prepared ahead, a few per step (VectorEnv's reset pool): on | off |
  # auto (on for the arm tasks, whose reset costs more than a step; never with warp). Episodes
  # are the same either way.
  config.env.reset_pool = "auto"

  config.seed = 0
  # Join a multi-host run through jax.distributed (README, "Many hosts"); num_envs is then
  # over all devices of all processes.
  config.distributed = False
  config.num_seeds = 1  # seeds trained side by side in one program (vmap)
  config.num_envs = 32  # over all devices; must divide evenly among them
  config.env_steps = 2  # env steps per env per update
  config.updates_per_step = 32  # learner updates per update: 64 transitions -> 1 per 2 steps
  config.total_steps = 3_100_000  # env frames = updates * num_envs * env_steps * action_repeat
  config.log_every = 50  # updates between log lines
  config.eval_every = 500  # updates between deterministic evaluations (0: only at the end)
  config.eval_episodes = 8

  config.checkpoint = config_dict.ConfigDict()
  config.checkpoint.every = 500  # updates
  config.checkpoint.max_to_keep = 2
  config.checkpoint.keep_best = True
  config.checkpoint.async_save = True
  # False leaves the replay buffer out (GBs at full size); a resume then refills it first.
  config.checkpoint.include_replay = True

  config.replay = config_dict.ConfigDict()
  config.replay.capacity = 1_000_000  # transitions over all devices (reference 1M)

  config.drq = config_dict.ConfigDict()
  config.drq.batch_size = 1024  # over all devices (reference 1024)
  config.drq.learning_rate = 1e-4
  config.drq.feature_dim = 50  # trunk width of actor and critic
  config.drq.hidden_dim = 1024
  config.drq.num_filters = 32  # conv encoder
  config.drq.num_conv_layers = 4
  config.drq.discount = 0.99
  config.drq.n_step = 1  # reference 1 (DrQ-v2's own default is 3)
  config.drq.tau = 0.01  # Polyak rate of the target critic
  # Exploration std, linear over std_duration frames (frames, not DrQ-v2's agent steps).
  config.drq.std_initial = 1.0
  config.drq.std_final = 0.1
  config.drq.std_duration = 500_000
  config.drq.std_clip = 0.3  # noise clip of target and actor-update actions
  config.drq.aug_pad = 4  # random shifts of up to this many pixels (0: off)
  config.drq.random_frames = 4000  # uniformly random actions before this many frames
  config.drq.learning_starts = 4000  # frames before the first update
  # What the bonus sees of an observation: encoder (the conv features, detached, the
  # reference's default) | trunk (the actor's feature_dim-wide trunk output)
  config.drq.intrinsic_features = "encoder"
  # Shift each sampled MIMEx sequence (pixels) by one random pad-`aug_pad` shift shared by its
  # frames before embedding it, as the reference does; False embeds the frames unshifted.
  config.drq.augment_intrinsic = True
  # Which encoder parameters embed the bonus's inputs: current (each update's own, the
  # reference's) | step_start (the fused step's starting ones, for all its updates in one pass;
  # at most updates_per_step - 1 steps older) | auto (step_start on CPU, where the learner's
  # updates are unrolled: a copy of the bonus in each made DrQ + MIMEx compile for 5 minutes in
  # 14.5 GB; current elsewhere). From states both give the same numbers. A checkpoint records
  # what auto made, so resuming it where auto makes the other is refused.
  config.drq.bonus_encoder = "auto"
  # How a fused step runs its updates_per_step learner updates: unrolled (written out: on CPU
  # XLA runs a convolution's gradients 6-11x slower inside a loop) | loop (one copy of the
  # update; on CPU the encoder's gradients are then computed as forward convolutions, which run
  # as fast in a loop; the same numbers up to float rounding) | auto (loop: on CPU it compiled
  # 2.4x faster in half the memory for 3-5% fewer frames/s). A performance setting: a run may
  # resume under another one.
  config.drq.learner_updates = "auto"
  # What fills a MIMEx window's positions from before its episode began: zeros (zero
  # embeddings, our default since the first DrQ runs, so recorded results stay comparable; the
  # padding is the same vector whatever the encoder learns) | blank_frame (the reference's:
  # all-zero observations, encoded like any frame, so the padding moves with the encoder)
  config.drq.intrinsic_padding = "zeros"

  # The reference's MIMEx on DMC: exploration length 5, mask ratio 0.7 (the defaults) at the
  # reference's size.
  config.intrinsic = intrinsic_config.use_reference_size(intrinsic_config.default_config())

  if arg == "reach_sparse":
    config.env.episode_length = 100
    config.env.action_repeat = 1
    config.env.pixels.camera = "front"
    config.total_steps = 2_000_000
  if arg == "cartpole_balance_state":
    _state_learner_on_cpu(config)
    config.env.episode_length = 250
    config.total_steps = 60_000
    config.replay.capacity = 100_000
    config.drq.std_duration = 30_000
    config.drq.random_frames = 2000
    config.drq.learning_starts = 2000
    config.intrinsic.kind = "none"
    config.intrinsic.embed_dim = 32
    config.intrinsic.depth = 1
  if arg in ("cartpole_balance_pixels", "cartpole_swingup_sparse_pixels_cpu"):
    config.env.episode_length = 250
    config.env.pixels.height = 32
    config.env.pixels.width = 32
    # DrQ-v2's update rate: 8 envs x 2 steps = 16 transitions per fused step, 8 updates, so one
    # update per 2 agent steps (it was one per 4, with batch 64: eval stayed at 75).
    config.num_envs = 8
    config.updates_per_step = 8
    # 150k frames: about 1.5 h alone on 2 cores without a bonus (26-31 frames/s by
    # experiments/drq_cost.py, December 7; with MIMEx 14-16, so 40k frames take about 45 min).
    config.total_steps = 150_000
    _cpu_cadence(config)
    config.replay.capacity = 60_000
    config.drq.batch_size = 128
    config.drq.hidden_dim = 256
    config.drq.n_step = 3
    config.drq.aug_pad = 2  # 4 of 84 pixels in DrQ-v2; 2 keeps the shift a similar share of 32
    config.drq.std_duration = 40_000
    config.drq.random_frames = 4000
    config.drq.learning_starts = 4000
    config.intrinsic.kind = "none"
  if arg == "cartpole_swingup_sparse_pixels_cpu":
    config.env.episode_length = 500  # DM Control's 1000 frames: an eval maximum of 1000
    config.total_steps = 40_000
    config.replay.capacity = 40_000
    config.intrinsic = intrinsic_config.default_config()  # MIMEx at its CPU size
  if arg == "cartpole_swingup_sparse_state":
    # The state learner of cartpole_balance_state on the sparse task, at DrQ-v2's n-step 3 (the
    # reference's 1 propagates a sparse reward a third as far per update). The bonus keeps the
    # CPU-default MIMEx size: from 5-dim states the reference's 128-wide model is not needed.
    _state_learner_on_cpu(config)
    config.total_steps = 150_000  # frames: what 15 runs (3 methods x 5 seeds) fit in an hour
    config.replay.capacity = 150_000
    config.drq.std_duration = 100_000
    config.drq.random_frames = 4000
    config.drq.learning_starts = 4000
    config.intrinsic = intrinsic_config.default_config()
  if arg == "cartpole_balance_pixels_gpu":
    # 32 envs x 2 steps = 64 agent steps per fused step, 32 updates: DrQ-v2's one per 2.
    config.total_steps = 200_000
    config.replay.capacity = 200_000
    config.drq.batch_size = 256
    config.drq.n_step = 3
    config.drq.std_duration = 200_000
    config.intrinsic.kind = "none"
  if arg == "smoke":
    config.env.episode_length = 20
    config.env.pixels.height = 24
    config.env.pixels.width = 24
    config.num_envs = 4
    config.env_steps = 2
    config.updates_per_step = 2
    config.total_steps = 4 * 2 * 2 * 12
    config.log_every = 2
    config.eval_every = 6
    config.eval_episodes = 2
    config.checkpoint.every = 6
    config.replay.capacity = 400
    config.drq.batch_size = 8
    config.drq.feature_dim = 8
    config.drq.hidden_dim = 16
    config.drq.num_filters = 4
    config.drq.std_duration = 100
    config.drq.random_frames = 32
    config.drq.learning_starts = 32
    config.intrinsic.embed_dim = 16
    config.intrinsic.depth = 1
    config.intrinsic.num_heads = 2
    config.intrinsic.decoder_embed_dim = 16
  return config
