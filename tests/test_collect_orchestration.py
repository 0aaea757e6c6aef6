"""Collection orchestration: bad input, the lock, Ctrl-C, kill -9 and --resume, and Ray.

Real collections of point_robot_sparse in random mode (the cheapest real env), run the way a user
runs them: the CLI in a subprocess, killed with real signals.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.data import app
from omrl_data.collection import CollectConfig, collect
from omrl_data.errors import BadInput, LockedError
from omrl_data.schema import FIELD_NAMES
from omrl_data.store import catalog, manifest, writer, zarr_io
from omrl_data.store.lock import holder

FAMILY = "point_robot_sparse"
SCRIPT = Path(sys.executable).with_name("omrl-data")


def _cli(*args: str) -> list[str]:
    if SCRIPT.exists():
        return [str(SCRIPT), *args]
    return [sys.executable, "-c", "from cli.data import main; main()", *args]


def _staging(root: Path, name: str, family: str = FAMILY) -> Path:
    return root / catalog.STAGING_DIR / "omrl" / family / name


def _group_hashes(dataset_dir: Path, task: int) -> dict[str, str]:
    """sha256 of every file of one task group (relative path -> digest)."""
    group = zarr_io.data_root(dataset_dir) / "tasks" / f"{task:04d}"
    return {
        str(p.relative_to(group)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(group.rglob("*"))
        if p.is_file()
    }


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, says",
    [
        (["no_such_family", "--tasks", "2"], "unknown task family"),
        ([FAMILY, "--tasks", "0"], "--tasks"),
        (["cheetah_dir", "--tasks", "3"], "at most 2"),
        ([FAMILY, "--tasks", "2", "--steps-per-task", "0"], "--steps-per-task"),
        ([FAMILY, "--tasks", "2", "--workers", "0"], "--workers"),
        ([FAMILY, "--tasks", "2", "--mode", "fast"], "unknown mode"),
        ([FAMILY, "--tasks", "2", "--steps-per-task", str(10**13)], "not enough free disk"),
        ([FAMILY, "--tasks", "2", "--resume"], "nothing to resume"),
        ([FAMILY, "--tasks", "2", "--backend", "ray", "--ray-address", "127.0.0.1:1"], "no Ray cluster answers"),
        ([FAMILY, "--tasks", "2", "--mode", "random", "--checkpoint-every", "10", "--checkpoint-rollouts", "1"], "random mode"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(omrl_home, args, says):
    result = CliRunner().invoke(app, ["collect", *args, "--yes"])
    text = result.output.strip()
    assert result.exit_code == 2, text
    assert says in text
    assert len(text.splitlines()) == 1 and "Traceback" not in text
    assert list(omrl_home.iterdir()) == []


def test_unwritable_root_is_refused(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["collect", FAMILY, "--tasks", "2", "--root", str(blocker / "root"), "--yes"])
    assert result.exit_code == 2 and "cannot write to the catalog root" in result.output
    assert blocker.read_text() == "not a folder"


# ------------------------------------------------------------------------------------------------
def test_lock_refusal_ctrl_c_and_resume(omrl_home):
    """A running collector holds the lock; a second one is refused naming it; Ctrl-C releases the
    lock, keeps the staging and prints the resume command; a changed resume is refused; the
    printed command finishes the dataset."""
    # A MuJoCo family, long enough that the collector is still running when Ctrl-C arrives on an
    # idle machine (point_robot_sparse finished 2 x 200,000 random steps before the test's checks).
    family, steps = "cheetah_vel", 60000
    args = [family, "--tasks", "2", "--mode", "random", "--steps-per-task", str(steps), "--workers", "1", "--yes"]
    # SIGINT back to its default in the child: an earlier test in the same pytest process may leave
    # it ignored, which a child inherits (Python then installs no KeyboardInterrupt handler).
    first = subprocess.Popen(_cli("collect", *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    staging = _staging(omrl_home, "random-v1", family)
    try:
        _wait_for(lambda: holder(staging / "lock.json") is not None, 60, "the first collector to take the lock")
        _wait_for(lambda: len(_children(first.pid)) >= 1, 60, "the first collector's workers")
        with pytest.raises(LockedError, match=f"pid {first.pid}"):
            collect(CollectConfig(family=family, tasks=2, mode="random", steps_per_task=steps), progress=False)
        second = CliRunner().invoke(app, ["collect", *args])
        assert second.exit_code == 4 and f"pid {first.pid}" in second.output
        first.send_signal(signal.SIGINT)
        out, _ = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, out
    assert "--resume" in out
    assert holder(staging / "lock.json") is None and (staging / "plan.json").exists()
    assert catalog.list_datasets() == []

    changed = CliRunner().invoke(app, ["collect", *args[:-1], "--seed", "1", "--resume"])
    assert changed.exit_code == 2 and "cannot resume" in changed.output

    command = next(line.strip() for line in out.splitlines() if line.strip().startswith("omrl-data collect"))
    assert f"--steps-per-task {steps}" in command and command.endswith("--resume")
    resumed = CliRunner().invoke(app, command.split()[1:] + ["--yes"])
    assert resumed.exit_code == 0, resumed.output
    folder = catalog.resolve(f"omrl/{family}/random-v1")
    assert manifest.verify(folder) == []
    assert zarr_io.task_row_counts(folder, 2) == [steps] * 2
    assert not staging.exists()


# ------------------------------------------------------------------------------------------------
def test_kill_9_at_random_moments_then_resume(omrl_home, tmp_path):
    """kill -9 of the driver at random moments (fixed seed): workers die with it, the staging
    stays resumable, and the resumed dataset verifies, equals an uninterrupted collection row for
    row, and keeps the groups finished before each kill byte for byte."""
    # Two workers can finish two tasks in the same instant, so with kills after at most 1, 2 and
    # 3 finished tasks, 6 tasks always leave some unfinished for the last resume.
    n_tasks, steps = 6, 6000
    args = [FAMILY, "--tasks", str(n_tasks), "--mode", "random", "--steps-per-task", str(steps), "--workers", "2", "--yes"]
    staging = _staging(omrl_home, "random-v1") / "dataset"
    rng = np.random.default_rng(7)
    kept: dict[int, dict[str, str]] = {}

    def n_done() -> int:
        return sum((p / "zarr.json").exists() for p in (staging / "data.zarr" / "tasks").glob("[0-9]*"))

    # Each kill comes at a random moment after the workers started, or as soon as `at_most` tasks
    # are complete, whichever is first: the collection is always interrupted, however fast it runs.
    for attempt, at_most in enumerate((1, 2, 3)):
        proc = subprocess.Popen(
            _cli("collect", *args, *(["--resume"] if attempt else [])), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _wait_for(lambda: len(_children(proc.pid)) >= 1 or proc.poll() is not None, 60, "workers to start")
            assert proc.poll() is None, proc.stderr.read().decode()
            deadline = time.monotonic() + float(rng.uniform(0.2, 3.0))
            while time.monotonic() < deadline and n_done() < at_most:
                time.sleep(0.01)
            workers = _children(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        _wait_for(lambda: not any(_alive(w) for w in workers), 10, "orphaned workers to die")
        done = {int(p.name) for p in (staging / "data.zarr" / "tasks").glob("[0-9]*") if (p / "zarr.json").exists()}
        assert set(kept) <= done
        for t in done:
            if t in kept:
                assert _group_hashes(staging, t) == kept[t], f"task {t} changed after kill {attempt}"
            else:
                kept[t] = _group_hashes(staging, t)
    assert len(kept) < n_tasks, "the kills came too late to test anything"

    final = subprocess.run(_cli("collect", *args, "--resume"), capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    folder = catalog.resolve(f"omrl/{FAMILY}/random-v1")
    assert manifest.verify(folder) == []
    assert zarr_io.task_row_counts(folder, n_tasks) == [steps] * n_tasks
    for t, hashes in kept.items():
        assert _group_hashes(folder, t) == hashes

    # An uninterrupted collection of the same settings has the very same rows.
    reference = collect(
        CollectConfig(family=FAMILY, tasks=n_tasks, mode="random", steps_per_task=steps, name="reference"),
        progress=False,
    )
    ref_folder = catalog.resolve(reference)
    for t in range(n_tasks):
        got, want = zarr_io.read_task_group(folder, t), zarr_io.read_task_group(ref_folder, t)
        for name in FIELD_NAMES:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"task {t} {name}")
        episodes = got["episode_index"]
        assert episodes[0] == 0 and set(np.diff(episodes)) <= {0, 1}  # no missing or repeated episode


# ------------------------------------------------------------------------------------------------
def test_ray_backend_local_runtime(omrl_home):
    pytest.importorskip("ray")
    import ray

    dataset_id = collect(
        CollectConfig(family=FAMILY, tasks=2, mode="random", steps_per_task=300, workers=2, backend="ray"),
        progress=False,
    )
    assert not ray.is_initialized()  # the runtime it started is shut down
    folder = catalog.resolve(dataset_id)
    assert manifest.verify(folder) == []
    assert zarr_io.task_row_counts(folder, 2) == [300, 300]
    meta = catalog.read_metadata(folder)
    assert meta["collection"]["backend"] == "ray" and meta["gamma"] == 0.99 and len(meta["task_stats"]) == 2
    with pytest.raises(BadInput, match="--ray-address needs --backend ray"):
        collect(CollectConfig(family=FAMILY, tasks=2, mode="random", ray_address="auto"), progress=False)


# ------------------------------------------------------------------------------------------------
def test_shared_mode_shards_over_two_workers_and_metadata(omrl_home):
    """Tiny shared SAC with checkpoint rollouts: 3 tasks in 2 shards on 2 worker processes."""
    from omrl_data.collection import SacConfig

    config = CollectConfig(
        family=FAMILY, tasks=3, mode="shared", steps_per_task=120, workers=2, checkpoint_every=60,
        checkpoint_rollouts=1, sac=SacConfig(net_arch=(16, 16), batch_size=16, learning_starts=40),
    )
    dataset_id = collect(config, progress=False)
    assert dataset_id == f"omrl/{FAMILY}/replay-v1"
    folder = catalog.resolve(dataset_id)
    assert manifest.verify(folder) == []
    meta = catalog.read_metadata(folder)
    horizon = meta["horizon"]
    # learner stream + 2 checkpoints x 1 rollout of a full episode (point robot never terminates)
    assert zarr_io.task_row_counts(folder, 3) == [120 + 2 * horizon] * 3
    assert meta["collection"]["units"] == [[0, 1], [2]]
    assert meta["collection"]["mode"] == "shared" and meta["collection"]["sac"]["net_arch"] == [16, 16]
    assert meta["obs_dim"] == 2 and meta["act_dim"] == 2 and meta["action_space"]["type"] == "Box"
    assert {"numpy", "gymnasium", "torch", "zarr"} <= set(meta["package_versions"])
    assert sorted(meta["learner_stats"]) == ["0", "1", "2"]
    assert [s["transitions"] for s in meta["task_stats"]] == [120 + 2 * horizon] * 3
    assert len(meta["tasks"]["tasks"]) == 3 and meta["format_version"] >= 1


@pytest.mark.slow
def test_kill_9_shared_sac_then_resume(omrl_home):
    """Shared SAC over 2 shards, kill -9 once a task is complete, resume: exact counts, kept groups."""
    n_tasks, steps = 4, 400
    args = [FAMILY, "--tasks", str(n_tasks), "--steps-per-task", str(steps), "--workers", "2", "--yes"]
    staging = _staging(omrl_home, "replay-v1") / "dataset"
    proc = subprocess.Popen(_cli("collect", *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: any((p / "zarr.json").exists() for p in (staging / "data.zarr" / "tasks").glob("[0-9]*"))
                  or proc.poll() is not None, 300, "a first complete task")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = [t for t in range(n_tasks) if (staging / "data.zarr" / "tasks" / f"{t:04d}" / "zarr.json").exists()]
    kept = {t: _group_hashes(staging, t) for t in done}
    assert 0 < len(done) < n_tasks
    final = subprocess.run(_cli("collect", *args, "--resume"), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    folder = catalog.resolve(f"omrl/{FAMILY}/replay-v1")
    assert manifest.verify(folder) == []
    assert zarr_io.task_row_counts(folder, n_tasks) == [steps] * n_tasks
    for t, hashes in kept.items():
        assert _group_hashes(folder, t) == hashes
