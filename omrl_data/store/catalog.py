"""The local catalog: where datasets live, how ids map to folders, and which versions exist.

A catalog root holds one folder per complete dataset version::

    <root>/<namespace>/<family>/<name>-v<N>/    a complete version (has manifest.json)
    <root>/.staging/...                         versions being written (see ``writer``)
    <root>/.cache/<manifest checksum>/          contiguous copies for fast loading

A version folder appears under its final name only once it is complete (it is moved there in one
``os.replace``), and is never modified afterwards: a new collection under the same name gets the
next version number.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omrl_data.errors import BadInput, DatasetNotFound, IntegrityError
from omrl_data.schema import DEFAULT_NAMESPACE, MANIFEST_FILE, METADATA_FILE

ROOT_ENV = "OMRL_HOME"  # environment variable naming the catalog root
DEFAULT_ROOT = Path("~/.omrl")  # used when neither an argument nor OMRL_HOME is given
STAGING_DIR = ".staging"
DELETED_PREFIX = ".deleted-"  # tombstone file of a deleted version: its number is not reused
CACHE_DIR = ".cache"

ID_FORM = "<namespace>/<family>/<name>[-v<N>], e.g. omrl/point_robot_sparse/replay-v1 (no -vN = latest)"
_NAMESPACE = r"[A-Za-z0-9][A-Za-z0-9_-]*"
_FAMILY = r"[a-z][a-z0-9_]*"
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*?"
_ID_RE = re.compile(rf"^(?P<namespace>{_NAMESPACE})/(?P<family>{_FAMILY})/(?P<name>{_NAME})(?:-v(?P<version>[0-9]+))?$")
_VERSION_DIR_RE = re.compile(r"^(?P<name>.+)-v(?P<version>[0-9]+)$")


@dataclass(frozen=True)
class DatasetRef:
    """A parsed dataset id; ``version`` is None for "the latest"."""

    namespace: str
    family: str
    name: str
    version: int | None = None

    @property
    def id(self) -> str:
        base = f"{self.namespace}/{self.family}/{self.name}"
        return base if self.version is None else f"{base}-v{self.version}"

    def with_version(self, version: int) -> "DatasetRef":
        return DatasetRef(self.namespace, self.family, self.name, version)

    def folder(self, root: str | Path | None = None) -> Path:
        """``<root>/<namespace>/<family>/<name>-v<N>`` (the version must be set)."""
        if self.version is None:
            raise ValueError(f"{self.id} has no version")
        return resolve_root(root) / self.namespace / self.family / f"{self.name}-v{self.version}"


def resolve_root(root: str | Path | None = None) -> Path:
    """The catalog root: ``root`` if given, else ``$OMRL_HOME``, else ``~/.omrl``."""
    if root is None or str(root) == "":
        root = os.environ.get(ROOT_ENV) or DEFAULT_ROOT
    return Path(root).expanduser().absolute()


def check_writable(folder: str | Path, what: str = "the catalog root", flag: str = "--root") -> Path:
    """``folder`` (absolute) if it is, or can be created as, a folder this process can write;
    BadInput naming what is wrong otherwise. Writes and removes a probe file in the nearest
    existing folder, since permission bits do not tell (root ignores them; /proc and read-only
    mounts refuse anyway)."""
    import tempfile

    folder = Path(folder).expanduser().absolute()
    base = folder
    while not base.exists() and base.parent != base:
        base = base.parent
    if not base.is_dir():
        raise BadInput(f"cannot write to {what} {folder}: {base} is a file, not a folder; pass a writable {flag}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".omrl-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BadInput(f"cannot write to {what} {folder}: {base} is not writable ({e.strerror or e}); pass a writable {flag}") from None
    return folder


def parse_id(dataset_id: str) -> DatasetRef:
    """``omrl/<family>/<name>[-v<N>]`` -> DatasetRef; BadInput naming the accepted form otherwise."""
    m = _ID_RE.match(str(dataset_id).strip())
    if not m:
        raise BadInput(f"bad dataset id {dataset_id!r}: expected {ID_FORM}")
    version = m["version"]
    if version is not None and int(version) < 1:
        raise BadInput(f"bad dataset id {dataset_id!r}: versions start at 1")
    return DatasetRef(m["namespace"], m["family"], m["name"], None if version is None else int(version))


def check_name(name: str) -> str:
    """A dataset name usable in ids: letters, digits, ``_ . -``, not ending in ``-v<N>``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or "") or _VERSION_DIR_RE.match(name):
        raise BadInput(
            f"bad dataset name {name!r}: use letters, digits, '_', '.' or '-', starting with a letter "
            "or digit and not ending in -v<N> (versions are added automatically)"
        )
    return name


def check_family_name(family: str) -> str:
    if not re.fullmatch(_FAMILY, family or ""):
        raise BadInput(f"bad family name {family!r}: expected lower-case letters, digits and '_'")
    return family


def is_complete(folder: str | Path) -> bool:
    """A version folder is complete when its manifest (written last) exists."""
    return (Path(folder) / MANIFEST_FILE).is_file()


def versions(family: str, name: str, root: str | Path | None = None, namespace: str = DEFAULT_NAMESPACE) -> list[int]:
    """Complete versions of ``<namespace>/<family>/<name>``, ascending."""
    parent = resolve_root(root) / namespace / family
    out = []
    if parent.is_dir():
        for p in parent.iterdir():
            m = _VERSION_DIR_RE.match(p.name)
            if m and m["name"] == name and is_complete(p):
                out.append(int(m["version"]))
    return sorted(out)


def taken_versions(family: str, name: str, root: str | Path | None = None, namespace: str = DEFAULT_NAMESPACE) -> set[int]:
    """Version numbers in use: complete, being written (staging), present in any state, or
    deleted (a deleted number is never reused, so an id always means the same data)."""
    root = resolve_root(root)
    taken: set[int] = set()
    for parent in (root / namespace / family, root / STAGING_DIR / namespace / family):
        if parent.is_dir():
            for p in parent.iterdir():
                m = _VERSION_DIR_RE.match(p.name.removeprefix(DELETED_PREFIX))
                if m and m["name"] == name:
                    taken.add(int(m["version"]))
    return taken


def next_version(family: str, name: str, root: str | Path | None = None, namespace: str = DEFAULT_NAMESPACE) -> int:
    """The number a new version of ``family/name`` gets: one above every number in use."""
    return max(taken_versions(family, name, root, namespace), default=0) + 1


def resolve(id_or_path: str | Path, root: str | Path | None = None) -> Path:
    """Folder of a complete dataset given an id (``-vN`` optional = latest) or a folder path.

    Raises DatasetNotFound when nothing complete is there, BadInput for a malformed id.
    """
    text = str(id_or_path).strip()
    as_path = Path(text).expanduser()
    is_id = isinstance(id_or_path, str) and _ID_RE.match(text) is not None
    if as_path.is_dir() and (is_complete(as_path) or not is_id):
        if is_complete(as_path):
            return as_path.absolute()
        raise DatasetNotFound(f"{as_path} is not a complete omrl dataset (no {MANIFEST_FILE}; it may be half-written)")
    if not is_id:
        if isinstance(id_or_path, Path) or text.startswith(("/", ".", "~")):
            raise DatasetNotFound(f"no dataset folder at {as_path}")
        parse_id(text)  # raises BadInput naming the accepted form
    ref = parse_id(text)
    root_path = resolve_root(root)
    if ref.version is None:
        found = versions(ref.family, ref.name, root_path, ref.namespace)
        if not found:
            raise DatasetNotFound(f"no dataset {ref.id} under {root_path}; see `omrl-data list --root {root_path}`")
        ref = ref.with_version(found[-1])
    folder = ref.folder(root_path)
    if not is_complete(folder):
        have = versions(ref.family, ref.name, root_path, ref.namespace)
        hint = f" (versions here: {', '.join(f'v{v}' for v in have)})" if have else ""
        raise DatasetNotFound(f"no dataset {ref.id} under {root_path}{hint}; see `omrl-data list --root {root_path}`")
    return folder


def dataset_id_of(folder: str | Path) -> str:
    """The id of a version folder: from its metadata, else from its place in a catalog."""
    folder = Path(folder)
    try:
        meta = read_metadata(folder, missing_ok=True)
    except (IntegrityError, OSError):  # damaged metadata: the id is still the folder's place
        meta = None
    if meta and isinstance(meta.get("dataset_id"), str) and meta["dataset_id"]:
        return str(meta["dataset_id"])
    m = _VERSION_DIR_RE.match(folder.name)
    if m:
        return f"{folder.parent.parent.name}/{folder.parent.name}/{folder.name}"
    return str(folder)


def read_metadata(folder: str | Path, missing_ok: bool = False) -> dict[str, Any] | None:
    """metadata.json of a dataset folder (plain JSON; nothing is executed)."""
    path = Path(folder) / METADATA_FILE
    if not path.exists():
        if missing_ok:
            return None
        raise IntegrityError(f"{folder} has no {METADATA_FILE}")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise IntegrityError(f"{path} must hold a JSON object")
    return meta


def iter_version_folders(root: str | Path | None = None, incomplete: bool = False):
    """Every complete version folder under a root, sorted by namespace, family, name, version.

    ``incomplete``: also folders under a version's final name that lack ``manifest.json``. A
    version only ever appears there whole (one rename), so such a folder is damaged (its
    manifest was deleted), never one being written."""
    root = resolve_root(root)
    found = []
    if not root.is_dir():
        return []
    for ns in _dirs(root):
        if ns.name.startswith("."):
            continue
        for fam in _dirs(ns):
            for v in _dirs(fam):
                m = _VERSION_DIR_RE.match(v.name)
                if m and not v.name.startswith(".") and (incomplete or is_complete(v)):
                    found.append((ns.name, fam.name, m["name"], int(m["version"]), v))
    return [f[-1] for f in sorted(found, key=lambda f: f[:4])]


def _dirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder``; [] when it vanished or cannot be read (a delete in progress)."""
    try:
        return [p for p in folder.iterdir() if p.is_dir()]
    except OSError:
        return []


def folder_size(folder: str | Path) -> int:
    """Bytes of every file under ``folder``."""
    total = 0
    for dirpath, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def summary(folder: str | Path) -> dict[str, Any]:
    """One row of ``omrl-data list``: id, family, task counts, transitions, size, created, parent."""
    from omrl_data.store.zarr_io import task_row_counts

    folder = Path(folder)
    meta = read_metadata(folder, missing_ok=True) or {}
    tasks = (meta.get("tasks") or {}).get("tasks", [])
    rows = meta.get("task_rows")
    if rows is None:
        rows = task_row_counts(folder, len(tasks))
    lineage = meta.get("lineage") or {}
    return {
        "id": dataset_id_of(folder),
        "family": meta.get("family", folder.parent.name),
        "tasks": len(tasks),
        "train_tasks": sum(1 for t in tasks if t.get("split") == "train"),
        "test_tasks": sum(1 for t in tasks if t.get("split") == "test"),
        "transitions": int(sum(rows)),
        "size_bytes": folder_size(folder),
        "created": meta.get("created"),
        "parent": lineage.get("parent"),
        "path": str(folder),
    }


def damaged_summary(folder: str | Path, why: str) -> dict[str, Any]:
    """The ``list`` row of a version that cannot be read: its id, place, size and what is wrong."""
    folder = Path(folder)
    return {
        "id": dataset_id_of(folder), "family": folder.parent.name, "tasks": None, "train_tasks": None, "test_tasks": None,
        "transitions": None, "size_bytes": folder_size(folder), "created": None, "parent": None, "path": str(folder),
        "damaged": why,
    }


def list_datasets(root: str | Path | None = None, damaged: bool = True) -> list[dict[str, Any]]:
    """Every dataset version under the root, as ``summary`` rows (``damaged: None``).

    A version whose metadata or manifest cannot be read is listed too, with ``damaged`` saying
    why (``damaged=False`` leaves those out): one bad version never hides the others."""
    from omrl_data.store.validate import metadata_problems

    rows = []
    for f in iter_version_folders(root, incomplete=damaged):
        if not is_complete(f):
            rows.append(damaged_summary(f, f"no {MANIFEST_FILE} (deleted or lost); `omrl-data verify` cannot check it: delete it"))
            continue
        try:
            meta = read_metadata(f)
            problems = metadata_problems(meta)
            if problems:
                raise IntegrityError(problems[0])
            row = summary(f)
        except FileNotFoundError:  # deleted while listing
            continue
        except (IntegrityError, OSError, KeyError, TypeError, ValueError) as e:
            if not f.exists():
                continue
            if damaged:
                rows.append(damaged_summary(f, str(e)))
            continue
        row["damaged"] = None
        rows.append(row)
    return rows


def episode_returns(rewards: np.ndarray, episode_index: np.ndarray) -> np.ndarray:
    """Undiscounted return of each episode (maximal runs of equal ``episode_index``), in order."""
    if len(rewards) == 0:
        return np.zeros(0, dtype=np.float64)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(episode_index) != 0) + 1])
    return np.add.reduceat(np.asarray(rewards, dtype=np.float64), starts)


def task_statistics(folder: str | Path, task_index: int) -> dict[str, Any]:
    """Counts and episode-return statistics of one task, read from its arrays."""
    from omrl_data.schema import SOURCE_NAMES
    from omrl_data.store.zarr_io import read_task_group

    a = read_task_group(folder, task_index, ("rewards", "episode_index", "source"))
    returns = episode_returns(a["rewards"], a["episode_index"])
    tenth = max(1, len(returns) // 10)

    def stat(fn, x):
        return float(fn(x)) if len(x) else None

    return {
        "transitions": int(len(a["rewards"])),
        "episodes": int(len(returns)),
        "return_mean": stat(np.mean, returns),
        "return_min": stat(np.min, returns),
        "return_max": stat(np.max, returns),
        "return_first10pct": stat(np.mean, returns[:tenth]),
        "return_last10pct": stat(np.mean, returns[-tenth:]),
        "sources": {SOURCE_NAMES.get(int(s), str(int(s))): int(c) for s, c in zip(*np.unique(a["source"], return_counts=True))},
    }


def info(id_or_path: str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """Everything ``omrl-data info`` shows: summary, metadata, lineage, manifest checksum, and
    per task its split, parameters, counts and episode-return statistics (in stored order)."""
    from omrl_data.store import manifest

    from omrl_data.store.validate import check_version

    folder = resolve(id_or_path, root)
    meta = read_metadata(folder)
    check_version(folder, meta)  # one line naming file and field, not a traceback further down
    row = summary(folder)
    tasks = (meta.get("tasks") or {}).get("tasks", [])
    per_task = []
    for t in sorted(tasks, key=lambda t: t.get("index", 0)):
        i = int(t.get("index", len(per_task)))
        per_task.append({"index": i, "split": t.get("split"), "params": t.get("params"), **task_statistics(folder, i)})
    return {
        **row,
        "manifest_checksum": manifest.manifest_checksum(folder),
        "format_version": meta.get("format_version"),
        "lineage": meta.get("lineage"),
        "metadata": meta,
        "per_task": per_task,
    }


def delete(id_or_path: str | Path, root: str | Path | None = None) -> Path:
    """Remove one dataset version and its loading cache. The folder is first renamed out of
    sight (one atomic step on the same filesystem), so a delete that is interrupted never leaves
    a version that looks complete."""
    from omrl_data.store import manifest

    folder = resolve_damaged(id_or_path, root)
    check_writable(folder.parent, "the catalog folder")  # a read-only catalog: one line, nothing changed
    try:
        checksum = manifest.manifest_checksum(folder)
    except (IntegrityError, OSError):
        checksum = None
    target = folder.parent / f".deleting-{uuid.uuid4().hex[:12]}"
    (folder.parent / f"{DELETED_PREFIX}{folder.name}").touch()
    os.replace(folder, target)
    shutil.rmtree(target, ignore_errors=True)
    if checksum:
        remove_cache(checksum, root)
    return folder


def resolve_damaged(id_or_path: str | Path, root: str | Path | None = None) -> Path:
    """Like :func:`resolve`, but also finds a version folder that lost its manifest (listed as
    damaged), so that it can be deleted. Needs the exact id (``-vN``) or folder."""
    try:
        return resolve(id_or_path, root)
    except DatasetNotFound:
        text = str(id_or_path).strip()
        as_path = Path(text).expanduser()
        if as_path.is_dir() and _VERSION_DIR_RE.match(as_path.name) and (as_path / METADATA_FILE).exists():
            return as_path.absolute()
        if _ID_RE.match(text):
            ref = parse_id(text)
            if ref.version is not None and ref.folder(root).is_dir():
                return ref.folder(root)
        raise


def remove_cache(checksum: str, root: str | Path | None = None) -> None:
    """Delete the loading cache of one version (renamed away first, so no reader sees half of it)."""
    folder = resolve_root(root) / CACHE_DIR / checksum
    if folder.exists():
        stale = folder.parent / f".tmp-stale-{uuid.uuid4().hex[:8]}"
        os.replace(folder, stale)
        shutil.rmtree(stale, ignore_errors=True)
