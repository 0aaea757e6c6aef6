"""`omrl-data list | info | verify | delete` through the real typer app."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.data import app
from omrl_data.store import catalog
from tests.synthetic import make_synthetic_dataset

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


@pytest.fixture
def two(omrl_home):
    return make_synthetic_dataset(n_tasks=3, n_rows=50), make_synthetic_dataset(name="other", n_tasks=2, n_rows=[20, 30])


def test_list(two):
    r = run("list", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert {row["id"] for row in rows} == set(two)
    assert {row["id"]: row["transitions"] for row in rows}[two[1]] == 50
    r = run("list")
    assert r.exit_code == 0 and "synthetic-v1" in r.stdout and "other-v1" in r.stdout


def test_list_with_root(tmp_path, two):
    other = tmp_path / "elsewhere"
    make_synthetic_dataset(other, name="far", n_tasks=2, n_rows=10)
    rows = json.loads(run("list", "--json", "--root", other).stdout)
    assert [row["id"] for row in rows] == ["omrl/point_robot_sparse/far-v1"]
    assert "no datasets" in run("list", "--root", tmp_path / "empty").stdout


def test_info(two):
    r = run("info", two[1], "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["id"] == two[1] and d["metadata"]["gamma"] == 0.99
    assert [t["transitions"] for t in d["per_task"]] == [20, 30]
    assert all(t["episodes"] > 0 and t["return_mean"] is not None for t in d["per_task"])
    r = run("info", "omrl/point_robot_sparse/other")
    assert r.exit_code == 0 and "manifest checksum" in r.stdout and "episodes" in r.stdout


def test_info_shows_lineage(omrl_home):
    lineage = {"parent": "omrl/point_robot_sparse/synthetic-v1", "parent_manifest": "ab" * 32, "spec": {"quality": "expert"}}
    dataset_id = make_synthetic_dataset(name="expert", n_tasks=2, n_rows=10, extra_metadata={"lineage": lineage})
    d = json.loads(run("info", dataset_id, "--json").stdout)
    assert d["lineage"] == lineage and d["parent"] == lineage["parent"]
    r = run("info", dataset_id)
    assert "parent" in r.stdout and "expert" in r.stdout
    assert json.loads(run("list", "--json").stdout)[0]["parent"] == lineage["parent"]


def test_verify_ok_and_damaged(two):
    r = run("verify", two[0])
    assert r.exit_code == 0 and "ok" in r.stdout
    chunk = catalog.resolve(two[0]) / "data.zarr/tasks/0001/next_observations/c/0/0"
    data = bytearray(chunk.read_bytes())
    data[7] ^= 0x10
    chunk.write_bytes(bytes(data))
    r = run("verify", two[0])
    assert r.exit_code == 3
    assert "task 1, array next_observations: checksum mismatch" in r.stderr
    assert "Traceback" not in r.output


def test_delete_asks_unless_yes(two):
    r = run("delete", two[1], input="n\n")
    assert r.exit_code != 0 and catalog.resolve(two[1]).is_dir()
    r = run("delete", two[1], input="y\n")
    assert r.exit_code == 0 and "deleted" in r.stdout
    r = run("delete", two[0], "--yes")
    assert r.exit_code == 0
    assert json.loads(run("list", "--json").stdout) == []


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["info", "not-an-id"], 2, "expected <namespace>/<family>/<name>"),
        (["info", "omrl/ant_dir/none"], 2, "no dataset omrl/ant_dir/none"),
        (["verify", "omrl/point_robot_sparse/synthetic-v9"], 2, "versions here: v1"),
        (["delete", "./no/such/folder", "--yes"], 2, "no dataset folder"),
    ],
)
def test_bad_input_is_one_line(two, args, code, text):
    r = run(*args)
    assert r.exit_code == code
    assert text in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.output


def test_list_shows_unfinished_writes(two):
    from omrl_data.store.writer import StagedDataset
    from tests.synthetic import synthetic_task_arrays

    running = StagedDataset.create(None, "point_robot_sparse", "running")
    stopped = StagedDataset.create(None, "point_robot_sparse", "stopped")
    stopped.write_task(0, synthetic_task_arrays(10, 2, 2))
    stopped.release()
    out = run("list").stdout
    assert "unfinished omrl/point_robot_sparse/running-v1: 0 task(s) written, being written by pid" in out
    assert "unfinished omrl/point_robot_sparse/stopped-v1: 1 task(s) written, interrupted" in out
    assert {r["id"] for r in json.loads(run("list", "--json").stdout)} == set(two)  # JSON lists complete versions only
    running.release()


def test_list_remote_shows_published_versions(two, tmp_path):
    remote = tmp_path / "remote"
    assert "nothing published" in run("list", "--remote", remote).stdout
    r = run("publish", two[0], "--to", remote)
    assert r.exit_code == 0, r.output
    rows = json.loads(run("list", "--remote", remote, "--json").stdout)
    assert [row["id"] for row in rows] == [two[0]]
    assert rows[0]["transitions"] == 150
