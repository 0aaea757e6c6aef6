"""Publishing and pulling through a real S3 API (moto's server on 127.0.0.1) and local folders."""
from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from typer.testing import CliRunner

import omrl_data
from cli.data import app
from omrl_data.errors import DatasetNotFound, IntegrityError
from omrl_data.publish import CARD_FILES, INDEX_FILE, Remote, RemoteExists, list_remote, publish, pull
from omrl_data.schema import FIELD_NAMES, MANIFEST_FILE
from omrl_data.store import catalog, manifest
from tests.synthetic import make_synthetic_dataset

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def moto_endpoint():
    """An S3 API served by moto on a free port of 127.0.0.1, for the whole module."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint, monkeypatch):
    """A fresh bucket; returns ``(url, endpoint)``. Fake credentials come from the environment."""
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    bucket = f"omrl-{uuid.uuid4().hex[:10]}"
    s3fs.S3FileSystem(client_kwargs={"endpoint_url": moto_endpoint}, skip_instance_cache=True).mkdir(bucket)
    return f"s3://{bucket}/datasets", moto_endpoint


@pytest.fixture
def dataset(omrl_home):
    return make_synthetic_dataset(omrl_home, n_tasks=2, n_rows=60)


def _arrays(dataset_id, root=None):
    d = omrl_data.load(dataset_id, root=root)
    return d, {f: d.fields[f].copy() for f in FIELD_NAMES}


def test_s3_publish_list_pull_round_trip(dataset, s3, tmp_path):
    url, endpoint = s3
    remote_url = publish(dataset, url, endpoint_url=endpoint)
    assert remote_url.endswith("omrl/point_robot_sparse/synthetic-v1")
    rows = list_remote(url, endpoint_url=endpoint)
    assert [r["id"] for r in rows] == [dataset]
    assert rows[0]["manifest_checksum"] == manifest.manifest_checksum(catalog.resolve(dataset))
    assert rows[0]["transitions"] == 120
    remote = Remote(url, endpoint)
    assert remote.exists(f"omrl/point_robot_sparse/synthetic-v1/{CARD_FILES[0]}")  # the card went too

    other = tmp_path / "other_root"
    folder = pull(dataset, url, root=other, endpoint_url=endpoint)
    assert folder == catalog.resolve(dataset, other)
    assert manifest.verify(folder) == []
    assert (folder / CARD_FILES[0]).is_file()
    a, fa = _arrays(dataset)
    b, fb = _arrays(dataset, other)
    assert a.tasks.to_dict() == b.tasks.to_dict()
    for f in FIELD_NAMES:
        assert np.array_equal(fa[f], fb[f]), f
    # without -vN: the latest published version; pulling again is a no-op
    assert pull("omrl/point_robot_sparse/synthetic", url, root=other, endpoint_url=endpoint) == folder


def test_endpoint_from_environment_and_cli(dataset, s3, monkeypatch, tmp_path):
    url, endpoint = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    r = run("publish", dataset, "--to", url, "--no-card")
    assert r.exit_code == 0, r.output
    r = run("list", "--remote", url, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["id"] == dataset
    r = run("pull", dataset, "--from", url, "--root", tmp_path / "r2")
    assert r.exit_code == 0, r.output
    assert catalog.is_complete(catalog.resolve(dataset, tmp_path / "r2"))
    r = run("publish", dataset, "--to", "s3://no-such-bucket-here/x", "--no-card")
    assert r.exit_code == 2 and "does not exist" in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_publish_refuses_to_overwrite(dataset, s3, tmp_path):
    url, endpoint = s3
    publish(dataset, url, endpoint_url=endpoint, card=False)
    with pytest.raises(RemoteExists, match="already published"):
        publish(dataset, url, endpoint_url=endpoint, card=False)
    # also through the CLI, to a local folder: one line, exit 2
    folder = tmp_path / "shared"
    assert run("publish", dataset, "--to", folder, "--no-card").exit_code == 0
    r = run("publish", dataset, "--to", f"file://{folder}", "--no-card")
    assert r.exit_code == 2 and "already published" in r.output and len(r.output.strip().splitlines()) == 1


def _tamper_flip(remote, rel, man):
    chunk = next(f for f in sorted(man["files"]) if "/rewards/c" in f)
    data = bytearray(remote.read_bytes(f"{rel}/{chunk}"))
    data[len(data) // 2] ^= 0xFF
    remote.write_bytes(f"{rel}/{chunk}", bytes(data))
    return "checksum mismatch"


def _tamper_truncate(remote, rel, man):
    chunk = next(f for f in sorted(man["files"]) if "/observations/c" in f)
    data = remote.read_bytes(f"{rel}/{chunk}")
    remote.write_bytes(f"{rel}/{chunk}", data[: len(data) // 2])
    return "size mismatch"


def _tamper_missing(remote, rel, man):
    chunk = next(f for f in sorted(man["files"]) if "/actions/c" in f)
    remote.fs.rm(remote.path(f"{rel}/{chunk}"))
    return "missing file"


def _tamper_manifest(remote, rel, man):
    # A manifest made to match tampered data no longer matches the index.
    man = json.loads(remote.read_bytes(f"{rel}/{MANIFEST_FILE}"))
    first = sorted(man["files"])[-1]
    man["files"][first]["sha256"] = "0" * 64
    remote.write_bytes(f"{rel}/{MANIFEST_FILE}", json.dumps(man).encode())
    return "does not match the remote index"


def _tamper_escape(remote, rel, man):
    # Path escape, with the index updated to match: the manifest itself is refused.
    from omrl_data.store.manifest import canonical_json

    man = json.loads(remote.read_bytes(f"{rel}/{MANIFEST_FILE}"))
    man["files"]["data.zarr/../../../../evil.txt"] = {"sha256": "0" * 64, "size": 1}
    remote.write_bytes(f"{rel}/{MANIFEST_FILE}", json.dumps(man).encode())
    index = json.loads(remote.read_bytes(INDEX_FILE))
    import hashlib

    for v in index["datasets"].values():
        v["manifest_checksum"] = hashlib.sha256(canonical_json(man)).hexdigest()
    remote.write_bytes(INDEX_FILE, json.dumps(index).encode())
    return "outside the dataset folder"


@pytest.mark.parametrize(
    "tamper, backend",
    [(_tamper_flip, "s3"), (_tamper_manifest, "s3"), (_tamper_truncate, "local"), (_tamper_missing, "local"), (_tamper_escape, "local")],
)
def test_pull_of_tampered_remote_fails_and_leaves_catalog_unchanged(dataset, request, tmp_path, tamper, backend):
    # S3 for two cases; the others run the same code path against a local folder (faster).
    url, endpoint = request.getfixturevalue("s3") if backend == "s3" else (str(tmp_path / "remote"), None)
    publish(dataset, url, endpoint_url=endpoint, card=False)
    remote = Remote(url, endpoint)
    rel = "omrl/point_robot_sparse/synthetic-v1"
    needle = tamper(remote, rel, manifest.read_manifest(catalog.resolve(dataset)))
    target = tmp_path / "fresh"
    with pytest.raises(IntegrityError, match=needle):
        pull(dataset, url, root=target, endpoint_url=endpoint)
    assert catalog.list_datasets(target) == []
    staging = target / catalog.STAGING_DIR
    assert not staging.exists() or not any(p for p in staging.rglob("*") if p.is_file())
    assert not (tmp_path / "evil.txt").exists() and not (target.parent / "evil.txt").exists()
    if tamper is _tamper_flip:  # the CLI says it in one line with the integrity exit code
        r = run("pull", dataset, "--from", url, "--endpoint-url", endpoint, "--root", target)
        assert r.exit_code == 3 and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
        assert "task" in r.output and "rewards" in r.output  # names the task and array


def test_half_failed_upload_looks_incomplete_and_is_replaced(dataset, s3, monkeypatch, tmp_path):
    url, endpoint = s3
    calls = {"n": 0}
    real_put = Remote.put

    def failing_put(self, local, rel):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("connection reset")
        return real_put(self, local, rel)

    monkeypatch.setattr(Remote, "put", failing_put)
    with pytest.raises(OSError):
        publish(dataset, url, endpoint_url=endpoint, card=False)
    remote = Remote(url, endpoint)
    rel = "omrl/point_robot_sparse/synthetic-v1"
    assert remote.sizes(rel)  # some files got there ...
    assert not remote.exists(f"{rel}/{MANIFEST_FILE}")  # ... but nothing that looks complete
    assert list_remote(url, endpoint_url=endpoint) == []
    with pytest.raises(DatasetNotFound):
        pull(dataset, url, root=tmp_path / "r", endpoint_url=endpoint)
    monkeypatch.setattr(Remote, "put", real_put)
    publish(dataset, url, endpoint_url=endpoint, card=False)  # a retry replaces the partial upload
    assert manifest.verify(pull(dataset, url, root=tmp_path / "r", endpoint_url=endpoint)) == []


def test_failed_index_update_is_repaired_by_the_next_publish(dataset, tmp_path, monkeypatch):
    url = str(tmp_path / "remote")
    real_write = Remote.write_bytes

    def no_index(self, rel, data):
        if rel.startswith("index.d/"):  # the version's index entry is not written
            raise OSError("network down")
        return real_write(self, rel, data)

    monkeypatch.setattr(Remote, "write_bytes", no_index)
    with pytest.raises(OSError):
        publish(dataset, url, card=False)
    monkeypatch.setattr(Remote, "write_bytes", real_write)
    assert list_remote(url) == []
    # complete (manifest there): pullable and verified, though not yet listed
    assert manifest.verify(pull(dataset, url, root=tmp_path / "r")) == []
    with pytest.raises(RemoteExists, match="restored"):
        publish(dataset, url, card=False)
    assert [r["id"] for r in list_remote(url)] == [dataset]


def test_local_remote_and_bad_inputs(dataset, tmp_path):
    folder = tmp_path / "remote"
    publish(dataset, str(folder), card=False)
    assert (folder / INDEX_FILE).is_file() and [r["id"] for r in list_remote(f"file://{folder}")] == [dataset]
    # a second version is listed beside the first
    v2 = make_synthetic_dataset(n_tasks=2, n_rows=20)
    publish(v2, f"file://{folder}", card=False)
    assert [r["id"] for r in list_remote(str(folder))] == [dataset, v2]
    cases = [
        (["pull", "omrl/point_robot_sparse/nothing", "--from", folder], 2, "not published"),
        (["pull", "not an id", "--from", folder], 2, "bad dataset id"),
        (["publish", "omrl/point_robot_sparse/nothing", "--to", folder], 2, "no dataset"),
        (["publish", dataset, "--to", folder, "--endpoint-url", "http://x"], 2, "s3:// URLs only"),
        (["pull", dataset, "--from", "nosuch://x"], 2, "cannot open remote"),
    ]
    # a different dataset published under the same id elsewhere cannot replace the local one
    other = make_synthetic_dataset(tmp_path / "elsewhere", n_tasks=2, n_rows=21)
    publish(other, tmp_path / "remote2", root=tmp_path / "elsewhere", card=False)
    cases.append((["pull", dataset, "--from", tmp_path / "remote2"], 2, "different contents"))
    for args, code, needle in cases:
        r = run(*args)
        assert r.exit_code == code and needle in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


def test_service_specific_endpoint_wins_as_botocore_says(dataset, s3, monkeypatch, tmp_path):
    """Issue 10 item 20: endpoint resolution is botocore's: AWS_ENDPOINT_URL_S3 beats AWS_ENDPOINT_URL."""
    url, endpoint = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    r = run("publish", dataset, "--to", url, "--no-card")
    assert r.exit_code == 0, r.output
    assert [row["id"] for row in list_remote(url)] == [dataset]


def test_two_publishers_at_once_never_lose_an_index_entry(tmp_path, omrl_home):
    """Issue 10 item 16: the lost update of index.json (publisher A read it before B wrote, then
    wrote its stale copy) no longer loses B: each version has its own index entry object."""
    url = str(tmp_path / "remote")
    a = make_synthetic_dataset(n_tasks=2, n_rows=20, name="a")
    b = make_synthetic_dataset(n_tasks=2, n_rows=20, name="b")
    publish(a, url, card=False)
    stale = (tmp_path / "remote" / INDEX_FILE).read_bytes()  # what A's slow rewrite would write back
    publish(b, url, card=False)
    (tmp_path / "remote" / INDEX_FILE).write_bytes(stale)  # ... overwriting B's update
    assert [r["id"] for r in list_remote(url)] == [a, b]
    assert manifest.verify(pull(b, url, root=tmp_path / "r")) == []
