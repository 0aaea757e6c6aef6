"""Catalog: roots, ids, versions, resolve, list, info, delete."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from omrl_data.errors import BadInput, DatasetNotFound
from omrl_data.store import catalog
from omrl_data.store.writer import StagedDataset
from tests.synthetic import make_synthetic_dataset


def test_resolve_root_order(tmp_path, monkeypatch):
    assert catalog.resolve_root(tmp_path / "a") == (tmp_path / "a").absolute()
    monkeypatch.setenv("OMRL_HOME", str(tmp_path / "env"))
    assert catalog.resolve_root() == tmp_path / "env"
    monkeypatch.delenv("OMRL_HOME")
    assert catalog.resolve_root() == Path("~/.omrl").expanduser()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("omrl/ant_dir/replay-v3", ("omrl", "ant_dir", "replay", 3)),
        ("omrl/ant_dir/replay", ("omrl", "ant_dir", "replay", None)),
        ("omrl/cheetah_vel/medium.tier-2-v12", ("omrl", "cheetah_vel", "medium.tier-2", 12)),
        ("team-a/point_robot_sparse/x", ("team-a", "point_robot_sparse", "x", None)),
    ],
)
def test_parse_id(text, expected):
    ref = catalog.parse_id(text)
    assert (ref.namespace, ref.family, ref.name, ref.version) == expected
    assert catalog.parse_id(ref.id) == ref


@pytest.mark.parametrize("text", ["ant_dir/replay", "omrl/Ant/replay", "omrl/ant_dir/", "omrl/ant_dir/replay-v0", "a/b/c/d", "", "omrl/ant_dir/-v1"])
def test_bad_ids_name_the_accepted_form(text):
    with pytest.raises(BadInput, match=r"expected <namespace>/<family>/<name>\[-v<N>\]|versions start at 1"):
        catalog.parse_id(text)


def test_check_name_rejects_version_suffix():
    assert catalog.check_name("replay_2") == "replay_2"
    for bad in ("replay-v2", "../x", "a/b", "", "-x"):
        with pytest.raises(BadInput):
            catalog.check_name(bad)


def test_versions_latest_and_immutability(omrl_home):
    first = make_synthetic_dataset(n_tasks=2, n_rows=30)
    second = make_synthetic_dataset(n_tasks=3, n_rows=30)
    assert (first, second) == ("omrl/point_robot_sparse/synthetic-v1", "omrl/point_robot_sparse/synthetic-v2")
    assert catalog.versions("point_robot_sparse", "synthetic") == [1, 2]
    assert catalog.resolve("omrl/point_robot_sparse/synthetic").name == "synthetic-v2"
    assert catalog.resolve(first).name == "synthetic-v1"
    assert catalog.next_version("point_robot_sparse", "synthetic") == 3
    # v1 is untouched by the second collection
    assert len(catalog.read_metadata(catalog.resolve(first))["tasks"]["tasks"]) == 2


def test_resolve_by_path_and_errors(omrl_home, tmp_path):
    dataset_id = make_synthetic_dataset(n_tasks=2, n_rows=30)
    folder = catalog.resolve(dataset_id)
    assert catalog.resolve(str(folder)) == folder
    assert catalog.resolve(folder) == folder
    with pytest.raises(DatasetNotFound, match="versions here: v1"):
        catalog.resolve("omrl/point_robot_sparse/synthetic-v7")
    with pytest.raises(DatasetNotFound, match="no dataset omrl/ant_dir/none"):
        catalog.resolve("omrl/ant_dir/none")
    with pytest.raises(DatasetNotFound, match="no dataset folder"):
        catalog.resolve(str(tmp_path / "missing"))
    with pytest.raises(BadInput, match="bad dataset id"):
        catalog.resolve("not-an-id")
    half = tmp_path / "half"
    shutil.copytree(folder, half)
    (half / "manifest.json").unlink()
    with pytest.raises(DatasetNotFound, match="not a complete omrl dataset"):
        catalog.resolve(half)


def test_root_argument_overrides_env(tmp_path):
    other = tmp_path / "other_root"
    dataset_id = make_synthetic_dataset(other, n_tasks=2, n_rows=30)
    assert catalog.list_datasets() == []
    assert [r["id"] for r in catalog.list_datasets(other)] == [dataset_id]
    with pytest.raises(DatasetNotFound):
        catalog.resolve(dataset_id)
    assert catalog.resolve(dataset_id, other).is_dir()


def test_list_skips_unfinished_and_reports_counts(omrl_home):
    make_synthetic_dataset(n_tasks=4, n_rows=[10, 20, 30, 40], n_test=1)
    staged = StagedDataset.create(None, "point_robot_sparse", "in_progress")  # never committed
    rows = catalog.list_datasets()
    assert [r["id"] for r in rows] == ["omrl/point_robot_sparse/synthetic-v1"]
    r = rows[0]
    assert (r["tasks"], r["train_tasks"], r["test_tasks"], r["transitions"]) == (4, 3, 1, 100)
    assert r["size_bytes"] > 0 and r["created"] and r["parent"] is None
    staged.release()


def test_info_statistics_match_the_data(omrl_home):
    dataset_id = make_synthetic_dataset(n_tasks=2, n_rows=[50, 70])
    info = catalog.info(dataset_id)
    assert info["manifest_checksum"] and info["format_version"] == 1
    import omrl_data

    data = omrl_data.load(dataset_id)
    for t in info["per_task"]:
        a = data.task_arrays(t["index"])
        returns = catalog.episode_returns(a["rewards"], a["episode_index"])
        assert t["transitions"] == len(a["rewards"])
        assert t["episodes"] == len(np.unique(a["episode_index"])) == len(returns)
        assert t["return_mean"] == pytest.approx(returns.mean())
        assert t["return_max"] == pytest.approx(returns.max())
        assert t["sources"] == {"replay": len(a["rewards"])}
    json.dumps(info)  # JSON-able for `info --json`


def test_episode_returns():
    r = catalog.episode_returns(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, 2]))
    assert r.tolist() == [3.0, 3.0, 4.0]


def test_delete_removes_version_and_cache(omrl_home):
    import omrl_data
    from omrl_data.store import manifest

    keep = make_synthetic_dataset(n_tasks=2, n_rows=30)
    gone = make_synthetic_dataset(n_tasks=2, n_rows=40)
    checksum = manifest.manifest_checksum(catalog.resolve(gone))
    omrl_data.load(gone)
    assert (omrl_home / ".cache" / checksum).is_dir()
    catalog.delete(gone)
    assert [r["id"] for r in catalog.list_datasets()] == [keep]
    assert not (omrl_home / ".cache" / checksum).exists()
    assert not any(p.name.startswith(".deleting") for p in (omrl_home / "omrl" / "point_robot_sparse").iterdir())
    assert catalog.resolve("omrl/point_robot_sparse/synthetic").name == "synthetic-v1"
    assert catalog.next_version("point_robot_sparse", "synthetic") == 3  # a deleted number is never reused
    with pytest.raises(DatasetNotFound):
        catalog.delete(gone)
