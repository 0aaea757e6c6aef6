"""Bandit datasets for the algorithm tests: uniform random pulls of the real ``bandit`` family.

Each task has one good arm (success probability 0.9) and four poor ones (0.1-0.3); the good arm
differs between tasks, so a policy can only do well on a held-out task by adapting to its
data. Pulls are uniform random actions in [-1, 1]^5 (arm = argmax), rewards Bernoulli, as the
random-mode collector would record them. The bandit is stateless, so gamma is 0 and
``mc_returns`` equals the reward of the pull.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from omrl_data.dataset import MultiTaskDataset
from omrl_data.schema import FORMAT_VERSION, SOURCE_NAMES, SOURCE_RANDOM
from omrl_data.store.writer import StagedDataset
from omrl_data.tasks.table import TaskTable

N_ARMS = 5
HORIZON = 10


def bandit_tasks(n_train: int = 10, n_test: int = 5, seed: int = 0) -> TaskTable:
    """Tasks whose good arm cycles through the arms; the test tasks come last."""
    rng = np.random.default_rng(seed)
    params = []
    for i in range(n_train + n_test):
        probs = rng.uniform(0.1, 0.3, N_ARMS)
        probs[i % N_ARMS] = 0.9
        params.append({"arm_probs": [float(p) for p in probs]})
    split = ["train"] * n_train + ["test"] * n_test
    feats = np.array([p["arm_probs"] for p in params], dtype=np.float32)
    return TaskTable("bandit", tuple(params), feats, tuple(split), "explicit", {})


def bandit_arrays(arm_probs: list[float], n_rows: int, seed: int, task: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, task])
    actions = rng.uniform(-1, 1, (n_rows, N_ARMS)).astype(np.float32)
    rewards = (rng.random(n_rows) < np.asarray(arm_probs)[actions.argmax(1)]).astype(np.float32)
    step = np.arange(n_rows) % HORIZON
    obs = np.ones((n_rows, 1), dtype=np.float32)
    return {
        "observations": obs,
        "actions": actions,
        "rewards": rewards,
        "next_observations": obs.copy(),
        "terminated": np.zeros(n_rows, dtype=bool),
        "truncated": step == HORIZON - 1,
        "episode_index": (np.arange(n_rows) // HORIZON).astype(np.int64),
        "step_in_episode": step.astype(np.int32),
        "collect_step": np.arange(n_rows, dtype=np.int64),
        "source": np.full(n_rows, SOURCE_RANDOM, dtype=np.uint8),
        "checkpoint_step": np.full(n_rows, -1, dtype=np.int64),
        "mc_returns": rewards.copy(),  # gamma = 0
        "mc_bootstrap_discount": np.zeros(n_rows, dtype=np.float32),
    }


def _metadata(tasks: TaskTable) -> dict:
    return {
        "family": "bandit",
        "tasks": tasks.to_dict(),
        "env_id": "omrl/Bandit-v0",
        "env_kwargs": {},
        "obs_dim": 1,
        "act_dim": N_ARMS,
        "observation_space": {"type": "Box", "shape": [1], "low": 0.0, "high": 1.0, "dtype": "float32"},
        "action_space": {"type": "Box", "shape": [N_ARMS], "low": -1.0, "high": 1.0, "dtype": "float32"},
        "gamma": 0.0,
        "horizon": HORIZON,
        "collection": {"mode": "random", "seed": 0},
        "package_versions": {"numpy": np.__version__},
        "format_version": FORMAT_VERSION,
        "source_names": {str(k): v for k, v in SOURCE_NAMES.items()},
    }


def bandit_dataset(n_train: int = 10, n_test: int = 5, n_rows: int = 1000, seed: int = 0) -> MultiTaskDataset:
    """The dataset in memory (no store)."""
    tasks = bandit_tasks(n_train, n_test, seed)
    arrays = [bandit_arrays(p["arm_probs"], n_rows, seed, i) for i, p in enumerate(tasks.params)]
    return MultiTaskDataset.from_arrays(tasks, arrays, _metadata(tasks))


def write_bandit_dataset(root: str | Path | None = None, n_train: int = 10, n_test: int = 5, n_rows: int = 1000, seed: int = 0, name: str = "pulls") -> str:
    """The dataset committed to the store under ``root``; returns its id."""
    tasks = bandit_tasks(n_train, n_test, seed)
    staged = StagedDataset.create(root, "bandit", name, command="tests.algos_data")
    for i, p in enumerate(tasks.params):
        staged.write_task(i, bandit_arrays(p["arm_probs"], n_rows, seed, i))
    staged.commit(_metadata(tasks))
    return staged.dataset_id
