"""omrl_studies: the fidelity protocol end to end, its resume, bad inputs, and the main job."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.study import app as study_app
from cli.train import app as train_app
from omrl_studies import recipes
from omrl_studies.datasets import find_dataset, recipe_of, same_recipe
from omrl_studies.fidelity import FidelityOptions, plan_fidelity, run_fidelity, run_specs
from omrl_studies.runs import RunSpec, run_all

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _fails(result, text: str) -> None:
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], out


def _catalog_is_empty(home: Path) -> bool:
    return not any(p for p in Path(home).rglob("*") if p.is_file())


def _tiny_bandit(out: Path, **kw) -> FidelityOptions:
    return FidelityOptions(budget="tiny", seeds=2, algorithms=("macaw", "mtft"), families=("bandit",), workers=2,
                           out=out, **kw)


# ----------------------------------------------------------------------------- recipes
def test_every_budget_resolves_and_checks(omrl_home):
    """Every recipe of every budget is a valid collection and every training setting exists."""
    for budget in ("tiny", "small", "full"):
        plan = plan_fidelity(FidelityOptions(budget=budget, workers=2, out=omrl_home / "s"))
        assert set(plan.families) == set(recipes.FAMILIES)
        assert all(s.count("train.threads=1") == 1 for s in plan.settings.values())
    small = plan_fidelity(FidelityOptions(budget="small", workers=2, out=omrl_home / "s"))
    assert small.collect["cheetah_dir"].tasks == 2 and small.collect["cheetah_dir"].mode == "per-task"
    assert small.collect["cheetah_vel"].split == "interpolation"  # held-out velocities inside the range
    # The shard layout of shared mode is part of the recipe: --workers does not change the data.
    one = recipes.collect_config("small", "cheetah_vel", workers=1)
    eight = recipes.collect_config("small", "cheetah_vel", workers=8)
    assert recipe_of(one) == recipe_of(eight)
    assert recipe_of(recipes.collect_config("small", "cheetah_dir", 1)) == recipe_of(recipes.collect_config("small", "cheetah_dir", 8))
    assert _catalog_is_empty(omrl_home)


def test_same_recipe_ignores_execution_and_runtime_fields():
    cfg = recipes.collect_config("small", "cheetah_vel", workers=2)
    stored = {**recipe_of(cfg), **cfg.to_dict(), "workers": 7, "device": "cuda", "backend": "ray",
              "units": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], "resumed": True, "wall_seconds": 312.5}
    stored.pop("shards")
    assert same_recipe(stored, cfg)
    assert not same_recipe({**stored, "steps_per_task": 1000}, cfg)
    assert not same_recipe({**stored, "units": [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]}, cfg)  # other shards: other data
    assert not same_recipe({**stored, "sac": {**stored["sac"], "net_arch": [64, 64]}}, cfg)


# ------------------------------------------------------------------------ collect resume
@pytest.mark.parametrize("make", [
    lambda: __import__("omrl_studies.demo", fromlist=["x"]).demo_collect_config(),
    lambda: recipes.collect_config("small", "point_robot_sparse", 2),
    lambda: recipes.collect_config("small", "bandit", 2),
    lambda: recipes.collect_config("full", "cheetah_vel", 4),
])
def test_printed_collect_resume_command_continues_the_same_recipe(make, monkeypatch):
    """The command collect prints on Ctrl-C parses back into the same recipe (split args and SAC included)."""
    import omrl_data.collection as collection
    from cli.data import app as data_app
    from omrl_data.collection.plan import resolved, resume_command

    config = make()
    seen = {}

    def fake_collect(cfg, root=None, progress=True, resume=False, confirm=None, console=None, **_):
        seen["config"], seen["resume"] = cfg, resume
        return "omrl/x/y-v1"

    monkeypatch.setattr(collection, "collect", fake_collect)
    argv = shlex.split(resume_command(resolved(config), None))
    assert argv[:2] == ["omrl-data", "collect"]
    result = runner.invoke(data_app, argv[1:])
    assert result.exit_code == 0, result.output
    assert seen["resume"] is True
    assert recipe_of(seen["config"]) == recipe_of(config)


def test_collect_sac_and_split_arg_flags_reject_bad_values(omrl_home):
    from cli.data import app as data_app

    _fails(runner.invoke(data_app, ["collect", "bandit", "--tasks", "3", "--sac", "nosuch=1", "--yes"]), "unknown SAC setting")
    _fails(runner.invoke(data_app, ["collect", "bandit", "--tasks", "3", "--sac", "net_arch=a,b", "--yes"]), "net_arch")
    _fails(runner.invoke(data_app, ["collect", "bandit", "--tasks", "3", "--split-arg", "every", "--yes"]), "key=value")
    _fails(runner.invoke(data_app, ["collect", "bandit", "--tasks", "6", "--split", "random", "--split-arg", "every=3",
                                    "--mode", "random", "--yes"]), "does not take every")
    assert _catalog_is_empty(omrl_home)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("args, text", [
    (["--budget", "huge"], "unknown budget 'huge'"),
    (["--seeds", "0"], "--seeds must be a positive integer"),
    (["--workers", "0"], "--workers must be a positive integer"),
    (["--algorithms", "macaw,nosuch"], "unknown algorithm 'nosuch'"),
    (["--algorithms", ","], "--algorithms needs at least one"),
    (["--families", "ant_dir"], "unknown family 'ant_dir'"),
    (["--device", "tpu"], "tpu"),
])
def test_fidelity_bad_input_is_one_line_and_collects_nothing(args, text, omrl_home, tmp_path):
    _fails(runner.invoke(study_app, ["fidelity", "--budget", "tiny", "--out", str(tmp_path / "s"), *args]), text)
    assert _catalog_is_empty(omrl_home) and not (tmp_path / "s").exists()


def test_fidelity_refuses_a_file_or_an_existing_study_without_resume(omrl_home, tmp_path):
    (tmp_path / "f").write_text("x")
    _fails(runner.invoke(study_app, ["fidelity", "--budget", "tiny", "--out", str(tmp_path / "f")]), "is a file")
    run = tmp_path / "s" / "runs" / "bandit" / "macaw" / "s0"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    _fails(runner.invoke(study_app, ["fidelity", "--budget", "tiny", "--out", str(tmp_path / "s")]), "--resume")
    assert _catalog_is_empty(omrl_home)


def test_usage_errors_of_the_console_script_are_one_red_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "cli.study", "fidelity", "--seeds", "abc"], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=60)
    assert p.returncode == 2, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "--seeds" in lines[0], p.stderr
    helped = subprocess.run([sys.executable, "-m", "cli.study", "fidelity", "--help"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=60)
    assert helped.returncode == 0 and "omrl-study fidelity --out" in helped.stdout


# ------------------------------------------------------------------- fidelity end to end
def test_fidelity_tiny_end_to_end_then_resume(omrl_home, tmp_path):
    out = tmp_path / "study"
    result = run_fidelity(_tiny_bandit(out), console=None, progress=False)
    assert not result.failed
    doc = json.loads((out / "results.json").read_text())
    rows = {(r["family"], r["algorithm"]): r for r in doc["rows"]}
    assert set(rows) == {("bandit", "macaw"), ("bandit", "mtft")}
    for r in rows.values():
        assert r["seeds"] == [0, 1]
        assert r["return_after_mean"] is not None and r["return_before_mean"] is not None and r["random"] is not None
        assert len(r["runs"]) == 2 and all(x["command"].startswith("omrl-train ") for x in r["runs"])
        assert {t["task"] for t in r["tasks"]} == {4, 5}  # the tiny recipe's test tasks
    assert len(doc["commands"]) == 4
    assert doc["datasets"]["bandit"]["action"] == "collected"
    assert doc["datasets"]["bandit"]["command"].startswith("omrl-data collect bandit")
    assert {"collection", "training", "aggregation", "total"} <= set(doc["wall_seconds"])
    assert len((out / "results.csv").read_text().strip().splitlines()) == 3
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "results.md").read_text()
    assert "| bandit | macaw | 2 |" in md and "omrl-train macaw --dataset" in md
    # Each run is a normal run folder that its printed command reproduces (same config).
    run0 = out / "runs" / "bandit" / "macaw" / "s0"
    saved = json.loads((run0 / "config.json").read_text())
    assert saved["train"]["steps"] == 20 and saved["train"]["threads"] == 1 and saved["train"]["seed"] == 0
    assert json.loads((run0 / "eval.json").read_text())["step"] == 20

    # --resume with everything finished: nothing is trained again, the dataset is reused.
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/eval.json")}
    again = run_fidelity(_tiny_bandit(out, resume=True), console=None, progress=False)
    assert [o.action for o in again.outcomes] == ["skipped"] * 4
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/eval.json")} == mtimes
    assert json.loads((out / "results.json").read_text())["datasets"]["bandit"]["action"] == "reused"



def test_fidelity_resume_continues_unfinished_runs_and_skips_finished_ones(omrl_home, tmp_path):
    """A finished run is not redone; a run stopped at meta-step 10 (as after a kill) is continued."""
    from omrl_studies.datasets import ensure_dataset

    out = tmp_path / "study"
    opts = FidelityOptions(budget="tiny", seeds=2, algorithms=("mtft",), families=("bandit",), workers=2, out=out, resume=True)
    plan = plan_fidelity(opts)
    dataset = ensure_dataset(plan.collect["bandit"], progress=False).dataset_id
    done, unfinished = run_specs(plan, {"bandit": dataset})
    half = RunSpec(**{**unfinished.__dict__, "steps": 10,
                      "settings": [s for s in unfinished.settings if not s.startswith("train.steps=")] + ["train.steps=10"]})
    assert [o.action for o in run_all([done, half], workers=2)] == ["trained", "trained"]
    assert done.status() == "done" and unfinished.status() == "partial"
    finished_at = (done.out / "eval.json").stat().st_mtime_ns

    result = run_fidelity(opts, console=None, progress=False)
    assert [o.action for o in result.outcomes] == ["skipped", "resumed"]
    assert (done.out / "eval.json").stat().st_mtime_ns == finished_at
    assert json.loads((unfinished.out / "eval.json").read_text())["step"] == 20
    log = (unfinished.out / "train.log").read_text()
    assert "--resume" in log
    steps = [int(line.split(",", 1)[0]) for line in (unfinished.out / "metrics.csv").read_text().splitlines()[1:]]
    assert max(steps) == 20 and steps.count(20) >= 1
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert rows[0]["seeds"] == [0, 1]


def test_every_budget_accepts_the_context_methods(omrl_home):
    """--algorithms takes all ten; the default list stays the four gradient-based methods."""
    assert plan_fidelity(FidelityOptions(budget="tiny", workers=1, out=omrl_home / "s")).algorithms == recipes.ALGORITHMS
    for budget in ("tiny", "small", "full"):
        plan = plan_fidelity(FidelityOptions(budget=budget, workers=1, out=omrl_home / "s", families=("point_robot_sparse",),
                                             algorithms=recipes.ALGORITHMS + recipes.CONTEXT_ALGORITHMS))
        assert len(plan.algorithms) == 10
    small = recipes.training_settings("small", "point_robot_sparse", "r2pgo")
    assert small["algo.encoder_steps"] < small["train.steps"]  # the policy phase exists on the short family
    assert _catalog_is_empty(omrl_home)


def test_fidelity_tiny_runs_context_methods_end_to_end(omrl_home, tmp_path):
    """A zero-shot method (R2PGO: episodes 1..K in eval.json) and an offline-context one (FOCAL)."""
    out = tmp_path / "study"
    result = run_fidelity(FidelityOptions(budget="tiny", seeds=1, algorithms=("r2pgo", "focal"), families=("point_robot_sparse",),
                                          workers=1, out=out), console=None, progress=False)
    assert not result.failed
    rows = {r["algorithm"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert set(rows) == {"r2pgo", "focal"}
    assert all(r["return_after_mean"] is not None and r["return_before_mean"] is not None for r in rows.values())
    ev = json.loads((out / "runs" / "point_robot_sparse" / "r2pgo" / "s0" / "eval.json").read_text())
    assert ev["mode"] == "zero_shot" and len(ev["mean"]["episodes"]) == 5
    assert json.loads((out / "runs" / "point_robot_sparse" / "focal" / "s0" / "eval.json").read_text())["mode"] == "offline"


# ------------------------------------------------------------------------------ the demo
def _tiny_demo(monkeypatch):
    """The demo with a tiny random bandit recipe and a few meta-steps (same code path)."""
    from omrl_data.collection import CollectConfig
    from omrl_studies import demo

    monkeypatch.setattr(demo, "demo_collect_config", lambda: CollectConfig(
        family="bandit", tasks=6, split="explicit", split_args={"test_tasks": [4, 5]}, mode="random",
        steps_per_task=200, name=demo.DEMO_NAME, gamma=0.01, workers=1))
    monkeypatch.setattr(demo, "DEMO_TRAINING", [
        "train.steps=3", "train.eval_every=0", "train.checkpoint_every=0", "eval.episodes=1", "eval.adapt_batch=32",
        "algo.width=8", "algo.latent_dim=4", "algo.support_size=16", "algo.query_size=16"])
    monkeypatch.setattr(demo, "EMBEDDED_REMOTE", demo.EMBEDDED_REMOTE.parent / "no-embedded-dataset-here")  # the collect path
    return demo


def test_demo_pulls_the_embedded_dataset_verified_then_reuses_it(omrl_home):
    from omrl_data.dataset import load
    from omrl_studies import demo

    first = demo.embedded_dataset()
    assert first is not None and (first.dataset_id, first.action) == (demo.EMBEDDED_ID, "pulled")
    assert demo.embedded_dataset().action == "reused"
    ds = load(demo.EMBEDDED_ID)
    assert ds.family == "cheetah_vel" if hasattr(ds, "family") else True
    refs = ds.metadata["references"]  # stored, so every user scores against the same references
    tests = [int(t) for t in ds.tasks.indices("test")]
    assert tests and all(refs["informative"][t] for t in tests)
    # The recipe it was sliced from is the demo's collection recipe.
    assert ds.metadata["collection"]["split_args"] == demo.demo_collect_config().split_args


def test_demo_rejects_bad_settings_before_collecting(monkeypatch, omrl_home, tmp_path):
    import omrl_data.collection as collection

    def no_collect(*a, **k):
        raise AssertionError("the demo collected before checking its settings")

    monkeypatch.setattr(collection, "collect", no_collect)
    out = str(tmp_path / "run")
    _fails(runner.invoke(train_app, ["demo", "--steps", "0", "--out", out]), "train.steps=0")
    _fails(runner.invoke(train_app, ["demo", "--set", "nosuch=1", "--out", out]), "unknown setting 'nosuch'")
    _fails(runner.invoke(train_app, ["demo", "--set", "eval.episodes=0", "--out", out]), "eval.episodes=0")
    _fails(runner.invoke(train_app, ["demo", "--device", "nosuchdevice", "--out", out]), "device")
    assert _catalog_is_empty(omrl_home) and not Path(out).exists()


def test_demo_reuses_its_dataset(monkeypatch, omrl_home, tmp_path):
    from omrl_data.store import catalog

    demo = _tiny_demo(monkeypatch)
    first = demo.run_demo(out=str(tmp_path / "r1"), progress=False)
    assert first.dataset_action == "collected"
    meta = catalog.read_metadata(catalog.resolve(first.dataset_id))
    assert {"units", "wall_seconds", "resumed"} <= set(meta["collection"])  # what used to defeat the lookup
    second = demo.run_demo(out=str(tmp_path / "r2"), progress=False)
    assert second.dataset_action == "reused" and second.dataset_id == first.dataset_id
    assert catalog.versions("bandit", demo.DEMO_NAME) == [1]
    assert find_dataset(demo.demo_collect_config()) == first.dataset_id
    assert json.loads((tmp_path / "r2" / "eval.json").read_text())["dataset"] == first.dataset_id
    # A run folder that holds a run is refused before anything else.
    with pytest.raises(Exception, match="already holds a run"):
        demo.run_demo(out=str(tmp_path / "r2"), progress=False)
    # The CLI prints the table (with the normalised column when the evaluation reports it).
    res = runner.invoke(train_app, ["demo", "--out", str(tmp_path / "r3")])
    assert res.exit_code == 0, res.output
    assert "reusing dataset" in res.output and "mean" in res.output


def test_ctrl_c_prints_a_command_that_continues(monkeypatch, omrl_home, tmp_path):
    """Ctrl-C during the data phase: the demo and the study print their own rerun commands (exit 130)."""
    import omrl_studies.datasets as datasets
    from omrl_data.collection import CollectionInterrupted

    def interrupted(config, root=None, console=None, progress=True):
        raise CollectionInterrupted(f"omrl/{config.family}/{config.dataset_name()}-v1", "omrl-data collect ... --resume")

    from omrl_studies import demo

    monkeypatch.setattr(datasets, "ensure_dataset", interrupted)
    monkeypatch.setattr(demo, "EMBEDDED_REMOTE", tmp_path / "no-embedded-dataset")  # the collect path
    res = runner.invoke(train_app, ["demo", "--out", str(tmp_path / "run"), "--steps", "50"])
    assert res.exit_code == 130, res.output
    assert f"omrl-train demo --out {tmp_path / 'run'} --steps 50" in res.output
    res = runner.invoke(study_app, ["fidelity", "--budget", "tiny", "--families", "bandit", "--out", str(tmp_path / "s"), "--workers", "2"])
    assert res.exit_code == 130, res.output
    command = next(line.strip() for line in res.output.splitlines() if line.strip().startswith("omrl-study fidelity"))
    assert command.endswith("--resume") and f"--out {tmp_path / 's'}" in command and "--families bandit" in command


# ------------------------------------------------------------------------------- slow
@pytest.mark.slow
def test_fidelity_reduced_protocol_on_cheetah_dir(monkeypatch, omrl_home, tmp_path):
    """A reduced fidelity protocol on cheetah_dir: per-task SAC data, two algorithms, held-out = train tasks."""
    reduced = {
        "collect": {"cheetah_dir": dict(tasks=2, split="random", mode="per-task", steps_per_task=3_000,
                                        sac={"net_arch": [64, 64], "learning_starts": 1_000})},
        "train": {"cheetah_dir": {"train.steps": 100, "train.eval_every": 50, "eval.episodes": 1}},
        "algo": {"macaw": dict(recipes.BUDGETS["small"]["algo"]["macaw"]), "mtft": dict(recipes.BUDGETS["small"]["algo"]["mtft"])},
        "algo_family": {},
    }
    monkeypatch.setitem(recipes.BUDGETS, "reduced", reduced)
    result = run_fidelity(FidelityOptions(budget="reduced", seeds=1, algorithms=("macaw", "mtft"), workers=2, out=tmp_path / "s"),
                          console=None, progress=False)
    assert not result.failed
    doc = json.loads((tmp_path / "s" / "results.json").read_text())
    assert doc["families"] == ["cheetah_dir"] and doc["datasets"]["cheetah_dir"]["action"] == "collected"
    for r in doc["rows"]:
        assert {t["task"] for t in r["tasks"]} == {0, 1}  # both directions, train = test
        assert all(t["after"] is not None and t["random"] is not None for t in r["tasks"])
        assert r["last10pct"] is not None  # the behaviour tier of the SAC data


def test_omrl_data_never_imports_omrl_algos_or_studies():
    code = ("import sys, omrl_data, omrl_data.collection, omrl_data.collection.plan, omrl_data.dataset, omrl_data.store.catalog; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('omrl_algos', 'omrl_studies')]; assert not bad, bad")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.returncode == 0, p.stderr


# --------------------------------------------------------------------------- results
def test_run_row_normalises_with_references_or_takes_the_evaluations_numbers():
    from omrl_studies.results import aggregate, run_row

    ev = {"step": 5, "tasks": [{"task": 1, "params": {}, "before": 0.0, "after": 8.0, "random": 2.0},
                               {"task": 3, "params": {}, "before": 4.0, "after": 6.0, "random": 2.0}],
          "mean": {"before": 2.0, "after": 7.0, "random": 2.0}}
    refs = {"stand_still": [9, 0.0, 9, 2.0], "expert": [9, 10.0, 9, 6.0], "last10pct": [None, 9.5, None, 5.5]}
    row = run_row(ev, refs)
    assert row["tasks"][0]["normalised"]["after"] == pytest.approx(0.8)
    assert row["tasks"][1]["normalised"]["after"] == pytest.approx(1.0)
    assert row["normalised"]["after"] == pytest.approx(0.9) and row["normalised"]["before"] == pytest.approx(0.25)
    assert row["normalised"]["random"] == pytest.approx(0.1) and row["last10pct"] == pytest.approx(7.5)
    # Without references: the evaluation's per-task fields; else blank (never a made-up number).
    ev_refs = {**ev, "tasks": [{**t, "stand_still": 0.0, "expert": 4.0} for t in ev["tasks"]]}
    assert run_row(ev_refs, {})["normalised"]["after"] == pytest.approx((2.0 + 1.5) / 2)
    assert run_row(ev, {})["normalised"]["after"] is None
    # The evaluation's own normalised numbers win.
    ev_norm = {**ev, "mean": {**ev["mean"], "normalised": {"after": 0.42, "before": 0.1, "random": 0.0}}}
    assert run_row(ev_norm, refs)["normalised"]["after"] == 0.42


def test_print_eval_shows_the_normalised_column():
    from rich.console import Console

    import cli.train as train_cli

    rows = [{"task": 1, "params": {"v": 0.4}, "before": -50.0, "after": -20.0, "random": -60.0,
             "normalised": {"before": 0.1, "after": 0.77, "random": -0.2}}]
    result = {"tasks": rows, "mean": {"before": -50.0, "after": -20.0, "random": -60.0,
                                      "normalised": {"before": 0.1, "after": 0.77, "random": -0.2}}}
    console = Console(record=True, width=200)
    old = train_cli.console
    train_cli.console = console
    try:
        train_cli.print_eval(result, "t")
        without = {"tasks": [{k: v for k, v in rows[0].items() if k != "normalised"}], "mean": {"before": 1.0, "after": 2.0}}
        train_cli.print_eval(without, "u")
    finally:
        train_cli.console = old
    text = console.export_text()
    assert "normalised after (before)" in text and "0.77 (0.10)" in text
    assert text.count("normalised after (before)") == 1  # no column when the evaluation has none


@pytest.mark.slow
def test_kill_9_of_the_study_stops_its_runs_and_resume_redoes_only_the_unfinished(omrl_home, tmp_path):
    import signal
    import time

    out = tmp_path / "study"
    args = [sys.executable, "-m", "cli.study", "fidelity", "--budget", "tiny", "--families", "bandit", "--algorithms", "mtft",
            "--seeds", "2", "--workers", "1", "--out", str(out), "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    driver = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    second = out / "runs" / "bandit" / "mtft" / "s1"
    deadline = time.time() + 120
    children: list[int] = []
    try:
        while time.time() < deadline and not children:
            time.sleep(0.2)
            if (second / "train.log").exists():
                children = [int(x) for x in Path(f"/proc/{driver.pid}/task/{driver.pid}/children").read_text().split()]
        assert children, "the second run never started"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(10)
        t0 = time.time()
        while time.time() - t0 < 10 and any(Path(f"/proc/{c}").exists() and "zombie" not in Path(f"/proc/{c}/status").read_text()
                                           for c in children):
            time.sleep(0.1)
        assert not any(Path(f"/proc/{c}").exists() and "zombie" not in Path(f"/proc/{c}/status").read_text() for c in children)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    first_eval = out / "runs" / "bandit" / "mtft" / "s0" / "eval.json"
    stamp = first_eval.stat().st_mtime_ns
    result = run_fidelity(FidelityOptions(budget="tiny", seeds=2, algorithms=("mtft",), families=("bandit",), workers=1,
                                          out=out, resume=True), console=None, progress=False)
    assert result.outcomes[0].action == "skipped" and result.outcomes[1].action in ("trained", "resumed")
    assert first_eval.stat().st_mtime_ns == stamp
    assert json.loads((second / "eval.json").read_text())["step"] == 20


def test_resume_refuses_a_run_made_with_other_settings(omrl_home, tmp_path):
    out = tmp_path / "s"
    run = out / "runs" / "bandit" / "mtft" / "s0"
    run.mkdir(parents=True)
    base = {"algorithm": "mtft", "dataset": "omrl/bandit/fidelity-tiny-v1", "train": {"steps": 20, "eval_every": 10},
            "algo": {"width": 16, "latent_dim": 4, "batch_size": 32, "adapt_steps": 2}, "eval": {"episodes": 1}}
    opts = ["fidelity", "--budget", "tiny", "--families", "bandit", "--algorithms", "mtft", "--seeds", "1", "--out", str(out), "--resume"]
    for change, text in (({"algo": {**base["algo"], "width": 64}}, "algo.width=64"),
                         ({"train": {**base["train"], "steps": 50}}, "trained for 50 meta-steps")):
        (run / "config.json").write_text(json.dumps({**base, **change}))
        _fails(runner.invoke(study_app, opts), text)
    assert _catalog_is_empty(omrl_home)
    # More meta-steps or other evaluation settings are a continuation, not a conflict.
    (run / "config.json").write_text(json.dumps({**base, "train": {"steps": 10, "eval_every": 5}, "eval": {"episodes": 3}}))
    plan_fidelity(FidelityOptions(budget="tiny", seeds=1, algorithms=("mtft",), families=("bandit",), out=out, resume=True))


def test_resume_check_reads_the_last_value_of_a_repeated_setting(tmp_path):
    """An equal-params ablation appends ``algo.width=N`` after the budget's width: resuming it must
    compare the saved run with N (what omrl-train used), not with the budget's width."""
    from omrl_data.errors import BadInput

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"algorithm": "macaw", "dataset": "omrl/x/y-v1", "algo": {"width": 294}}))
    spec = RunSpec(family="cheetah_dir", algorithm="macaw", seed=0, dataset_id="omrl/x/y-v1", out=out,
                   settings=["algo.width=64", "algo.weight_transform=false", "algo.width=294"], steps=10)
    spec.check_folder()  # the run's width is the last one set: accepted
    wrong = RunSpec(**{**spec.__dict__, "settings": ["algo.width=294", "algo.width=64"]})
    with pytest.raises(BadInput, match="algo.width=294, the recipe now says algo.width=64"):
        wrong.check_folder()
