"""`parallel.after`: a data dependency between the phases of a step wherever they all-reduce,
and nothing on one device, where its token cost DrQ + MIMEx 1.6 GB of compile memory."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from mimex_jax import parallel

# A NaN in `earlier` reaches `tree` only through the token (0 * NaN is NaN), so it shows whether
# the dependency is there.
PROBE = """
import jax, jax.numpy as jnp, numpy as np
from mimex_jax import parallel
tree = {"w": jnp.arange(3.0), "count": jnp.arange(3)}
earlier = {"p": jnp.array([jnp.nan, 1.0]), "q": jnp.ones((2, 2))}
out = jax.jit(parallel.after)(tree, earlier)
print(jax.device_count(), np.asarray(out["w"]).tolist(), np.asarray(out["count"]).tolist())
"""


def test_on_several_devices_the_later_phase_depends_on_every_earlier_leaf():
  assert jax.local_device_count() == 2  # conftest's two CPU devices
  tree = {"w": jnp.stack([jnp.arange(3.0)] * 2), "count": jnp.stack([jnp.arange(3)] * 2)}
  finite = {"p": jnp.ones((2, 2)), "q": jnp.ones((2, 2, 2))}
  poisoned = {"p": finite["p"].at[1, 0].set(jnp.nan), "q": finite["q"]}
  step = jax.pmap(parallel.after, axis_name="devices")
  out = step(tree, finite)
  np.testing.assert_array_equal(out["w"], tree["w"])  # x + 0 * token is x
  np.testing.assert_array_equal(out["count"], tree["count"])  # integers are left alone
  out = step(tree, poisoned)
  assert np.isnan(np.asarray(out["w"])[1]).all()  # device 1 read the NaN through the token
  assert np.isfinite(np.asarray(out["w"])[0]).all()
  np.testing.assert_array_equal(out["count"], tree["count"])
  # The other leaf too, on the other device: the token reads one number of each leaf.
  out = step(tree, {"p": finite["p"], "q": finite["q"].at[0, 0, 0].set(jnp.nan)})
  assert np.isnan(np.asarray(out["w"])[0]).all() and np.isfinite(np.asarray(out["w"])[1]).all()


def test_on_one_device_the_tree_is_returned_without_a_token(repo_root):
  done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                        cwd=repo_root, timeout=300,
                        env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu",
                             "PYTHONPATH": repo_root, "XLA_FLAGS": ""})
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split() == ["1", "[0.0,", "1.0,", "2.0]", "[0,", "1,", "2]"]
