"""Normalised-score references: the score and margin, the expert tier, tiny real collections
(point_robot_sparse and bandit in random mode), in-memory computation for older versions,
``omrl-data references ID`` (atomic rewrite, manifest, verify), info, the card and Minari."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import omrl_data
from cli.data import app
from omrl_data import references as R
from omrl_data.collection import CollectConfig, collect
from omrl_data.errors import BadInput, IntegrityError
from omrl_data.schema import METADATA_FILE
from omrl_data.slicing import QUALITY_TIERS
from omrl_data.store import catalog, manifest, zarr_io
from tests.algos_data import write_bandit_dataset

runner = CliRunner()


# ----------------------------------------------------------------------------------------------
# pure functions


def test_normalised_score_and_its_undefined_cases():
    assert R.normalised_score(-132.0, -132.0, -32.0) == 0.0
    assert R.normalised_score(-32.0, -132.0, -32.0) == 1.0
    assert R.normalised_score(-82.0, -132.0, -32.0) == pytest.approx(0.5)
    assert R.normalised_score(5.0, 3.0, 9.0) == pytest.approx(1 / 3)
    for lo, hi in ((None, 1.0), (0.0, None), (1.0, 1.0), (0.0, math.nan)):
        assert math.isnan(R.normalised_score(1.0, lo, hi))


def test_informative_margin_flags_the_cheetah_vel_task_of_the_issue():
    # cheetah_vel v* = 0.66 in the main job: expert tier -130 vs stand-still -132 (200 steps).
    assert not R.is_informative(-130.0, -132.0, 200)
    assert R.informative_margin(-132.0, 200) == pytest.approx(6.6)
    assert R.is_informative(-120.0, -132.0, 200)
    # point robot: stand-still 0, so the per-step floor (0.01 x 20 = 0.2) decides
    assert not R.is_informative(0.15, 0.0, 20) and R.is_informative(0.5, 0.0, 20)
    assert not R.is_informative(None, 0.0, 20)


def _stream(returns_by_episode, lengths, collect_order=None, cut_last=False):
    """One task's columns: episodes with the given returns (reward on the last step only)."""
    cols = {k: [] for k in R.TIER_COLUMNS}
    step = 0
    order = collect_order or list(range(len(lengths)))
    for e, (ret, n) in enumerate(zip(returns_by_episode, lengths)):
        last = e == len(lengths) - 1
        for t in range(n):
            cols["rewards"].append(ret if t == n - 1 else 0.0)
            cols["episode_index"].append(e)
            cols["collect_step"].append(order[e] * 1000 + t)
            cols["source"].append(0)
            cols["step_in_episode"].append(t)
            cols["terminated"].append(False)
            cols["truncated"].append(t == n - 1 and not (last and cut_last))
            step += 1
    return {k: np.asarray(v) for k, v in cols.items()}


def test_expert_tier_is_the_last_third_by_collect_step_whole_episodes_only():
    # 9 episodes of 10 steps: the expert tier is episodes 6, 7, 8.
    cols = _stream([float(e) for e in range(9)], [10] * 9)
    assert R.expert_tier_return(cols) == pytest.approx((6 + 7 + 8) / 3)
    # the last episode cut short by the budget is not a whole episode
    cols = _stream([float(e) for e in range(9)], [10] * 9, cut_last=True)
    assert R.expert_tier_return(cols) == pytest.approx((6 + 7) / 2)
    # collect order, not stored order, decides: stored episode 0 was collected last
    cols = _stream([100.0] + [0.0] * 8, [10] * 9, collect_order=[8, 0, 1, 2, 3, 4, 5, 6, 7])
    assert R.expert_tier_return(cols) == pytest.approx(100 / 3)
    assert QUALITY_TIERS["expert"] == (2 / 3, 1.0)
    assert R.expert_tier_return({k: v[:0] for k, v in cols.items()}) is None


def test_cheetah_vel_stand_still_is_the_velocity_gap_of_lying_still():
    """Zero torque: the cheetah lies still, paying |v*| per step, about -200 v* per episode."""
    empty = {k: np.zeros(0) for k in R.TIER_COLUMNS}
    refs = R.compute_references_for("cheetah_vel", [{"target_velocity": 0.66}, {"target_velocity": 2.0}], lambda i: empty, episodes=2)
    assert refs["stand_still"][0] == pytest.approx(-132.0, abs=3.0)
    assert refs["stand_still"][1] == pytest.approx(-400.0, abs=5.0)
    assert refs["random"][1] < refs["stand_still"][1] + 50  # random flailing does not run at 2 m/s
    assert refs["expert"] == [None, None] and refs["informative"] == [False, False]
    again = R.compute_references_for("cheetah_vel", [{"target_velocity": 0.66}, {"target_velocity": 2.0}], lambda i: empty, episodes=2)
    assert again == refs  # seeded rollouts


# ----------------------------------------------------------------------------------------------
# tiny real collections


@pytest.fixture(scope="module")
def point_random(tmp_path_factory):
    root = tmp_path_factory.mktemp("refs_point")
    cfg = CollectConfig(family="point_robot_sparse", tasks=3, mode="random", steps_per_task=300, workers=1)
    return root, collect(cfg, root=root, progress=False)


@pytest.fixture(scope="module")
def bandit_random(tmp_path_factory):
    root = tmp_path_factory.mktemp("refs_bandit")
    cfg = CollectConfig(family="bandit", tasks=4, mode="random", steps_per_task=200, workers=1)
    return root, collect(cfg, root=root, progress=False)


def test_collection_stores_references_covered_by_the_manifest(point_random):
    root, dataset_id = point_random
    folder = catalog.resolve(dataset_id, root)
    meta = catalog.read_metadata(folder)
    refs = meta["references"]
    assert set(R.KEYS) <= set(refs)
    assert all(len(refs[k]) == 3 for k in ("stand_still", "random", "expert", "informative"))
    assert refs["stand_still"] == [0.0, 0.0, 0.0]  # the point stays at the origin, far from every goal
    assert refs["episodes"] == R.REFERENCE_EPISODES and "zero action" in refs["basis"]
    for i in range(3):  # expert = the expert tier of the stored rows, recomputed independently
        cols = zarr_io.read_task_group(folder, i, R.TIER_COLUMNS)
        n = len(cols["rewards"])
        # random mode: rows in collect order, 20-step episodes; the tier holds episodes whose midpoint >= 2/3
        starts = np.flatnonzero(cols["step_in_episode"] == 0)
        ends = np.append(starts[1:], n)
        mids = (starts + ends) / 2 / n
        whole = [(s, e) for s, e, m in zip(starts, ends, mids) if m >= 2 / 3 and (cols["truncated"][e - 1] or cols["terminated"][e - 1])]
        assert refs["expert"][i] == pytest.approx(np.mean([cols["rewards"][s:e].sum() for s, e in whole]))
        assert refs["informative"][i] == R.is_informative(refs["expert"][i], 0.0, 20)
    assert manifest.verify(folder) == []
    listed = manifest.read_manifest(folder)["files"][METADATA_FILE]["sha256"]
    assert listed == manifest.sha256_file(folder / METADATA_FILE)
    ds = omrl_data.load(dataset_id, root=root)
    assert ds.references == refs


def test_bandit_references_use_the_uniform_and_the_best_arm(bandit_random):
    root, dataset_id = bandit_random
    ds = omrl_data.load(dataset_id, root=root)
    refs = ds.references
    for i, p in enumerate(ds.tasks.params):
        probs = np.asarray(p["arm_probs"])
        assert refs["stand_still"][i] == pytest.approx(10 * probs.mean())
        assert refs["random"][i] == pytest.approx(10 * probs.mean())
        assert refs["expert"][i] == pytest.approx(10 * probs.max())
        assert refs["informative"][i] == (10 * (probs.max() - probs.mean()) > max(0.5 * probs.mean(), 0.1))
        # the data's own expert tier is random pulls: about the uniform arm, below the best arm
        assert refs["expert_tier"][i] < refs["expert"][i]
    assert "no stand-still" in refs["basis"] and "best arm" in refs["basis"]
    assert ds.metadata["gamma"] == 0.01  # the family's default gamma


def test_summary_table_flags_uninformative_tasks():
    from rich.console import Console

    from omrl_data.collection.display import summary_table

    stats = [{"index": i, "split": "train", "transitions": 10, "episodes": 1} for i in range(2)]
    refs = {"stand_still": [-132.0, -400.0], "random": [-150.0, -420.0], "expert": [-130.0, -100.0], "informative": [False, True]}
    console = Console(record=True, width=200)
    console.print(summary_table(stats, "t", refs))
    text = console.export_text()
    assert "Uninformative task 0 (expert -130.00 vs stand-still -132.00)" in text
    assert "no offline method can be scored on it" in text and "task 1" not in text.split("Uninformative")[1]


# ----------------------------------------------------------------------------------------------
# versions without references


def test_older_version_gets_references_in_memory_only(omrl_home):
    dataset_id = write_bandit_dataset(n_train=2, n_test=1, n_rows=100)
    folder = catalog.resolve(dataset_id)
    before = manifest.manifest_checksum(folder)
    ds = omrl_data.load(dataset_id)
    assert "references" not in ds.metadata
    assert R.references_of(ds, compute=False) is None
    refs = ds.references
    assert refs["expert"] == [9.0, 9.0, 9.0] and ds.metadata["references"] is refs
    assert "references" not in catalog.read_metadata(folder) and manifest.manifest_checksum(folder) == before
    assert R.references_of(omrl_data.load(dataset_id)) == refs  # the in-memory cache, same numbers


def test_references_command_rewrites_the_version_atomically(omrl_home):
    dataset_id = write_bandit_dataset(n_train=2, n_test=1, n_rows=100)
    folder = catalog.resolve(dataset_id)
    old = manifest.manifest_checksum(folder)
    omrl_data.load(dataset_id)  # builds the loading cache
    data_before = {p: manifest.sha256_file(folder / p) for p in manifest.covered_files(folder) if p != METADATA_FILE}

    res = runner.invoke(app, ["references", dataset_id])
    assert res.exit_code == 0, res.output
    assert "written" in res.output and "stand-still" in res.output
    new = manifest.manifest_checksum(folder)
    assert new != old and manifest.verify(folder) == []
    meta = catalog.read_metadata(folder)
    assert meta["references"]["expert"] == [9.0, 9.0, 9.0]
    assert old in meta["changelog"][-1]["change"]
    assert {p: manifest.sha256_file(folder / p) for p in manifest.covered_files(folder) if p != METADATA_FILE} == data_before
    cache = catalog.resolve_root() / catalog.CACHE_DIR
    assert not (cache / old).exists()  # the old version's cache is gone
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean rebuild, no "cache does not match" warning
        assert omrl_data.load(dataset_id).metadata["references"] == meta["references"]
    assert (cache / new).is_dir()
    assert res.exit_code == 0 and runner.invoke(app, ["verify", dataset_id]).exit_code == 0

    res = runner.invoke(app, ["references", dataset_id])
    assert res.exit_code == 0 and "already has references" in res.output
    assert manifest.manifest_checksum(folder) == new
    res = runner.invoke(app, ["references", dataset_id, "--force"])
    assert res.exit_code == 0 and "written" in res.output and manifest.verify(folder) == []


def test_references_command_refuses_damaged_data_and_bad_ids(omrl_home):
    dataset_id = write_bandit_dataset(n_train=2, n_test=1, n_rows=100)
    folder = catalog.resolve(dataset_id)
    victim = next(p for p in sorted((folder / "data.zarr").rglob("*")) if p.is_file() and "rewards" in str(p) and p.name != "zarr.json")
    victim.write_bytes(victim.read_bytes() + b"x")
    meta_before = (folder / METADATA_FILE).read_bytes()
    with pytest.raises(IntegrityError, match="damaged"):
        R.store_references(dataset_id)
    assert (folder / METADATA_FILE).read_bytes() == meta_before
    res = runner.invoke(app, ["references", dataset_id])
    assert res.exit_code == 3 and "damaged" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["references", "omrl/bandit/nosuch"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1


def test_info_shows_references_and_flags_uninformative_tasks(point_random):
    root, dataset_id = point_random
    res = runner.invoke(app, ["info", dataset_id, "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert "normalised-score references" in res.output and "stand-still" in res.output
    refs = catalog.read_metadata(catalog.resolve(dataset_id, root))["references"]
    if not all(refs["informative"]):
        assert "uninformative" in res.output and "no offline method can be scored" in res.output
    res = runner.invoke(app, ["info", dataset_id, "--root", str(root), "--json"])
    d = json.loads(res.output)
    assert d["references"] == refs and d["references_note"] == "stored in the metadata"


def test_info_on_tasks_that_cannot_be_built_still_works(synthetic_dataset):
    res = runner.invoke(app, ["info", synthetic_dataset])
    assert res.exit_code == 0, res.output
    assert "cannot be computed" in res.output
    with pytest.raises(BadInput, match="cannot compute the references"):
        omrl_data.load(synthetic_dataset).references


def test_card_has_references_and_warns_on_uninformative_tasks(point_random, bandit_random):
    from omrl_data.cards import render_card

    root, dataset_id = point_random
    text = render_card(dataset_id, root=root)
    assert "## Normalised-score references" in text and "| task | split | stand-still | random | expert | scorable |" in text
    refs = catalog.read_metadata(catalog.resolve(dataset_id, root))["references"]
    assert ("**Warning.** Uninformative" in text) == (not all(refs["informative"]))
    root, dataset_id = bandit_random
    text = render_card(dataset_id, root=root)
    assert "best arm" in text and "gamma 0.01 (the family's default; bandit pulls carry no state" in text


def test_minari_export_writes_reference_scores(bandit_random):
    pytest.importorskip("minari")
    import minari

    from omrl_data.minari_io import export_minari

    root, dataset_id = bandit_random
    ids = export_minari(dataset_id, root=root)
    refs = catalog.read_metadata(catalog.resolve(dataset_id, root))["references"]
    for i, mid in enumerate(ids):
        ds = minari.load_dataset(mid)
        returns = np.array([refs["stand_still"][i], refs["expert"][i], 7.0])
        got = minari.get_normalized_score(ds, returns)
        assert got == pytest.approx([0.0, 1.0, R.normalised_score(7.0, refs["stand_still"][i], refs["expert"][i])])


def test_slice_keeps_its_parents_references_reindexed(bandit_random):
    from omrl_data.slicing import SliceSpec, slice_dataset

    root, dataset_id = bandit_random
    parent = catalog.read_metadata(catalog.resolve(dataset_id, root))["references"]
    sid = slice_dataset(dataset_id, "tier", SliceSpec(tasks=(3, 1), quality="random"), root=root)
    refs = catalog.read_metadata(catalog.resolve(sid, root))["references"]
    for k in ("stand_still", "random", "expert", "expert_tier", "informative"):
        assert refs[k] == [parent[k][3], parent[k][1]], k
    assert refs["from_parent"] == dataset_id and refs["basis"] == parent["basis"]
    assert omrl_data.load(sid, root=root).references == refs


def test_minari_import_keeps_references_only_for_the_exported_tasks(bandit_random):
    pytest.importorskip("minari")
    from omrl_data.minari_io import export_minari, import_minari

    root, dataset_id = bandit_random
    ids = export_minari(dataset_id, namespace="refs/all", root=root)
    parent = catalog.read_metadata(catalog.resolve(dataset_id, root))["references"]
    whole = import_minari(["refs/all"], "back", root=root)
    assert catalog.read_metadata(catalog.resolve(whole, root))["references"] == parent
    part = import_minari(ids[1:3], "part", root=root)
    meta = catalog.read_metadata(catalog.resolve(part, root))
    assert "references" not in meta  # two of the four exported tasks: the stored lists do not apply
    refs = omrl_data.load(part, root=root).references
    assert refs["expert"] == parent["expert"][1:3]


def test_older_slice_gets_its_parents_references(bandit_random):
    """A slice written before references existed: computing (in memory or by the command) uses
    the parent's, re-indexed, not the slice's own rows."""
    from omrl_data.slicing import SliceSpec, slice_dataset

    root, dataset_id = bandit_random
    parent = catalog.read_metadata(catalog.resolve(dataset_id, root))["references"]
    sid = slice_dataset(dataset_id, "old", SliceSpec(tasks=(2, 0), quality="medium"), root=root)
    folder = catalog.resolve(sid, root)
    meta = catalog.read_metadata(folder)
    meta.pop("references")  # as an older omrl wrote it
    manifest.write_json_atomic(folder / METADATA_FILE, meta)
    manifest.write_manifest(folder)
    assert omrl_data.load(sid, root=root).references["expert_tier"] == [parent["expert_tier"][2], parent["expert_tier"][0]]
    refs, written = R.store_references(sid, root)
    assert written and refs["from_parent"] == dataset_id and refs["stand_still"] == [parent["stand_still"][2], parent["stand_still"][0]]
    assert manifest.verify(folder) == []


def test_references_command_without_renameat2_uses_two_renames(omrl_home, monkeypatch):
    dataset_id = write_bandit_dataset(n_train=1, n_test=1, n_rows=50)
    folder = catalog.resolve(dataset_id)

    def no_libc(*a, **k):
        raise OSError("no libc here")

    monkeypatch.setattr(R.ctypes, "CDLL", no_libc)
    refs, written = R.store_references(dataset_id)
    assert written and manifest.verify(folder) == []
    assert catalog.read_metadata(folder)["references"] == refs
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # nothing left aside
