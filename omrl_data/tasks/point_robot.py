"""point_robot_sparse: a 2-D point that must reach a goal on the unit semicircle (PEARL's sparse
point robot, used by FOCAL, CSRO, CORRO, BOReL and R2PGO).

MDP (faithful to PEARL's ``SparsePointEnv``):
- state s in R^2 starts at (0, 0); observation = s, float32 ``[2]``;
- action a in [-0.1, 0.1]^2 (clipped), s <- s + a;
- goal g = (cos theta, sin theta), theta in [0, pi];
- the env's **reward is the sparse one**: 1 - |s - g| when |s - g| <= 0.2, else 0 (that is
  PEARL's "dense + 1 inside the goal radius, else 0"); ``info["dense_reward"]`` = -|s - g|;
- no termination; 20 steps per episode (time-limit truncation).

Task parameter ``{"goal_angle": theta}``; features (cos theta, sin theta); grid: angles
``linspace(0, pi, n)`` (PEARL then shuffled them with seed 1337; we keep them in order and let
the split choose the held-out tasks); random tasks: theta ~ U(0, pi) (BOReL/CORRO).
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from omrl_data.tasks.base import GoalAngleFeatures, TaskFamily, check_float, check_keys

GOAL_RADIUS = 0.2  # PEARL's goal radius: the reward is non-zero only this close to the goal
MAX_STEP = 0.1  # per-coordinate bound of one move


class PointRobotSparse(GoalAngleFeatures, TaskFamily):
    name = "point_robot_sparse"
    env_id = "omrl/PointRobotSparse-v0"
    param_names = ("goal_angle",)
    horizon = 20
    papers = ("R2PGO", "PEARL", "FOCAL", "CSRO", "CORRO", "BOReL")
    obs_dim = 2
    act_dim = 2
    order_name = "goal_angle"
    default_train_range = (0.0, math.pi / 2)  # train on the right quarter circle, test on the left
    description = "2-D point, sparse reward within 0.2 of a goal on the unit semicircle"

    def sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{"goal_angle": float(a)} for a in rng.uniform(0.0, math.pi, n)]

    def grid_params(self, n: int) -> list[dict[str, Any]]:
        return [{"goal_angle": float(a)} for a in np.linspace(0.0, math.pi, n)]

    def default_params(self) -> dict[str, Any]:
        return {"goal_angle": math.pi / 2}

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, self.name, self.param_names)
        return {"goal_angle": check_float(params["goal_angle"], self.name, "goal_angle", 0.0, math.pi)}


class PointRobotSparseEnv(gym.Env):
    """The sparse point robot of one goal. ``set_task`` moves the goal; reset returns to (0, 0)."""

    metadata = {"render_modes": []}

    def __init__(self, task: dict[str, Any] | None = None):
        self.family = PointRobotSparse()
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-MAX_STEP, MAX_STEP, shape=(2,), dtype=np.float32)
        self._state = np.zeros(2)
        self.set_task(self.family.default_params() if task is None else task)

    def set_task(self, params: dict[str, Any]) -> None:
        self.task = self.family.validate_params(params)
        a = self.task["goal_angle"]
        self.goal = np.array([math.cos(a), math.sin(a)])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._state = np.zeros(2)
        return self._state.astype(np.float32), {"goal": self.goal.copy()}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64), -MAX_STEP, MAX_STEP)
        self._state = self._state + a
        distance = float(np.linalg.norm(self._state - self.goal))
        dense = -distance
        reward = dense + 1.0 if distance <= GOAL_RADIUS else 0.0
        info = {"dense_reward": dense, "distance": distance, "goal": self.goal.copy()}
        return self._state.astype(np.float32), reward, False, False, info
