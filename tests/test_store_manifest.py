"""Manifest: checksums of every file, tamper detection naming task and array, safe paths."""
from __future__ import annotations

import json
import re

import pytest

from omrl_data.errors import IntegrityError
from omrl_data.schema import FORMAT_VERSION
from omrl_data.store import catalog, manifest
from tests.synthetic import make_synthetic_dataset


@pytest.fixture
def folder(omrl_home):
    return catalog.resolve(make_synthetic_dataset(n_tasks=3, n_rows=[40, 60, 80]))


def _flip(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_manifest_covers_every_file(folder):
    m = manifest.read_manifest(folder)
    files = set(m["files"])
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert files == on_disk - {"manifest.json"}
    assert "metadata.json" in files
    assert m["format_version"] == FORMAT_VERSION
    assert manifest.verify(folder) == []


def test_flipping_one_byte_in_any_chunk_is_caught(folder):
    chunks = sorted(p for p in (folder / "data.zarr").rglob("*") if p.is_file() and "/c/" in p.as_posix())
    assert len(chunks) >= 3 * 10  # zarr skips chunks that hold only the fill value
    for chunk in chunks:
        original = chunk.read_bytes()
        _flip(chunk)
        problems = manifest.verify(folder)
        rel = chunk.relative_to(folder).as_posix()
        task = int(re.search(r"tasks/(\d+)/", rel)[1])
        array = rel.split("/")[3]
        assert problems == [f"task {task}, array {array}: checksum mismatch in {rel}"]
        chunk.write_bytes(original)
    assert manifest.verify(folder) == []


def test_truncated_missing_and_extra_files(folder):
    chunk = folder / "data.zarr/tasks/0001/observations/c/0/0"
    chunk.write_bytes(chunk.read_bytes()[:-5])
    (folder / "data.zarr/tasks/0002/actions/c/0/0").unlink()
    (folder / "data.zarr/tasks/0000/rewards/c/1").write_bytes(b"junk")
    problems = manifest.verify(folder)
    assert len(problems) == 3
    assert any(p.startswith("task 1, array observations: size mismatch") for p in problems)
    assert any(p.startswith("task 2, array actions: missing file") for p in problems)
    assert any(p.startswith("task 0, array rewards: extra file") for p in problems)


def test_tampered_metadata_is_caught(folder):
    meta = json.loads((folder / "metadata.json").read_text())
    meta["gamma"] = 0.5
    (folder / "metadata.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    assert any(p.startswith("metadata:") for p in manifest.verify(folder))


def test_tampered_manifest(folder):
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    rel = "data.zarr/tasks/0000/rewards/c/0"
    m["files"][rel]["sha256"] = "0" * 64
    path.write_text(json.dumps(m))
    assert manifest.verify(folder) == [f"task 0, array rewards: checksum mismatch in {rel}"]
    del m["files"][rel]
    path.write_text(json.dumps(m))
    assert manifest.verify(folder) == [f"task 0, array rewards: extra file {rel} not in the manifest"]
    path.write_text(path.read_text()[:-10])
    [problem] = manifest.verify(folder)
    assert "not valid JSON" in problem
    path.write_text(json.dumps({"format_version": 1, "files": {"metadata.json": {"sha256": "x", "size": 1}}}))
    with pytest.raises(IntegrityError, match="64 hex digits"):
        manifest.read_manifest(folder)


@pytest.mark.parametrize("bad", ["../outside.txt", "/etc/passwd", "data.zarr/../../x", "data.zarr/./x", "other/x", "~/x", "data.zarr\\..\\x"])
def test_manifest_paths_cannot_escape(folder, bad):
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    m["files"][bad] = {"sha256": "0" * 64, "size": 1}
    path.write_text(json.dumps(m))
    with pytest.raises(IntegrityError, match="outside|invalid path"):
        manifest.read_manifest(folder)
    [problem] = manifest.verify(folder)
    assert bad in problem or repr(bad) in problem


def test_wrong_format_version(folder):
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    m["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(m))
    with pytest.raises(IntegrityError, match=f"format_version {FORMAT_VERSION + 1}; this omrl reads format_version {FORMAT_VERSION}"):
        manifest.read_manifest(folder)
    m["format_version"] = FORMAT_VERSION
    path.write_text(json.dumps(m))
    # a metadata.json claiming another format, with a manifest re-made to match it
    meta = json.loads((folder / "metadata.json").read_text())
    meta["format_version"] = 99
    (folder / "metadata.json").write_text(json.dumps(meta))
    manifest.write_manifest(folder)
    assert any("format_version 99" in p for p in manifest.verify(folder))


def test_manifest_checksum_identifies_a_version(omrl_home):
    a = catalog.resolve(make_synthetic_dataset(n_tasks=2, n_rows=30, seed=1))
    b = catalog.resolve(make_synthetic_dataset(n_tasks=2, n_rows=30, seed=2))
    ca, cb = manifest.manifest_checksum(a), manifest.manifest_checksum(b)
    assert re.fullmatch(r"[0-9a-f]{64}", ca) and ca != cb
    assert manifest.manifest_checksum(a) == ca  # stable
    assert manifest.manifest_checksum(manifest=manifest.read_manifest(a)) == ca


def test_describe_path():
    assert manifest.describe_path("data.zarr/tasks/0012/next_observations/c/3/0") == "task 12, array next_observations"
    assert manifest.describe_path("data.zarr/tasks/0012/zarr.json") == "task 12"
    assert manifest.describe_path("metadata.json") == "metadata"
    assert manifest.describe_path("policies/task_0001_step_1000.npz") == "policies"


def test_no_pickle_in_the_store():
    import pathlib

    import omrl_data

    src = pathlib.Path(omrl_data.__file__).parent
    for f in [src / "dataset.py", *(src / "store").glob("*.py")]:
        text = f.read_text()
        assert "import pickle" not in text and "allow_pickle=True" not in text, f
