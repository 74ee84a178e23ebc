"""The DM Control sparse suite, from MuJoCo Playground's MJX ports, with success definitions.

`SPARSE_SUITE` names the tasks the MIMEx paper's DM Control experiments draw on. Success is a step
reward of 1 (their rewards are indicators of the goal region) except for PointMass, whose reward
is shaped: there success is being inside the target.
"""

from typing import Any

import jax
import jax.numpy as jnp
from mujoco import mjx

SPARSE_SUITE = {
    "CartpoleSwingupSparse": "pole upright (cos > 0.995) with the cart near the center",
    "AcrobotSwingupSparse": "tip within the target radius above the pivot",
    "BallInCup": "ball inside the cup",
    "FingerTurnHard": "spinner tip inside the small target",
    "ReacherHard": "fingertip inside the small target",
    "PointMass": "mass inside the target (the reward is shaped; success is this region)",
}


def point_mass_in_target(state: Any) -> jax.Array:
  return state.metrics["reward/near_target"] >= 1.0  # tolerance() is exactly 1 inside the bounds


class RandomBallStart:
  """BallInCup whose ball starts at a random point, as in DM Control.

  Playground's port ignores the reset key: every episode starts with the ball hanging still, so
  all envs would explore from one state. DM Control draws the ball uniformly in a box above the
  cup's start (x in [-0.2, 0.2], z in [0.2, 0.5] relative to its rest position).
  """

  def __init__(self, backend: Any):
    self.backend = backend
    model = backend.mj_model
    self._ball_qpos = [model.jnt_qposadr[model.joint(name).id] for name in ("ball_x", "ball_z")]

  def __getattr__(self, name: str) -> Any:  # sizes, models and the rest come from the task
    return getattr(self.backend, name)

  def reset(self, key: jax.Array) -> Any:
    state = self.backend.reset(key)
    offset = jax.random.uniform(jax.random.fold_in(key, 1), (2,), minval=jnp.array([-0.2, 0.2]),
                                maxval=jnp.array([0.2, 0.5]))
    qpos = state.data.qpos.at[jnp.array(self._ball_qpos)].add(offset)
    data = mjx.forward(self.backend.mjx_model, state.data.replace(qpos=qpos))
    return state.replace(data=data, obs=self.backend._get_obs(data, state.info))  # pylint: disable=protected-access

  def step(self, state: Any, action: jax.Array) -> Any:
    return self.backend.step(state, action)


# Per-task changes to Playground's ports; the registry applies them by name.
SUCCESS_FNS = {"PointMass": point_mass_in_target}  # others: a step reward of 1
BACKEND_WRAPPERS = {"BallInCup": RandomBallStart}
