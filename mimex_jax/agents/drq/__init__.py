"""DrQ-v2 from pixels or states, with an on-device replay buffer and any intrinsic reward."""

from mimex_jax.agents.drq.augment import random_shift
from mimex_jax.agents.drq.learner import (DrQ, DrQBatch, DrQOptState, DrQParams, exploration_std,
                                          sample_action)
from mimex_jax.agents.drq.replay import ReplayBuffer, ReplayState, Sample, n_step_return
from mimex_jax.agents.drq.train_step import DrQFusedStep, DrQTrainState

__all__ = ["DrQ", "DrQBatch", "DrQFusedStep", "DrQOptState", "DrQParams", "DrQTrainState",
           "ReplayBuffer", "ReplayState", "Sample", "exploration_std", "n_step_return",
           "random_shift", "sample_action"]
