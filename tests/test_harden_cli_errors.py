"""Issue 10 items 7-11: every fuzz case the issue lists ends in one line and exit code 2."""
from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from cli.data import app as data_app
from cli.train import app as train_app
from cli.train import eval_app
from omrl_data.errors import EXIT_CODES
from tests.algos_data import write_bandit_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

UNWRITABLE = "/proc/omrl-not-writable"  # refused for every user, root included
TINY = ["--set", "algo.width=8", "--set", "algo.depth=2", "--set", "algo.latent_dim=4", "--set", "algo.support_size=16",
        "--set", "algo.query_size=16", "--set", "train.threads=1", "--eval-episodes", "1", "--steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A catalog root with a bandit dataset, a finished run, a published remote and a file."""
    from omrl_data.publish import publish

    base = tmp_path_factory.mktemp("fuzz")
    root = base / "root"
    ds = write_bandit_dataset(root, n_train=3, n_test=2, n_rows=300)
    run = base / "run"
    r = CliRunner().invoke(train_app, ["macaw", "--dataset", ds, "--root", str(root), "--out", str(run), *TINY])
    assert r.exit_code == 0, r.output
    broken = base / "broken_run"
    shutil.copytree(run, broken)
    (broken / "config.json").write_text('{"algorithm": "macaw", "train": ')
    remote = base / "remote"
    publish(ds, str(remote), root=root, card=False)
    a_file = base / "a_file"
    a_file.write_text("not a folder")
    return {"ROOT": str(root), "DS": ds, "RUN": str(run), "BROKEN": str(broken), "REMOTE": str(remote), "FILE": str(a_file),
            "NEW": str(base / "new_run"), "OTHER": str(base / "other_root")}


CASES = {
    "tasks_huge_count": (data_app, "tasks ant_dir --tasks 2000000000", "at most"),
    "tasks_negative_seed": (data_app, "tasks ant_dir --seed -1", "seed"),
    "train_negative_seed": (train_app, "macaw --dataset DS --root ROOT --out NEW --seed -1", "train.seed"),
    "eval_negative_seed": (eval_app, "RUN --set train.seed=-1", "train.seed"),
    "train_negative_width": (train_app, "macaw --dataset DS --root ROOT --out NEW --set algo.width=-3", "algo.width=-3"),
    "train_nan_lr": (train_app, "macaw --dataset DS --root ROOT --out NEW --set algo.value_lr=nan", "algo.value_lr"),
    "train_out_is_a_file": (train_app, "macaw --dataset DS --root ROOT --out FILE --steps 1", "is a file"),
    "train_out_unwritable": (train_app, f"macaw --dataset DS --root ROOT --out {UNWRITABLE}/run --steps 1", "cannot write"),
    "eval_corrupt_config": (eval_app, "BROKEN", "config.json"),
    "pull_root_is_a_file": (data_app, "pull DS --from REMOTE --root FILE", "is a file"),
    "pull_root_unwritable": (data_app, f"pull DS --from REMOTE --root {UNWRITABLE}", "not writable"),
    "delete_without_a_terminal": (data_app, "delete DS --root ROOT", "--yes"),
    "publish_to_a_file": (data_app, "publish DS --root ROOT --to FILE --no-card", "is a file"),
    "collect_root_unwritable": (data_app, f"collect point_robot_sparse --tasks 2 --mode random --root {UNWRITABLE} --yes", "not writable"),
    "collect_empty_name": (data_app, "collect point_robot_sparse --tasks 2 --mode random --name= --root OTHER --yes", "bad dataset name ''"),
    "list_root_is_a_file": (data_app, "list --root FILE", "is a file"),
    "remote_that_cannot_be_reached": (data_app, "list --remote ftp://no-such-host.invalid/x", "cannot reach remote"),
    "slice_control": (data_app, "slice DS --root ROOT --name part --tasks 0", None),  # a writable root: it works
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fuzz_case_is_one_line_and_exit_2(world, case):
    app, line, words = CASES[case]
    args = [world.get(a, a) for a in line.split()]
    r = CliRunner().invoke(app, args)
    out = r.output
    if words is None:
        assert r.exit_code == 0, out
        return
    assert r.exit_code == 2, out
    assert "Traceback" not in out and (r.exception is None or isinstance(r.exception, SystemExit)), out
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    assert "error:" in lines[-1] and words in out, out  # (CliRunner mixes a prompt on stdout into the line)
    assert not (world["NEW"] and __import__("pathlib").Path(world["NEW"]).exists()), "a failed run left a folder"


def test_delete_ctrl_c_at_the_prompt_is_interrupted_not_a_traceback(world, monkeypatch):
    import typer

    import cli.common

    monkeypatch.setattr(cli.common, "stdin_is_terminal", lambda: True)

    def ctrl_c(*a, **k):
        from typer.exceptions import Abort  # what click raises on Ctrl-C or EOF at a prompt

        raise Abort()

    monkeypatch.setattr(typer, "confirm", ctrl_c)
    r = CliRunner().invoke(data_app, ["delete", world["DS"], "--root", world["ROOT"]])
    assert r.exit_code == 130 and "Traceback" not in r.output and "interrupted" in r.output, r.output


def test_workers_beyond_the_tasks_are_clamped_and_said(tmp_path):
    r = CliRunner().invoke(data_app, ["collect", "point_robot_sparse", "--tasks", "1", "--mode", "random", "--steps-per-task", "200",
                                      "--workers", "100000", "--root", str(tmp_path / "root"), "--yes"])
    assert r.exit_code == 0, r.output
    assert "--workers 100000 is more than the 1 task(s)" in r.output and "using --workers 1" in r.output, r.output


def test_a_full_disk_while_writing_is_one_line_exit_5(world, monkeypatch):
    import errno

    import omrl_data.slicing as slicing

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/x.zarr")

    monkeypatch.setattr(slicing, "slice_dataset", full)
    r = CliRunner().invoke(data_app, ["slice", world["DS"], "--root", world["ROOT"], "--name", "p2", "--tasks", "0"])
    assert r.exit_code == 5 and "Traceback" not in r.output and "No space left on device" in r.output, r.output


def test_a_worker_that_hits_a_full_disk_is_a_storage_error():
    from omrl_data.collection.plan import make_plan
    from omrl_data.collection.runner import _raise_worker_error
    from omrl_data.collection import CollectConfig
    from omrl_data.errors import StorageError

    plan = make_plan(CollectConfig(family="point_robot_sparse", tasks=2, mode="random", steps_per_task=100))
    with pytest.raises(StorageError, match="No space left on device.*--resume"):
        _raise_worker_error(plan, 0, "OSError", "[Errno 28] No space left on device", "tb")


def test_exit_codes_are_documented():
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "exit-codes.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in doc, code


@pytest.fixture
def read_only_root(tmp_path):
    """A catalog root with a dataset and a published copy, bind-mounted read-only (needs mount
    rights, e.g. root in a container; skipped otherwise)."""
    import subprocess

    from omrl_data.publish import publish
    from tests.synthetic import make_synthetic_dataset

    rw, ro = tmp_path / "rw", tmp_path / "ro"
    ro.mkdir()
    ds = make_synthetic_dataset(rw, n_tasks=2, n_rows=20)
    publish(ds, str(tmp_path / "remote"), root=rw, card=False)
    if subprocess.run(["mount", "--bind", "-o", "ro", str(rw), str(ro)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount read-only here")
    try:
        try:
            (ro / "probe").write_text("x")
            pytest.skip("the read-only mount is writable")
        except OSError:
            pass
        yield ds, ro, tmp_path / "remote"
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_a_read_only_root_is_one_line_for_every_writing_command(read_only_root, monkeypatch, tmp_path):
    ds, ro, remote = read_only_root
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(ro / "minari"))
    for args in (["slice", ds, "--name", "p", "--tasks", "0"], ["delete", ds, "--yes"], ["card", ds],
                 ["pull", ds, "--from", str(remote)], ["export", ds]):
        root = ro / "sub" if args[0] == "pull" else ro
        r = CliRunner().invoke(data_app, [*args, "--root", str(root)])
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output and "not writable" in r.output and "Read-only file system" in r.output, (args, r.output)
