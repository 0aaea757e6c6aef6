"""Reading and writing the per-task zarr groups of a dataset (see ``omrl_data.schema``).

A task group is written under a temporary name and renamed into place only once every array is
on disk, so a group that exists under its final name is complete. One writer owns each group,
which keeps parallel and distributed writers safe (zarr writers must not share chunks).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import zarr

from omrl_data.errors import IntegrityError
from omrl_data.schema import DATA_DIR, FIELD_NAMES, FIELDS_BY_NAME, task_group_name

ROWS_PER_CHUNK = 65536  # sequential reads; ~7 MB per chunk for 27-D float32 observations

# Called (no arguments) right before a task group is renamed into place; raising stops the write.
# A distributed worker sets it to "is my driver still alive?" so that nothing is written after
# the collection it belongs to was killed (set_write_guard).
_write_guard = None


def set_write_guard(guard) -> None:
    """Install (or with None remove) this process's check before every task-group commit."""
    global _write_guard
    _write_guard = guard


def check_write_guard() -> None:
    """Run this process's write guard (if any): raises when the writer must not write any more.
    Every commit of collection work (task groups, learner chunks, checkpoint policies) calls it."""
    if _write_guard is not None:
        _write_guard()


def data_root(dataset_dir: str | Path) -> Path:
    return Path(dataset_dir) / DATA_DIR


def ensure_store(dataset_dir: str | Path) -> Path:
    """Create the zarr root group of a dataset directory if missing."""
    root = data_root(dataset_dir)
    if not (root / "zarr.json").exists():
        zarr.open_group(str(root), mode="a", zarr_format=3)
    (root / "tasks").mkdir(parents=True, exist_ok=True)
    return root


def task_group_exists(dataset_dir: str | Path, task_index: int) -> bool:
    return (data_root(dataset_dir) / task_group_name(task_index) / "zarr.json").exists()


def write_task_group(dataset_dir: str | Path, task_index: int, arrays: dict[str, np.ndarray]) -> Path:
    """Write one task's arrays as a complete group; atomic with respect to readers.

    ``arrays`` must hold every field of ``omrl_data.schema.FIELDS`` with equal first dimension.
    Extra keys are stored too. An existing complete group is replaced.
    """
    missing = [f for f in FIELD_NAMES if f not in arrays]
    if missing:
        raise ValueError(f"task {task_index}: missing fields {missing}")
    n = {k: len(v) for k, v in arrays.items()}
    if len(set(n.values())) != 1:
        raise ValueError(f"task {task_index}: fields have different lengths {n}")
    root = ensure_store(dataset_dir)
    final = root / task_group_name(task_index)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    for name, values in arrays.items():
        values = np.asarray(values)
        if name in FIELDS_BY_NAME:
            values = values.astype(FIELDS_BY_NAME[name].dtype, copy=False)
        chunks = (ROWS_PER_CHUNK, *values.shape[1:]) if values.shape[0] else (1, *values.shape[1:])
        arr = group.create_array(name, shape=values.shape, dtype=values.dtype, chunks=chunks)
        if values.shape[0]:
            arr[...] = values
    _fsync_tree(tmp)
    if _write_guard is not None:
        try:
            _write_guard()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def read_task_group(dataset_dir: str | Path, task_index: int, fields: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """All (or the named) arrays of one task as numpy arrays."""
    path = data_root(dataset_dir) / task_group_name(task_index)
    if not (path / "zarr.json").exists():
        raise IntegrityError(f"task {task_index} has no data group at {path}")
    group = zarr.open_group(str(path), mode="r", zarr_format=3)
    names = fields or tuple(sorted(group.array_keys()))
    try:
        return {name: np.asarray(group[name][...]) for name in names}
    except Exception as e:  # corrupt chunk (decompression failure) or missing array
        raise IntegrityError(f"task {task_index}: cannot read its arrays ({type(e).__name__}: {e})") from e


def iter_field_blocks(dataset_dir: str | Path, task_index: int, names: tuple[str, ...], block_rows: int = 4 * ROWS_PER_CHUNK):
    """Yield ``(name, first_row, block)`` over the named arrays of one task, ``block_rows`` rows at
    a time (whole chunks), so that copying a large task never holds all of it in memory."""
    path = data_root(dataset_dir) / task_group_name(task_index)
    if not (path / "zarr.json").exists():
        raise IntegrityError(f"task {task_index} has no data group at {path}")
    group = zarr.open_group(str(path), mode="r", zarr_format=3)
    for name in names:
        try:
            arr = group[name]
            for lo in range(0, arr.shape[0], block_rows):
                yield name, lo, np.asarray(arr[lo : lo + block_rows])
        except IntegrityError:
            raise
        except Exception as e:  # corrupt chunk (decompression failure) or missing array
            raise IntegrityError(f"task {task_index}, array {name}: cannot read it ({type(e).__name__}: {e})") from e


def remove_stale_tmp(dataset_dir: str | Path) -> None:
    """Delete temporary groups left by an interrupted writer."""
    tasks = data_root(dataset_dir) / "tasks"
    if tasks.exists():
        for p in tasks.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)


def _fsync_tree(path: Path) -> None:
    for dirpath, _, files in os.walk(path):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def array_shapes(dataset_dir: str | Path, task_index: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array of one task group, from its metadata only (no chunk reads)."""
    group = data_root(dataset_dir) / task_group_name(task_index)
    if not (group / "zarr.json").exists():
        raise IntegrityError(f"task {task_index} has no data group at {group}")
    out = {}
    for child in sorted(group.iterdir()):
        meta_path = child / "zarr.json"
        if not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise ValueError(f"{meta_path.name} must hold a JSON object, not {type(meta).__name__}")
            if meta.get("node_type") != "array":
                continue
            out[child.name] = (tuple(int(d) for d in meta["shape"]), np.dtype(_zarr_dtype(meta["data_type"])))
        except (KeyError, TypeError, ValueError, OSError, json.JSONDecodeError) as e:
            raise IntegrityError(f"task {task_index}, array {child.name}: unreadable array metadata ({e})") from e
    return out


def _zarr_dtype(data_type) -> str:
    # zarr v3 names the core dtypes like numpy ("float32", "bool", "uint8", ...).
    if isinstance(data_type, dict):
        data_type = data_type.get("name")
    if not isinstance(data_type, str):
        raise ValueError(f"unsupported data_type {data_type!r}")
    return data_type


def task_row_counts(dataset_dir: str | Path, n_tasks: int) -> list[int]:
    """Rows of each task ``0..n_tasks-1`` (first dimension of its ``rewards`` array)."""
    return [array_shapes(dataset_dir, i)["rewards"][0][0] for i in range(n_tasks)]
