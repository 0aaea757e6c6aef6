"""2 workers over 1 worker: the same collection (family, tasks, budget) with --workers 1 and 2.

Each run is a full ``omrl_data.collection.collect`` into a temporary catalog (worker start-up,
writing and commit included; calibration off). Prints wall time and transitions/s of each and the
ratio. On a 2-core machine the ideal is 2.0x; anything else running on the machine lowers it, so
the load average and the cores each run actually got (CPU seconds / wall seconds) are printed too.

    .venv/bin/python benchmarks/bench_workers.py                      # per-task SAC, cheetah_vel
    .venv/bin/python benchmarks/bench_workers.py --mode random --steps 20000
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time

from omrl_data.collection import CollectConfig, SacConfig, collect
from omrl_data.store import catalog, zarr_io


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the workers are joined after a run)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(args: argparse.Namespace, workers: int) -> tuple[float, int, float]:
    config = CollectConfig(
        family=args.family, tasks=args.tasks, seed=args.seed, steps_per_task=args.steps, mode=args.mode,
        workers=workers, name=f"bench-w{workers}", sac=SacConfig(learning_starts=args.learning_starts),
    )
    with tempfile.TemporaryDirectory(prefix="omrl-bench-workers-") as root:
        t0, c0 = time.perf_counter(), cpu_seconds()
        dataset_id = collect(config, root=root, progress=False, calibrate=False)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        rows = sum(zarr_io.task_row_counts(catalog.resolve(dataset_id, root), args.tasks))
    # cores actually used = CPU seconds / wall seconds: below `workers` when others share the cores
    return seconds, rows, cpu / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="cheetah_vel")
    p.add_argument("--tasks", type=int, default=4, help="tasks (units of work in per-task/random mode)")
    p.add_argument("--steps", type=int, default=1500, help="env steps per task")
    p.add_argument("--mode", default="per-task", choices=["per-task", "shared", "random"])
    p.add_argument("--learning-starts", type=int, default=500, help="SAC random steps before learning")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="pairs of runs (order alternates); the median ratio is printed")
    args = p.parse_args()
    print(f"{args.family}, {args.tasks} tasks x {args.steps} steps, mode {args.mode}, {os.cpu_count()} cores, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    ratios = []
    for r in range(args.repeats):
        seconds = {}
        # Alternate the order so that a change in background load does not favour one side.
        for workers in ((1, 2) if r % 2 == 0 else (2, 1)):
            seconds[workers], rows, cores = run(args, workers)
            print(f"  workers {workers}: {seconds[workers]:7.1f} s  {rows / seconds[workers]:9,.0f} transitions/s  "
                  f"({rows:,} rows; {cores:.2f} cores used)")
        ratios.append(seconds[1] / seconds[2])
    print(f"2 workers over 1 worker: {statistics.median(ratios):.2f}x (median of {len(ratios)}: "
          f"{', '.join(f'{x:.2f}' for x in ratios)}; load average after: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
