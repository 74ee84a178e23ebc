r"""PPO (+ MIMEx) on vectorized MJX tasks.

Run (default variant: PPO + MIMEx on CartpoleBalanceSparse, 4M env steps, about 1 minute on a
2-core CPU at about 108k env steps/s after a 14 s compile; eval 1000 from 2M steps on):

  python -m mimex_jax.train --config=configs/ppo.py --workdir=runs/default

Other variants: `--config=configs/ppo.py:<variant>` with <variant> one of

  cartpole_balance_sparse  the default; training return climbs from 38 (random policy) to 1000
                           of 1000 by about 2M steps, deterministic eval 1000 (measured)
  cartpole_swingup_sparse  the paper-style hard-exploration task; a no-bonus PPO gets about 3 of
                           1000 after 2M steps (Brax PPO, measured on this CPU)
  acrobot_swingup_sparse, ball_in_cup, finger_turn_hard, reacher_hard, point_mass
                           the rest of the DM Control sparse suite (docs/TASKS.md)
  reach_sparse, push_sparse, pick_sparse, drawer_sparse, and *_dense
                           our arm's manipulation tasks (state observations, 100-150 step
                           episodes; docs/TASKS.md)
  cartpole_balance         dense reward, for checking that PPO itself learns
  cartpole_swingup         dense swing-up: learns and holds (5 of 5 seeds over 800 by 4.9M
                           steps, none below 90% of its best after 5M; docs/RESULTS.md, issue 27)
  cartpole_balance_pixels  dense balance from 32x32 pixels through a frozen encoder that
                           `python -m mimex_jax.pretrain` wrote (issue 24)
  cartpole_swingup_sparse_gpu
                           for a GPU: MuJoCo Playground's Brax PPO recipe for its DM Control
                           tasks (2048 envs, 16 epochs x 32 minibatches, discount 0.995, entropy
                           0.01, reward scale 10, constant lr 1e-3, policy 4x32, value 5x256,
                           60M steps) in our PPO, with MIMEx; not yet run on a GPU (none lent)
  smoke                    a few seconds of everything, for tests and CI

Override any field: `--config.intrinsic.kind=none --config.total_steps=5_000_000`.
Rerunning a command in the same --workdir resumes from its latest checkpoint (checkpoints/).
Figures in docstrings and README were measured on a 2-core CPU (no GPU) with jax 0.10.2.
"""

import re

from ml_collections import config_dict

from mimex_jax.envs import manipulation
from mimex_jax.intrinsic import config as intrinsic_config

_TASKS = {
    "cartpole_balance_sparse": "CartpoleBalanceSparse",
    "cartpole_swingup_sparse": "CartpoleSwingupSparse",
    "acrobot_swingup_sparse": "AcrobotSwingupSparse",
    "ball_in_cup": "BallInCup",
    "finger_turn_hard": "FingerTurnHard",
    "reacher_hard": "ReacherHard",
    "point_mass": "PointMass",
    "cartpole_balance": "CartpoleBalance",
    "cartpole_swingup": "CartpoleSwingup",
    "cartpole_balance_pixels": "CartpoleBalance",
}
# Manipulation tasks (ReachSparse -> reach_sparse), with their own episode lengths.
_TASKS.update({re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower(): name
               for name in manipulation.DEFAULT_EPISODE_LENGTH})
VARIANTS = tuple(_TASKS) + ("cartpole_swingup_sparse_gpu", "smoke")


def get_config(arg: str = "cartpole_balance_sparse") -> config_dict.ConfigDict:
  arg = arg or "cartpole_balance_sparse"
  if arg not in VARIANTS:
    raise ValueError(f"unknown variant {arg!r} of configs/ppo.py; choose one of {VARIANTS}")
  config = config_dict.ConfigDict()
  config.agent = "ppo"  # the learner: ppo (this file) | drq (configs/drq.py)

  config.env = config_dict.ConfigDict()
  config.env.name = _TASKS.get(arg.removesuffix("_gpu"), "CartpoleBalanceSparse")
  # Modules imported before env.name is looked up, comma-separated: where your own tasks call
  # mimex_jax.envs.register (README, "Your own environment"). Evaluation imports them too.
  config.env.imports = ""
  # Agent steps before truncation (bootstrapped, not terminal); 0: the task's own (1000 for
  # DM Control, 100-150 for the arm, what `register` said for yours).
  config.env.episode_length = 0
  config.env.action_repeat = 1
  # Each env's next start prepared ahead, a few per step (VectorEnv's reset pool): on | off |
  # auto (on for the arm tasks, whose reset costs more than a step). Episodes are the same.
  config.env.reset_pool = "auto"
  # What the agent sees: state (the task's own vector) | pixels (camera frames, read through
  # ppo.encoder). The env.pixels block is DrQ's (configs/drq.py).
  config.env.obs_type = "state"
  config.env.pixels = config_dict.ConfigDict()
  config.env.pixels.backend = "jax"  # jax (ray camera, any device) | warp (MuJoCo Warp)
  config.env.pixels.height = 84
  config.env.pixels.width = 84
  config.env.pixels.grayscale = False
  config.env.pixels.frame_stack = 3  # frames (or, with a frozen encoder, their features) stacked
  config.env.pixels.camera = "0"  # camera name or index
  # With a frozen encoder: the task's own joint state (`proprio(data)`, the arm tasks) after the
  # features, as PixMC gives its PPO. The bonus still reads the features only.
  config.env.proprio = False

  config.seed = 0
  # Join a multi-host run through jax.distributed (README, "Many hosts"); num_envs is then
  # over all devices of all processes.
  config.distributed = False
  config.num_seeds = 1  # seeds seed..seed+N-1 trained side by side in one program (vmap)
  config.num_envs = 256  # over all devices; must divide evenly among them
  config.unroll_length = 32  # env steps per env per update (the reference's 32)
  config.total_steps = 4_000_000  # env steps = updates * num_envs * unroll_length * action_repeat
  config.log_every = 10  # updates between log lines
  config.eval_every = 50  # updates between deterministic evaluations (0: only at the end)
  config.eval_episodes = 16
  # Also evaluate the policy as it acts (sampled actions): eval_sampled_return and
  # eval_sampled_success_rate beside the mean action's eval_return.
  config.eval_sampled = True

  config.checkpoint = config_dict.ConfigDict()
  config.checkpoint.every = 50  # updates between checkpoints (0: only at the end or when stopped)
  config.checkpoint.max_to_keep = 2  # latest checkpoints kept, besides the best evaluation
  config.checkpoint.keep_best = True  # also keep the checkpoint with the best evaluation
  config.checkpoint.async_save = True  # write in a background thread while training goes on

  config.ppo = config_dict.ConfigDict()
  config.ppo.learning_rate = 1e-3  # reference: 1e-3 with a cosine schedule
  config.ppo.lr_schedule = "cosine"  # constant | cosine | linear
  config.ppo.num_epochs = 4  # reference: 10; fewer keep a 2-core CPU busy with env steps
  config.ppo.num_minibatches = 4
  config.ppo.clip_epsilon = 0.2
  # > 0: an update stops taking minibatch steps once a minibatch's KL from the acting policy
  # passes 1.5x this (a guard against steps that move the policy too far); 0: off.
  config.ppo.target_kl = 0.0
  config.ppo.value_clip = False  # reference: on; with returns in the hundreds a 0.2 clip stalls V
  config.ppo.value_coef = 0.5
  config.ppo.entropy_coef = 0.0  # reference: 0
  config.ppo.max_grad_norm = 1.0
  config.ppo.discount = 0.99
  config.ppo.gae_lambda = 0.95
  config.ppo.normalize_advantage = True
  # Advantages are divided by max(their std, this floor): a batch without reward has advantages
  # that are only value noise, and normalizing them to unit scale makes PPO fit noise.
  config.ppo.advantage_std_floor = 0.0
  config.ppo.reward_scale = 1.0  # extrinsic reward multiplier
  config.ppo.init_std = 1.0  # learned, state-independent action std starts here
  # > 0: a penalty on policy means past the action bounds, bounds_coef * (|mean| - 1)^2 summed
  # over action dimensions (a pull back from where the clipped action no longer depends on them)
  config.ppo.bounds_coef = 0.0
  # A second critic output for the intrinsic return (discount intrinsic.return_discount), each
  # head with its own GAE and value loss; the policy follows the sum of the advantages (RND's).
  config.ppo.intrinsic_value_head = False
  config.ppo.squash_mean = False  # tanh on the policy mean, keeping it inside the action bounds
  config.ppo.min_std = 0.0  # floor under the action std (std = min_std + exp(param))
  config.ppo.max_std = 0.0  # > 0: the std stays between min_std and this (a sigmoid); 0: unbounded
  config.ppo.policy_hidden_sizes = (64, 64)  # reference: (256, 128, 64)
  config.ppo.value_hidden_sizes = (64, 64)
  config.ppo.activation = "elu"
  # With env.obs_type=pixels: frozen (a pretrained encoder, `python -m mimex_jax.pretrain`, read
  # from ppo.encoder_checkpoint; each frame encoded once, its features shared by the policy, the
  # critic and the bonus) | conv (a small conv torso in the policy and in the critic, trained by
  # PPO's loss; the bonus reads the policy's torso features, detached).
  config.ppo.encoder = "frozen"
  config.ppo.encoder_checkpoint = ""

  config.intrinsic = intrinsic_config.default_config()

  if arg in ("cartpole_swingup_sparse", "cartpole_swingup"):
    config.total_steps = 20_000_000
    # At 1e-3 a learned swing-up fell apart: once the action std had shrunk to about 0.06, one
    # Adam step moved the mean by much of a std (clip fraction 0.1-0.35), the means drifted past
    # the bounds where the clipped action ignores them, and a seed fell from 845 to 219. At 3e-4
    # no seed fell below 90% of its best after 5M steps (docs/RESULTS.md, issue 27).
    config.ppo.learning_rate = 3e-4
  if arg == "cartpole_swingup":
    config.intrinsic.kind = "none"
    config.ppo.entropy_coef = 0.01
  if arg == "cartpole_balance_pixels":
    # PPO from 32x32 pixels through a frozen encoder pretrained on the task's frames (issue 24):
    # first `python -m mimex_jax.pretrain --config=configs/pretrain.py
    # --workdir=encoders/cartpole32`.
    config.env.obs_type = "pixels"
    config.env.pixels.height = config.env.pixels.width = 32
    config.ppo.encoder_checkpoint = "encoders/cartpole32"
    config.intrinsic.kind = "none"
    # The learner of the state variant `cartpole_balance` (lr 1e-3, no entropy bonus): from
    # states it put 3 of 3 seeds above 980 by 1.9M steps, where lr 3e-4 with entropy 0.01 put
    # 2 of 3 above 800 by 1.4M and left the third at about 320 (docs/RESULTS.md, issue 24).
    config.total_steps = 3_000_000
  if arg == "cartpole_swingup_sparse_gpu":
    # mujoco_playground.config.dm_control_suite_params.brax_ppo_config, in our terms: Brax
    # unrolls 30 steps and splits 16 such rollouts of its 2048 envs into 32 minibatches; ours
    # splits one 32-step rollout of the 2048 envs by time steps, the same 16 passes over it.
    config.num_envs = 2048
    config.total_steps = 60_000_000
    config.eval_every = 20
    config.checkpoint.every = 20
    config.ppo.num_epochs = 16
    config.ppo.num_minibatches = 32
    config.ppo.discount = 0.995
    config.ppo.entropy_coef = 0.01
    config.ppo.reward_scale = 10.0
    config.ppo.lr_schedule = "constant"
    config.ppo.policy_hidden_sizes = (32, 32, 32, 32)
    config.ppo.value_hidden_sizes = (256, 256, 256, 256, 256)
    config.ppo.activation = "swish"
    intrinsic_config.use_reference_size(config.intrinsic)
  if arg == "smoke":
    config.num_envs = 16
    config.unroll_length = 8
    config.total_steps = 16 * 8 * 6
    config.env.episode_length = 20
    config.log_every = 2
    config.eval_every = 3
    config.eval_episodes = 4
    config.checkpoint.every = 3
    # Constant: a cosine schedule's length is a constant of the compiled step, so every
    # total_steps would be its own program (the tests run this config at several lengths).
    config.ppo.lr_schedule = "constant"
    config.ppo.policy_hidden_sizes = (16,)
    config.ppo.value_hidden_sizes = (16,)
    config.ppo.num_epochs = 2
    config.ppo.num_minibatches = 2
    config.intrinsic.embed_dim = 16
    config.intrinsic.depth = 1
    config.intrinsic.num_heads = 2
    config.intrinsic.decoder_embed_dim = 16
  return config
