"""Issue 10 items 2-6: every byte a reader uses is verified; damaged versions are named, not fatal."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import omrl_data
from omrl_data.errors import IntegrityError
from omrl_data.store import catalog, manifest
from tests.synthetic import make_synthetic_dataset


@pytest.fixture
def dataset_id(omrl_home):
    return make_synthetic_dataset(omrl_home, n_tasks=4, n_rows=60)


def _cache(omrl_home, dataset_id):
    return omrl_home / ".cache" / manifest.manifest_checksum(catalog.resolve(dataset_id))


def _flip(path, at=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x40
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------ item 2
@pytest.mark.parametrize("name", ["rewards", "observations", "offsets"])
def test_a_flipped_cache_byte_is_never_served(dataset_id, omrl_home, name):
    good = omrl_data.load(dataset_id)
    f = _cache(omrl_home, dataset_id) / f"{name}.npy"
    _flip(f, at=f.stat().st_size - 2)  # in the data, not the .npy header
    with pytest.warns(UserWarning, match="loading cache"):
        again = omrl_data.load(dataset_id)
    for k in good.fields:
        np.testing.assert_array_equal(good.fields[k], again.fields[k])
    np.testing.assert_array_equal(good.offsets, again.offsets)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: the third load is clean
        omrl_data.load(dataset_id)


def test_a_version_file_changed_after_the_cache_was_built_is_caught(dataset_id, omrl_home):
    """Every file the manifest lists (the issue: a warm load caught 24-28 of 59): flipped after
    the cache was built, the next (warm) load refuses it."""
    omrl_data.load(dataset_id)
    folder = catalog.resolve(dataset_id)
    files = sorted(manifest.read_manifest(folder)["files"])
    caught = []
    for rel in files:
        path = folder / rel
        before = path.read_bytes()
        _flip(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                omrl_data.load(dataset_id)
        except IntegrityError:
            caught.append(rel)
        path.write_bytes(before)
    assert caught == files and len(files) > 50


# ------------------------------------------------------------------------------------ item 4
def _edit_meta(folder, fn):
    p = folder / "metadata.json"
    meta = json.loads(p.read_text())
    fn(meta)  # edits in place
    p.write_text(json.dumps(meta))


def _edit_array(folder, task, array, fn):
    p = folder / "data.zarr" / "tasks" / f"{task:04d}" / array / "zarr.json"
    d = json.loads(p.read_text())
    d = fn(d)
    p.write_text(json.dumps(d))


def _set(d, key, value):
    d[key] = value
    return d


DAMAGE = {
    # name: (edit of the version folder, words the one-line error must contain)
    "split_validation": (lambda f: _edit_meta(f, lambda m: m["tasks"]["tasks"][1].update(split="validation")),
                         "metadata.json: tasks.tasks[1].split"),
    "task_without_features": (lambda f: _edit_meta(f, lambda m: m["tasks"]["tasks"][2].pop("features")),
                              "metadata.json: tasks.tasks[2].features"),
    "gamma_abc": (lambda f: _edit_meta(f, lambda m: _set(m, "gamma", "abc")), "metadata.json: gamma"),
    "metadata_is_a_list": (lambda f: (f / "metadata.json").write_text("[1, 2]"), "metadata.json"),
    "no_task_table": (lambda f: _edit_meta(f, lambda m: m.pop("tasks")), "metadata.json: tasks"),
    "obs_dim_string": (lambda f: _edit_meta(f, lambda m: _set(m, "obs_dim", "2")), "metadata.json: obs_dim"),
    "array_zarr_json_is_a_list": (lambda f: _edit_array(f, 0, "rewards", lambda d: [d]), "task 0, array rewards"),
    "array_more_rows_than_metadata": (lambda f: _edit_array(f, 1, "observations", lambda d: _set(d, "shape", [d["shape"][0] + 660, d["shape"][1]])),
                                      "task 1"),
    "array_wrong_obs_dim": (lambda f: _edit_array(f, 0, "observations", lambda d: _set(d, "shape", [d["shape"][0], 3])),
                            "task 0, array observations: shape"),
    "array_wrong_dtype": (lambda f: _edit_array(f, 2, "actions", lambda d: _set(d, "data_type", "float64")),
                          "task 2, array actions: data_type"),
}


@pytest.fixture(params=sorted(DAMAGE))
def damaged(request, dataset_id):
    """A version whose manifest matches damaged metadata or array descriptions."""
    folder = catalog.resolve(dataset_id)
    edit, words = DAMAGE[request.param]
    edit(folder)
    manifest.write_manifest(folder)  # the manifest vouches for the damaged bytes
    return dataset_id, folder, words


def test_damaged_metadata_matrix_load_verify_slice_train(damaged, omrl_home, tmp_path):
    from typer.testing import CliRunner

    from cli.data import app as data_app
    from cli.train import app as train_app

    dataset_id, folder, words = damaged
    with pytest.raises(IntegrityError) as e:
        omrl_data.load(dataset_id)
    assert words in str(e.value) and str(folder) in str(e.value)
    problems = manifest.verify(folder)
    assert problems and any(words in p for p in problems), problems
    runner = CliRunner()
    for app, args, code in (
        (data_app, ["verify", dataset_id], 3),
        (data_app, ["slice", dataset_id, "--name", "part", "--tasks", "0"], 3),
        (data_app, ["publish", dataset_id, "--to", str(tmp_path / "remote"), "--no-card"], 3),
        (data_app, ["export", dataset_id], 3),
        (data_app, ["info", dataset_id], 3),
        (train_app, ["macaw", "--dataset", dataset_id, "--out", str(tmp_path / "run"), "--steps", "1", "--quiet"], 3),
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == code, (args, r.output)
        assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit), (args, r.output)
        assert words in r.output or "problem(s) found" in r.output, (args, r.output)


# ------------------------------------------------------------------------------------ item 5
def _cli(*args):
    from typer.testing import CliRunner

    from cli.data import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("how", ["metadata_not_json", "metadata_a_list", "manifest_deleted"])
def test_one_bad_version_is_listed_as_damaged_and_can_be_deleted(omrl_home, how):
    good = make_synthetic_dataset(omrl_home, n_tasks=2, n_rows=20, name="good")
    bad = make_synthetic_dataset(omrl_home, n_tasks=2, n_rows=20, name="bad")
    folder = catalog.resolve(bad)
    if how == "metadata_not_json":
        (folder / "metadata.json").write_text("{not json")
    elif how == "metadata_a_list":
        (folder / "metadata.json").write_text("[]")
    else:
        (folder / "manifest.json").unlink()
    rows = {r["id"]: r for r in catalog.list_datasets()}
    assert set(rows) == {good, bad}
    assert rows[good]["damaged"] is None and rows[bad]["damaged"]
    r = _cli("list")
    assert r.exit_code == 0 and good in r.output and "damaged" in r.output and bad in r.output, r.output
    r = _cli("list", "--json")
    assert r.exit_code == 0, r.output
    listed = {row["id"]: row for row in json.loads(r.output)}
    assert listed[bad]["damaged"] and listed[good]["transitions"] == 40
    r = _cli("delete", bad, "--yes")
    assert r.exit_code == 0, r.output
    assert [row["id"] for row in catalog.list_datasets()] == [good]
    r = _cli("delete", good, "--yes")
    assert r.exit_code == 0 and catalog.list_datasets() == [], r.output


def test_pull_refuses_a_crafted_remote_version_with_bad_metadata(omrl_home, tmp_path):
    from omrl_data.publish import publish, pull

    ds = make_synthetic_dataset(omrl_home, n_tasks=2, n_rows=20)
    remote = tmp_path / "remote"
    publish(ds, str(remote), card=False)
    rel = remote / "omrl/point_robot_sparse/synthetic-v1"
    meta = json.loads((rel / "metadata.json").read_text())
    meta["tasks"]["tasks"][0]["split"] = "validation"
    (rel / "metadata.json").write_text(json.dumps(meta))
    manifest.write_manifest(rel)  # a consistent, crafted remote: manifest and index agree
    _edit_index_entry(remote, ds, lambda e: e.update(manifest_checksum=manifest.manifest_checksum(rel)))
    other = tmp_path / "other_root"
    with pytest.raises(IntegrityError, match=r"tasks.tasks\[0\].split"):
        pull(ds, str(remote), root=other)
    assert catalog.list_datasets(other) == []


def _edit_index_entry(remote, dataset_id, fn):
    """Edit a published version's index entry (its index.d object, and index.json to match)."""
    from omrl_data.publish import ENTRY_DIR, INDEX_FILE

    p = remote / ENTRY_DIR / f"{dataset_id}.json"
    entry = json.loads(p.read_text())
    fn(entry)
    p.write_text(json.dumps(entry))
    index = json.loads((remote / INDEX_FILE).read_text())
    index["datasets"][dataset_id] = entry
    (remote / INDEX_FILE).write_text(json.dumps(index))


# ------------------------------------------------------------------------------------ item 6
def test_verify_reports_a_file_that_vanishes_mid_verify(dataset_id, monkeypatch):
    folder = catalog.resolve(dataset_id)
    victim = sorted((folder / "data.zarr").rglob("c/*"))[5]
    real = manifest.sha256_file
    calls = []

    def vanishing(path):
        calls.append(path)
        if len(calls) == 3:
            victim.unlink()
        return real(path)

    monkeypatch.setattr(manifest, "sha256_file", vanishing)
    problems = manifest.verify(folder)
    assert any("missing file" in p and victim.name in p for p in problems), problems


def test_a_version_deleted_while_it_is_read_is_not_called_corrupt(dataset_id, monkeypatch):
    real = manifest.sha256_file
    calls = []

    def delete_midway(path):
        calls.append(path)
        if len(calls) == 4:
            catalog.delete(dataset_id)
        return real(path)

    monkeypatch.setattr(manifest, "sha256_file", delete_midway)
    from omrl_data.errors import DatasetNotFound

    with pytest.raises(DatasetNotFound, match="deleted while it was being read"):
        omrl_data.load(dataset_id)


# ------------------------------------------------------------------------------------ item 3
@pytest.fixture
def published(omrl_home, tmp_path):
    from omrl_data.publish import publish

    ds = make_synthetic_dataset(omrl_home, n_tasks=2, n_rows=20)
    folder = catalog.resolve(ds)
    (folder / "card.md").write_text("# a card\n")
    (folder / "learning_progress.png").write_bytes(b"\x89PNG fake plot")
    remote = tmp_path / "remote"
    publish(ds, str(remote))
    return ds, remote, remote / "omrl/point_robot_sparse/synthetic-v1"


@pytest.mark.parametrize("tamper", [None, "card_changed", "index_without_cards"])
def test_pull_keeps_only_card_files_the_index_vouches_for(published, tmp_path, tamper):
    ds, remote, rel = published
    if tamper == "card_changed":
        (rel / "card.md").write_text("# a card\nvisit http://evil.example\n")
    elif tamper == "index_without_cards":  # as an older omrl published it
        _edit_index_entry(remote, ds, lambda e: e.pop("card_files"))
    other = tmp_path / "other"
    r = _cli("pull", ds, "--from", remote, "--root", other)
    assert r.exit_code == 0, r.output
    assert "every checksum verified" not in r.output
    local = catalog.resolve(ds, other)
    if tamper is None:
        assert (local / "card.md").read_text() == "# a card\n"
        assert "card.md: sha256 matches the remote index" in r.output
    else:
        assert not (local / "card.md").exists()
        assert "card.md left out" in r.output
        assert (local / "learning_progress.png").exists() == (tamper == "card_changed")
    # a second pull downloads nothing, and says so
    again = _cli("pull", ds, "--from", remote, "--root", other)
    assert again.exit_code == 0 and "nothing downloaded" in again.output and "verified" not in again.output, again.output


def test_verify_names_the_files_it_does_not_cover(published):
    ds, _, _ = published
    r = _cli("verify", ds)
    assert r.exit_code == 0 and "not covered by the manifest" in r.output and "card.md" in r.output, r.output
