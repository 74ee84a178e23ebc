"""Proximal policy optimization, on-policy from state vectors, with any intrinsic reward."""

from mimex_jax.agents.ppo.learner import PPO, PPOBatch, PPOParams
from mimex_jax.agents.ppo.losses import LossInputs, compute_gae, ppo_loss
from mimex_jax.agents.ppo.train_step import FusedStep, TrainState

__all__ = ["FusedStep", "PPO", "PPOBatch", "PPOParams", "LossInputs", "TrainState",
           "compute_gae", "ppo_loss"]
