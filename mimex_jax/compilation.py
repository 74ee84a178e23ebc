"""The persistent compilation cache, shared by training, evaluation, tests and experiments."""

import os

import jax


def enable_compilation_cache() -> None:
  """Persist compiled programs across runs: on 2 CPU cores compiling dominates short runs."""
  cache_dir = os.environ.get("MIMEX_JAX_CACHE_DIR",
                             os.path.join(os.path.expanduser("~"), ".cache", "mimex_jax", "xla"))
  if jax.process_count() > 1:
    # The cache key does not say how collectives run: a multi-process step loaded from an entry
    # that a one-process run of the same program wrote ran the wrong all-reduces (a gloo size
    # mismatch on the first update, jax 0.10.2). Multi-process runs keep their own entries.
    cache_dir = os.path.join(cache_dir, f"process-{jax.process_index()}-of-{jax.process_count()}")
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
