"""Writing a new dataset version: staged, locked, resumable, and committed in one atomic step.

A version is written under ``<root>/.staging/<namespace>/<family>/<name>-v<N>/``::

    lock.json    who writes it (pid, host, start time, command), held with flock
    plan.json    the writer's plan (e.g. the collection config), to resume with
    work/        the writer's scratch space (a collection's learner chunks), not committed
    dataset/     the future version folder: data.zarr/ task groups, policies/, later metadata.json

Staging sits inside the catalog root, so it is on the same filesystem and ``commit`` can move the
finished folder to ``<root>/<namespace>/<family>/<name>-v<N>/`` with one ``os.replace``. Task
groups are atomic (``zarr_io.write_task_group``), so after a kill -9 at any moment the staging
folder holds whole groups only and ``StagedDataset.create(..., resume=True)`` continues it.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

from omrl_data.errors import BadInput, IntegrityError, LockedError, OmrlError
from omrl_data.schema import DEFAULT_NAMESPACE, FORMAT_VERSION, MANIFEST_FILE, METADATA_FILE, POLICIES_DIR
from omrl_data.store import catalog, manifest, zarr_io
from omrl_data.store.lock import LOCK_FILE, FileLock, describe, holder

PLAN_FILE = "plan.json"
DATASET_SUBDIR = "dataset"
WORK_SUBDIR = "work"


def _staging_parent(root: Path, namespace: str, family: str) -> Path:
    return root / catalog.STAGING_DIR / namespace / family


def unfinished(family: str, name: str, root: str | Path | None = None, namespace: str = DEFAULT_NAMESPACE) -> list[int]:
    """Versions of ``family/name`` with a staging folder and no complete version, ascending."""
    root = catalog.resolve_root(root)
    parent = _staging_parent(root, namespace, family)
    out = []
    if parent.is_dir():
        for p in parent.iterdir():
            if p.name.startswith(f"{name}-v") and p.name[len(name) + 2 :].isdigit():
                v = int(p.name[len(name) + 2 :])
                if catalog.is_complete(catalog.DatasetRef(namespace, family, name, v).folder(root)):
                    # Killed after the final move but before cleaning up: the version is done.
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    out.append(v)
    return sorted(out)


def unfinished_writes(root: str | Path | None = None) -> list[dict[str, Any]]:
    """Every version being written or interrupted under a root: id, finished task groups, and
    the writer holding it (None when nobody does: resume it with ``resume=True``)."""
    root = catalog.resolve_root(root)
    base = root / catalog.STAGING_DIR
    out = []
    if not base.is_dir():
        return out
    for folder in sorted(base.glob("*/*/*")):
        if folder.name.startswith(".") or not folder.is_dir() or "-v" not in folder.name:
            continue
        name, _, version = folder.name.rpartition("-v")
        if not version.isdigit():
            continue
        ref = catalog.DatasetRef(folder.parent.parent.name, folder.parent.name, name, int(version))
        if catalog.is_complete(ref.folder(root)):
            continue  # committed; only the clean-up was interrupted
        tasks = zarr_io.data_root(folder / DATASET_SUBDIR) / "tasks"
        done = sum(1 for p in tasks.iterdir() if p.name.isdigit()) if tasks.is_dir() else 0
        out.append({"id": ref.id, "path": str(folder), "tasks_done": done, "writer": holder(folder / LOCK_FILE)})
    return out


class _name_lock:
    """An exclusive ``flock`` on ``<root>/.staging/.reserve-locks/<ns>+<family>+<name>.lock`` for
    the moment a writer checks for others and reserves its version (released right after; the
    version's own lock is what is held while writing). The file stays: removing a lock file
    that another process may be waiting on would let two holders in."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> "_name_lock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _reserve(
    parent: Path, namespace: str, family: str, name: str, version: int, command: str | None, exact: bool = False
) -> tuple[Path, FileLock]:
    """Create the staging folder of the first free version >= ``version``, already locked.

    The folder is made and locked under a temporary name, then renamed to ``<name>-v<N>``: a
    rename onto an existing (never empty) folder fails, so two writers never share a version,
    and no other process ever sees the folder unlocked.
    """
    for p in parent.glob(".reserve-*"):  # left by a writer killed while reserving
        if holder(p / LOCK_FILE) is None:
            shutil.rmtree(p, ignore_errors=True)
    while True:
        tmp = parent / f".reserve-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        lock = FileLock(tmp / LOCK_FILE, what=f"{namespace}/{family}/{name}-v{version}", command=command).acquire()
        target = parent / f"{name}-v{version}"
        try:
            if target.exists():
                raise FileExistsError(target)
            os.rename(tmp, target)
        except OSError:
            lock.release()
            shutil.rmtree(tmp, ignore_errors=True)
            if exact:
                raise LockedError(f"{namespace}/{family}/{name}-v{version} is being written by another process") from None
            version += 1
            continue
        lock.path = target / LOCK_FILE
        return target, lock


from omrl_data.errors import StorageError  # noqa: E402  (the disk is full or read-only; exit 5)


class StagedDataset:
    """A dataset version being written. Create with :meth:`create`; finish with :meth:`commit`.

    ``path`` is the folder to write task groups into (``zarr_io.write_task_group(path, i, arrays)``);
    the lock is held from ``create`` until ``commit`` or ``release``. Use as a context manager to
    release the lock on errors (the staging folder stays, so the work can be resumed).
    """

    def __init__(self, root: Path, ref: catalog.DatasetRef, staging_dir: Path, lock: FileLock):
        self.root = root
        self.ref = ref  # namespace, family, name, version
        self.staging_dir = staging_dir  # holds lock.json, plan.json and the dataset/ folder
        self.lock = lock
        self.committed: Path | None = None

    # ----------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        root: str | Path | None,
        family: str,
        name: str,
        resume: bool = False,
        namespace: str = DEFAULT_NAMESPACE,
        command: str | None = None,
        version: int | None = None,
    ) -> "StagedDataset":
        """Reserve the next version of ``<namespace>/<family>/<name>`` and lock it.

        With ``resume=True``, re-open the latest unfinished staging of that name instead (BadInput
        if there is none). LockedError (saying who holds it) if another writer has it.
        ``version``: reserve exactly this number (e.g. pulling a published version); BadInput if
        it is taken. ``command``: recorded in the lock (default: this process's command line).
        """
        catalog.check_family_name(family)
        catalog.check_name(name)
        root_path = catalog.resolve_root(root)
        try:
            parent = _staging_parent(root_path, namespace, family)
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BadInput(f"cannot write to the catalog root {root_path} ({e.strerror}); pass a writable --root") from e
        # Checking for a running writer, choosing the version and reserving it are one step under
        # a short per-name lock: two writers started at the same instant never both pass the check.
        with _name_lock(root_path / catalog.STAGING_DIR / ".reserve-locks" / f"{namespace}+{family}+{name}.lock"):
            return cls._create_locked(root_path, parent, namespace, family, name, resume, command, version)

    @classmethod
    def _create_locked(cls, root_path: Path, parent: Path, namespace: str, family: str, name: str, resume: bool,
                       command: str | None, version: int | None) -> "StagedDataset":
        if resume:
            pending = unfinished(family, name, root_path, namespace)
            if not pending:
                raise BadInput(
                    f"nothing to resume: no unfinished {namespace}/{family}/{name} under {root_path}; run without --resume"
                )
            version = pending[-1]
            staging_dir = parent / f"{name}-v{version}"
        else:
            # A second writer of the same dataset name while the first is running is refused:
            # it is almost always the same command started twice.
            for v in unfinished(family, name, root_path, namespace):
                info = holder(parent / f"{name}-v{v}" / LOCK_FILE)
                if info is not None:
                    raise LockedError(
                        f"{namespace}/{family}/{name}-v{v} is being written by {describe(info)}; "
                        "wait for it, stop it, or choose another name"
                    )
            if version is None:
                version = catalog.next_version(family, name, root_path, namespace)
                exact = False
            else:
                exact = True
                if version < 1 or version in catalog.taken_versions(family, name, root_path, namespace):
                    raise BadInput(
                        f"{namespace}/{family}/{name}-v{version} already exists or existed under {root_path}; "
                        "versions are immutable (delete it first or use another name)"
                        if version >= 1 else f"versions start at 1, got {version}"
                    )
            staging_dir, lock = _reserve(parent, namespace, family, name, version, command, exact)
        ref = catalog.DatasetRef(namespace, family, name, int(staging_dir.name.rsplit("-v", 1)[1]))
        if resume:
            lock = FileLock(staging_dir / LOCK_FILE, what=ref.id, command=command).acquire()
        lock.what = ref.id
        staged = cls(root_path, ref, staging_dir, lock)
        staged.path.mkdir(exist_ok=True)
        zarr_io.ensure_store(staged.path)
        zarr_io.remove_stale_tmp(staged.path)
        return staged

    # ----------------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """The dataset folder being written (task groups go under ``path/data.zarr``)."""
        return self.staging_dir / DATASET_SUBDIR

    @property
    def dataset_id(self) -> str:
        return self.ref.id

    @property
    def version(self) -> int:
        return int(self.ref.version)

    @property
    def final_path(self) -> Path:
        return self.ref.folder(self.root)

    @property
    def work_dir(self) -> Path:
        """Scratch space kept across resumes but not part of the version (e.g. partial chunks of
        unfinished tasks); deleted at commit."""
        p = self.staging_dir / WORK_SUBDIR
        p.mkdir(exist_ok=True)
        return p

    @property
    def policies_dir(self) -> Path:
        """Where checkpoint policies go (``.npz`` only); created on first use."""
        p = self.path / POLICIES_DIR
        p.mkdir(exist_ok=True)
        return p

    def done_tasks(self) -> set[int]:
        """Indices of the tasks whose group is completely written."""
        tasks = zarr_io.data_root(self.path) / "tasks"
        if not tasks.is_dir():
            return set()
        return {int(p.name) for p in tasks.iterdir() if p.name.isdigit() and (p / "zarr.json").exists()}

    def write_task(self, task_index: int, arrays: dict[str, Any]) -> Path:
        """Write one task group (atomic); same as ``zarr_io.write_task_group(self.path, ...)``."""
        self._check_open()
        try:
            return zarr_io.write_task_group(self.path, task_index, arrays)
        except OSError as e:
            raise self._storage_error(e) from e

    def _storage_error(self, e: OSError) -> Exception:
        """Disk full, read-only or permission problems as one actionable line; others unchanged."""
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            return StorageError(
                f"cannot write {self.dataset_id} under {self.root}: {e.strerror}; "
                "free space or fix permissions, then continue with --resume (finished tasks are kept)"
            )
        return e

    def save_plan(self, plan: dict[str, Any]) -> None:
        """Record the writer's plan (JSON) so that a resumed run can check and continue it."""
        self._check_open()
        manifest.write_json_atomic(self.staging_dir / PLAN_FILE, plan)

    def load_plan(self) -> dict[str, Any] | None:
        path = self.staging_dir / PLAN_FILE
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise IntegrityError(f"{path} is damaged ({e}); start a new collection without --resume") from e

    # ----------------------------------------------------------------------------------------
    def commit(self, metadata: dict[str, Any] | None, progress: Callable[[int], None] | None = None) -> Path:
        """Finish the version: metadata.json, then manifest.json (atomic, last), then move the
        folder to its final place and release the lock. Returns the final folder.

        ``metadata["tasks"]`` (a ``TaskTable.to_dict()``) must name exactly the tasks written.
        Filled in when absent: name, created; always set: family, version, dataset_id,
        format_version, ``task_rows`` (rows per task).

        ``metadata=None`` keeps a ``metadata.json`` already in ``path`` byte for byte (a pulled or
        copied version); a ``manifest.json`` already there must then verify (IntegrityError
        otherwise, and nothing is placed), else one is built.
        """
        self._check_open()
        try:
            return self._commit(metadata, progress)
        except OSError as e:
            raise self._storage_error(e) from e

    def _commit(self, metadata: dict[str, Any] | None, progress: Callable[[int], None] | None) -> Path:
        zarr_io.remove_stale_tmp(self.path)
        for leftover in self.path.glob(".*.tmp"):  # temporaries of an earlier commit that failed (disk full)
            leftover.unlink(missing_ok=True)
        self._check_policies()
        if metadata is None:
            meta = catalog.read_metadata(self.path)
            self._check_tasks(meta)
            manifest.check_format_version(meta.get("format_version"), f"the metadata of {self.dataset_id}")
            if (self.path / MANIFEST_FILE).exists():
                problems = manifest.verify(self.path, progress)
                if problems:
                    raise IntegrityError(f"{self.dataset_id} does not match its manifest: {problems[0]}")
            else:
                zarr_io._fsync_tree(self.path)
                manifest.write_manifest(self.path, progress)
        else:
            n_tasks = self._check_tasks(metadata)
            if metadata.get("family", self.ref.family) != self.ref.family:
                raise BadInput(f"metadata family {metadata['family']!r} differs from the dataset's family {self.ref.family!r}")
            meta = dict(metadata)
            meta["format_version"] = FORMAT_VERSION
            meta["family"] = self.ref.family
            meta.setdefault("name", self.ref.name)
            meta["version"] = self.version
            meta["dataset_id"] = self.dataset_id
            meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
            meta["task_rows"] = zarr_io.task_row_counts(self.path, n_tasks)
            try:
                json.dumps(meta, allow_nan=True)
            except (TypeError, ValueError) as e:
                raise BadInput(f"dataset metadata must be plain JSON: {e}") from e
            (self.path / MANIFEST_FILE).unlink(missing_ok=True)  # from an interrupted earlier commit
            manifest.write_json_atomic(self.path / METADATA_FILE, meta)
            zarr_io._fsync_tree(self.path)
            manifest.write_manifest(self.path, progress)
        final = self.final_path
        if final.exists():
            raise IntegrityError(f"{final} already exists; versions are immutable (was it written by another tool?)")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, final)
        manifest.fsync_dir(final.parent)
        self.committed = final
        self.lock.release()
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        return final

    def release(self) -> None:
        """Let go of the lock, keeping the staging folder so that the work can be resumed."""
        self.lock.release()

    def abort(self) -> None:
        """Delete the staging folder and release the lock (nothing is kept)."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.lock.release()
        shutil.rmtree(self.staging_dir, ignore_errors=True)

    def __enter__(self) -> "StagedDataset":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # ----------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.committed is not None:
            raise IntegrityError(f"{self.dataset_id} is already committed; versions are immutable")
        if not self.lock.held:
            raise IntegrityError(f"{self.dataset_id}: the lock was released; re-open it with resume=True")

    def _check_policies(self) -> None:
        # Policies are weights as .npz (read with allow_pickle=False) or JSON; nothing executable.
        folder = self.path / POLICIES_DIR
        if folder.is_dir():
            bad = [p.name for p in folder.rglob("*") if p.is_file() and p.suffix not in (".npz", ".json")]
            if bad:
                raise BadInput(f"{POLICIES_DIR}/ may hold only .npz and .json files, found {bad[:3]}")

    def _check_tasks(self, metadata: dict[str, Any]) -> int:
        tasks = metadata.get("tasks")
        if not isinstance(tasks, dict) or not isinstance(tasks.get("tasks"), list):
            raise BadInput("dataset metadata needs 'tasks': the task table as TaskTable.to_dict()")
        n = len(tasks["tasks"])
        done = self.done_tasks()
        missing = sorted(set(range(n)) - done)
        extra = sorted(done - set(range(n)))
        if missing or extra:
            raise IntegrityError(
                f"{self.dataset_id}: the task table has {n} tasks but task groups "
                + (f"{missing} are missing" if missing else "")
                + (" and " if missing and extra else "")
                + (f"{extra} are not in the table" if extra else "")
            )
        return n
