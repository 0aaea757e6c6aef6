"""Slices: quality tiers, collect ranges, sources, caps, re-splits, lineage, hard links."""
from __future__ import annotations

import os

import numpy as np
import pytest
from typer.testing import CliRunner

import omrl_data
from cli.data import app
from omrl_data.errors import BadInput
from omrl_data.slicing import SliceSpec, parse_collect_range, parse_task_list, range_mask, select_rows, slice_dataset
from omrl_data.store import catalog, manifest, zarr_io
from tests.synthetic import make_synthetic_dataset

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def parent(omrl_home):
    """4 tasks, 300 replay rows + 40 checkpoint rows each."""
    return make_synthetic_dataset(omrl_home, n_tasks=4, n_rows=300, checkpoint_rows=40)


def _episodes(arrays):
    """Episode key -> rows of that episode, as a dict of tuples (for whole-episode checks)."""
    out = {}
    for k in np.unique(arrays["episode_index"]):
        m = arrays["episode_index"] == k
        out[int(k)] = (arrays["rewards"][m].tobytes(), arrays["observations"][m].tobytes())
    return out


def test_quality_tiers_partition_each_stream_in_collect_order(parent):
    p = omrl_data.load(parent)
    for i in range(p.n_tasks):
        whole = p.task_arrays(i)
        rows = [select_rows(whole, SliceSpec(quality=q)) for q in ("random", "medium", "expert")]
        # Every row is in exactly one tier, and each tier is about a third.
        assert np.array_equal(np.sort(np.concatenate(rows)), np.arange(len(whole["rewards"])))
        parts = [{k: v[r] for k, v in whole.items()} for r in rows]
        for a in parts:
            assert abs(len(a["rewards"]) - len(whole["rewards"]) / 3) <= 20  # within one episode (horizon 20)
        # Tiers follow collect_step: all of random before all of medium before all of expert.
        assert parts[0]["collect_step"].max() <= parts[1]["collect_step"].min()
        assert parts[1]["collect_step"].max() <= parts[2]["collect_step"].min()
        # Whole episodes only: no episode is split between tiers.
        ep_sets = [set(np.unique(a["episode_index"]).tolist()) for a in parts]
        assert sum(len(e) for e in ep_sets) == len(set().union(*ep_sets))
        # The learning trend of the synthetic data shows up in the tiers.
        means = [float(a["rewards"].mean()) for a in parts]
        assert means[0] < means[1] < means[2]
    # The written slice holds exactly those rows, byte for byte.
    expert = omrl_data.load(slice_dataset(parent, "q-expert", SliceSpec(quality="expert")))
    for i in range(p.n_tasks):
        rows = select_rows(p.task_arrays(i), SliceSpec(quality="expert"))
        for k, v in p.task_arrays(i).items():
            assert np.array_equal(expert.task_arrays(i)[k], v[rows]), k


def test_collect_range_exact_fractions(parent):
    p = omrl_data.load(parent)
    for i in range(p.n_tasks):
        assert len(select_rows(p.task_arrays(i), SliceSpec(collect_range=(0.0, 1.0)))) == len(p.task_arrays(i)["rewards"])
    last = omrl_data.load(slice_dataset(parent, "last-tenth", SliceSpec(collect_range=(0.9, 1.0))))
    for i in range(p.n_tasks):
        n = len(p.task_arrays(i)["rewards"])
        got = last.task_arrays(i)
        assert abs(len(got["rewards"]) - n * 0.1) <= 20
        assert got["collect_step"].min() >= np.quantile(p.task_arrays(i)["collect_step"], 0.8)
    assert last.metadata["lineage"]["spec"]["collect_range"] == [0.9, 1.0]


def test_source_filter_and_cap(parent):
    ck = omrl_data.load(slice_dataset(parent, "ck", SliceSpec(source="checkpoint")))
    assert ck.task_sizes.tolist() == [40] * 4 and set(np.unique(ck.fields["source"])) == {1}
    capped = omrl_data.load(slice_dataset(parent, "cap", SliceSpec(source="replay", max_per_task=100)))
    p = omrl_data.load(parent)
    for i in range(4):
        a = capped.task_arrays(i)
        assert 0 < len(a["rewards"]) <= 100 and set(np.unique(a["source"])) == {0}
        full = _episodes(p.task_arrays(i))
        for k, rows in _episodes(a).items():
            assert rows == full[k]  # whole episodes only
        # spread over the stream, not just its start
        assert a["collect_step"].max() > 200
    with pytest.raises(BadInput, match="keeps no rows"):
        slice_dataset(parent, "none", SliceSpec(source="random"))


def test_lineage_recorded_and_shown(parent):
    spec = SliceSpec(tasks=(2, 0), quality="expert")
    sid = slice_dataset(parent, "exp", spec)
    info = catalog.info(sid)
    lin = info["lineage"]
    assert lin["parent"] == parent
    assert lin["parent_manifest"] == manifest.manifest_checksum(catalog.resolve(parent))
    assert SliceSpec.from_dict(lin["spec"]) == spec and lin["parent_tasks"] == [2, 0]
    assert info["parent"] == parent
    # the slice's task 0 is the parent's task 2
    s, p = omrl_data.load(sid), omrl_data.load(parent)
    assert s.tasks.params[0] == p.tasks.params[2] and s.tasks.params[1] == p.tasks.params[0]
    # a slice of a slice keeps the chain in its changelog
    sid2 = slice_dataset(sid, "exp-small", SliceSpec(max_per_task=50))
    log = catalog.read_metadata(catalog.resolve(sid2))["changelog"]
    assert [e["id"] for e in log] == [parent, sid, sid2]
    r = run("info", sid)
    assert r.exit_code == 0 and parent in r.stdout


def test_resplit_links_data_and_survives_parent_delete(parent):
    sid = slice_dataset(parent, "resplit", SliceSpec(resplit="explicit", resplit_args={"test_tasks": [0, 1]}))
    s_dir, p_dir = catalog.resolve(sid), catalog.resolve(parent)
    s = omrl_data.load(sid)
    assert s.tasks.split == ("test", "test", "train", "train") and s.tasks.split_kind == "explicit"
    # same data files: hard links, not copies
    chunk = next(f for f in manifest.read_manifest(s_dir)["files"] if "/observations/c" in f)
    assert os.stat(s_dir / chunk).st_ino == os.stat(p_dir / chunk).st_ino
    before = {i: s.task_arrays(i)["observations"].copy() for i in range(4)}
    catalog.delete(parent)
    assert manifest.verify(s_dir) == []
    again = omrl_data.load(sid)
    for i in range(4):
        assert np.array_equal(again.task_arrays(i)["observations"], before[i])


def test_split_filter(parent):
    sid = slice_dataset(parent, "test-only", SliceSpec(split="test"))
    s = omrl_data.load(sid)
    assert s.n_tasks == 1 and s.tasks.split == ("test",)


def test_parsers():
    assert parse_task_list("0,2,5-7") == (0, 2, 5, 6, 7)
    assert parse_collect_range("0.5:1") == (0.5, 1.0)
    for bad in ("a", "3-1", "1,,2"):
        with pytest.raises(BadInput):
            parse_task_list(bad)
    for bad in ("0.5", "1:0.5", "0:2", "x:y"):
        with pytest.raises(BadInput):
            parse_collect_range(bad)


def test_range_mask_whole_episodes_partition():
    ep = np.repeat(np.arange(30), 10)
    cs = np.arange(300)
    masks = [range_mask(cs, ep, lo, hi) for lo, hi in ((0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1))]
    assert np.array_equal(sum(m.astype(int) for m in masks), np.ones(300, int))
    assert [int(m.sum()) for m in masks] == [100, 100, 100]
    rows = select_rows({"episode_index": ep, "collect_step": cs, "source": np.zeros(300, np.uint8)}, SliceSpec(max_per_task=55))
    assert len(rows) == 50 and len(np.unique(ep[rows])) == 5


BAD_SLICES = [
    (["--quality", "best"], "unknown quality"),
    (["--collect-range", "0.5:0.2"], "collect range"),
    (["--quality", "expert", "--collect-range", "0:1"], "not both"),
    (["--tasks", "9"], "not in the parent"),
    (["--tasks", "x"], "bad task list"),
    (["--source", "magic"], "unknown source"),
    (["--max-per-task", "0"], "positive"),
    (["--resplit", "sideways"], "re-split"),
    (["--split", "valid"], "unknown split"),
    (["--resplit", "random", "--test-fraction", "2"], "test_fraction"),
    (["--test-fraction", "0.2"], "without --resplit"),
]


def test_bad_slice_inputs_exit_nonzero_with_one_line(omrl_home):
    parent = make_synthetic_dataset(omrl_home, n_tasks=2, n_rows=40)
    before = catalog.list_datasets()
    for args, needle in BAD_SLICES:
        r = run("slice", parent, "--name", "bad", *args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output and "Traceback" not in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1, r.output
    assert catalog.list_datasets() == before


def test_slice_unknown_parent_and_bad_name(omrl_home):
    r = run("slice", "omrl/point_robot_sparse/none", "--name", "x")
    assert r.exit_code == 2 and "no dataset" in r.output
    pid = make_synthetic_dataset(omrl_home, n_tasks=2, n_rows=40)
    r = run("slice", pid, "--name", "bad-v2")
    assert r.exit_code == 2 and "bad dataset name" in r.output


def test_cli_slice_writes_version(parent):
    r = run("slice", parent, "--name", "cli", "--tasks", "0-2", "--quality", "medium", "--resplit", "explicit", "--test-tasks", "2")
    assert r.exit_code == 0, r.output
    s = omrl_data.load("omrl/point_robot_sparse/cli-v1")
    assert s.n_tasks == 3 and s.tasks.split == ("train", "train", "test")
    assert zarr_io.task_row_counts(catalog.resolve("omrl/point_robot_sparse/cli-v1"), 3) == s.task_sizes.tolist()


def test_checkpoint_policies_follow_their_tasks(omrl_home):
    from omrl_data.store.writer import StagedDataset
    from tests.synthetic import synthetic_task_arrays, synthetic_tasks

    staged = StagedDataset.create(omrl_home, "point_robot_sparse", "with-policies")
    for i in range(3):
        staged.write_task(i, synthetic_task_arrays(40, 2, 2, task_index=i))
        folder = staged.path / "policies" / f"task_{i:04d}"
        folder.mkdir(parents=True)
        np.savez(folder / "step_00000040.npz", w=np.full(3, i, dtype=np.float32))
    staged.commit({"family": "point_robot_sparse", "tasks": synthetic_tasks("point_robot_sparse", 3).to_dict(), "obs_dim": 2, "act_dim": 2, "gamma": 0.99})
    sid = slice_dataset(staged.dataset_id, "two", SliceSpec(tasks=(2, 0), quality="expert"))
    folder = catalog.resolve(sid)
    assert sorted(p.name for p in (folder / "policies").iterdir()) == ["task_0000", "task_0001"]
    assert np.load(folder / "policies/task_0000/step_00000040.npz")["w"].tolist() == [2, 2, 2]
    assert np.load(folder / "policies/task_0001/step_00000040.npz")["w"].tolist() == [0, 0, 0]
    assert manifest.verify(folder) == []


def test_tampered_parent_is_not_sliced(parent):
    folder = catalog.resolve(parent)
    chunk = next(f for f in sorted(manifest.read_manifest(folder)["files"]) if "/rewards/c" in f)
    data = bytearray((folder / chunk).read_bytes())
    data[0] ^= 0xFF
    (folder / chunk).write_bytes(bytes(data))
    r = run("slice", parent, "--name", "from-bad", "--resplit", "random")
    assert r.exit_code == 3 and "checksum mismatch" in r.output and "rewards" in r.output
    assert [d["id"] for d in catalog.list_datasets()] == [parent]
