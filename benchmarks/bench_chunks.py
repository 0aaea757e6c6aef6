"""What the chunks of a SAC learner cost: commit time and size per chunk, and the restore on resume.

Runs one shard with ``collect_shard`` in this process (one torch thread), the way a collection
worker does, with a work folder: the learner commits a chunk every ``--chunk-seconds``; after
``--stop-after`` chunks it is stopped (an exception from its progress callback, where a kill
would stop it), then started again on the same folders, which continues from the last chunk.

    .venv/bin/python benchmarks/bench_chunks.py --family ant_dir --tasks 25 --steps 1500 --chunk-seconds 20
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path


class _Stop(Exception):
    pass


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="ant_dir")
    ap.add_argument("--tasks", type=int, default=25)
    ap.add_argument("--steps", type=int, default=1500, help="env steps per task")
    ap.add_argument("--learning-starts", type=int, default=100)
    ap.add_argument("--chunk-seconds", type=float, default=20.0)
    ap.add_argument("--stop-after", type=int, default=2, help="stop once this many chunks are committed")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from omrl_data.collection import CollectConfig, SacConfig
    from omrl_data.collection import chunks as chunk_store
    from omrl_data.collection.learners import collect_shard
    from omrl_data.store import zarr_io
    from omrl_data.tasks import get_family

    table = get_family(args.family).sample_tasks(args.tasks, seed=0)
    shard = [(i, dict(p)) for i, p in enumerate(table.params)]
    config = CollectConfig(family=args.family, tasks=args.tasks, steps_per_task=args.steps, chunk_seconds=args.chunk_seconds,
                           sac=SacConfig(learning_starts=args.learning_starts))

    commits: list[tuple[float, int, int]] = []  # (seconds, bytes, vector steps done)
    original = chunk_store.Chunks.commit

    def timed_commit(self, done, *a, **k):
        t0 = time.perf_counter()
        original(self, done, *a, **k)
        folder = self.chunk_dir(self.count)
        commits.append((time.perf_counter() - t0, _folder_bytes(folder), int(done)))

    chunk_store.Chunks.commit = timed_commit
    with tempfile.TemporaryDirectory(prefix="omrl-bench-chunks-") as tmp:
        out, work = Path(tmp) / "dataset", Path(tmp) / "work"
        zarr_io.ensure_store(out)
        progress: list[tuple[float, int]] = []

        def report(task: int, steps: int) -> None:
            if task == 0:
                progress.append((time.perf_counter(), steps))
            if len(commits) >= args.stop_after:
                raise _Stop

        t0, c0 = time.perf_counter(), time.process_time()
        try:
            collect_shard(config, shard, out, report=report, work_dir=work)
        except _Stop:
            pass
        first_wall, first_cpu = time.perf_counter() - t0, time.process_time() - c0
        stopped_at = progress[-1][1]
        work_bytes = _folder_bytes(work)
        chunk_done = commits[-1][2]
        n_first = len(commits)

        progress.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        stats = collect_shard(dataclasses.replace(config, chunk_seconds=1e9), shard, out,
                              report=lambda task, steps: progress.append((time.perf_counter(), steps)) if task == 0 else None,
                              work_dir=work)
        resume_wall, resume_cpu = time.perf_counter() - t0, time.process_time() - c0
        first_new = next((t for t, s in progress if s > chunk_done), None)

    print(f"{args.family}, {args.tasks} tasks x {args.steps} steps, one shared SAC, chunks every {args.chunk_seconds:g} s "
          f"(load average {os.getloadavg()[0]:.1f})")
    for k, (sec, size, done) in enumerate(commits[:n_first], 1):
        print(f"  chunk {k}: at vector step {done}, {size / 2**20:.1f} MB, committed in {sec:.2f} s")
    print(f"  stopped at step {stopped_at} after {first_wall:.1f} s wall / {first_cpu:.1f} s CPU; "
          f"work folder {work_bytes / 2**20:.1f} MB; the last chunk is at step {chunk_done} "
          f"(lost: {stopped_at - chunk_done} steps)")
    restore = None if first_new is None else first_new - t0
    print(f"  resumed from step {next(iter(stats.values()))['resumed_from_step']}: first new step after "
          f"{'?' if restore is None else f'{restore:.1f}'} s (restore, start-up included); the rest took "
          f"{resume_wall:.1f} s wall / {resume_cpu:.1f} s CPU, writing the {args.tasks} groups included")


if __name__ == "__main__":
    main()
