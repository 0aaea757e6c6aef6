"""TEMPORARY (lead): minimal normalised-score references until branch `refs` lands; replaced then."""
from __future__ import annotations

from typing import Any

import numpy as np

_CACHE: dict[int, dict[str, Any]] = {}


def normalised_score(ret: float, stand_still: float, expert: float) -> float:
    return float((ret - stand_still) / (expert - stand_still))


def references_of(dataset: Any) -> dict[str, Any]:
    stored = dataset.metadata.get("references")
    if stored:
        return stored
    key = id(dataset)
    if key not in _CACHE:
        _CACHE[key] = compute_references(dataset)
    return _CACHE[key]


def compute_references(dataset: Any, episodes: int = 2) -> dict[str, Any]:
    from omrl_data.cards import task_tier_statistics
    from omrl_data.tasks import get_family

    family = get_family(dataset.metadata.get("family", dataset.tasks.family))
    stand, expert = [], []
    for t, params in enumerate(dataset.tasks.params):
        env = family.make_env(params)
        rets = []
        for e in range(episodes):
            env.reset(seed=1000 + e)
            total, done = 0.0, False
            while not done:
                _, r, term, trunc, _ = env.step(np.zeros(env.action_space.shape, np.float32))
                total += float(r)
                done = term or trunc
            rets.append(total)
        env.close()
        stand.append(float(np.mean(rets)))
        stats = task_tier_statistics(dataset.path, t) if dataset.path is not None else {}
        expert.append((stats.get("expert") or {}).get("return_mean"))
    return {"stand_still": stand, "expert": expert, "episodes": episodes, "basis": "zero action / expert tier"}
