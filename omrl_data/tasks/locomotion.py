"""Locomotion task families on Gymnasium's v5 MuJoCo models: cheetah_dir, cheetah_vel, ant_dir.

Rewards and terminations follow MACAW/PEARL (reference section 1); the env classes are in
:mod:`omrl_data.tasks.mujoco_envs`. 200 steps per episode (time-limit truncation).

- cheetah_dir (HalfCheetah-v5, dt 0.05 s as in the reference): reward d * v_x - 0.05 |a|^2,
  d in {+1, -1}; exactly two tasks, evaluated with train = test as in MACAW/MACEGA.
- cheetah_vel (HalfCheetah-v5): reward -|v_x - v*| - 0.05 |a|^2; v* ~ U(0, 3) (PEARL/CORRO) or the
  MACAW grid linspace(0.075, 3.0, n); features v* / 3; extrapolation trains on v* < 1 (MACAW OOD).
- ant_dir (Ant-v5, dt 0.05 s): reward (torso xy velocity) . (cos theta, sin theta) - 0.5 |a|^2 + 1;
  terminates when the torso height leaves [0.2, 1.0] or the state is not finite; theta ~ U(0, 2 pi);
  features (cos theta, sin theta); extrapolation trains on theta in [0, pi/2) (Okanovic et al.'s
  withheld-directions experiment) and tests on the other three quadrants.

Deviations from the reference, deliberately taken:
- Observations are Gymnasium's: HalfCheetah 17-D (qpos[1:], qvel) instead of MACAW/PEARL's 20-D
  (which appended the torso centre of mass); Ant 27-D (qpos[2:], qvel) with
  ``include_cfrc_ext_in_observation=False``, the same content as the reference.
- Ant contact cost weight 0 (Gymnasium's default is 5e-4): the reference formula has a contact
  term, but under MuJoCo >= 2 the reference runs read zero contact forces, so it was effectively 0.
- The +1 survival bonus of ant_dir is paid on every step, including the terminating one, as in the
  reference (Gymnasium v5 pays it only while healthy).
- Reset noise is Gymnasium's (cheetah: qpos + U(-0.1, 0.1), qvel + 0.1 N(0, 1); ant: the same,
  which matches PEARL's ant).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from omrl_data.errors import BadInput
from omrl_data.tasks.base import GoalAngleFeatures, TaskFamily, check_float, check_keys

MUJOCO_HORIZON = 200  # every reference truncates the MuJoCo families at 200 steps
CHEETAH_CTRL_COST = 0.05  # MACAW/PEARL half-cheetah control cost weight
MAX_TARGET_VELOCITY = 3.0  # v* lies in [0, 3] in every reference


class CheetahDir(TaskFamily):
    name = "cheetah_dir"
    env_id = "omrl/CheetahDir-v0"
    param_names = ("direction",)
    horizon = MUJOCO_HORIZON
    papers = ("MACAW", "MACEGA", "Okanovic", "PEARL")
    obs_dim = 17
    act_dim = 6
    max_tasks = 2
    default_tasks = 2
    test_equals_train = True
    order_name = "direction"
    description = "half-cheetah runs forward (+1) or backward (-1)"

    def sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return self.grid_params(n)  # the family is the two directions; nothing to draw

    def grid_params(self, n: int) -> list[dict[str, Any]]:
        return [{"direction": 1.0}, {"direction": -1.0}][:n]

    def features(self, params: dict[str, Any]) -> np.ndarray:
        return np.array([params["direction"]], dtype=np.float32)

    def order_key(self, params: dict[str, Any]) -> float:
        return float(params["direction"])

    def default_params(self) -> dict[str, Any]:
        return {"direction": 1.0}

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, self.name, self.param_names)
        d = params["direction"]
        if isinstance(d, bool) or d not in (1, -1):
            raise BadInput(f"cheetah_dir parameter direction must be 1 or -1, got {d!r}")
        return {"direction": float(d)}


class CheetahVel(TaskFamily):
    name = "cheetah_vel"
    env_id = "omrl/CheetahVel-v0"
    param_names = ("target_velocity",)
    horizon = MUJOCO_HORIZON
    papers = ("MACAW", "R2PGO", "PEARL", "CORRO", "CSRO")
    obs_dim = 17
    act_dim = 6
    default_tasks = 40
    order_name = "target_velocity"
    default_train_range = (0.0, 1.0)  # MACAW's out-of-distribution split: train v* < 1, test v* >= 1
    description = "half-cheetah runs at a target forward velocity v* in [0, 3]"

    def sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{"target_velocity": float(v)} for v in rng.uniform(0.0, MAX_TARGET_VELOCITY, n)]

    def grid_params(self, n: int) -> list[dict[str, Any]]:
        return [{"target_velocity": float(v)} for v in np.linspace(0.075, MAX_TARGET_VELOCITY, n)]

    def features(self, params: dict[str, Any]) -> np.ndarray:
        return np.array([params["target_velocity"] / MAX_TARGET_VELOCITY], dtype=np.float32)

    def order_key(self, params: dict[str, Any]) -> float:
        return float(params["target_velocity"])

    def default_params(self) -> dict[str, Any]:
        return {"target_velocity": 1.0}

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, self.name, self.param_names)
        v = check_float(params["target_velocity"], self.name, "target_velocity", 0.0, MAX_TARGET_VELOCITY)
        return {"target_velocity": v}


class AntDir(GoalAngleFeatures, TaskFamily):
    name = "ant_dir"
    env_id = "omrl/AntDir-v0"
    param_names = ("goal_angle",)
    horizon = MUJOCO_HORIZON
    papers = ("MACAW", "MACEGA", "Okanovic", "PEARL", "CORRO")
    obs_dim = 27
    act_dim = 8
    default_tasks = 50
    order_name = "goal_angle"
    default_train_range = (0.0, math.pi / 2)  # Okanovic et al.: train on 0-90 degrees only
    description = "ant runs in a direction theta in [0, 2 pi)"

    def sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{"goal_angle": float(a)} for a in rng.uniform(0.0, 2 * math.pi, n)]

    def default_params(self) -> dict[str, Any]:
        return {"goal_angle": 0.0}

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, self.name, self.param_names)
        a = check_float(params["goal_angle"], self.name, "goal_angle", 0.0, 2 * math.pi, high_open=True)
        return {"goal_angle": a}
