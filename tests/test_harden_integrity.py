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
    omrl_data.load(dataset_id)
    folder = catalog.resolve(dataset_id)
    chunks = sorted(p for p in (folder / "data.zarr").rglob("c/*") if p.is_file())
    caught = 0
    for chunk in chunks:
        before = chunk.read_bytes()
        _flip(chunk)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                omrl_data.load(dataset_id)
        except IntegrityError as e:
            caught += 1
            assert "checksum mismatch" in str(e)
        chunk.write_bytes(before)
    assert caught == len(chunks) > 20


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
        (data_app, ["slice", dataset_id, "--name", "part", "--tasks", "0"], 2),
        (data_app, ["info", dataset_id], 3),
        (train_app, ["macaw", "--dataset", dataset_id, "--out", str(tmp_path / "run"), "--steps", "1", "--quiet"], 3),
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == code, (args, r.output)
        assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit), (args, r.output)
        assert words in r.output or "problem(s) found" in r.output, (args, r.output)
