"""omrl_data.load: values, layout, the contiguous cache (in memory and memory-mapped), safety."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import omrl_data
from omrl_data.dataset import MultiTaskDataset
from omrl_data.errors import BadInput, DatasetNotFound, IntegrityError
from omrl_data.schema import FIELD_NAMES
from omrl_data.store import catalog, manifest
from omrl_data.tasks.table import TaskTable
from tests.synthetic import make_synthetic_dataset, synthetic_task_arrays, synthetic_tasks

ROWS = [40, 0, 75, 60]  # one empty task on purpose


@pytest.fixture
def dataset_id(omrl_home):
    return make_synthetic_dataset(n_tasks=4, n_rows=ROWS, checkpoint_rows=10)


def _expected(i):
    return synthetic_task_arrays(ROWS[i], 2, 2, task_index=i, checkpoint_rows=10)


def _cache_dir(omrl_home, dataset_id):
    return omrl_home / ".cache" / manifest.manifest_checksum(catalog.resolve(dataset_id))


def _assert_same(a: MultiTaskDataset, b: MultiTaskDataset):
    assert list(a.fields) == list(b.fields)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    for k in a.fields:
        assert a.fields[k].dtype == b.fields[k].dtype
        np.testing.assert_array_equal(a.fields[k], b.fields[k])


def test_load_values_and_layout(dataset_id, omrl_home):
    data = omrl_data.load(dataset_id)
    assert data.id == dataset_id and data.path == catalog.resolve(dataset_id)
    assert isinstance(data.tasks, TaskTable) and len(data.tasks) == 4
    assert data.tasks.split == ("train", "train", "train", "test")
    assert list(data.fields)[: len(FIELD_NAMES)] == list(FIELD_NAMES)
    sizes = [r + 10 for r in ROWS]
    assert data.offsets.dtype == np.int64 and data.offsets.tolist() == np.concatenate([[0], np.cumsum(sizes)]).tolist()
    assert data.metadata["gamma"] == 0.99 and data.metadata["obs_dim"] == 2 and data.metadata["family"] == "point_robot_sparse"
    assert (data.obs_dim, data.act_dim, len(data)) == (2, 2, sum(sizes))
    for k, v in data.fields.items():
        assert v.flags["C_CONTIGUOUS"] and len(v) == sum(sizes), k
    for i in range(4):
        got, exp = data.task_arrays(i), _expected(i)
        for k in exp:
            assert got[k].dtype == exp[k].dtype
            np.testing.assert_array_equal(got[k], exp[k])
        assert np.shares_memory(got["observations"], data.fields["observations"])  # views, no copies
    with pytest.raises(BadInput, match="out of range"):
        data.task_arrays(4)


def test_load_by_path_latest_and_missing(dataset_id, omrl_home):
    by_path = omrl_data.load(str(catalog.resolve(dataset_id)))
    latest = omrl_data.load("omrl/point_robot_sparse/synthetic")
    _assert_same(by_path, latest)
    with pytest.raises(DatasetNotFound):
        omrl_data.load("omrl/point_robot_sparse/nothing")


def test_cache_equals_load_after_cache_deleted(dataset_id, omrl_home):
    first = omrl_data.load(dataset_id)
    cache = _cache_dir(omrl_home, dataset_id)
    assert (cache / "cache.json").is_file() and (cache / "observations.npy").is_file()
    warm = omrl_data.load(dataset_id)
    _assert_same(first, warm)
    shutil.rmtree(cache)
    rebuilt = omrl_data.load(dataset_id)
    assert cache.is_dir()
    _assert_same(first, rebuilt)
    _assert_same(first, omrl_data.load(dataset_id, cache=False))


def test_above_the_memory_budget_is_memory_mapped(dataset_id, omrl_home, monkeypatch):
    in_ram = omrl_data.load(dataset_id)
    assert not isinstance(in_ram.fields["observations"], np.memmap)
    monkeypatch.setenv("OMRL_MEMORY_BUDGET_MB", "0.001")
    mapped = omrl_data.load(dataset_id)
    assert isinstance(mapped.fields["observations"], np.memmap)
    _assert_same(in_ram, mapped)
    with pytest.raises(BadInput, match="above the memory budget"):
        omrl_data.load(dataset_id, cache=False)
    monkeypatch.setenv("OMRL_MEMORY_BUDGET_MB", "lots")
    with pytest.raises(BadInput, match="OMRL_MEMORY_BUDGET_MB"):
        omrl_data.load(dataset_id)


@pytest.mark.parametrize("damage", ["truncate_npy", "edit_info", "drop_file", "wrong_shape"])
def test_damaged_cache_is_rebuilt(dataset_id, omrl_home, damage):
    good = omrl_data.load(dataset_id)
    cache = _cache_dir(omrl_home, dataset_id)
    if damage == "truncate_npy":
        p = cache / "rewards.npy"
        p.write_bytes(p.read_bytes()[:-8])
    elif damage == "edit_info":
        info = json.loads((cache / "cache.json").read_text())
        info["layout"]["offsets"][-1] += 1
        (cache / "cache.json").write_text(json.dumps(info))
    elif damage == "drop_file":
        (cache / "actions.npy").unlink()
    else:
        np.save(cache / "rewards.npy", np.zeros(3, dtype=np.float32))
    _assert_same(good, omrl_data.load(dataset_id))
    assert json.loads((cache / "cache.json").read_text())["layout"]["offsets"] == good.offsets.tolist()


def test_killed_cache_build_is_never_used(dataset_id, omrl_home):
    checksum = manifest.manifest_checksum(catalog.resolve(dataset_id))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    partial = omrl_home / ".cache" / f".tmp-{checksum[:16]}-{socket.gethostname()}-{int(dead.stdout)}-abcdef"
    partial.mkdir(parents=True)
    (partial / "observations.npy").write_bytes(b"\x93NUMPY half")
    data = omrl_data.load(dataset_id)
    assert not partial.exists()  # the dead build's leftovers are cleaned
    assert (omrl_home / ".cache" / checksum / "cache.json").is_file()
    np.testing.assert_array_equal(data.task_arrays(0)["observations"], _expected(0)["observations"])


def test_first_load_verifies_checksums(dataset_id, omrl_home):
    folder = catalog.resolve(dataset_id)
    chunk = folder / "data.zarr/tasks/0002/mc_returns/c/0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 1
    chunk.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="task 2, array mc_returns: checksum mismatch"):
        omrl_data.load(dataset_id)
    with pytest.raises(IntegrityError, match="task 2, array mc_returns"):
        omrl_data.load(dataset_id, cache=False)
    assert list((omrl_home / ".cache").iterdir()) == []  # no cache, complete or partial, was left


def test_wrong_format_version_is_a_clear_error(dataset_id):
    folder = catalog.resolve(dataset_id)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["format_version"] = 2
    (folder / "metadata.json").write_text(json.dumps(meta))
    manifest.write_manifest(folder)  # a consistent dataset, just from another format
    with pytest.raises(IntegrityError, match="format_version 2; this omrl reads format_version 1"):
        omrl_data.load(dataset_id)


def test_from_arrays():
    tasks = synthetic_tasks("point_robot_sparse", 3)
    per_task = [synthetic_task_arrays(n, 2, 2, task_index=i) for i, n in enumerate([5, 7, 0])]
    data = MultiTaskDataset.from_arrays(tasks, per_task, {"gamma": 0.9})
    assert data.offsets.tolist() == [0, 5, 12, 12] and data.gamma == 0.9
    assert data.metadata["tasks"] == tasks.to_dict() and data.id is None
    np.testing.assert_array_equal(data.task_arrays(1)["rewards"], per_task[1]["rewards"])
    assert len(data.task_arrays(2)["rewards"]) == 0
    with pytest.raises(BadInput, match="3 tasks"):
        MultiTaskDataset.from_arrays(tasks, per_task[:2], {})
    bad = [dict(p) for p in per_task]
    del bad[1]["rewards"]
    with pytest.raises(BadInput, match="task 1 has fields"):
        MultiTaskDataset.from_arrays(tasks, bad, {})


def test_load_never_unpickles(dataset_id, omrl_home):
    data = omrl_data.load(dataset_id)
    cache = _cache_dir(omrl_home, dataset_id)
    # An object array in the cache would need pickle to read: load refuses it and rebuilds.
    np.save(cache / "rewards.npy", np.array([object()] * len(data), dtype=object), allow_pickle=True)
    again = omrl_data.load(dataset_id)
    assert again.fields["rewards"].dtype == np.float32


def test_tasks_larger_than_one_copy_block(omrl_home, monkeypatch):
    from omrl_data.store import zarr_io

    rows = [2 * zarr_io.ROWS_PER_CHUNK + 123, 1000]  # copied in blocks of whole chunks
    monkeypatch.setattr(zarr_io.iter_field_blocks, "__defaults__", (zarr_io.ROWS_PER_CHUNK,))
    dataset_id = make_synthetic_dataset(n_tasks=2, n_rows=rows, name="big")
    data = omrl_data.load(dataset_id, memory_budget_mb=0.5)
    assert isinstance(data.fields["observations"], np.memmap)
    for i, n in enumerate(rows):
        exp = synthetic_task_arrays(n, 2, 2, task_index=i)
        for k in ("observations", "mc_returns", "episode_index"):
            np.testing.assert_array_equal(data.task_arrays(i)[k], exp[k])
