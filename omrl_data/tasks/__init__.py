"""The task families of the offline meta-RL literature, and their Gymnasium ids.

``get_family(name)`` returns a :class:`~omrl_data.tasks.base.TaskFamily`; ``family_names()``
lists them. Importing this package registers the Gymnasium ids (``omrl/CheetahDir-v0``, ...), so
``gymnasium.make("omrl/AntDir-v0", task={"goal_angle": 1.0})`` builds a task env. MuJoCo is only
imported when a MuJoCo env is built.
"""
from __future__ import annotations

import gymnasium

from omrl_data.errors import BadInput
from omrl_data.tasks.bandit import Bandit
from omrl_data.tasks.base import TaskFamily
from omrl_data.tasks.locomotion import AntDir, CheetahDir, CheetahVel
from omrl_data.tasks.physics import HopperParams, WalkerParams
from omrl_data.tasks.point_robot import PointRobotSparse
from omrl_data.tasks.table import TaskTable

# family -> "module:EnvClass" (string entry points keep MuJoCo out of this import)
_ENTRY_POINTS = {
    "point_robot_sparse": "omrl_data.tasks.point_robot:PointRobotSparseEnv",
    "bandit": "omrl_data.tasks.bandit:BanditEnv",
    "cheetah_dir": "omrl_data.tasks.mujoco_envs:CheetahDirEnv",
    "cheetah_vel": "omrl_data.tasks.mujoco_envs:CheetahVelEnv",
    "ant_dir": "omrl_data.tasks.mujoco_envs:AntDirEnv",
    "walker_params": "omrl_data.tasks.mujoco_envs:WalkerParamsEnv",
    "hopper_params": "omrl_data.tasks.mujoco_envs:HopperParamsEnv",
}

_FAMILIES: dict[str, TaskFamily] = {
    f.name: f
    for f in (CheetahDir(), CheetahVel(), AntDir(), WalkerParams(), HopperParams(), PointRobotSparse(), Bandit())
}


def family_names() -> list[str]:
    """Names of every registered family, in the order `omrl-data families` lists them."""
    return list(_FAMILIES)


def get_family(name: str) -> TaskFamily:
    """The family called ``name``; BadInput naming the accepted names otherwise."""
    try:
        return _FAMILIES[name]
    except (KeyError, TypeError):
        raise BadInput(f"unknown task family {name!r}; accepted: {', '.join(_FAMILIES)}") from None


def _register() -> None:
    for name, family in _FAMILIES.items():
        if family.env_id not in gymnasium.registry:
            gymnasium.register(
                id=family.env_id,
                entry_point=_ENTRY_POINTS[name],
                max_episode_steps=family.horizon,
            )


_register()

__all__ = ["TaskFamily", "TaskTable", "family_names", "get_family"]
