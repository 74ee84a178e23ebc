"""Flax modules: MLPs for the actor-critic, a pre-norm transformer for masked input modeling."""
