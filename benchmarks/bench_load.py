"""How long `omrl_data.load` takes on a 1M-transition dataset: cold (from zarr) and warm (cache).

    .venv/bin/python benchmarks/bench_load.py [--rows 1000000] [--tasks 10] [--obs-dim 27] [--act-dim 8]

Writes a synthetic dataset (random observations, so zarr cannot compress them much: the worst
case for reading) into a temporary catalog root, then times:
- write: StagedDataset task groups + commit (manifest checksums);
- verify: recomputing every checksum;
- cold load: the first load (verify, copy zarr -> contiguous .npy cache, read it into memory);
- warm load: later loads, from the cache into memory;
- warm load, memory-mapped: the same with a memory budget below the dataset size;
- load without cache: verify + zarr straight into memory (``cache=False``).
Files are in the OS page cache in every case (this measures decoding and copying, not the disk).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omrl_data.dataset import load  # noqa: E402
from omrl_data.store import catalog, manifest  # noqa: E402
from omrl_data.store.writer import StagedDataset  # noqa: E402
from tests.synthetic import synthetic_task_arrays, synthetic_tasks  # noqa: E402


def timed(fn, repeat=1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="transitions in total")
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--obs-dim", type=int, default=27)
    ap.add_argument("--act-dim", type=int, default=8)
    ap.add_argument("--root", type=Path, default=None, help="catalog root to use (default: a temporary folder, removed after)")
    args = ap.parse_args()

    root = args.root or Path(tempfile.mkdtemp(prefix="omrl-bench-load-"))
    try:
        per_task = args.rows // args.tasks
        tasks = synthetic_tasks("ant_dir", args.tasks)

        def write():
            staged = StagedDataset.create(root, "ant_dir", "bench", command="bench_load")
            for i in range(args.tasks):
                staged.write_task(i, synthetic_task_arrays(per_task, args.obs_dim, args.act_dim, horizon=200, task_index=i))
            staged.commit({"family": "ant_dir", "tasks": tasks.to_dict(), "gamma": 0.99, "obs_dim": args.obs_dim, "act_dim": args.act_dim})
            return staged.dataset_id

        t_write, dataset_id = timed(write)
        folder = catalog.resolve(dataset_id, root)
        size_mb = catalog.folder_size(folder) / 2**20
        t_verify, problems = timed(lambda: manifest.verify(folder))
        assert problems == []
        t_cold, data = timed(lambda: load(dataset_id, root))
        mem_mb = sum(v.nbytes for v in data.fields.values()) / 2**20
        t_warm, warm = timed(lambda: load(dataset_id, root), repeat=3)
        os.environ["OMRL_MEMORY_BUDGET_MB"] = "1"
        t_mmap, mapped = timed(lambda: load(dataset_id, root), repeat=3)
        assert isinstance(mapped.fields["observations"], np.memmap)
        del os.environ["OMRL_MEMORY_BUDGET_MB"]
        t_nocache, _ = timed(lambda: load(dataset_id, root, cache=False))
        for k in data.fields:
            assert np.array_equal(data.fields[k], warm.fields[k]) and np.array_equal(data.fields[k], mapped.fields[k])

        print(f"dataset: {data.n_transitions:,} transitions, {args.tasks} tasks, obs {args.obs_dim}-D, act {args.act_dim}-D")
        print(f"  on disk (zarr, compressed): {size_mb:.0f} MB; in memory: {mem_mb:.0f} MB")
        print(f"  write (task groups + commit):       {t_write:6.2f} s")
        print(f"  verify (all checksums):             {t_verify:6.2f} s")
        print(f"  cold load (verify + build cache):   {t_cold:6.2f} s")
        print(f"  warm load (cache -> memory):        {t_warm:6.2f} s")
        print(f"  warm load (memory-mapped cache):    {t_mmap:6.3f} s")
        print(f"  load without cache (zarr -> memory):{t_nocache:6.2f} s")
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
