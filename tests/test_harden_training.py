"""Issue 10 items 14 (training side and commit temporaries), 22, 23, 24."""
from __future__ import annotations

import errno
import json

import pytest
import torch
from typer.testing import CliRunner

from cli.train import app, eval_app
from omrl_algos import train as train_mod
from omrl_algos.logger import read_metrics
from omrl_algos.train import Diverged, evaluate_run, resolve_config, train
from tests.algos_data import write_bandit_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["algo.width=8", "algo.depth=2", "algo.latent_dim=4", "algo.support_size=16", "algo.query_size=16",
        "train.threads=1", "eval.episodes=1"]


def _cfg(ds, out, *extra):
    return resolve_config("macaw", [f"dataset={ds}", f"out={out}", *TINY, *extra])


@pytest.fixture
def ds():
    return write_bandit_dataset(n_train=3, n_test=2, n_rows=300)


# ----------------------------------------------------------------------------------- item 14
def test_resuming_a_finished_run_appends_nothing(ds, tmp_path):
    run = train(_cfg(ds, tmp_path / "run", "train.steps=3", "train.eval_every=1"), progress=False).run_dir
    rows = read_metrics(run)
    history = json.loads((run / "eval.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 3]
    for _ in range(2):
        again = train(resolve_config("macaw", ["train.steps=3"], resume_dir=run), resume=True, progress=False)
        assert again.step == 3 and again.eval["mean"] == json.loads((run / "eval.json").read_text())["mean"]
    assert read_metrics(run) == rows
    assert json.loads((run / "eval.json").read_text())["history"] == history


def test_leftover_temporaries_of_a_killed_write_are_removed(ds, tmp_path):
    run = train(_cfg(ds, tmp_path / "run", "train.steps=2"), progress=False).run_dir
    dead = run / "checkpoints" / "latest.tmp999999999"  # no such pid
    dead.write_bytes(b"half a checkpoint")
    (run / "eval.tmp").write_text("{")
    train(resolve_config("macaw", ["train.steps=3"], resume_dir=run), resume=True, progress=False)
    assert not dead.exists() and not (run / "eval.tmp").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.pt"]


def test_a_commit_that_fails_on_a_full_disk_leaves_no_temporary_in_the_version(tmp_path, monkeypatch):
    from omrl_data.store import manifest
    from omrl_data.store.writer import StagedDataset, StorageError
    from tests.algos_data import _metadata, bandit_arrays, bandit_tasks

    tasks = bandit_tasks(2, 1)
    staged = StagedDataset.create(tmp_path, "bandit", "pulls")
    for i, p in enumerate(tasks.params):
        staged.write_task(i, bandit_arrays(p["arm_probs"], 20, 0, i))
    real = manifest.os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manifest.os, "fsync", full)
    with pytest.raises(StorageError, match="No space left"):
        staged.commit(_metadata(tasks))
    assert not list(staged.path.glob(".*.tmp"))  # the failed write removed its temporary
    (staged.path / ".metadata.json.0badcafe.tmp").write_bytes(b"")  # as an older omrl (or a kill) leaves it
    monkeypatch.setattr(manifest.os, "fsync", real)
    final = staged.commit(_metadata(tasks))
    assert not list(final.glob(".*.tmp")) and manifest.verify(final) == []


# ----------------------------------------------------------------------------------- item 23
def _nan_from(step_no, monkeypatch):
    from omrl_algos.registry import get_algorithm

    cls = get_algorithm("macaw")
    real, calls = cls.train_step, []

    def step(self, sampler):
        m = real(self, sampler)
        calls.append(1)
        if len(calls) >= step_no:
            m["train/value_loss"] = float("nan")
        return m

    monkeypatch.setattr(cls, "train_step", step)


def test_a_nan_loss_stops_training_naming_metric_and_step(ds, tmp_path, monkeypatch):
    _nan_from(3, monkeypatch)
    with pytest.raises(Diverged, match=r"train/value_loss is nan at meta-step 3: .*last checkpoint is at meta-step 2.*stop_on_nan=false"):
        train(_cfg(ds, tmp_path / "run", "train.steps=6", "train.eval_every=2"), progress=False)
    r = CliRunner().invoke(app, ["macaw", "--dataset", ds, "--out", str(tmp_path / "cli"), "--steps", "6", "--quiet",
                                 *sum([["--set", s] for s in TINY], [])])
    assert r.exit_code == 2 and "Traceback" not in r.output and "train/value_loss is nan at meta-step" in r.output, r.output


def test_stop_on_nan_false_keeps_going(ds, tmp_path, monkeypatch):
    _nan_from(2, monkeypatch)
    result = train(_cfg(ds, tmp_path / "run", "train.steps=4", "train.stop_on_nan=false"), progress=False)
    assert result.step == 4


def test_a_real_divergence_is_caught(ds, tmp_path):
    """An absurd learning rate really produces non-finite numbers, and the loop stops on them."""
    with pytest.raises(Diverged, match="at meta-step"):
        train(_cfg(ds, tmp_path / "run", "train.steps=200", "train.eval_every=0", "algo.value_lr=1e30",
                   "algo.policy_lr=1e30", "algo.lr_lr=1e30", "algo.inner_lr_init=1e10"), progress=False)


@pytest.mark.parametrize("setting", ["algo.inner_lr_init=-1", "algo.policy_inner_lr_init=-0.1", "algo.adv_coef_init=0"])
def test_a_non_positive_initial_learned_rate_is_one_line(ds, tmp_path, setting):
    """The learned rates are stored as log(init): a non-positive init is refused in one line, before
    any run folder is written."""
    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["macaw", "--dataset", ds, "--out", str(out), "--steps", "2", "--quiet",
                                 *sum([["--set", s] for s in (*TINY, setting)], [])])
    assert r.exit_code == 2 and "Traceback" not in r.output and "initial learned rates must be > 0" in r.output, r.output
    assert not out.exists()


# ----------------------------------------------------------------------------------- item 24
def test_the_run_records_its_root_and_the_meta_batch_it_used(ds, tmp_path, omrl_home, monkeypatch):
    run = train(_cfg(ds, tmp_path / "run", "train.steps=2", "algo.meta_batch=5"), progress=False).run_dir
    saved = json.loads((run / "config.json").read_text())
    assert saved["root"] == str(omrl_home)
    assert saved["algo"]["meta_batch"] == 3  # 3 training tasks
    assert "meta_batch: 3" in (run / "config.yaml").read_text()
    monkeypatch.setenv("OMRL_HOME", str(tmp_path / "elsewhere"))  # another OMRL_HOME: omrl-eval still finds it
    r = CliRunner().invoke(eval_app, [str(run)])
    assert r.exit_code == 0, r.output


# ----------------------------------------------------------------------------------- item 22
def test_auto_threads_follow_the_free_cores(monkeypatch):
    monkeypatch.setattr(train_mod.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(train_mod.os, "getloadavg", lambda: (14.6, 0, 0))
    assert train_mod.auto_threads() == 1
    monkeypatch.setattr(train_mod.os, "getloadavg", lambda: (0.1, 0, 0))
    assert train_mod.auto_threads() == train_mod.MAX_AUTO_THREADS
    monkeypatch.setattr(train_mod.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(train_mod.os, "getloadavg", lambda: (7.0, 0, 0))
    assert train_mod.auto_threads() == 1


def test_train_and_eval_apply_the_thread_setting(ds, tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "auto_threads", lambda: 2)
    torch.set_num_threads(3)
    run = train(resolve_config("macaw", [f"dataset={ds}", f"out={tmp_path / 'run'}", *TINY[:-2], "eval.episodes=1",
                                         "train.threads=0", "train.steps=1"]), progress=False).run_dir
    assert torch.get_num_threads() == 2
    torch.set_num_threads(3)
    evaluate_run(run, overrides=["train.threads=1"])
    assert torch.get_num_threads() == 1
