"""mimex_jax: MIMEx intrinsic rewards with PPO on vectorized MuJoCo-MJX environments.

Arrays that come out of a rollout are time-major: `[T, B, ...]` with T the unroll length and B
the number of environments on one device. That is the only convention used in this package.
"""

__version__ = "0.1.0"
