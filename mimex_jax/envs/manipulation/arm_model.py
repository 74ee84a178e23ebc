"""MJCF of our tabletop arm, built from Python strings so nothing but .py files ships.

The arm: a base yaw joint, three pitch joints (shoulder, elbow, wrist) and a wrist roll, then a
parallel gripper of two slide fingers. Every geom has contype=conaffinity=0; the only contacts
are the explicit `<pair>`s a task asks for (fingers vs table, object, handle), which keeps MJX's
collision work to a few cheap primitive pairs.

Speed choices for MJX on CPU: the arm joints have no limits (each limit is a constraint row
MJX evaluates every step; the actuators' control ranges bound the targets instead), and light
links (density 100) with stiff position servos make gravity sag a few millimetres, which saves
gravity compensation (it roughly doubled the cost of a physics step).

World frame: the table top is the plane z=0, the robot stands at the origin facing +x.
"""

from typing import Sequence

import numpy as np

# Kinematic constants shared with the analytic IK (metres).
SHOULDER_HEIGHT = 0.3  # shoulder pitch axis above the table
UPPER_ARM = 0.3
FOREARM = 0.3
WRIST_TO_PALM = 0.06
PALM_TO_GRIP = 0.055  # palm origin to the grip site between the fingertips
WRIST_TO_GRIP = WRIST_TO_PALM + PALM_TO_GRIP
FINGER_RADIUS = 0.01
FINGER_TRAVEL = 0.05  # each finger's slide range: the inner gap is 2 * travel

ARM_JOINTS = ("yaw", "shoulder", "elbow", "wrist", "roll")
FINGER_JOINTS = ("finger_left", "finger_right")
# Ranges of the joint targets (actuator control ranges); the joints themselves carry no limits.
JOINT_RANGES = {
    "yaw": (-1.5, 1.5),
    "shoulder": (-0.4, 2.0),
    "elbow": (-0.2, 2.8),
    "wrist": (-0.5, 2.6),
    "roll": (-1.6, 1.6),
}

COLORS = {
    "arm": "0.85 0.45 0.1 1",
    "finger": "0.2 0.2 0.25 1",
    "table": "0.55 0.55 0.6 1",
    "floor": "0.25 0.3 0.35 1",
    "object": "0.15 0.35 0.9 1",
    "goal": "0.1 0.85 0.2 0.5",
    "cabinet": "0.6 0.45 0.3 1",
    "drawer": "0.8 0.7 0.5 1",
    "handle": "0.85 0.1 0.1 1",
}


def _xyaxes(position: Sequence[float], look_at: Sequence[float]) -> str:
  """Camera `xyaxes` so that a camera at `position` looks at `look_at` with z up."""
  forward = np.asarray(look_at, float) - np.asarray(position, float)
  forward /= np.linalg.norm(forward)
  right = np.cross(forward, [0.0, 0.0, 1.0])
  right /= np.linalg.norm(right)
  up = np.cross(right, forward)
  return " ".join(f"{v:.4f}" for v in (*right, *up))


_FRONT_CAMERA = (1.05, 0.5, 0.72)
_WORKSPACE_CENTRE = (0.25, 0.0, 0.15)

_ARM = f"""
    <body name="base" pos="0 0 0">
      <geom name="pedestal" type="box" size="0.07 0.07 0.025" pos="0 0 0.025" rgba="{COLORS['arm']}"/>
      <body name="turret" pos="0 0 0.05">
        <joint name="yaw" axis="0 0 1" damping="10"/>
        <geom name="turret" type="capsule" fromto="0 0 0 0 0 {SHOULDER_HEIGHT - 0.05}" size="0.035" rgba="{COLORS['arm']}"/>
        <body name="upper_arm" pos="0 0 {SHOULDER_HEIGHT - 0.05}">
          <joint name="shoulder" axis="0 1 0" damping="12"/>
          <geom name="upper_arm" type="capsule" fromto="0 0 0 0 0 {UPPER_ARM}" size="0.025" rgba="{COLORS['arm']}"/>
          <body name="forearm" pos="0 0 {UPPER_ARM}">
            <joint name="elbow" axis="0 1 0" damping="6"/>
            <geom name="forearm" type="capsule" fromto="0 0 0 0 0 {FOREARM}" size="0.02" rgba="{COLORS['arm']}"/>
            <body name="wrist" pos="0 0 {FOREARM}">
              <joint name="wrist" axis="0 1 0" damping="2"/>
              <geom name="wrist" type="capsule" fromto="0 0 0 0 0 {WRIST_TO_PALM - 0.01}" size="0.018" rgba="{COLORS['arm']}"/>
              <body name="palm" pos="0 0 {WRIST_TO_PALM}">
                <joint name="roll" axis="0 0 1" damping="1"/>
                <geom name="palm" type="box" size="0.015 0.065 0.01" pos="0 0 0.01" rgba="{COLORS['finger']}"/>
                <site name="grip" pos="0 0 {PALM_TO_GRIP}" size="0.008" rgba="1 1 0 1"/>
                <body name="finger_left" pos="0 {FINGER_RADIUS} 0.02">
                  <joint name="finger_left" type="slide" axis="0 1 0" damping="2"/>
                  <geom name="finger_left" type="capsule" fromto="0 0 0 0 0 0.05" size="{FINGER_RADIUS}" rgba="{COLORS['finger']}" mass="0.03"/>
                </body>
                <body name="finger_right" pos="0 {-FINGER_RADIUS} 0.02">
                  <joint name="finger_right" type="slide" axis="0 -1 0" damping="2"/>
                  <geom name="finger_right" type="capsule" fromto="0 0 0 0 0 0.05" size="{FINGER_RADIUS}" rgba="{COLORS['finger']}" mass="0.03"/>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>
"""


def _actuators() -> str:
  gains = {"yaw": 200, "shoulder": 200, "elbow": 200, "wrist": 50, "roll": 20}
  # Torque limits cap joint speeds near 2 rad/s (limit / joint damping): otherwise a random
  # absolute target every step whips the light arm around and flings objects about.
  torque_limits = {"yaw": 20, "shoulder": 25, "elbow": 12, "wrist": 4, "roll": 2}
  lines = [f'    <position name="{j}" joint="{j}" kp="{gains[j]}" '
           f'ctrlrange="{JOINT_RANGES[j][0]} {JOINT_RANGES[j][1]}" '
           f'forcerange="{-torque_limits[j]} {torque_limits[j]}"/>' for j in ARM_JOINTS]
  # Both fingers take the same target (one action dimension); two actuators instead of an
  # equality constraint keep the constraint count down.
  lines += [f'    <position name="{j}" joint="{j}" kp="100" ctrlrange="0 {FINGER_TRAVEL}"/>'
            for j in FINGER_JOINTS]
  return "\n".join(lines)


def _finger_pairs(other: str, friction: str = "1 1 0.005 0.0001 0.0001") -> str:
  return "\n".join(f'    <pair geom1="{f}" geom2="{other}" friction="{friction}"/>'
                   for f in FINGER_JOINTS)


def build_xml(extra_bodies: str = "", extra_pairs: str = "", timestep: float = 0.01,
              finger_table_contacts: bool = True) -> str:
  """Full MJCF: table, arm, cameras, plus a task's bodies and contact pairs.

  Args:
    extra_bodies: MJCF bodies added to the worldbody (objects, goal markers, drawers).
    extra_pairs: `<pair>` lines added to the contact section.
    timestep: physics step in seconds.
    finger_table_contacts: whether the fingers collide with the table; tasks that never touch
      the table may drop these contacts (with no contacts MJX skips the constraint solver).
  """
  table_pairs = (_finger_pairs("table", "0.5 0.5 0.005 0.0001 0.0001")
                 if finger_table_contacts else "")
  return f"""
<mujoco model="mimex_arm">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" iterations="4" ls_iterations="8" cone="pyramidal"/>
  <default>
    <geom contype="0" conaffinity="0" density="100"/>
    <joint armature="0.02"/>
    <site group="4"/>
  </default>
  <visual>
    <global offwidth="640" offheight="480"/>
  </visual>
  <worldbody>
    <light pos="0.3 0 2.0" dir="0 0 -1" directional="true"/>
    <geom name="floor" type="plane" size="2 2 0.1" pos="0 0 -0.002" rgba="{COLORS['floor']}"/>
    <geom name="table" type="plane" size="0.7 0.5 0.1" pos="0.35 0 0" rgba="{COLORS['table']}"/>
    <camera name="front" pos="{' '.join(map(str, _FRONT_CAMERA))}" xyaxes="{_xyaxes(_FRONT_CAMERA, _WORKSPACE_CENTRE)}" fovy="50"/>
    <camera name="top" pos="0.3 0 1.5" xyaxes="0 -1 0 1 0 0" fovy="45"/>
{_ARM}
{extra_bodies}
  </worldbody>
  <contact>
{table_pairs}
{extra_pairs}
  </contact>
  <actuator>
{_actuators()}
  </actuator>
</mujoco>
"""


def goal_marker(radius: float = 0.02) -> str:
  """A mocap body named `goal` whose sphere is visual only (contype 0 by default)."""
  return (f'    <body name="goal" mocap="true" pos="0.35 0 0.1">\n'
          f'      <geom name="goal" type="sphere" size="{radius}" rgba="{COLORS["goal"]}"/>\n'
          f'    </body>')


OBJECT_HALF_SIZE = 0.025


def cube_object() -> str:
  """A free cube named `object` resting on the table."""
  return (f'    <body name="object" pos="0.35 0 {OBJECT_HALF_SIZE}">\n'
          f'      <freejoint name="object"/>\n'
          f'      <geom name="object" type="box" size="{OBJECT_HALF_SIZE} {OBJECT_HALF_SIZE} '
          f'{OBJECT_HALF_SIZE}" mass="0.05" rgba="{COLORS["object"]}"/>\n'
          f'    </body>')


def cube_pairs() -> str:
  # High finger friction: soft contacts let a held cube creep down, more so with low friction.
  return (_finger_pairs("object", "2 2 0.005 0.0001 0.0001") + "\n"
          + '    <pair geom1="object" geom2="table" friction="0.5 0.5 0.005 0.0001 0.0001"/>')


# Drawer: a cabinet in front of the robot; its drawer slides towards the robot (-x).
DRAWER_FRONT_X = 0.5  # x of the closed drawer's front face
HANDLE_HEIGHT = 0.12
HANDLE_OFFSET = 0.035  # handle axis in front of the drawer face
HANDLE_RADIUS = 0.012
DRAWER_TRAVEL = 0.25


def drawer() -> str:
  """Static cabinet (visual only) and a drawer on a slide joint with a graspable handle.

  Damping and dry friction on the slide mean a drawer opens under a steady pull, not from the
  odd knock of a flailing arm."""
  c = COLORS
  return f"""    <body name="cabinet" pos="{DRAWER_FRONT_X + 0.12} 0 0">
      <geom name="cabinet_top" type="box" size="0.13 0.16 0.01" pos="0 0 0.23" rgba="{c['cabinet']}"/>
      <geom name="cabinet_left" type="box" size="0.13 0.01 0.115" pos="0 0.15 0.115" rgba="{c['cabinet']}"/>
      <geom name="cabinet_right" type="box" size="0.13 0.01 0.115" pos="0 -0.15 0.115" rgba="{c['cabinet']}"/>
      <body name="drawer" pos="0 0 0">
        <joint name="drawer" type="slide" axis="-1 0 0" range="0 {DRAWER_TRAVEL}" damping="5" frictionloss="0.5" armature="0.05"/>
        <geom name="drawer_front" type="box" size="0.01 0.14 0.07" pos="-0.12 0 0.12" rgba="{c['drawer']}" mass="0.3"/>
        <geom name="drawer_bottom" type="box" size="0.12 0.14 0.005" pos="0 0 0.055" rgba="{c['drawer']}" mass="0.2"/>
        <geom name="handle_mount_left" type="capsule" fromto="-0.13 0.05 {HANDLE_HEIGHT} {-0.12 - HANDLE_OFFSET} 0.05 {HANDLE_HEIGHT}" size="0.006" rgba="{c['handle']}"/>
        <geom name="handle_mount_right" type="capsule" fromto="-0.13 -0.05 {HANDLE_HEIGHT} {-0.12 - HANDLE_OFFSET} -0.05 {HANDLE_HEIGHT}" size="0.006" rgba="{c['handle']}"/>
        <geom name="handle" type="capsule" fromto="{-0.12 - HANDLE_OFFSET} 0.05 {HANDLE_HEIGHT} {-0.12 - HANDLE_OFFSET} -0.05 {HANDLE_HEIGHT}" size="{HANDLE_RADIUS}" mass="0.05" rgba="{c['handle']}"/>
        <site name="handle" pos="{-0.12 - HANDLE_OFFSET} 0 {HANDLE_HEIGHT}" size="0.005"/>
      </body>
    </body>"""


def drawer_pairs() -> str:
  return _finger_pairs("handle")
