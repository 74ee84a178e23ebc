"""Scripted policies: closed-loop, state-based solutions proving each task solvable.

Each policy reads the simulator state, picks a phase from geometric tests (no memory, so it
runs under jit and vmap), chooses a grip-point target, and converts it to joint targets with
the analytic hand-down IK; the action moves the env's joint targets towards those.
"""

import jax
import jax.numpy as jnp

from mimex_jax.envs.manipulation import arm_model as am
from mimex_jax.envs.manipulation.kinematics import hand_down_joints

_MAX_MOVE = 0.04  # metres per control step the grip target may lead the grip point
_TRAVEL_HEIGHT = 0.12  # grip height for moving above objects
_CLOSED, _HALF_OPEN, _OPEN = 0.0, 0.5, 1.0


def _action(env, state, grip: jax.Array, target: jax.Array, finger_axis_angle: jax.Array,
            gripper_open, symmetry: float = jnp.pi) -> jax.Array:
  """Joint-space action moving the grip point towards `target` (rate limited: a long jump
  would swing the fingers through the object)."""
  step = target - grip
  step = step * jnp.minimum(1.0, _MAX_MOVE / (jnp.linalg.norm(step) + 1e-6))
  joints = hand_down_joints(grip + step, finger_axis_angle, symmetry)
  return env.action_towards(state.data, joints, jnp.asarray(gripper_open, jnp.float32))


def reach(env, state) -> jax.Array:
  grip = env.grip_pos(state.data)
  return _action(env, state, grip, state.info["goal"], 0.0, _HALF_OPEN)


_PUSH_HEIGHT = 0.035  # grip height while pushing: fingertips 1 cm above the table
_PUSH_BACKOFF = 0.08  # start of a push, behind the cube's centre
_PUSH_STOP = 0.025  # stop pushing this close to the goal (success is within 0.04)
_PUSH_SPEED = 0.01  # metres per control step: slow enough that the cube stops when we do


def push(env, state) -> jax.Array:
  data, goal = state.data, state.info["goal"]
  grip, cube = env.grip_pos(data), env.object_pos(data)
  to_goal = goal[:2] - cube[:2]
  distance = jnp.linalg.norm(to_goal)
  direction = to_goal / jnp.maximum(distance, 1e-6)
  offset = grip[:2] - cube[:2]
  along = offset @ direction
  lateral = jnp.linalg.norm(offset - along * direction)
  start = cube[:2] - _PUSH_BACKOFF * direction
  pushing = (along < -0.03) & (lateral < 0.02) & (grip[2] < _PUSH_HEIGHT + 0.02)
  at_start = jnp.linalg.norm(grip[:2] - start) < 0.02
  # While pushing, steer the paddle back onto the line through cube and goal.
  push_xy = cube[:2] + (along + _PUSH_SPEED) * direction
  # Off the line and low: rise straight up first, so the paddle does not sweep the cube away.
  retreat = ~pushing & ~at_start & (grip[2] < _TRAVEL_HEIGHT - 0.03)
  xy = jnp.where(pushing, push_xy, jnp.where(retreat, grip[:2], start))
  z = jnp.where(pushing | at_start, _PUSH_HEIGHT, _TRAVEL_HEIGHT)
  target = jnp.concatenate([xy, z[None]])
  # Fingers closed and across the push direction make a paddle.
  paddle_angle = jnp.arctan2(direction[1], direction[0]) + jnp.pi / 2
  moving = _action(env, state, grip, target, paddle_angle, _CLOSED)
  # Near the goal, freeze every joint where it is: the direction to the goal turns quickly at
  # short range, and following it would swing the paddle into the cube.
  holding = env.action_towards(data, env.arm_joints(data), jnp.float32(_CLOSED))
  return jnp.where(distance < _PUSH_STOP, holding, moving)


_GRASP_ABOVE_CENTRE = 0.01  # grip point above the cube centre: fingertips clear the table
_LIFT_ABOVE_GOAL = 0.02


def pick(env, state) -> jax.Array:
  data, goal = state.data, state.info["goal"]
  grip, cube = env.grip_pos(data), env.object_pos(data)
  grasp_point = cube + jnp.array([0.0, 0.0, _GRASP_ABOVE_CENTRE])
  aligned = jnp.linalg.norm(grip[:2] - cube[:2]) < 0.012
  low = grip[2] < grasp_point[2] + 0.012
  # Held: the cube sits between the fingertips (it may creep down a little) and the fingers
  # have closed on it rather than on air.
  between = (jnp.linalg.norm(grip[:2] - cube[:2]) < 0.02) & (cube[2] < grip[2]) & (
      cube[2] > grip[2] - 0.045)
  grasped = between & (env.gripper_gap(data) < 2 * am.OBJECT_HALF_SIZE + 0.006) & (
      env.gripper_gap(data) > 2 * am.OBJECT_HALF_SIZE - 0.015)
  # Lift towards the fixed goal, not the cube: a cube slipping in the fingers would otherwise
  # drag the target along with it.
  lift_point = goal + jnp.array([0.0, 0.0, _LIFT_ABOVE_GOAL])
  above = jnp.concatenate([cube[:2], jnp.array([_TRAVEL_HEIGHT])])
  target = jnp.where(grasped, lift_point, jnp.where(aligned, grasp_point, above))
  gripper = jnp.where(grasped | (aligned & low), _CLOSED, _OPEN)
  return _action(env, state, grip, target, env.object_yaw(data), gripper, symmetry=jnp.pi / 2)


_PULL = 0.1  # how far past the handle the pull target leads


def drawer(env, state) -> jax.Array:
  data = state.data
  grip, handle = env.grip_pos(data), env.handle_pos(data)
  aligned = jnp.linalg.norm(grip[:2] - handle[:2]) < 0.012
  low = jnp.abs(grip[2] - handle[2]) < 0.012
  grasped = (jnp.linalg.norm(grip - handle) < 0.02) & (
      env.gripper_gap(data) < 2 * am.HANDLE_RADIUS + 0.008)
  pull_point = handle - jnp.array([_PULL, 0.0, 0.0])
  above = handle + jnp.array([0.0, 0.0, 0.08])
  target = jnp.where(grasped, pull_point, jnp.where(aligned, handle, above))
  gripper = jnp.where(grasped | (aligned & low), _CLOSED, _HALF_OPEN)
  # Fingers close along x, across the bar (which runs along y).
  return _action(env, state, grip, target, 0.0, gripper)


POLICIES = {"Reach": reach, "Push": push, "Pick": pick, "Drawer": drawer}
