"""The manifest of a dataset version: sha256 and size of every file it is made of.

``manifest.json`` covers ``metadata.json`` and every file under ``data.zarr/`` and ``policies/``
(card and plots are regenerable and left out). It is written last, to a temporary file that is
fsynced and renamed, so its presence means the version is complete. The sha256 of its canonical
JSON (``manifest_checksum``) identifies a version: the loading cache and slice lineage use it.

Everything here is plain JSON; nothing read from a dataset is ever executed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from omrl_data.errors import IntegrityError
from omrl_data.schema import DATA_DIR, FORMAT_VERSION, MANIFEST_FILE, METADATA_FILE, POLICIES_DIR

COVERED_DIRS = (DATA_DIR, POLICIES_DIR)  # every file under these is listed
HASH_BLOCK = 1 << 20
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_TASK_PATH_RE = re.compile(rf"^{re.escape(DATA_DIR)}/tasks/(?P<task>[0-9]+)(?:/(?P<array>[^/]+))?")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def covered_files(dataset_dir: str | Path) -> list[str]:
    """Relative POSIX paths of the files a manifest lists, sorted (temporary groups excluded)."""
    root = Path(dataset_dir)
    out = []
    if (root / METADATA_FILE).is_file():
        out.append(METADATA_FILE)
    for top in COVERED_DIRS:
        base = root / top
        if not base.is_dir():
            continue
        for dirpath, dirnames, files in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".tmp-")]
            for f in files:
                out.append(Path(dirpath, f).relative_to(root).as_posix())
    return sorted(out)


def build_manifest(dataset_dir: str | Path, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Manifest dict of a dataset folder: ``{"format_version", "algorithm", "files": {path: {sha256, size}}}``.

    ``progress(nbytes)`` is called after each file, for progress bars.
    """
    root = Path(dataset_dir)
    files = {}
    for rel in covered_files(root):
        path = root / rel
        files[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
        if progress:
            progress(files[rel]["size"])
    return {"format_version": FORMAT_VERSION, "algorithm": "sha256", "files": files}


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """Write JSON to a temporary file beside ``path``, fsync it, rename it over ``path``, fsync
    the folder: a reader sees the old file or the whole new one, also after a crash."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    data = json.dumps(obj, indent=indent, sort_keys=True).encode()
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk (or a kill signal as an exception): leave no temporary
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(dataset_dir: str | Path, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Build and atomically write ``manifest.json``; returns the manifest."""
    manifest = build_manifest(dataset_dir, progress)
    write_json_atomic(Path(dataset_dir) / MANIFEST_FILE, manifest)
    return manifest


def check_relpath(rel: Any) -> str:
    """A manifest path must stay inside the dataset folder: relative, POSIX, no ``..``."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise IntegrityError(f"manifest lists an invalid path {rel!r}")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("~") or any(part in ("..", ".", "") for part in rel.split("/")):
        raise IntegrityError(f"manifest path {rel!r} points outside the dataset folder; refusing it")
    if rel != METADATA_FILE and p.parts[0] not in COVERED_DIRS:
        raise IntegrityError(f"manifest path {rel!r} is outside {', '.join(COVERED_DIRS)} and {METADATA_FILE}")
    return rel


def check_format_version(found: Any, where: str) -> None:
    if found != FORMAT_VERSION:
        raise IntegrityError(
            f"{where} has format_version {found!r}; this omrl reads format_version {FORMAT_VERSION} "
            "(use the omrl release that wrote it, or re-create the dataset)"
        )


def read_manifest(dataset_dir: str | Path) -> dict[str, Any]:
    """Parse and validate ``manifest.json``: structure, format version, safe paths."""
    path = Path(dataset_dir) / MANIFEST_FILE
    if not path.is_file():
        raise IntegrityError(f"{dataset_dir} has no {MANIFEST_FILE}: not a complete dataset")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{path} is not valid JSON ({e}); the manifest was damaged") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise IntegrityError(f"{path} has no 'files' table; the manifest was damaged")
    check_format_version(manifest.get("format_version"), f"the manifest of {dataset_dir}")
    if manifest.get("algorithm", "sha256") != "sha256":
        raise IntegrityError(f"{path} uses checksum algorithm {manifest.get('algorithm')!r}; expected sha256")
    for rel, entry in manifest["files"].items():
        check_relpath(rel)
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not _SHA256_RE.match(entry["sha256"])
            or not isinstance(entry.get("size"), int)
            or isinstance(entry.get("size"), bool)
            or entry["size"] < 0
        ):
            raise IntegrityError(f"{path}: entry for {rel!r} must be {{sha256: 64 hex digits, size: bytes}}")
    if METADATA_FILE not in manifest["files"]:
        raise IntegrityError(f"{path} does not cover {METADATA_FILE}; the manifest was damaged")
    return manifest


def manifest_checksum(dataset_dir: str | Path | None = None, manifest: dict[str, Any] | None = None) -> str:
    """sha256 of the canonical JSON of the manifest: the identity of a dataset version."""
    if manifest is None:
        manifest = read_manifest(dataset_dir)
    return hashlib.sha256(canonical_json(manifest)).hexdigest()


def describe_path(rel: str) -> str:
    """Who a file belongs to, for messages: ``task 3, array observations`` / ``task 3`` / the path."""
    m = _TASK_PATH_RE.match(rel)
    if m:
        task = int(m["task"])
        array = m["array"]
        if array and array != "zarr.json":
            return f"task {task}, array {array}"
        return f"task {task}"
    if rel == METADATA_FILE:
        return "metadata"
    if rel.startswith(POLICIES_DIR + "/"):
        return "policies"
    return "dataset"


def verify(dataset_dir: str | Path, progress: Callable[[int], None] | None = None, checksums: bool = True) -> list[str]:
    """Every problem found in a dataset folder, as lines naming task and array; [] when intact.

    Recomputes the sha256 of every listed file (``checksums=False`` checks presence and sizes
    only), and reports files that are missing, truncated, changed, or present but not listed;
    then checks the metadata and array shapes/dtypes against the schema (``validate``). A file
    that disappears while it is being checked is reported as missing.
    """
    root = Path(dataset_dir)
    try:
        manifest = read_manifest(root)
    except IntegrityError as e:
        return [str(e)]
    problems = []
    listed = manifest["files"]
    for rel, entry in sorted(listed.items()):
        path = root / rel
        who = describe_path(rel)
        try:
            if not path.is_file():
                raise FileNotFoundError(rel)
            size = path.stat().st_size
            if size != entry["size"]:
                problems.append(f"{who}: size mismatch in {rel} ({size} bytes, manifest says {entry['size']}; truncated or changed)")
                continue
            if checksums:
                if sha256_file(path) != entry["sha256"]:
                    problems.append(f"{who}: checksum mismatch in {rel}")
                if progress:
                    progress(size)
        except FileNotFoundError:  # also when it disappears between the checks (a delete in progress)
            problems.append(f"{who}: missing file {rel}")
        except OSError as e:
            problems.append(f"{who}: cannot read {rel} ({e.strerror or type(e).__name__})")
    for rel in covered_files(root):
        if rel not in listed:
            problems.append(f"{describe_path(rel)}: extra file {rel} not in the manifest")
    if METADATA_FILE in listed and (root / METADATA_FILE).is_file():
        try:
            meta = json.loads(_read_text_or_empty(root / METADATA_FILE))
            if not isinstance(meta, dict):
                raise IntegrityError(f"{METADATA_FILE}: must hold a JSON object, not {type(meta).__name__}")
            check_format_version(meta.get("format_version"), f"the metadata of {root}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            problems.append(f"metadata: {METADATA_FILE} is not valid JSON")
        except IntegrityError as e:
            problems.append(str(e))
        else:
            if not problems:  # the bytes are the manifest's: do they also make a valid version?
                from omrl_data.store.validate import version_problems

                problems.extend(version_problems(root, meta))
    return problems


def _read_text_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:  # removed since the checks above (reported there)
        return "null"


def total_size(dataset_dir: str | Path) -> int:
    """Bytes listed in the manifest (for progress bars)."""
    return sum(e["size"] for e in read_manifest(dataset_dir)["files"].values())
