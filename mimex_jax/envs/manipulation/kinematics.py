"""Analytic inverse kinematics of the arm with its hand pointing straight down.

The base yaw points the arm's vertical plane at the target; shoulder and elbow solve a planar
two-link problem for the wrist point, which sits `WRIST_TO_GRIP` above the grip point; the wrist
pitch then makes the three pitches sum to pi (hand down); the roll sets the fingers' closing axis.
"""

import jax
import jax.numpy as jnp

from mimex_jax.envs.manipulation import arm_model as am

_MARGIN = 1e-3  # keeps the wrist strictly inside the reachable annulus


def _wrap(angle: jax.Array, period: float) -> jax.Array:
  """Angle wrapped into [-period / 2, period / 2)."""
  return jnp.mod(angle + period / 2, period) - period / 2


def hand_down_joints(grip_pos: jax.Array, finger_axis_angle: jax.Array,
                     symmetry: float = jnp.pi) -> jax.Array:
  """Arm joint targets `[5]` (yaw, shoulder, elbow, wrist, roll) putting the grip site at
  `grip_pos` `[3]` with the hand pointing down.

  `finger_axis_angle` is the world-frame yaw of the fingers' closing axis; the axis may be turned
  by multiples of `symmetry` (pi: a line; pi/2: the faces of a cube) to keep the roll small.
  """
  x, y, z = grip_pos[0], grip_pos[1], grip_pos[2]
  yaw = jnp.arctan2(y, x)
  radial = jnp.sqrt(x * x + y * y)
  # Wrist point relative to the shoulder, in the arm's vertical plane.
  dr = radial
  dz = z + am.WRIST_TO_GRIP - am.SHOULDER_HEIGHT
  reach = jnp.clip(jnp.sqrt(dr * dr + dz * dz), abs(am.UPPER_ARM - am.FOREARM) + _MARGIN,
                   am.UPPER_ARM + am.FOREARM - _MARGIN)
  cos_elbow = (reach**2 - am.UPPER_ARM**2 - am.FOREARM**2) / (2 * am.UPPER_ARM * am.FOREARM)
  elbow = jnp.arccos(jnp.clip(cos_elbow, -1.0, 1.0))  # positive: elbow above the wrist line
  # Pitch angles are measured from vertical towards +radial.
  shoulder = jnp.arctan2(dr, dz) - jnp.arctan2(am.FOREARM * jnp.sin(elbow),
                                               am.UPPER_ARM + am.FOREARM * jnp.cos(elbow))
  wrist = jnp.pi - shoulder - elbow
  # With the hand down, the closing axis has world yaw pi/2 + yaw - roll.
  roll = _wrap(jnp.pi / 2 + yaw - finger_axis_angle, symmetry)
  joints = jnp.stack([yaw, shoulder, elbow, wrist, roll])
  lows = jnp.array([am.JOINT_RANGES[j][0] for j in am.ARM_JOINTS])
  highs = jnp.array([am.JOINT_RANGES[j][1] for j in am.ARM_JOINTS])
  return jnp.clip(joints, lows, highs)
