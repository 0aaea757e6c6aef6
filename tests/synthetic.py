"""Small, complete, valid synthetic datasets for tests, written through the real store.

``make_synthetic_dataset(root)`` writes a dataset with realistic episodes (fixed horizon,
truncation at the limit, a few early terminations, the last episode of a task possibly cut
short, returns that improve with ``collect_step``) via ``StagedDataset``, and returns its id.
No environment is stepped, so it is fast and does not depend on the task families.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from omrl_data.returns import mc_returns
from omrl_data.schema import DEFAULT_NAMESPACE, FORMAT_VERSION, SOURCE_CHECKPOINT, SOURCE_NAMES, SOURCE_REPLAY
from omrl_data.store import catalog
from omrl_data.store.writer import StagedDataset
from omrl_data.tasks.table import TaskTable

# obs_dim, act_dim of the families (used when the test does not say).
FAMILY_DIMS = {
    "point_robot_sparse": (2, 2),
    "bandit": (1, 5),
    "cheetah_vel": (17, 6),
    "cheetah_dir": (17, 6),
    "ant_dir": (27, 8),
    "walker_params": (17, 6),
    "hopper_params": (11, 3),
}


def synthetic_tasks(family: str, n_tasks: int, seed: int = 0, n_test: int | None = None) -> TaskTable:
    """A task table with one ``goal`` parameter per task; the last ``n_test`` tasks are test."""
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, np.pi, n_tasks))
    params = [{"goal": [float(np.cos(a)), float(np.sin(a))]} for a in angles]
    n_test = max(1, n_tasks // 4) if n_test is None else n_test
    split = ["train"] * (n_tasks - n_test) + ["test"] * n_test
    return TaskTable(family=family, params=tuple(params), features=np.array([p["goal"] for p in params]), split=tuple(split), split_kind="explicit")


def synthetic_task_arrays(
    n_rows: int,
    obs_dim: int,
    act_dim: int,
    horizon: int = 20,
    gamma: float = 0.99,
    task_index: int = 0,
    seed: int = 0,
    checkpoint_rows: int = 0,
) -> dict[str, np.ndarray]:
    """The arrays of one task: ``n_rows`` replay rows then ``checkpoint_rows`` checkpoint rows."""
    rng = np.random.default_rng([seed, task_index])
    parts = []
    for source, n in ((SOURCE_REPLAY, n_rows), (SOURCE_CHECKPOINT, checkpoint_rows)):
        if n == 0:
            continue
        ep, step, term, trunc = [], [], [], []
        e = 0
        while len(ep) < n:
            length = horizon if rng.random() > 0.2 else int(rng.integers(1, horizon))  # some end early
            length = min(length, n - len(ep))
            ep += [e] * length
            step += list(range(length))
            term += [False] * (length - 1) + [length < horizon and len(ep) < n]
            trunc += [False] * (length - 1) + [length == horizon]
            e += 1
        ep = np.asarray(ep, dtype=np.int64)
        collect = np.arange(n, dtype=np.int64) if source == SOURCE_REPLAY else np.full(n, n_rows, dtype=np.int64)
        progress = collect / max(n_rows, 1)
        obs = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
        parts.append(
            {
                "observations": obs[:-1],
                "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
                # Learning progress: reward rises with collect_step, and differs per task.
                "rewards": (progress + 0.1 * task_index + 0.1 * rng.normal(size=n)).astype(np.float32),
                "next_observations": obs[1:],
                "terminated": np.asarray(term, dtype=bool),
                "truncated": np.asarray(trunc, dtype=bool),
                "episode_index": ep,
                "step_in_episode": np.asarray(step, dtype=np.int32),
                "collect_step": collect,
                "source": np.full(n, source, dtype=np.uint8),
                "checkpoint_step": np.full(n, -1 if source == SOURCE_REPLAY else n_rows, dtype=np.int64),
            }
        )
    if not parts:  # an empty task
        from omrl_data.schema import FIELDS, field_shape

        return {f.name: np.zeros(field_shape(f, 0, obs_dim, act_dim), dtype=f.dtype) for f in FIELDS}
    if len(parts) == 2:  # checkpoint episodes continue the episode numbering
        parts[1]["episode_index"] += parts[0]["episode_index"][-1] + 1
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    ret, disc = mc_returns(arrays["rewards"], arrays["episode_index"], arrays["terminated"], gamma)
    arrays["mc_returns"] = ret
    arrays["mc_bootstrap_discount"] = disc
    return arrays


def make_synthetic_dataset(
    root: str | Path | None = None,
    family: str = "point_robot_sparse",
    n_tasks: int = 4,
    n_rows: int | Sequence[int] = 200,
    name: str = "synthetic",
    horizon: int = 20,
    gamma: float = 0.99,
    obs_dim: int | None = None,
    act_dim: int | None = None,
    seed: int = 0,
    checkpoint_rows: int = 0,
    n_test: int | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> str:
    """Write a complete dataset under ``root`` (default ``$OMRL_HOME``) and return its id.

    The first call with given arguments writes through ``StagedDataset``; later calls that
    would create version 1 copy that folder byte for byte (same files, same manifest).

    ``n_rows``: replay rows per task (an int, or one count per task).
    """
    default_obs, default_act = FAMILY_DIMS.get(family, (4, 2))
    obs_dim = obs_dim or default_obs
    act_dim = act_dim or default_act
    rows = [n_rows] * n_tasks if isinstance(n_rows, int) else list(n_rows)
    spec = dict(family=family, rows=rows, name=name, horizon=horizon, gamma=gamma, obs_dim=obs_dim, act_dim=act_dim,
                seed=seed, checkpoint_rows=checkpoint_rows, n_test=n_test, extra_metadata=extra_metadata)
    root_path = catalog.resolve_root(root)
    if catalog.next_version(family, name, root_path) != 1:
        return _write(root_path, **spec)
    # Writing through zarr costs about a second on a busy machine and many tests want the same
    # small dataset: write it once per session through the real store, then copy the folder.
    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in _TEMPLATES:
        template_root = Path(tempfile.mkdtemp(prefix="omrl-synthetic-"))
        atexit.register(shutil.rmtree, template_root, True)
        _TEMPLATES[key] = catalog.resolve(_write(template_root, **spec), template_root)
    ref = catalog.DatasetRef(DEFAULT_NAMESPACE, family, name, 1)
    final = ref.folder(root_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".copy-{uuid.uuid4().hex[:8]}"  # copied aside, then renamed: never half there
    shutil.copytree(_TEMPLATES[key], tmp)
    os.replace(tmp, final)
    return ref.id


_TEMPLATES: dict[str, Path] = {}  # spec -> a dataset folder written once per session


def _write(root, family, rows, name, horizon, gamma, obs_dim, act_dim, seed, checkpoint_rows, n_test, extra_metadata) -> str:
    n_tasks = len(rows)
    tasks = synthetic_tasks(family, n_tasks, seed, n_test)
    staged = StagedDataset.create(root, family, name, command="tests.synthetic")
    for i in range(n_tasks):
        staged.write_task(i, synthetic_task_arrays(rows[i], obs_dim, act_dim, horizon, gamma, i, seed, checkpoint_rows))
    metadata = {
        "family": family,
        "tasks": tasks.to_dict(),
        "env_id": f"omrl/Synthetic-{family}-v0",
        "env_kwargs": {},
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "observation_space": {"type": "Box", "shape": [obs_dim], "low": None, "high": None, "dtype": "float32"},
        "action_space": {"type": "Box", "shape": [act_dim], "low": -1.0, "high": 1.0, "dtype": "float32"},
        "gamma": gamma,
        "horizon": horizon,
        "collection": {"mode": "synthetic", "seed": seed, "rows_per_task": rows},
        "package_versions": {"numpy": np.__version__},
        "format_version": FORMAT_VERSION,
        "source_names": {str(k): v for k, v in SOURCE_NAMES.items()},
        **(extra_metadata or {}),
    }
    staged.commit(metadata)
    return staged.dataset_id
