"""Proximal policy optimization."""

from mimex_jax.agents.ppo.learner import PPO, PPOBatch, PPOParams
from mimex_jax.agents.ppo.losses import LossInputs, compute_gae, ppo_loss

__all__ = ["PPO", "PPOBatch", "PPOParams", "LossInputs", "compute_gae", "ppo_loss"]
