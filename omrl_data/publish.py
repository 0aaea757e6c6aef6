"""Publishing datasets to a remote store, and pulling them back into a local catalog.

A remote is a local folder or any fsspec URL (``file://...``, ``s3://bucket/prefix``). It mirrors
the catalog layout and keeps an index::

    <remote>/index.d/<namespace>/<family>/<name>-v<N>.json  one index entry per version
    <remote>/index.json                                  every published version (see list_remote),
                                                         rebuilt from index.d/ after each publish
    <remote>/<namespace>/<family>/<name>-v<N>/           the version folder, byte for byte:
        metadata.json, data.zarr/..., policies/...       the files its manifest lists
        card.md, learning_progress.png                   its dataset card (not in the manifest;
                                                         their sha256 is in the index entry)
        manifest.json                                    uploaded last

Publishing uploads the data first, then checks the remote listing against the manifest, then
uploads ``manifest.json``, then updates ``index.json``. A version without its manifest is not
complete, so an upload that fails half-way leaves nothing that looks complete (a later publish
replaces it). A version whose manifest is there is never overwritten.

Pulling downloads the manifest, checks it against the index and its paths against the dataset
folder, downloads every listed file into a staging folder inside the catalog root, recomputes
every size and sha256, and only then moves the folder into the catalog in one rename. A tampered
or truncated remote fails with IntegrityError and leaves the catalog as it was.

S3 endpoints other than AWS (MinIO, moto, ...) are given with ``endpoint_url`` (``--endpoint-url``)
or botocore's own environment variables (``AWS_ENDPOINT_URL_S3``, which wins, then
``AWS_ENDPOINT_URL``), resolved by botocore, not here; credentials come from the usual AWS sources.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

from omrl_data.errors import BadInput, DatasetNotFound, IntegrityError, OmrlError
from omrl_data.schema import FORMAT_VERSION, MANIFEST_FILE, METADATA_FILE
from omrl_data.store import catalog, manifest

INDEX_FILE = "index.json"
ENTRY_DIR = "index.d"  # one entry object per published version: publishers never write the same object
CARD_FILES = ("card.md", "learning_progress.png")  # uploaded beside the data when present


class RemoteError(OmrlError):
    """The remote store cannot be reached, read or written (exit 2, like other bad input)."""

    exit_code = 2


class RemoteExists(BadInput):
    """The version is already published there; versions are immutable."""


# ----------------------------------------------------------------------------------------------
# Remote access


class Remote:
    """An fsspec filesystem and the base path of a remote catalog."""

    def __init__(self, url: str, endpoint_url: str | None = None):
        import fsspec

        url = str(url).strip()
        if not url:
            raise BadInput("empty remote URL; give a folder, file://PATH or s3://BUCKET/PREFIX")
        self.url = url.rstrip("/")
        protocol = url.split("://", 1)[0] if "://" in url else "file"
        options: dict[str, Any] = {}
        if protocol in ("s3", "s3a"):
            if endpoint_url:  # else botocore resolves AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / config itself
                options["client_kwargs"] = {"endpoint_url": endpoint_url}
            options["use_listings_cache"] = False  # another process may publish between our calls
            options["skip_instance_cache"] = True
        elif endpoint_url:
            raise BadInput(f"--endpoint-url applies to s3:// URLs only, not {url}")
        try:
            self.fs, self.base = fsspec.core.url_to_fs(self.url, **options)
        except (ImportError, ValueError) as e:
            raise BadInput(f"cannot open remote {url!r} ({e}); accepted: a folder, file://PATH, s3://BUCKET/PREFIX (needs s3fs)") from e
        except OSError as e:  # a protocol that connects when opened (ftp, sftp, ...) and cannot
            raise RemoteError(f"cannot reach remote {url!r} ({type(e).__name__}: {e})") from e
        self.local = self.fs.protocol in ("file", "local") or "file" in tuple(self.fs.protocol)
        self.base = self.base.rstrip("/")
        if self.local and Path(self.base).exists() and not Path(self.base).is_dir():
            raise BadInput(f"remote {url} is a file, not a folder; give a folder, file://PATH or s3://BUCKET/PREFIX")

    def path(self, *parts: str) -> str:
        return "/".join([self.base, *[p.strip("/") for p in parts if p]])

    def exists(self, rel: str) -> bool:
        return self._call(self.fs.exists, self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        return self._call(self.fs.cat_file, self.path(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        """One object/file, replaced as a whole (local: temporary file and rename)."""
        target = self.path(rel)

        def write() -> None:
            if self.local:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(target).parent / f".{Path(target).name}.{uuid.uuid4().hex[:8]}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, target)
            else:
                self.fs.pipe_file(target, data)

        self._writing(write)

    def put(self, local: Path, rel: str) -> None:
        target = self.path(rel)

        def upload() -> None:
            if self.local:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            self.fs.put_file(str(local), target)

        self._writing(upload)

    def _writing(self, fn: Callable[[], None]) -> None:
        try:
            self._call(fn)
        except FileNotFoundError as e:  # S3: no such bucket
            raise RemoteError(f"cannot write to {self.url}: it does not exist ({e}); create the bucket or folder first") from e

    def get(self, rel: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        self._call(self.fs.get_file, self.path(rel), str(local))

    def sizes(self, rel_dir: str) -> dict[str, int]:
        """Relative path -> size of every file under ``rel_dir``."""
        root = self.path(rel_dir)
        try:
            found = self._call(self.fs.find, root, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for p, info in found.items():
            if info.get("type", "file") == "file":
                out[p[len(root) :].lstrip("/")] = int(info.get("size") or 0)
        return out

    def remove(self, rel_dir: str) -> None:
        try:
            self._call(self.fs.rm, self.path(rel_dir), recursive=True)
        except FileNotFoundError:
            pass

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except PermissionError as e:
            raise RemoteError(f"permission denied on {self.url} ({e}); check the credentials") from e
        except OSError as e:
            raise RemoteError(f"cannot access {self.url} ({type(e).__name__}: {e})") from e
        except Exception as e:  # botocore/aiohttp errors are not OSErrors
            if type(e).__module__.split(".")[0] in ("botocore", "aiobotocore", "aiohttp", "s3fs"):
                raise RemoteError(f"cannot access {self.url} ({type(e).__name__}: {e})") from e
            raise


def _rel_dir(ref: catalog.DatasetRef) -> str:
    return f"{ref.namespace}/{ref.family}/{ref.name}-v{ref.version}"


# ----------------------------------------------------------------------------------------------
# Index


def read_index(remote: Remote) -> dict[str, Any]:
    """The remote's index: ``index.json`` merged with the per-version entries under ``index.d/``
    (an entry object wins). Each publisher writes only its own version's entry object, so two
    publishing at once can at worst leave ``index.json`` one entry short, never the index."""
    try:
        raw = remote.read_bytes(INDEX_FILE)
    except FileNotFoundError:
        index: dict[str, Any] = {"format_version": FORMAT_VERSION, "datasets": {}}
    else:
        try:
            index = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise IntegrityError(f"{remote.url}/{INDEX_FILE} is not valid JSON ({e})") from e
        if not isinstance(index, dict) or not isinstance(index.get("datasets"), dict):
            raise IntegrityError(f"{remote.url}/{INDEX_FILE} has no 'datasets' table")
    for rel in sorted(remote.sizes(ENTRY_DIR)):
        if not rel.endswith(".json"):
            continue
        try:
            entry = json.loads(remote.read_bytes(f"{ENTRY_DIR}/{rel}"))
        except FileNotFoundError:
            continue
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise IntegrityError(f"{remote.url}/{ENTRY_DIR}/{rel} is not valid JSON ({e})") from e
        dataset_id = rel.removesuffix(".json")
        if isinstance(entry, dict):
            index["datasets"][dataset_id] = entry
    return index


def list_remote(url: str, endpoint_url: str | None = None) -> list[dict[str, Any]]:
    """Every version published at ``url``, from its index: rows with id, family, tasks,
    train_tasks, test_tasks, transitions, size_bytes, created, parent, manifest_checksum,
    published; sorted by id."""
    remote = Remote(url, endpoint_url)
    rows = [dict(v, id=k) for k, v in read_index(remote)["datasets"].items()]
    return sorted(rows, key=lambda r: _sort_key(r["id"]))


def _sort_key(dataset_id: str) -> tuple:
    try:
        ref = catalog.parse_id(dataset_id)
        return (ref.namespace, ref.family, ref.name, ref.version or 0)
    except BadInput:
        return (dataset_id, "", "", 0)


# ----------------------------------------------------------------------------------------------
# Publish


def publish(
    id_or_path: str | Path,
    to_url: str,
    root: str | Path | None = None,
    endpoint_url: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
    card: bool = True,
) -> str:
    """Upload one dataset version (data, manifest, card) to ``to_url``; return its remote URL.

    RemoteExists when that version is already published there; BadInput when the local copy
    fails verification (damaged data is never published).
    """
    folder = catalog.resolve(id_or_path, root)
    problems = manifest.verify(folder)
    if problems:
        raise IntegrityError(f"{id_or_path} fails verification ({problems[0]}); it will not be published")
    dataset_id = catalog.dataset_id_of(folder)
    ref = catalog.parse_id(dataset_id)
    rel = _rel_dir(ref)
    remote = Remote(to_url, endpoint_url)
    complete = remote.exists(f"{rel}/{MANIFEST_FILE}")
    if complete or dataset_id in read_index(remote)["datasets"]:
        restored = ""
        if complete and dataset_id not in read_index(remote)["datasets"]:
            # An earlier publish stopped between the manifest and the index: if it is these
            # bytes, finish its index entry.
            there = manifest.manifest_checksum(manifest=json.loads(remote.read_bytes(f"{rel}/{MANIFEST_FILE}")))
            if there == manifest.manifest_checksum(folder):
                _add_to_index(remote, folder, dataset_id, rel)
                restored = " (its missing index entry was restored)"
        raise RemoteExists(
            f"{dataset_id} is already published at {remote.url}{restored}; versions are immutable (slice or collect a new version)"
        )
    if card and not (folder / CARD_FILES[0]).exists():
        from omrl_data.cards import write_card

        try:
            write_card(folder, root=root)
        except OSError:  # a read-only catalog: publish the data without a card
            pass
    if remote.sizes(rel):
        remote.remove(rel)  # a previous upload that failed before its manifest: start over

    man = manifest.read_manifest(folder)
    files = sorted(man["files"], key=lambda p: (p == METADATA_FILE, p))  # metadata after the data
    for f in files:
        remote.put(folder / f, f"{rel}/{f}")
        if on_bytes:
            on_bytes(man["files"][f]["size"])
    card_files = {}
    for f in CARD_FILES:  # derived files outside the manifest: the index entry covers them
        if (folder / f).is_file():
            data = (folder / f).read_bytes()
            remote.write_bytes(f"{rel}/{f}", data)
            card_files[f] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    # Every listed file must be there at its size before the manifest makes the version complete.
    there = remote.sizes(rel)
    short = [f for f in files if there.get(f) != man["files"][f]["size"]]
    if short:
        raise RemoteError(f"upload of {dataset_id} is incomplete ({short[0]} missing or truncated on {remote.url}); publish again")
    remote.put(folder / MANIFEST_FILE, f"{rel}/{MANIFEST_FILE}")
    _add_to_index(remote, folder, dataset_id, rel, card_files)
    return f"{remote.url}/{rel}"


def _add_to_index(remote: Remote, folder: Path, dataset_id: str, rel: str, card_files: dict[str, Any] | None = None) -> None:
    row = catalog.summary(folder)
    entry = {
        **{k: row[k] for k in ("family", "tasks", "train_tasks", "test_tasks", "transitions", "size_bytes", "created", "parent")},
        "manifest_checksum": manifest.manifest_checksum(folder),
        "card_files": card_files or {},  # sha256 and size of card.md / learning_progress.png
        "published": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "path": rel,
    }
    remote.write_bytes(f"{ENTRY_DIR}/{rel}.json", json.dumps(entry, indent=1, sort_keys=True).encode())  # the record
    index = read_index(remote)  # index.json: a single-file view for other readers, rebuilt from the entries
    remote.write_bytes(INDEX_FILE, json.dumps(index, indent=1, sort_keys=True).encode())


# ----------------------------------------------------------------------------------------------
# Pull


def pull(
    dataset_id: str,
    from_url: str,
    root: str | Path | None = None,
    endpoint_url: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    report: dict[str, Any] | None = None,
) -> Path:
    """Download ``dataset_id`` (``-vN`` optional = latest published) into the local catalog.

    Every file is checked against the manifest, and the manifest against the remote index,
    before anything appears in the catalog (``on_total(bytes)`` once the manifest is read, then
    ``on_bytes(n)`` per file, for progress bars). Returns the local folder. IntegrityError for a
    tampered or truncated remote; DatasetNotFound when the remote does not have it.

    The card files (outside the manifest) are kept only when their sha256 matches the remote
    index entry; others are left out (regenerate them with ``omrl-data card``).
    ``report`` (a dict, filled in): ``action`` ("downloaded" or "already present": nothing was
    downloaded because the local copy has the manifest checksum the index lists), ``files`` and
    ``bytes`` checked, ``card`` (file -> "verified" / "not in the index" / "checksum mismatch").
    """
    report = {} if report is None else report
    ref = catalog.parse_id(dataset_id)
    remote = Remote(from_url, endpoint_url)
    index = read_index(remote)["datasets"]
    if ref.version is None:
        found = [catalog.parse_id(k).version for k in index if catalog.parse_id(k).with_version(1) == ref.with_version(1)]
        if not found:
            raise DatasetNotFound(f"{ref.id} is not published at {remote.url}; see `omrl-data list --remote {remote.url}`")
        ref = ref.with_version(max(found))
    rel = _rel_dir(ref)
    entry = index.get(ref.id)
    try:
        raw_manifest = remote.read_bytes(f"{rel}/{MANIFEST_FILE}")
    except FileNotFoundError:
        raise DatasetNotFound(f"{ref.id} is not (completely) published at {remote.url}; see `omrl-data list --remote {remote.url}`") from None

    root_path = catalog.resolve_root(root)
    final = ref.folder(root_path)
    if catalog.is_complete(final):
        local = manifest.manifest_checksum(final)
        if entry and entry.get("manifest_checksum") == local:
            report.update(action="already present", files=0, bytes=0, card={})
            return final  # already here, same manifest: nothing is downloaded or checked
        raise BadInput(f"{ref.id} already exists in {root_path} with different contents; delete it first (`omrl-data delete {ref.id}`)")
    catalog.check_writable(root_path)
    staging = root_path / catalog.STAGING_DIR / ref.namespace / ref.family / f"{ref.name}-v{ref.version}"
    if staging.exists():
        raise BadInput(f"{ref.id} is being written locally ({staging}); pull it under another catalog root")

    tmp = root_path / catalog.STAGING_DIR / f".pull-{uuid.uuid4().hex[:12]}"
    folder = tmp / "dataset"
    try:
        folder.mkdir(parents=True)
        (folder / MANIFEST_FILE).write_bytes(raw_manifest)
        man = manifest.read_manifest(folder)  # structure, format version, no path escapes
        checksum = manifest.manifest_checksum(manifest=man)
        if on_total:
            on_total(sum(e["size"] for e in man["files"].values()))
        if entry is not None and entry.get("manifest_checksum") != checksum:
            raise IntegrityError(f"the manifest of {ref.id} at {remote.url} does not match the remote index (tampered or replaced)")
        for f, e in sorted(man["files"].items()):
            try:
                remote.get(f"{rel}/{f}", folder / f)
            except FileNotFoundError:
                raise IntegrityError(f"{ref.id} at {remote.url}: {manifest.describe_path(f)}: missing file {f}") from None
            if on_bytes:
                on_bytes(e["size"])
        problems = manifest.verify(folder)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise IntegrityError(f"{ref.id} from {remote.url} is damaged: {problems[0]}{more}; the local catalog is unchanged")
        meta = catalog.read_metadata(folder)
        if meta.get("dataset_id") not in (None, ref.id):
            raise IntegrityError(f"{remote.url}/{rel} holds {meta.get('dataset_id')}, not {ref.id}")
        from omrl_data.store.validate import check_version

        check_version(folder, meta)  # a crafted remote can match its manifest and still be invalid
        card = {}
        listed_cards = (entry or {}).get("card_files") or {}
        for f in CARD_FILES:
            try:
                remote.get(f"{rel}/{f}", folder / f)
            except FileNotFoundError:
                continue
            want = listed_cards.get(f) if isinstance(listed_cards, dict) else None
            if not isinstance(want, dict):
                card[f] = "not in the index"
            elif manifest.sha256_file(folder / f) != want.get("sha256"):
                card[f] = "checksum mismatch"
            else:
                card[f] = "verified"
                continue
            (folder / f).unlink()  # never keep a file nothing vouches for
        report.update(action="downloaded", files=len(man["files"]), bytes=sum(e["size"] for e in man["files"].values()), card=card)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(folder, final)  # fails if the version appeared meanwhile: never overwrite
        except OSError as e:
            raise BadInput(f"{ref.id} appeared in {root_path} while pulling; nothing was changed") from e
        manifest.fsync_dir(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


__all__ = ["INDEX_FILE", "Remote", "RemoteError", "RemoteExists", "list_remote", "publish", "pull", "read_index"]
