"""Small in-memory datasets where the answer is known, for learning tests beyond the gamma-0 bandit.

- :func:`chain_dataset`: a constant observation, reward 1 every step, episodes cut by a time limit
  of ``horizon`` steps, discount ``gamma`` (> 0). The value of the (stationary) state is
  ``1 / (1 - gamma)``; the mean Monte Carlo return inside the stored episodes is much lower, so a
  value trained with the time-limit bootstrap and one trained without must differ.
- :func:`point_robot_dataset`: the real ``point_robot_sparse`` env (actions in [-0.1, 0.1]^2, not
  [-1, 1]) stepped by a medium behaviour policy that heads for the goal with noise; rewards are the
  env's own (sparse).
"""
from __future__ import annotations

import numpy as np

from omrl_data.dataset import MultiTaskDataset
from omrl_data.returns import mc_returns
from omrl_data.tasks import get_family
from omrl_data.tasks.table import TaskTable


def _task_arrays(obs, actions, rewards, next_obs, terminated, truncated, episode, step, gamma) -> dict[str, np.ndarray]:
    rows = len(rewards)
    returns, discount = mc_returns(rewards, episode, terminated, gamma)
    return {
        "observations": np.asarray(obs, np.float32),
        "actions": np.asarray(actions, np.float32),
        "rewards": np.asarray(rewards, np.float32),
        "next_observations": np.asarray(next_obs, np.float32),
        "terminated": np.asarray(terminated, bool),
        "truncated": np.asarray(truncated, bool),
        "episode_index": np.asarray(episode, np.int64),
        "step_in_episode": np.asarray(step, np.int32),
        "collect_step": np.arange(rows),
        "source": np.zeros(rows, dtype=np.uint8),
        "checkpoint_step": np.full(rows, -1),
        "mc_returns": returns,
        "mc_bootstrap_discount": discount,
    }


def chain_dataset(n_tasks: int = 4, rows: int = 400, horizon: int = 10, gamma: float = 0.9) -> MultiTaskDataset:
    family = get_family("point_robot_sparse")  # only for its dims and task table; no env is stepped
    params = tuple(family.grid_params(n_tasks))
    features = np.stack([family.features(p) for p in params])
    split = ("train",) * (n_tasks - 1) + ("test",)
    tasks = TaskTable(family="point_robot_sparse", params=params, features=features, split=split, split_kind="explicit")
    rng = np.random.default_rng(0)
    per_task = []
    for _ in range(n_tasks):
        step = np.arange(rows) % horizon
        obs = np.zeros((rows, 2), np.float32)
        per_task.append(_task_arrays(obs, rng.uniform(-0.1, 0.1, (rows, 2)), np.ones(rows), obs, np.zeros(rows, bool), step == horizon - 1, np.arange(rows) // horizon, step, gamma))
    meta = {"gamma": gamma, "obs_dim": 2, "act_dim": 2, "family": "point_robot_sparse",
            "action_space": {"type": "Box", "shape": [2], "low": -0.1, "high": 0.1, "dtype": "float32"}}
    return MultiTaskDataset.from_arrays(tasks, per_task, meta, id="test/point_robot_sparse/chain-v1")


def point_robot_dataset(n_tasks: int = 6, episodes: int = 40, noise: float = 0.06, gamma: float = 0.9, seed: int = 0, angles: list[float] | None = None, test: tuple[int, ...] | None = None) -> MultiTaskDataset:
    """Goals at ``angles`` (default: the grid of ``n_tasks``); ``test``: held-out task indices."""
    family = get_family("point_robot_sparse")
    params = tuple({"goal_angle": float(a)} for a in angles) if angles is not None else tuple(family.grid_params(n_tasks))
    n_tasks = len(params)
    features = np.stack([family.features(p) for p in params])
    test = (1, n_tasks - 2) if test is None else test
    split = tuple("test" if i in test else "train" for i in range(n_tasks))
    tasks = TaskTable(family="point_robot_sparse", params=params, features=features, split=split, split_kind="explicit")
    per_task = []
    for i, p in enumerate(params):
        env = family.make_env(p)
        low, high = env.action_space.low, env.action_space.high
        goal = np.array([np.cos(p["goal_angle"]), np.sin(p["goal_angle"])])
        rng = np.random.default_rng([seed, i])
        cols: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "next", "term", "trunc", "ep", "step")}
        for e in range(episodes):
            obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
            for t in range(family.horizon):
                direction = goal - obs
                a = np.clip(0.1 * direction / (np.linalg.norm(direction) + 1e-8) + noise * rng.normal(size=2), low, high)
                nxt, r, term, trunc, _ = env.step(a.astype(np.float32))
                for k, v in zip(cols, (obs, a, r, nxt, term, trunc, e, t)):
                    cols[k].append(v)
                obs = nxt
                if term or trunc:
                    break
        env.close()
        per_task.append(_task_arrays(*(np.asarray(cols[k]) for k in cols), gamma))
    meta = {"gamma": gamma, "obs_dim": 2, "act_dim": 2, "family": "point_robot_sparse",
            "action_space": {"type": "Box", "shape": [2], "low": -0.1, "high": 0.1, "dtype": "float32"}}
    return MultiTaskDataset.from_arrays(tasks, per_task, meta, id="test/point_robot_sparse/medium-v1")
