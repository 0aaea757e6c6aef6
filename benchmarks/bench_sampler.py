"""How fast is ``TaskBatchSampler.sample()``? Ratios against three other ways to get the same batch.

One process, one synthetic dataset (default 20 tasks x 50k rows, 27-D observations, 8-D actions,
200-step episodes) built with ``MultiTaskDataset.from_arrays``; every method draws a meta-batch of
10 tasks x 256 transitions:

- ``omrl sample()``: ``TaskBatchSampler.sample()``, a full ``TaskBatch`` (7 fields, task
  features, mask).
- ``raw index_select``: the practical limit: one contiguous float32 tensor holding every field
  side by side, T random tasks, B random rows each, one ``index_select``, no batch object.
- ``raw index_select per field``: the same, one ``index_select`` per field tensor.
- ``MACAW style``: a Python loop over tasks, per-task numpy arrays indexed with
  ``np.random.randint`` rows, then ``torch.from_numpy`` and ``torch.stack``.
- ``Minari``: one Minari dataset per task (``create_dataset_from_buffers`` into a temporary
  ``MINARI_DATASETS_PATH``), ``sample_episodes(2)`` per task (400 rows, the fewest whole episodes
  that hold 256), flattened to transitions (observations[:-1] / [1:]), 256 random rows kept.
  Minari has no ``mc_returns``; it returns 6 fields, so it does a little less work.

Run: ``.venv/bin/python benchmarks/bench_sampler.py`` (``--help`` for sizes).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omrl_data.dataset import MultiTaskDataset  # noqa: E402
from omrl_data.sampler import BATCH_FIELDS, TaskBatchSampler  # noqa: E402
from omrl_data.tasks.table import TaskTable  # noqa: E402


def build_dataset(n_tasks: int, rows: int, obs_dim: int, act_dim: int, horizon: int, seed: int = 0) -> MultiTaskDataset:
    """Random transitions with the real field layout; episodes of ``horizon`` rows."""
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0, 2 * np.pi, n_tasks)
    tasks = TaskTable(
        family="ant_dir",
        params=tuple({"goal_angle": float(a)} for a in angles),
        features=np.stack([np.cos(angles), np.sin(angles)], 1),
        split=("train",) * n_tasks,
    )
    step = np.arange(rows) % horizon
    per_task = []
    for _ in range(n_tasks):
        obs = rng.standard_normal((rows + 1, obs_dim), dtype=np.float32)
        rewards = rng.standard_normal(rows, dtype=np.float32)
        per_task.append(
            {
                "observations": obs[:-1],
                "actions": rng.uniform(-1, 1, (rows, act_dim)).astype(np.float32),
                "rewards": rewards,
                "next_observations": obs[1:],
                "terminated": np.zeros(rows, bool),
                "truncated": step == horizon - 1,
                "episode_index": np.arange(rows) // horizon,
                "step_in_episode": step.astype(np.int32),
                # Not discounted sums (irrelevant to speed), but the right dtype and size.
                "mc_returns": rewards * 10,
            }
        )
    return MultiTaskDataset.from_arrays(tasks, per_task, {"gamma": 0.99})


def time_methods(methods: dict[str, Callable[[], object]], seconds: float, rounds: int = 15) -> dict[str, float]:
    """Seconds per call of each method: the fastest of ``rounds`` short runs, the runs of all
    methods interleaved, so that load from other processes hits every method alike and the
    minimum (as ``timeit`` recommends) filters it out."""
    calls = {}
    for name, fn in methods.items():
        for _ in range(3):
            fn()
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < 0.05 or n < 2:
            fn()
            n += 1
        per_call = (time.perf_counter() - start) / n
        calls[name] = max(2, int(seconds / rounds / per_call))
    best = {name: float("inf") for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / calls[name])
    return best


def raw_gather_packed(ds: MultiTaskDataset, t: int, b: int, seed: int) -> Callable[[], torch.Tensor]:
    """All fields side by side in one [R, D] float32 tensor; one index_select per batch."""
    cols = [torch.from_numpy(np.asarray(ds.fields[f], dtype=np.float32).reshape(len(ds), -1)) for f in BATCH_FIELDS]
    packed = torch.cat(cols, 1).contiguous()
    starts = torch.as_tensor(ds.offsets[:-1])
    sizes = torch.as_tensor(np.diff(ds.offsets))
    g = torch.Generator().manual_seed(seed)
    n = len(starts)

    def draw() -> torch.Tensor:
        tasks = torch.randperm(n, generator=g)[:t]
        rows = torch.randint(0, 2**62, (t, b), generator=g) % sizes[tasks, None] + starts[tasks, None]
        return packed.index_select(0, rows.view(-1)).view(t, b, -1)

    return draw


def raw_gather_fields(ds: MultiTaskDataset, t: int, b: int, seed: int) -> Callable[[], list[torch.Tensor]]:
    """One contiguous tensor per field, one index_select each, no batch object."""
    tensors = [torch.from_numpy(ds.fields[f]) for f in BATCH_FIELDS]
    starts = torch.as_tensor(ds.offsets[:-1])
    sizes = torch.as_tensor(np.diff(ds.offsets))
    g = torch.Generator().manual_seed(seed)
    n = len(starts)

    def draw() -> list[torch.Tensor]:
        tasks = torch.randperm(n, generator=g)[:t]
        rows = (torch.randint(0, 2**62, (t, b), generator=g) % sizes[tasks, None] + starts[tasks, None]).view(-1)
        return [x.index_select(0, rows) for x in tensors]

    return draw


def macaw_style(ds: MultiTaskDataset, t: int, b: int, seed: int) -> Callable[[], dict[str, torch.Tensor]]:
    """Per-task buffers (own numpy arrays), a Python loop over tasks, numpy fancy indexing."""
    buffers = [{f: np.ascontiguousarray(ds.task_arrays(i)[f]) for f in BATCH_FIELDS} for i in range(ds.n_tasks)]
    rng = np.random.default_rng(seed)

    def draw() -> dict[str, torch.Tensor]:
        per_task = []
        for i in rng.choice(len(buffers), t, replace=False):
            buf = buffers[i]
            idx = rng.integers(0, len(buf["rewards"]), b)
            per_task.append({f: torch.from_numpy(buf[f][idx]) for f in BATCH_FIELDS})
        return {f: torch.stack([p[f] for p in per_task]) for f in BATCH_FIELDS}

    return draw


def minari_style(ds: MultiTaskDataset, t: int, b: int, seed: int, horizon: int, folder: str) -> Callable[[], dict[str, torch.Tensor]]:
    """One Minari dataset per task; whole episodes sampled, flattened to transitions."""
    os.environ["MINARI_DATASETS_PATH"] = folder
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    obs_space = gym.spaces.Box(-np.inf, np.inf, (ds.obs_dim,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (ds.act_dim,), np.float32)
    datasets = []
    for i in range(ds.n_tasks):
        a = ds.task_arrays(i)
        buffers = []
        for e, lo in enumerate(range(0, len(a["rewards"]), horizon)):
            hi = min(lo + horizon, len(a["rewards"]))
            buffers.append(
                EpisodeBuffer(
                    id=e,
                    observations=np.concatenate([a["observations"][lo:hi], a["next_observations"][hi - 1 : hi]]),
                    actions=a["actions"][lo:hi],
                    rewards=a["rewards"][lo:hi].tolist(),
                    terminations=a["terminated"][lo:hi].tolist(),
                    truncations=a["truncated"][lo:hi].tolist(),
                    infos={},
                )
            )
        datasets.append(
            minari.create_dataset_from_buffers(
                f"bench/task{i:02d}-v0", buffers, observation_space=obs_space, action_space=act_space, algorithm_name="bench"
            )
        )
    for d in datasets:
        d.set_seed(seed)
    rng = np.random.default_rng(seed)
    n_episodes = -(-b // horizon)  # the fewest whole episodes that hold b rows

    def draw() -> dict[str, torch.Tensor]:
        per_task = []
        for i in rng.choice(len(datasets), t, replace=False):
            eps = datasets[i].sample_episodes(n_episodes)
            flat = {
                "observations": np.concatenate([e.observations[:-1] for e in eps]),
                "actions": np.concatenate([e.actions for e in eps]),
                "rewards": np.concatenate([e.rewards for e in eps]),
                "next_observations": np.concatenate([e.observations[1:] for e in eps]),
                "terminated": np.concatenate([e.terminations for e in eps]),
                "truncated": np.concatenate([e.truncations for e in eps]),
            }
            idx = rng.integers(0, len(flat["rewards"]), b)
            per_task.append({k: torch.from_numpy(np.ascontiguousarray(v[idx])) for k, v in flat.items()})
        return {k: torch.stack([p[k] for p in per_task]) for k in per_task[0]}

    return draw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20, help="tasks in the dataset")
    parser.add_argument("--rows", type=int, default=50_000, help="transitions per task")
    parser.add_argument("--obs-dim", type=int, default=27)
    parser.add_argument("--act-dim", type=int, default=8)
    parser.add_argument("--horizon", type=int, default=200, help="episode length")
    parser.add_argument("--meta-batch", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per method")
    parser.add_argument("--no-minari", action="store_true", help="skip the Minari comparison")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (numpy and Minari use one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t, b = args.meta_batch, args.batch_size

    start = time.perf_counter()
    ds = build_dataset(args.tasks, args.rows, args.obs_dim, args.act_dim, args.horizon)
    print(f"dataset: {ds.n_tasks} tasks x {args.rows} rows, obs {ds.obs_dim}, act {ds.act_dim} "
          f"({time.perf_counter() - start:.1f} s to build); meta-batch {t} x {b}; torch threads {torch.get_num_threads()}")

    sampler = TaskBatchSampler(ds, "all", meta_batch=t, batch_size=b, seed=0)
    methods: dict[str, Callable[[], object]] = {
        "omrl sample()": sampler.sample,
        "raw index_select (one packed tensor)": raw_gather_packed(ds, t, b, 0),
        "raw index_select (per field)": raw_gather_fields(ds, t, b, 0),
        "MACAW style (loop + numpy)": macaw_style(ds, t, b, 0),
    }
    with tempfile.TemporaryDirectory(prefix="bench-minari-") as folder:
        if not args.no_minari:
            start = time.perf_counter()
            methods["Minari sample_episodes + flatten"] = minari_style(ds, t, b, 0, args.horizon, folder)
            print(f"Minari export: {time.perf_counter() - start:.1f} s for {ds.n_tasks} datasets")
        times = time_methods(methods, args.seconds)

    ours = times["omrl sample()"]
    print()
    print(f"| method | time per batch ({t} x {b}) | ratio to omrl sample() |")
    print("|---|---:|---:|")
    for name, sec in times.items():
        print(f"| {name} | {sec * 1e6:,.0f} us | {sec / ours:.2f}x |")
    limit = times["raw index_select (one packed tensor)"]
    print()
    print(f"omrl sample() / raw packed gather = {ours / limit:.2f} (target <= 2)")

    # The other draws, for a training profile's sake (absolute times, same dataset).
    unpacked = TaskBatchSampler(ds, "all", meta_batch=t, batch_size=b, seed=0, packed=False)
    anchors = list(range(t))
    others = {
        "sample(), packed=False (zero-copy fields)": unpacked.sample,
        f"sample_support_query({b}, {b})": lambda: sampler.sample_support_query(b, b),
        f"sample_support_query({b}, {b}, contiguous=True)": lambda: sampler.sample_support_query(b, b, contiguous=True),
        "sample_context(length=64)": lambda: sampler.sample_context(length=64),
        "sample_context(whole_episodes=True)": lambda: sampler.sample_context(whole_episodes=True),
        f"sample_negatives({t} anchors, {b}, alpha=1)": lambda: sampler.sample_negatives(anchors, b, 1.0),
        f"adaptation_batch(0, {b})": lambda: sampler.adaptation_batch(0, b),
    }
    print()
    print(f"| other draws ({t} tasks) | time per batch |")
    print("|---|---:|")
    for name, sec in time_methods(others, args.seconds / 2, rounds=5).items():
        print(f"| {name} | {sec * 1e6:,.0f} us |")


if __name__ == "__main__":
    main()
