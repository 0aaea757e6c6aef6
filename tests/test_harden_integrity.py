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
