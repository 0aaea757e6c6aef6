"""A tiny offline bandit dataset in memory, for algorithm learning tests.

Tasks are Bernoulli 5-armed bandits (``omrl_data.tasks`` family ``bandit``) with one clearly
best arm per task (0.9; the others U(0.05, 0.45)), so a policy that finds the best arm from the
adaptation batch earns about 9 per 10-pull episode against about 4 for a uniform random policy.
The behaviour policy is "medium" quality: each pull aims at the task's best arm with
probability ``p_best`` (action = a noisy one-hot), else a uniform random action. Rewards are
drawn from the real arm probabilities. Episodes are 10 pulls; MC returns use ``gamma``.
"""
from __future__ import annotations

import numpy as np

from omrl_data.dataset import MultiTaskDataset
from omrl_data.returns import mc_returns
from omrl_data.tasks import get_family
from omrl_data.tasks.table import TaskTable


def bandit_tasks(n_train: int = 12, n_test: int = 4, seed: int = 0) -> TaskTable:
    family = get_family("bandit")
    rng = np.random.default_rng(seed)
    params = []
    for i in range(n_train + n_test):
        probs = rng.uniform(0.05, 0.45, family.act_dim)
        probs[rng.integers(family.act_dim)] = 0.9
        params.append({"arm_probs": probs.tolist()})
    split = ["train"] * n_train + ["test"] * n_test
    features = np.stack([family.features(p) for p in params])
    return TaskTable(family="bandit", params=tuple(params), features=features, split=tuple(split), split_kind="explicit")


def bandit_dataset(n_train: int = 12, n_test: int = 4, rows: int = 1000, p_best: float = 0.4, gamma: float = 0.9, seed: int = 0) -> MultiTaskDataset:
    """``rows`` transitions per task (episodes of 10 pulls) from the medium behaviour policy."""
    tasks = bandit_tasks(n_train, n_test, seed)
    horizon = get_family("bandit").horizon
    per_task = []
    for i, params in enumerate(tasks.params):
        rng = np.random.default_rng([seed, i, 7])
        probs = np.asarray(params["arm_probs"])
        k = len(probs)
        best = int(np.argmax(probs))
        actions = rng.uniform(-1, 1, (rows, k)).astype(np.float32)
        aim = rng.random(rows) < p_best
        actions[aim] = np.clip(-0.8 + 1.6 * np.eye(k)[best] + 0.2 * rng.normal(size=(int(aim.sum()), k)), -1, 1)
        rewards = (rng.random(rows) < probs[actions.argmax(1)]).astype(np.float32)
        step = np.arange(rows) % horizon
        episode = np.arange(rows) // horizon
        terminated = np.zeros(rows, dtype=bool)
        truncated = step == horizon - 1
        returns, discount = mc_returns(rewards, episode, terminated, gamma)
        obs = np.ones((rows, 1), dtype=np.float32)
        per_task.append(
            {
                "observations": obs,
                "actions": actions,
                "rewards": rewards,
                "next_observations": obs,
                "terminated": terminated,
                "truncated": truncated,
                "episode_index": episode,
                "step_in_episode": step.astype(np.int32),
                "collect_step": np.arange(rows),
                "source": np.zeros(rows, dtype=np.uint8),
                "checkpoint_step": np.full(rows, -1),
                "mc_returns": returns,
                "mc_bootstrap_discount": discount,
            }
        )
    meta = {"gamma": gamma, "obs_dim": 1, "act_dim": 5, "family": "bandit"}
    return MultiTaskDataset.from_arrays(tasks, per_task, meta, id="test/bandit/tiny-v1")
