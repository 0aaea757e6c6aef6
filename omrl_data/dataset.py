"""Loading a stored dataset as one contiguous multi-task dataset.

``load(id_or_path)`` returns a :class:`MultiTaskDataset`: every field of every task concatenated
into one contiguous numpy array (``fields``), with ``offsets`` marking where each task's rows
are. Zarr is the storage and transport format but is slow for random rows (every index decodes a
whole chunk), so the first load copies the data out of zarr into a contiguous ``.npy`` cache,
``<root>/.cache/<manifest checksum>/``, checking every checksum on the way. Later loads read
the cache: into memory when the dataset fits the memory budget (``OMRL_MEMORY_BUDGET_MB``,
default 4096), memory-mapped otherwise. The cache is keyed by the manifest checksum, so a
different version never matches it. ``cache.json`` records the sha256 of every cache file and
the size and mtime of every file of the version; each load checks both, so a damaged cache or a
version whose files changed since is verified and rebuilt, never served. The cache is built in a
temporary folder and renamed into place, so a killed build is never used.

Metadata keys (``dataset.metadata``, the dataset's ``metadata.json``)
----------------------------------------------------------------------
family            task family name, e.g. ``"ant_dir"``
dataset_id        ``"omrl/<family>/<name>-v<N>"``
name, version     the id's parts (version an int from 1)
tasks             the task table, ``TaskTable.to_dict()`` (index, params, features, split)
env_id            Gymnasium id of the family's env, e.g. ``"omrl/AntDir-v0"``
env_kwargs        keyword arguments of ``gymnasium.make`` besides the task
obs_dim, act_dim  sizes of one observation and one action
observation_space, action_space   the spaces as JSON (type, shape, low, high, dtype)
gamma             discount used for ``mc_returns``
horizon           episode length (time-limit truncation)
collection        the collection config dict (``CollectConfig.to_dict()``), seeds included
package_versions  versions of omrl, gymnasium, mujoco, stable-baselines3, torch, zarr, numpy
created           ISO 8601 UTC time of the commit
format_version    ``omrl_data.schema.FORMAT_VERSION`` of the layout; checked on load
lineage           for slices and imports: ``{"parent": id, "parent_manifest": checksum,
                  "spec": {...slice spec...}}``; absent for collected datasets
source_names      ``{"0": "replay", "1": "checkpoint", "2": "random"}``: values of ``source``
task_rows         rows per task (set by the writer at commit)
references        normalised-score references per task (stand_still, random, expert,
                  informative, episodes, basis): see ``omrl_data.references``; computed on first
                  use of ``dataset.references`` when absent (older versions)
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from omrl_data.errors import BadInput, DatasetNotFound, IntegrityError
from omrl_data.schema import FIELD_NAMES, FIELDS_BY_NAME
from omrl_data.store import catalog, manifest, validate, zarr_io
from omrl_data.store.lock import pid_alive
from omrl_data.tasks.table import TaskTable

MEMORY_BUDGET_ENV = "OMRL_MEMORY_BUDGET_MB"  # above this size a dataset is memory-mapped, not copied
DEFAULT_MEMORY_BUDGET_MB = 4096
CACHE_INFO = "cache.json"
OFFSETS_FILE = "offsets.npy"


class MultiTaskDataset:
    """Transitions of N tasks, stored contiguously.

    tasks: the TaskTable (parameters, features ``[N, F]``, split).
    fields: field name -> array ``[R, ...]`` (R = all rows), tasks one after the other.
    offsets: ``[N + 1]`` int64; rows of task i are ``offsets[i]:offsets[i + 1]``.
    metadata: the dataset's metadata dict (see the module docstring for its keys).
    id, path: the dataset id and folder (None for datasets built in memory).
    """

    def __init__(
        self,
        tasks: TaskTable,
        fields: Mapping[str, np.ndarray],
        offsets: np.ndarray,
        metadata: Mapping[str, Any],
        id: str | None = None,
        path: str | Path | None = None,
    ):
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.shape != (len(tasks) + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise ValueError(f"offsets must be [N + 1] = [{len(tasks) + 1}] non-decreasing from 0, got {offsets}")
        for name, values in fields.items():
            if len(values) != offsets[-1]:
                raise ValueError(f"field {name} has {len(values)} rows; offsets say {offsets[-1]}")
        self.tasks = tasks
        self.fields = dict(fields)
        self.offsets = offsets
        self.metadata = dict(metadata)
        self.id = id
        self.path = Path(path) if path is not None else None

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        tasks: TaskTable,
        per_task_arrays: Sequence[Mapping[str, np.ndarray]],
        metadata: Mapping[str, Any] | None = None,
        id: str | None = None,
        path: str | Path | None = None,
    ) -> "MultiTaskDataset":
        """Concatenate per-task dicts of arrays (same keys in every task) into one dataset."""
        if len(per_task_arrays) != len(tasks):
            raise BadInput(f"{len(per_task_arrays)} per-task arrays for a task table of {len(tasks)} tasks")
        if not per_task_arrays:
            raise BadInput("a dataset needs at least one task")
        names = list(per_task_arrays[0])
        for i, arrays in enumerate(per_task_arrays):
            if set(arrays) != set(names):
                raise BadInput(f"task {i} has fields {sorted(arrays)}; task 0 has {sorted(names)}")
        sizes = [len(next(iter(a.values()))) if a else 0 for a in per_task_arrays]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        fields = {}
        for name in names:
            parts = [np.asarray(a[name]) for a in per_task_arrays]
            if name in FIELDS_BY_NAME:
                parts = [p.astype(FIELDS_BY_NAME[name].dtype, copy=False) for p in parts]
            fields[name] = np.ascontiguousarray(np.concatenate(parts, axis=0))
        meta = dict(metadata or {})
        meta.setdefault("tasks", tasks.to_dict())
        meta.setdefault("family", tasks.family)
        return cls(tasks, fields, offsets, meta, id=id, path=path)

    # ----------------------------------------------------------------------------------------
    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def n_transitions(self) -> int:
        return int(self.offsets[-1])

    @property
    def task_sizes(self) -> np.ndarray:
        """``[N]`` rows per task."""
        return np.diff(self.offsets)

    @property
    def gamma(self) -> float:
        return float(self.metadata.get("gamma", 0.99))

    @property
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low [act_dim], high [act_dim])`` float32: the env's action box from the metadata.

        Stored actions are in these bounds; algorithms work in [-1, 1] (the sampler's
        ``normalise_actions``) and agents map back. Unbounded or missing bounds read as [-1, 1].
        """
        space = self.metadata.get("action_space") or {}
        n = self.act_dim

        def bound(x: Any, default: float) -> np.ndarray:
            arr = np.full(n, default, np.float64) if x is None else np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)).copy()
            arr[~np.isfinite(arr)] = default
            return arr.astype(np.float32)

        low, high = bound(space.get("low"), -1.0), bound(space.get("high"), 1.0)
        bad = ~(high > low)
        low[bad], high[bad] = -1.0, 1.0
        return low, high

    @property
    def obs_dim(self) -> int:
        return int(self.fields["observations"].shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.fields["actions"].shape[1])

    @property
    def references(self) -> dict[str, Any]:
        """Normalised-score references per task (``omrl_data.references.references_of``): the
        stored ones, else computed once (a few rollouts per task) and kept in memory."""
        from omrl_data.references import references_of

        return references_of(self)

    def task_arrays(self, i: int) -> dict[str, np.ndarray]:
        """Field name -> the rows of task ``i`` (views, no copy)."""
        if not -self.n_tasks <= i < self.n_tasks:
            raise BadInput(f"task index {i} out of range: the dataset has {self.n_tasks} tasks (0..{self.n_tasks - 1})")
        i %= self.n_tasks
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return {name: values[lo:hi] for name, values in self.fields.items()}

    def __len__(self) -> int:
        return self.n_transitions

    def __repr__(self) -> str:
        return (
            f"MultiTaskDataset(id={self.id!r}, tasks={self.n_tasks}, transitions={self.n_transitions}, "
            f"fields={list(self.fields)})"
        )


# --------------------------------------------------------------------------------------------
def memory_budget_bytes(memory_budget_mb: float | None = None) -> int:
    if memory_budget_mb is None:
        raw = os.environ.get(MEMORY_BUDGET_ENV, "")
        try:
            memory_budget_mb = float(raw) if raw else DEFAULT_MEMORY_BUDGET_MB
        except ValueError:
            raise BadInput(f"{MEMORY_BUDGET_ENV}={raw!r} is not a number of megabytes") from None
    return int(memory_budget_mb * 1024 * 1024)


def load(
    id_or_path: str | Path,
    root: str | Path | None = None,
    memory_budget_mb: float | None = None,
    cache: bool = True,
) -> MultiTaskDataset:
    """Load a dataset by id (``omrl/<family>/<name>[-v<N>]``, no version = latest) or folder.

    The first load verifies every checksum and writes the contiguous cache (``cache=False``
    skips the cache and copies straight into memory). Datasets larger than the memory budget
    (MB; default ``$OMRL_MEMORY_BUDGET_MB`` or 4096) come back memory-mapped from the cache.
    """
    path = catalog.resolve(id_or_path, root)
    try:
        return _load(path, root, memory_budget_mb, cache)
    except IntegrityError:
        if not (path / manifest.MANIFEST_FILE).exists():  # a delete renamed it away while we read it
            raise DatasetNotFound(f"{path} was deleted while it was being read; nothing is wrong with the data") from None
        raise


def _load(path: Path, root: str | Path | None, memory_budget_mb: float | None, cache: bool) -> MultiTaskDataset:
    man = manifest.read_manifest(path)
    meta = catalog.read_metadata(path)
    manifest.check_format_version(meta.get("format_version"), f"the metadata of {path}")
    validate.check_version(path, meta)  # metadata and array shapes/dtypes against the schema
    tasks = TaskTable.from_dict(meta["tasks"])
    checksum = manifest.manifest_checksum(manifest=man)
    layout = _layout(path, len(tasks))
    dataset_id = meta.get("dataset_id") or catalog.dataset_id_of(path)
    in_memory = layout.nbytes <= memory_budget_bytes(memory_budget_mb)

    if cache:
        cache_root = catalog.resolve_root(root) / catalog.CACHE_DIR
        folder = cache_root / checksum
        if not _cache_matches(folder, checksum, layout, path):
            if folder.exists():
                warnings.warn(
                    f"the loading cache of {dataset_id} ({folder}) does not match what was recorded when it was built "
                    "(damaged, or the dataset's files changed): verifying the dataset and rebuilding it", stacklevel=2,
                )
            try:
                _build_cache(path, folder, checksum, layout)
            except OSError as e:
                if not in_memory:
                    raise IntegrityError(f"cannot write the loading cache under {cache_root} ({e}); pass a writable root") from e
                warnings.warn(f"loading without a cache: cannot write under {cache_root} ({e})", stacklevel=2)
                cache = False
        if cache:
            fields = {name: np.load(folder / f"{name}.npy", mmap_mode=None if in_memory else "r", allow_pickle=False) for name in layout.names}
            return MultiTaskDataset(tasks, fields, layout.offsets, meta, id=dataset_id, path=path)

    if not in_memory:
        raise BadInput(
            f"{dataset_id} needs {layout.nbytes / 2**20:.0f} MB, above the memory budget; load it with cache=True "
            f"(memory-mapped) or raise {MEMORY_BUDGET_ENV}"
        )
    _verify_or_raise(path)
    fields = {name: np.empty(shape, dtype) for name, (shape, dtype) in layout.full_shapes().items()}
    _copy_from_zarr(path, layout, fields)
    return MultiTaskDataset(tasks, fields, layout.offsets, meta, id=dataset_id, path=path)


class _Layout:
    """Names, dtypes, per-row shapes and task offsets of a stored dataset, from zarr metadata."""

    def __init__(self, names: list[str], dtypes: dict[str, np.dtype], row_shapes: dict[str, tuple[int, ...]], offsets: np.ndarray):
        self.names = names
        self.dtypes = dtypes
        self.row_shapes = row_shapes
        self.offsets = offsets

    def full_shapes(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        n = int(self.offsets[-1])
        return {name: ((n, *self.row_shapes[name]), self.dtypes[name]) for name in self.names}

    @property
    def nbytes(self) -> int:
        return sum(int(np.prod(s, dtype=np.int64)) * d.itemsize for s, d in self.full_shapes().values())

    def describe(self, checksum: str) -> dict[str, Any]:
        return {
            "manifest_checksum": checksum,
            "offsets": self.offsets.tolist(),
            "fields": {n: {"dtype": self.dtypes[n].str, "row_shape": list(self.row_shapes[n])} for n in self.names},
        }


def _layout(path: Path, n_tasks: int) -> _Layout:
    per_task = [zarr_io.array_shapes(path, i) for i in range(n_tasks)]
    if not per_task:
        raise IntegrityError(f"{path}: the dataset has no tasks")
    names = [n for n in per_task[0] if all(n in t for t in per_task)]
    names = [n for n in FIELD_NAMES if n in names] + sorted(n for n in names if n not in FIELDS_BY_NAME)
    for i, t in enumerate(per_task):
        missing = [f for f in FIELD_NAMES if f not in t]
        if missing:
            raise IntegrityError(f"task {i}: arrays {missing} are missing from its group")
    rows = []
    for i, t in enumerate(per_task):
        counts = {n: t[n][0][0] for n in names}
        if len(set(counts.values())) != 1:
            raise IntegrityError(f"task {i}: arrays have different lengths {counts}")
        rows.append(counts["rewards"])
    dtypes = {n: per_task[0][n][1] for n in names}
    row_shapes = {n: per_task[0][n][0][1:] for n in names}
    for i, t in enumerate(per_task):
        for n in names:
            if t[n][0][1:] != row_shapes[n] or t[n][1] != dtypes[n]:
                raise IntegrityError(f"task {i}, array {n}: shape {t[n][0]} {t[n][1]} differs from task 0's")
    offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
    return _Layout(names, dtypes, row_shapes, offsets)


def _verify_or_raise(path: Path) -> None:
    problems = manifest.verify(path)
    if problems:
        more = f" (and {len(problems) - 1} more; run `omrl-data verify {path}`)" if len(problems) > 1 else ""
        raise IntegrityError(f"{path} failed verification: {problems[0]}{more}")


def _copy_from_zarr(path: Path, layout: _Layout, out: dict[str, np.ndarray]) -> None:
    for i in range(len(layout.offsets) - 1):
        base = int(layout.offsets[i])
        for name, first, block in zarr_io.iter_field_blocks(path, i, tuple(layout.names)):
            out[name][base + first : base + first + len(block)] = block


def _source_stat(path: Path) -> dict[str, list[int]]:
    """Size and modification time (ns) of every file of the version, from its manifest: a cheap
    fingerprint that changes whenever a file of the version is rewritten."""
    out = {}
    for rel in sorted(manifest.read_manifest(path)["files"]):
        try:
            st = (path / rel).stat()
            out[rel] = [int(st.st_size), int(st.st_mtime_ns)]
        except OSError:
            out[rel] = [-1, -1]
    return out


def _cache_info(folder: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((folder / CACHE_INFO).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) else None


def _cache_matches(folder: Path, checksum: str, layout: _Layout, path: Path | None = None, checksums: bool = True) -> bool:
    """The cache folder describes exactly this layout, every array file has its full size and
    (``checksums``) the sha256 recorded when it was built, and (``path``) the version's files are
    unchanged since the cache was built from them."""
    info = _cache_info(folder)
    if info is None or info.get("layout") != layout.describe(checksum):
        return False
    sums = info.get("sha256")
    if not isinstance(sums, dict):
        return False
    if path is not None and info.get("source_stat") != _source_stat(path):
        return False
    for name, (shape, dtype) in layout.full_shapes().items():
        try:
            arr = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return False
        if arr.shape != shape or arr.dtype != dtype:
            return False
        del arr
    if checksums:
        for name in [*layout.names, OFFSETS_FILE.removesuffix(".npy")]:
            try:
                if manifest.sha256_file(folder / f"{name}.npy") != sums.get(f"{name}.npy"):
                    return False
            except OSError:
                return False
    return True


def _build_cache(path: Path, folder: Path, checksum: str, layout: _Layout) -> None:
    """Verify the dataset and write its contiguous cache to a temporary folder, then rename.

    ``cache.json`` records the layout, the sha256 of every cache file (checked on every open,
    so a damaged cache is rebuilt, never served) and the size and mtime of every file of the
    version it was built from (a version whose files changed since is verified again)."""
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_builds(parent)
    source_stat = _source_stat(path)
    _verify_or_raise(path)
    tmp = parent / f".tmp-{checksum[:16]}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    try:
        out = {
            name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
            for name, (shape, dtype) in layout.full_shapes().items()
        }
        _copy_from_zarr(path, layout, out)
        for arr in out.values():
            arr.flush()
        del out
        np.save(tmp / OFFSETS_FILE, layout.offsets, allow_pickle=False)
        sums = {f.name: manifest.sha256_file(f) for f in sorted(tmp.glob("*.npy"))}
        manifest.write_json_atomic(tmp / CACHE_INFO, {"layout": layout.describe(checksum), "sha256": sums, "source_stat": source_stat})
        zarr_io._fsync_tree(tmp)
        if _cache_matches(folder, checksum, layout, path):  # another process finished the same build first
            return
        if folder.exists():  # a stale or damaged cache of the same version
            catalog.remove_cache(checksum, parent.parent)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not _cache_matches(folder, checksum, layout, path):  # someone else's build won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_dead_builds(parent: Path) -> None:
    """Delete temporary cache folders of builds whose process is gone (killed mid-build)."""
    host = socket.gethostname()
    for p in parent.glob(".tmp-*"):
        parts = p.name.split("-")
        try:
            if p.name.startswith(".tmp-stale-"):
                dead = True
            else:
                pid, p_host = int(parts[-2]), "-".join(parts[2:-2])
                dead = p_host == host and not pid_alive(pid)
        except (ValueError, IndexError):
            continue
        if dead:
            shutil.rmtree(p, ignore_errors=True)
