"""Learners. Each takes time-major `[T, B]` rollouts and returns new parameters and metrics."""
