"""Gymnasium env classes of the MuJoCo task families (subclasses of the v5 envs).

Each class takes ``task`` (a parameter dict of its family; the family's default task when None)
plus the keyword arguments of the Gymnasium env it extends, and has ``set_task(params)`` that
switches the task in place (the next ``reset`` starts an episode of the new task; a reset with
``options={"task": params}`` does both). Only the reward, the termination bookkeeping and the
model parameters differ from the plain Gymnasium env, so the simulation cost is the same. The
reward terms are also in ``info`` (``reward_forward``, ``reward_ctrl``, ...).

Families, formulas and the deviations from the reference are documented in
:mod:`omrl_data.tasks.locomotion` and :mod:`omrl_data.tasks.physics`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from omrl_data.tasks.locomotion import CHEETAH_CTRL_COST, AntDir, CheetahDir, CheetahVel
from omrl_data.tasks.physics import BASES, FRAME_SKIP, HopperParams, WalkerParams


class _TaskMixin:
    """``task`` storage, ``set_task`` and reset-with-task shared by every family env."""

    family: Any
    task: dict[str, Any]

    def _init_task(self, task: dict[str, Any] | None, kwargs: dict[str, Any]) -> None:
        # Record the task in the pickled constructor arguments (EzPickle) so copies keep it.
        utils.EzPickle.__init__(self, task=task, **kwargs)
        self.set_task(self.family.default_params() if task is None else task)

    def set_task(self, params: dict[str, Any]) -> None:
        self.task = self.family.validate_params(params)
        self._apply_task()
        self._ezpickle_kwargs["task"] = self.task  # a pickled copy is built with the current task

    def _apply_task(self) -> None:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if options and "task" in options:
            self.set_task(options["task"])
        return super().reset(seed=seed, options=options)  # type: ignore[misc]


class _TotalMassAfterCompile:
    """Compiles Gymnasium's half_cheetah.xml without its deprecated ``settotalmass`` attribute and
    applies the total mass afterwards (``mj_setTotalmass`` + ``mj_setConst``).

    MuJoCo 4 warns about that attribute on every build, on stderr and into a MUJOCO_LOG.TXT in the
    working directory. The model this builds is identical, array for array, to the one MuJoCo
    compiles from the file (checked in tests/test_tasks_envs.py).
    """

    fullpath: str
    width: int
    height: int

    def _initialize_simulation(self):
        xml = Path(self.fullpath).read_text()
        found = re.search(r'\s+settotalmass="([^"]+)"', xml)
        if found is None:
            return super()._initialize_simulation()  # type: ignore[misc]
        model = mujoco.MjModel.from_xml_string(xml.replace(found.group(0), ""))
        mujoco.mj_setTotalmass(model, float(found.group(1)))
        data = mujoco.MjData(model)
        mujoco.mj_setConst(model, data)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)


class CheetahDirEnv(_TaskMixin, _TotalMassAfterCompile, HalfCheetahEnv):
    """HalfCheetah-v5 rewarded for running in ``direction``: d * v_x - 0.05 |a|^2."""

    def __init__(self, task: dict[str, Any] | None = None, **kwargs: Any):
        self.family = CheetahDir()
        kwargs.setdefault("ctrl_cost_weight", CHEETAH_CTRL_COST)
        HalfCheetahEnv.__init__(self, **kwargs)
        self._init_task(task, kwargs)

    def _apply_task(self) -> None:
        self.direction = self.task["direction"]

    def _get_rew(self, x_velocity: float, action):
        forward = self.direction * x_velocity
        ctrl = float(self.control_cost(action))
        return float(forward - ctrl), {"reward_forward": forward, "reward_ctrl": -ctrl}


class CheetahVelEnv(_TaskMixin, _TotalMassAfterCompile, HalfCheetahEnv):
    """HalfCheetah-v5 rewarded for running at ``target_velocity``: -|v_x - v*| - 0.05 |a|^2."""

    def __init__(self, task: dict[str, Any] | None = None, **kwargs: Any):
        self.family = CheetahVel()
        kwargs.setdefault("ctrl_cost_weight", CHEETAH_CTRL_COST)
        HalfCheetahEnv.__init__(self, **kwargs)
        self._init_task(task, kwargs)

    def _apply_task(self) -> None:
        self.target_velocity = self.task["target_velocity"]

    def _get_rew(self, x_velocity: float, action):
        forward = -abs(x_velocity - self.target_velocity)
        ctrl = float(self.control_cost(action))
        return float(forward - ctrl), {"reward_forward": forward, "reward_ctrl": -ctrl, "target_velocity": self.target_velocity}


class AntDirEnv(_TaskMixin, AntEnv):
    """Ant-v5 (27-D observation, no contact cost) rewarded for running towards ``goal_angle``:
    (torso xy velocity) . (cos theta, sin theta) - 0.5 |a|^2 + 1."""

    def __init__(self, task: dict[str, Any] | None = None, **kwargs: Any):
        self.family = AntDir()
        kwargs.setdefault("contact_cost_weight", 0.0)  # zero in the reference runs (see locomotion.py)
        kwargs.setdefault("include_cfrc_ext_in_observation", False)  # 27-D, as the reference
        AntEnv.__init__(self, **kwargs)
        self._init_task(task, kwargs)

    def _apply_task(self) -> None:
        a = self.task["goal_angle"]
        self.goal_direction = np.array([np.cos(a), np.sin(a)])

    def step(self, action):
        torso = self.data.body(self._main_body)
        xy_before = torso.xpos[:2].copy()
        self.do_simulation(action, self.frame_skip)
        xy_velocity = (torso.xpos[:2] - xy_before) / self.dt

        observation = self._get_obs()
        forward = float(xy_velocity @ self.goal_direction)
        ctrl = float(self.control_cost(action))
        contact = self.contact_cost if self._contact_cost_weight else 0.0
        survive = self._healthy_reward  # paid every step, as in the reference
        reward = float(forward + survive - ctrl - contact)
        terminated = (not self.is_healthy) and self._terminate_when_unhealthy
        info = {
            "x_position": self.data.qpos[0],
            "y_position": self.data.qpos[1],
            "x_velocity": xy_velocity[0],
            "y_velocity": xy_velocity[1],
            "reward_forward": forward,
            "reward_ctrl": -ctrl,
            "reward_contact": -contact,
            "reward_survive": survive,
        }
        if self.render_mode == "human":
            self.render()
        return observation, reward, terminated, False, info


class _PhysicsMixin(_TaskMixin):
    """Rescales the model from its stored defaults on every ``set_task``."""

    model: Any

    def _store_defaults(self) -> None:
        self._defaults = {f: getattr(self.model, f).copy() for f in BASES}

    def _apply_task(self) -> None:
        for f, base in BASES.items():
            u = np.asarray(self.task[f"{f}_log_scale"])
            # From the stored defaults, never from the current values: no compounding.
            getattr(self.model, f)[:] = self._defaults[f] * np.power(base, u)

    def _get_rew(self, x_velocity: float, action):
        ctrl = float(self.control_cost(action))
        survive = self._healthy_reward  # paid every step, as in the reference
        return float(x_velocity + survive - ctrl), {"reward_forward": x_velocity, "reward_ctrl": -ctrl, "reward_survive": survive}


class WalkerParamsEnv(_PhysicsMixin, Walker2dEnv):
    """Walker2d-v5 (dt 0.016 s) with task-scaled mass, inertia, damping and friction."""

    def __init__(self, task: dict[str, Any] | None = None, **kwargs: Any):
        self.family = WalkerParams()
        kwargs.setdefault("frame_skip", FRAME_SKIP)
        Walker2dEnv.__init__(self, **kwargs)
        self._store_defaults()
        self._init_task(task, kwargs)


class HopperParamsEnv(_PhysicsMixin, HopperEnv):
    """Hopper-v5 (dt 0.016 s) with task-scaled mass, inertia, damping and friction."""

    def __init__(self, task: dict[str, Any] | None = None, **kwargs: Any):
        self.family = HopperParams()
        kwargs.setdefault("frame_skip", FRAME_SKIP)
        HopperEnv.__init__(self, **kwargs)
        self._store_defaults()
        self._init_task(task, kwargs)
