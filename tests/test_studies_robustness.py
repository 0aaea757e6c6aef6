"""omrl_studies.studies: the robustness and ablation studies (task-count, meta-batch, withheld,
data-quality, online, ablations): their data selections, resume after a kill, the aggregation
against hand computations, the ablation table, bad input and the Ray backend."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.study import app as study_app
from omrl_data.schema import task_group_name
from omrl_data.slicing import QUALITY_TIERS
from omrl_data.store import catalog, zarr_io
from omrl_data.tasks import get_family
from omrl_data.tasks.table import TaskTable
from omrl_studies import recipes
from omrl_studies.ablations import ABLATIONS, parameter_count
from omrl_studies.checks import resolve_training
from omrl_studies.results import aggregate_points, percentage_drop, point_view
from omrl_studies.runs import RunOutcome
from omrl_studies.studies import (StudyOptions, nested_subsets, plan_study, prepare_data, run_specs, run_study,
                                  withheld_split)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _opts(study: str, out: Path, family: str = "bandit", **kw) -> StudyOptions:
    base = dict(study=study, family=family, algorithms=("mtft",), budget="tiny", seeds=1, workers=1, out=out)
    return StudyOptions(**{**base, **kw})


def _meta(dataset_id: str) -> dict:
    return catalog.read_metadata(catalog.resolve(dataset_id))


def _fails(result, text: str) -> None:
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], out


# ------------------------------------------------------------------------- data selections
def test_task_count_subsets_are_nested_slices_with_lineage_and_the_same_test_tasks(omrl_home, tmp_path):
    plan = plan_study(_opts("task-count", tmp_path / "s", counts=(1, 2, 4)))
    base_id, slice_ids, data = prepare_data(plan, progress=False)
    base = TaskTable.from_dict(_meta(base_id)["tasks"])
    base_test = [int(i) for i in base.indices("test")]
    subsets = plan.info["subsets"]
    assert [len(subsets[k]) for k in ("1", "2", "4")] == [1, 2, 4]
    assert set(subsets["1"]) <= set(subsets["2"]) <= set(subsets["4"])  # nested
    assert set(subsets["4"]) == set(int(i) for i in base.indices("train"))
    for k in ("1", "2", "4"):
        meta = _meta(slice_ids[f"n{k}"])
        lineage = meta["lineage"]
        assert lineage["parent"] == base_id and lineage["op"] == "slice"  # a slice with lineage, not a copy
        table = TaskTable.from_dict(meta["tasks"])
        train = [lineage["parent_tasks"][i] for i in table.indices("train")]
        test = [lineage["parent_tasks"][i] for i in table.indices("test")]
        assert sorted(train) == sorted(subsets[k]) and sorted(test) == base_test  # the same test tasks
        assert [table.params[i] for i in table.indices("test")] == [base.params[i] for i in base_test]
        # Unchanged task files are hard links to the parent's bytes.
        src = zarr_io.data_root(catalog.resolve(base_id)) / task_group_name(4)
        dst = zarr_io.data_root(catalog.resolve(slice_ids[f"n{k}"])) / task_group_name(len(subsets[k]))
        same = [(a.stat().st_ino == (dst / a.relative_to(src)).stat().st_ino) for a in src.rglob("*") if a.is_file()]
        assert same and all(same)
    # A second study over the same base reuses the slices instead of writing new versions.
    again = prepare_data(plan_study(_opts("task-count", tmp_path / "t", counts=(2,))), progress=False)
    assert again[1]["n2"] == slice_ids["n2"] and again[2]["slices"]["n2"]["action"] == "reused"
    # The nested prefixes of one permutation do not depend on which counts are asked for.
    assert nested_subsets(list(range(10)), (3, 7), 0)[3] == nested_subsets(list(range(10)), (3,), 0)[3]
    # The meta-batch is lowered to the number of training tasks where the recipe's is larger.
    assert "algo.meta_batch=1" in plan.settings[("n1", "mtft")] and "algo.meta_batch=4" in plan.settings[("n4", "mtft")]


def test_withheld_split_trains_only_inside_the_range_and_reports_both_sides(omrl_home, tmp_path):
    fam = get_family("cheetah_vel")
    params = [{"target_velocity": float(v)} for v in np.linspace(0.075, 3.0, 10)]
    labels = ["test" if i in (2, 6) else "train" for i in range(10)]
    table = TaskTable(family="cheetah_vel", params=tuple(params), features=np.zeros((10, 1), np.float32),
                      split=tuple(labels), split_kind="explicit", split_args={"test_tasks": [2, 6]})
    split = withheld_split(table, (0.0, 2.0))
    keys = [fam.order_key(p) for p in params]
    assert split["train"] and all(0.0 <= keys[i] < 2.0 for i in split["train"])  # no training task outside
    assert all(not 0.0 <= keys[i] < 2.0 for i in split["out"])
    assert set(split["out"]) == {i for i in range(10) if keys[i] >= 2.0}  # every task outside is a test task
    assert split["in"] == [2] and not set(split["train"]) & {2, 6}  # held-out tasks are never trained on

    # On a real slice: its training tasks lie inside the range, the test tasks are exactly in + out.
    plan = plan_study(_opts("withheld", tmp_path / "w", family="cheetah_vel", train_range=(0.0, 2.0)))
    base_id, slice_ids, _ = prepare_data(plan, progress=False)
    meta = _meta(slice_ids["withheld"])
    sliced = TaskTable.from_dict(meta["tasks"])
    base = TaskTable.from_dict(_meta(base_id)["tasks"])
    assert meta["lineage"]["parent"] == base_id
    train_keys = [fam.order_key(sliced.params[i]) for i in sliced.indices("train")]
    assert train_keys and all(0.0 <= k < 2.0 for k in train_keys)
    expected = withheld_split(base, (0.0, 2.0))
    assert sorted(int(i) for i in sliced.indices("test")) == sorted(expected["in"] + expected["out"])
    assert [p.key for p in plan.points] == (["in", "out"] if expected["in"] else ["out"])


def test_quality_slices_are_the_thirds_of_each_stream(omrl_home, tmp_path):
    plan = plan_study(_opts("data-quality", tmp_path / "q"))
    base_id, slice_ids, _ = prepare_data(plan, progress=False)
    base_dir = catalog.resolve(base_id)
    n_tasks = len(_meta(base_id)["tasks"]["tasks"])
    for task in range(n_tasks):
        parent = zarr_io.read_task_group(base_dir, task, ("collect_step", "episode_index"))
        steps, episodes = np.asarray(parent["collect_step"]), np.asarray(parent["episode_index"])
        # By hand: episodes (maximal runs of one episode index) in collect order, laid end to end;
        # an episode's tier is the third of the stream that holds its midpoint.
        runs, start = [], 0
        for i in range(1, len(episodes) + 1):
            if i == len(episodes) or episodes[i] != episodes[i - 1]:
                runs.append((int(steps[start]), start, i))
                start = i
        runs.sort()
        expected = {"random": [], "medium": [], "expert": []}
        done = 0
        for _, a, b in runs:
            mid = (done + (b - a) / 2.0) / len(steps)
            done += b - a
            tier = "random" if mid < 1 / 3 else "medium" if mid < 2 / 3 else "expert"
            expected[tier] += [int(x) for x in steps[a:b]]
        assert all(expected.values())
        for tier in QUALITY_TIERS:
            cols = zarr_io.read_task_group(catalog.resolve(slice_ids[tier]), task, ("collect_step",))
            assert sorted(int(x) for x in cols["collect_step"]) == sorted(expected[tier]), tier
        assert max(expected["random"]) < min(expected["medium"]) and max(expected["medium"]) < min(expected["expert"])
        assert abs(len(expected["expert"]) - len(steps) / 3) <= 10  # a third, to one 10-step episode
    for tier in QUALITY_TIERS:
        assert _meta(slice_ids[tier])["lineage"]["spec"]["quality"] == tier


# ------------------------------------------------------------------------- aggregation
def _fake_run(folder: Path, tasks: list[dict], step: int = 20, name: str = "eval.json", dataset: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"step": step, "tasks": tasks, "mean": {"after": float(np.mean([t["after"] for t in tasks]))}}
    if dataset:
        doc["dataset"] = dataset
    (folder / name).write_text(json.dumps(doc))


def _task(i: int, v: float, after: float, before: float, online: dict | None = None) -> dict:
    t = {"task": i, "params": {"target_velocity": v}, "after": after, "before": before, "random": -10.0,
         "stand_still": 0.0, "expert": 100.0}
    if online is not None:
        t["online"] = online
    return t


def _outcomes(plan, specs) -> list[RunOutcome]:
    return [RunOutcome(s, "trained", 1.0, 0, s.out / "train.log") for s in specs]


def test_aggregation_mean_spread_and_percentage_drop_match_a_hand_computation(omrl_home, tmp_path):
    plan = plan_study(_opts("data-quality", tmp_path / "q", seeds=3, algorithms=("mtft", "macaw")))
    specs = run_specs(plan, "omrl/bandit/none-v1", {t: f"omrl/bandit/none-{t}-v1" for t in ("expert", "medium", "random")})
    scores = {  # normalised after = after / 100 per task (stand still 0, expert 100)
        ("expert", "mtft"): [[80, 60], [70, 70], [90, 50]], ("medium", "mtft"): [[40, 20], [50, 30], [60, 40]],
        ("random", "mtft"): [[10, 10], [0, 20], [30, -10]], ("expert", "macaw"): [[50, 50], [40, 40], [60, 60]],
        ("medium", "macaw"): [[45, 45], [35, 35], [55, 55]], ("random", "macaw"): [[-5, 5], [5, 15], [10, 20]],
    }
    adapt = {"medium": [[30, 30], [40, 40], [50, 50]], "random": [[20, 0], [10, 10], [0, 20]]}
    for s in specs:
        a, b = scores[(s.tag, s.algorithm)][s.seed]
        _fake_run(s.out, [_task(0, 0.5, a, a - 30), _task(1, 1.5, b, b - 30)])
        for e in s.evaluations:
            tier = e.tag.removeprefix("adapt-")
            a2, b2 = adapt[tier][s.seed] if s.algorithm == "mtft" else (a - 5, b - 5)
            _fake_run(s.out, [_task(0, 0.5, a2, 0), _task(1, 1.5, b2, 0)], name=e.file)
    rows = aggregate_points(plan, _outcomes(plan, specs))["rows"]

    def row(section, tier, algo):
        (r,) = [r for r in rows if r["section"].startswith(section) and r["setting"] == tier and r["algorithm"] == algo]
        return r

    for (tier, algo), per_seed in scores.items():
        means = [np.mean(x) / 100.0 for x in per_seed]  # per seed: mean over test tasks
        r = row("meta", tier, algo)
        assert r["seeds"] == [0, 1, 2]
        assert r["normalised_after_mean"] == pytest.approx(np.mean(means))
        assert r["normalised_after_std"] == pytest.approx(np.std(means))  # spread: population std over seeds
        assert r["return_after_mean"] == pytest.approx(np.mean([np.mean(x) for x in per_seed]))
        assert r["normalised_before_mean"] == pytest.approx(np.mean(means) - 0.3)
        expert = np.mean([np.mean(x) / 100.0 for x in scores[("expert", algo)]])
        assert r["drop_pct"] == pytest.approx(100.0 * (expert - np.mean(means)) / abs(expert))  # 0 for expert itself
    # mtft: expert 0.70, medium 0.40, random 0.10 -> drops 42.857% and 85.714%
    assert row("meta", "medium", "mtft")["drop_pct"] == pytest.approx(300 / 7)
    assert row("meta", "random", "mtft")["drop_pct"] == pytest.approx(600 / 7)
    # Adaptation data only: the expert-trained run's eval-adapt-<tier>.json, against its own eval.json.
    assert row("adapt", "medium", "mtft")["normalised_after_mean"] == pytest.approx(0.40)
    assert row("adapt", "random", "mtft")["normalised_after_mean"] == pytest.approx(0.10)
    assert row("adapt", "random", "mtft")["normalised_after_std"] == pytest.approx(0.0)
    assert row("adapt", "random", "mtft")["drop_pct"] == pytest.approx(600 / 7)
    assert row("adapt", "expert", "mtft")["normalised_after_mean"] == pytest.approx(0.70)
    assert percentage_drop(-2.0, -3.0) == pytest.approx(50.0) and percentage_drop(0.0, 1.0) is None


def test_withheld_and_online_views_split_tasks_and_take_the_online_returns(omrl_home, tmp_path):
    from omrl_studies.studies import Point

    ev = {"step": 5, "tasks": [_task(0, 0.5, 40, 0, {"0": 40, "10": 55}), _task(1, 2.5, 10, 0, {"0": 10, "10": 30}),
                               _task(2, 1.5, 20, 0, {"0": 20, "10": 20})],
          "mean": {"after": 23.3, "normalised": {"after": 0.233}}}
    inside = point_view(ev, Point("in", "in range", "in range", "w", tasks="in"), "cheetah_vel", (0.0, 2.0))
    outside = point_view(ev, Point("out", "out of range", "out of range", "w", tasks="out"), "cheetah_vel", (0.0, 2.0))
    assert [t["task"] for t in inside["tasks"]] == [0, 2] and [t["task"] for t in outside["tasks"]] == [1]
    assert inside["mean"] == {}  # recomputed from the kept tasks, not the file's mean over all
    ten = point_view(ev, Point("o10", "10", 10, "online", evaluation="online", online_step=10), "cheetah_vel")
    assert [t["after"] for t in ten["tasks"]] == [55, 30, 20]
    assert point_view(ev, Point("o99", "99", 99, "online", evaluation="online", online_step=99), "cheetah_vel") is None

    plan = plan_study(_opts("online", tmp_path / "o", seeds=2, online_steps=(0, 10)))
    specs = run_specs(plan, "omrl/bandit/none-v1", {})
    for s in specs:
        k = s.seed
        _fake_run(s.out, [_task(0, 0.5, 40, 0)])
        _fake_run(s.out, [_task(0, 0.5, 40, 0, {"0": 40, "10": 60 + 20 * k})], name="eval-online.json")
    rows = {r["setting"]: r for r in aggregate_points(plan, _outcomes(plan, specs))["rows"]}
    assert rows["0"]["normalised_after_mean"] == pytest.approx(0.40) and rows["0"]["normalised_after_std"] == pytest.approx(0.0)
    assert rows["10"]["normalised_after_mean"] == pytest.approx(0.70) and rows["10"]["normalised_after_std"] == pytest.approx(0.10)


# ------------------------------------------------------------------------- end to end, resume
def test_data_quality_end_to_end_with_adaptation_evaluations(omrl_home, tmp_path):
    out = tmp_path / "dq"
    result = run_study(_opts("data-quality", out, tiers=("expert", "random")), progress=False)
    assert not result.failed
    assert sorted(p.relative_to(out / "runs").as_posix() for p in (out / "runs").glob("*/*/*")) == [
        "expert/mtft/s0", "random/mtft/s0"]  # the adaptation variant reuses the expert-trained run
    expert_run = out / "runs" / "expert" / "mtft" / "s0"
    adapted = json.loads((expert_run / "eval-adapt-random.json").read_text())
    assert adapted["dataset"] == result.summary["rows"][0]["dataset"].replace("expert", "random")
    doc = json.loads((out / "results.json").read_text())
    sections = {(r["section"], r["setting"]) for r in doc["rows"]}
    assert sections == {("meta-training data", "expert"), ("meta-training data", "random"),
                        ("adaptation data only", "expert"), ("adaptation data only", "random")}
    for r in doc["rows"]:
        assert r["return_after_mean"] is not None and len(r["runs"]) == 1
    md = (out / "results.md").read_text()
    assert "omrl-eval " in md and "--set dataset=omrl/bandit/" in md and "omrl-data slice" in md
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "results.csv").read_text().strip().splitlines()) == 5


def test_a_study_killed_mid_way_resumes_without_rerunning_finished_runs(omrl_home, tmp_path):
    out = tmp_path / "mb"
    args = [sys.executable, "-m", "cli.study", "meta-batch", "bandit", "--sizes", "1,2", "--algorithms", "mtft",
            "--budget", "tiny", "--seeds", "1", "--workers", "1", "--out", str(out), "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    driver = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first, second = out / "runs" / "mb1" / "mtft" / "s0", out / "runs" / "mb2" / "mtft" / "s0"
    deadline = time.time() + 180
    try:
        while time.time() < deadline and not (second / "train.log").exists():
            time.sleep(0.1)
        assert (second / "train.log").exists(), "the second run never started"
        os.kill(driver.pid, signal.SIGKILL)  # the study dies mid-way: one run finished, one started
        driver.wait(10)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    time.sleep(0.5)  # the started run gets SIGTERM with its parent
    assert json.loads((first / "eval.json").read_text())["step"] == 20
    assert not (second / "eval.json").exists()
    stamp = (first / "eval.json").stat().st_mtime_ns
    folders_before = sorted(p for p in (out / "runs").glob("*/*/*") if p.is_dir())

    result = run_study(_opts("meta-batch", out, sizes=(1, 2), resume=True), progress=False)
    assert [o.action for o in result.outcomes] == ["skipped", "trained"] or [o.action for o in result.outcomes] == ["skipped", "resumed"]
    assert (first / "eval.json").stat().st_mtime_ns == stamp  # the finished run was not run again
    assert sorted(p for p in (out / "runs").glob("*/*/*") if p.is_dir()) == folders_before  # no new run folders
    assert len(folders_before) == 2
    assert json.loads((second / "eval.json").read_text())["step"] == 20
    assert {r["setting"] for r in result.summary["rows"]} == {"1", "2"}


def test_online_resume_redoes_only_a_missing_evaluation(omrl_home, tmp_path):
    out = tmp_path / "on"
    opts = _opts("online", out, online_steps=(0, 10))
    first = run_study(opts, progress=False)
    assert [o.action for o in first.outcomes] == ["trained"]
    run = out / "runs" / "online" / "mtft" / "s0"
    online = json.loads((run / "eval-online.json").read_text())
    assert set(online["mean"]["online"]) == {"0", "10"}
    rows = {r["setting"]: r for r in first.summary["rows"]}
    assert rows["0"]["return_after_mean"] == pytest.approx(json.loads((run / "eval.json").read_text())["mean"]["after"])
    trained_at = (run / "eval.json").stat().st_mtime_ns
    (run / "eval-online.json").unlink()
    again = run_study(_opts("online", out, online_steps=(0, 10), resume=True), progress=False)
    assert [o.action for o in again.outcomes] == ["evaluated"]
    assert (run / "eval.json").stat().st_mtime_ns == trained_at and (run / "eval-online.json").is_file()
    assert "--resume" not in (run / "train.log").read_text().splitlines()[-1]
    third = run_study(_opts("online", out, online_steps=(0, 10), resume=True), progress=False)
    assert [o.action for o in third.outcomes] == ["skipped"]


# ------------------------------------------------------------------------- ablations
def test_every_declared_ablation_is_a_real_setting_and_equal_params_matches(omrl_home, tmp_path):
    for algo, table in ABLATIONS.items():
        assert table[0].key == "full" and not table[0].overrides
        base = recipes.as_overrides(recipes.training_settings("small", "cheetah_vel", algo))
        for a in table[1:]:
            cfg = resolve_training(algo, [*base, *a.overrides], "cheetah_vel")
            for item in a.overrides:
                key, _, value = item.partition("=")
                expected = {"true": True, "false": False}.get(value, value)
                assert getattr(cfg.algo, key.split(".")[1]) == expected
    plan = plan_study(_opts("ablations", tmp_path / "a", family="cheetah_vel", algorithms=("macaw",)))
    assert [t.key for t in plan.trainings] == ["full", "no-adv-head", "no-wt-equal-width", "no-wt-equal-params"]
    full = plan.settings[("full", "macaw")]
    wide = plan.settings[("no-wt-equal-params", "macaw")]
    target = parameter_count("macaw", full, "cheetah_vel")
    got = parameter_count("macaw", wide, "cheetah_vel")
    width = int([s for s in wide if s.startswith("algo.width=")][-1].split("=")[1])
    assert width > 16 and abs(got - target) <= abs(parameter_count("macaw", [*wide, f"algo.width={width + 1}"], "cheetah_vel") - target)
    assert abs(got - target) / target < 0.05
    assert "algo.width=16" in plan.settings[("no-wt-equal-width", "macaw")]  # the tiny budget's width, unchanged


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("args,text", [
    (["task-count", "bandit", "--counts", "1,9", "--budget", "tiny"], "exceeds the 4 training tasks"),
    (["task-count", "bandit", "--counts", "a", "--budget", "tiny"], "--counts must be comma-separated integers"),
    (["meta-batch", "bandit", "--sizes", "0", "--budget", "tiny"], "--sizes values must be >= 1"),
    (["withheld", "cheetah_vel", "--train-range", "2,1", "--budget", "tiny"], "lo < hi"),
    (["withheld", "cheetah_vel", "--train-range", "5,6", "--budget", "tiny"], "holds no training task"),
    (["data-quality", "bandit", "--tiers", "expert,great", "--budget", "tiny"], "unknown tier 'great'"),
    (["data-quality", "bandit", "--tiers", "medium", "--budget", "tiny"], "must include expert"),
    (["online", "bandit", "--online-steps", "-5", "--budget", "tiny"], "must be >= 0"),
    (["ablations", "mtft", "bandit", "--budget", "tiny"], "mtft declares no ablations"),
    (["meta-batch", "bandit", "--sizes", "1", "--ray-address", "127.0.0.1:1", "--budget", "tiny"], "--ray-address needs --backend ray"),
    (["meta-batch", "bandit", "--sizes", "1", "--backend", "slurm", "--budget", "tiny"], "unknown --backend 'slurm'"),
    (["meta-batch", "ant_dir", "--sizes", "1", "--budget", "tiny"], "pass --dataset"),
    (["meta-batch", "bandit", "--sizes", "1", "--seeds", "0", "--budget", "tiny"], "--seeds"),
])
def test_bad_study_input_is_one_line_and_touches_nothing(args, text, omrl_home, tmp_path):
    _fails(runner.invoke(study_app, [*args, "--out", str(tmp_path / "s")]), text)
    assert not any(p.is_file() for p in Path(omrl_home).rglob("*"))
    assert not (tmp_path / "s").exists()


def test_an_existing_study_needs_resume(omrl_home, tmp_path):
    run = tmp_path / "s" / "runs" / "mb1" / "mtft" / "s0"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    _fails(runner.invoke(study_app, ["meta-batch", "bandit", "--sizes", "1", "--budget", "tiny", "--out", str(tmp_path / "s")]),
           "pass --resume")


# ------------------------------------------------------------------------- Ray
@pytest.mark.slow
def test_ray_backend_runs_each_run_as_a_ray_task_and_resumes(omrl_home, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    result = run_study(_opts("meta-batch", out, sizes=(1, 2), workers=2, backend="ray"), progress=False)
    assert not result.failed and [o.action for o in result.outcomes] == ["trained", "trained"]
    for k in (1, 2):
        run = out / "runs" / f"mb{k}" / "mtft" / "s0"
        assert json.loads((run / "config.json").read_text())["algo"]["meta_batch"] == k
        assert json.loads((run / "eval.json").read_text())["step"] == 20
    again = run_study(_opts("meta-batch", out, sizes=(1, 2), workers=2, backend="ray", resume=True), progress=False)
    assert [o.action for o in again.outcomes] == ["skipped", "skipped"]
    assert "--backend ray" in json.loads((out / "results.json").read_text())["command"]
