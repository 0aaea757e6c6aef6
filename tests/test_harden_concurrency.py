"""Issue 10 items 12-14: simultaneous starts, an interrupted collection, resumed training runs."""
from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from omrl_data.errors import BadInput, LockedError
from omrl_data.store.writer import StagedDataset

FAMILY = "point_robot_sparse"


def _start(root, barrier, out):
    barrier.wait()
    try:
        staged = StagedDataset.create(root, FAMILY, "replay")
        out.put(("reserved", staged.dataset_id))
        barrier.wait()  # hold the version until both have tried
        staged.release()
    except LockedError:
        out.put(("locked", None))
        barrier.wait()


@pytest.mark.parametrize("round_", range(10))
def test_two_writers_started_at_the_same_instant_get_one_version(tmp_path, round_):
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_start, args=(tmp_path, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=30) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert [r[0] for r in results] == ["locked", "reserved"], results


def test_an_interrupted_collection_is_named_not_silently_followed_by_v2(tmp_path):
    from omrl_data.collection import CollectConfig, collect

    staged = StagedDataset.create(tmp_path, FAMILY, "random")  # as a kill -9 leaves it: staged, unlocked
    staged.lock.release()
    cfg = CollectConfig(family=FAMILY, tasks=2, mode="random", steps_per_task=100)
    with pytest.raises(BadInput, match=r"unfinished collection omrl/point_robot_sparse/random-v1 exists .*--resume.*rm -r"):
        collect(cfg, root=tmp_path, progress=False)
    assert collect(cfg, root=tmp_path, progress=False, resume=True) == "omrl/point_robot_sparse/random-v1"
