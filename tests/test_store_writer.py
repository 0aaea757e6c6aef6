"""StagedDataset: version reservation, locks across processes, kill -9 and resume, commit."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import omrl_data
from omrl_data.errors import BadInput, DatasetNotFound, IntegrityError, LockedError
from omrl_data.schema import FORMAT_VERSION
from omrl_data.store import catalog, manifest, zarr_io
from omrl_data.store.lock import FileLock, StaleLockWarning, holder
from omrl_data.store.writer import StagedDataset
from tests.synthetic import synthetic_task_arrays, synthetic_tasks

REPO = Path(__file__).resolve().parents[1]
FAMILY = "point_robot_sparse"


def _metadata(n_tasks):
    return {"family": FAMILY, "tasks": synthetic_tasks(FAMILY, n_tasks).to_dict(), "gamma": 0.99, "obs_dim": 2, "act_dim": 2}


def _arrays(i, n=50):
    return synthetic_task_arrays(n, 2, 2, task_index=i)


def _spawn(code: str, home: Path) -> subprocess.Popen:
    env = {**os.environ, "OMRL_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)


def _wait_line(proc: subprocess.Popen, expect: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.strip() == expect:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"child exited with {proc.returncode} before printing {expect!r}")
    raise AssertionError(f"child did not print {expect!r}")


def test_commit_writes_metadata_manifest_and_moves_into_place(omrl_home):
    staged = StagedDataset.create(None, FAMILY, "replay")
    assert staged.dataset_id == "omrl/point_robot_sparse/replay-v1"
    assert staged.path.is_relative_to(omrl_home / ".staging")
    with pytest.raises(DatasetNotFound):
        catalog.resolve(staged.dataset_id)  # invisible before commit
    for i in range(2):
        staged.write_task(i, _arrays(i, 30 + i))
    assert staged.done_tasks() == {0, 1}
    final = staged.commit(_metadata(2))
    assert final == omrl_home / "omrl" / FAMILY / "replay-v1"
    meta = json.loads((final / "metadata.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["dataset_id"] == staged.dataset_id
    assert meta["version"] == 1 and meta["task_rows"] == [30, 31] and meta["created"]
    assert manifest.verify(final) == []
    assert not (omrl_home / ".staging" / "omrl" / FAMILY / "replay-v1").exists()
    assert not (final / "lock.json").exists()
    with pytest.raises(IntegrityError, match="already committed"):
        staged.write_task(0, _arrays(0))


def test_commit_refuses_missing_or_extra_tasks(omrl_home):
    staged = StagedDataset.create(None, FAMILY, "replay")
    staged.write_task(0, _arrays(0))
    staged.write_task(2, _arrays(2))
    with pytest.raises(IntegrityError, match=r"\[1\] are missing"):
        staged.commit(_metadata(3))
    with pytest.raises(IntegrityError, match=r"\[2\] are not in the table"):
        staged.commit(_metadata(1))
    with pytest.raises(BadInput, match="needs 'tasks'"):
        staged.commit({"family": FAMILY})
    assert catalog.list_datasets() == []
    staged.write_task(1, _arrays(1))
    final = staged.commit(_metadata(3))
    assert catalog.resolve(staged.dataset_id) == final


def test_plan_round_trip_and_resume_in_process(omrl_home):
    staged = StagedDataset.create(None, FAMILY, "replay")
    assert staged.load_plan() is None
    staged.save_plan({"tasks": 3, "seed": 7})
    staged.write_task(0, _arrays(0))
    staged.release()
    with pytest.raises(IntegrityError, match="lock was released"):
        staged.write_task(1, _arrays(1))
    again = StagedDataset.create(None, FAMILY, "replay", resume=True)
    assert again.dataset_id == staged.dataset_id
    assert again.load_plan() == {"tasks": 3, "seed": 7} and again.done_tasks() == {0}
    again.abort()
    with pytest.raises(BadInput, match="nothing to resume"):
        StagedDataset.create(None, FAMILY, "replay", resume=True)


def test_unwritable_root_is_one_clear_error(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        if os.access(root, os.W_OK):  # running as root: permission bits are not enforced, so use
            root = Path("/proc/omrl-not-writable")  # a folder nobody can create (not a skip)
        with pytest.raises(BadInput, match="cannot write to the catalog root"):
            StagedDataset.create(root, FAMILY, "replay")
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_lock_refusal_across_processes(omrl_home):
    child = _spawn(
        f"""
        import time
        from omrl_data.store.writer import StagedDataset
        s = StagedDataset.create(None, "{FAMILY}", "replay", command="omrl-data collect {FAMILY} --name replay")
        print("locked", flush=True)
        time.sleep(60)
        """,
        omrl_home,
    )
    try:
        _wait_line(child, "locked")
        host = socket.gethostname()
        for resume in (True, False):
            with pytest.raises(LockedError) as err:
                StagedDataset.create(None, FAMILY, "replay", resume=resume)
            msg = str(err.value)
            assert f"pid {child.pid}" in msg and f"host {host}" in msg and "collect point_robot_sparse" in msg
            assert "since 20" in msg
        # another name is not blocked
        StagedDataset.create(None, FAMILY, "other").abort()
    finally:
        child.kill()
        child.wait()
    # the holder died (kill -9): its lock is stale and is taken over with a warning
    with pytest.warns(StaleLockWarning, match=f"pid {child.pid}"):
        staged = StagedDataset.create(None, FAMILY, "replay", resume=True)
    info = json.loads((staged.staging_dir / "lock.json").read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    staged.release()


def test_stale_lock_file_with_dead_pid(omrl_home):
    staged = StagedDataset.create(None, FAMILY, "replay")
    staged.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (staged.staging_dir / "lock.json").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "x", "command": "old"}))
    assert holder(staged.staging_dir / "lock.json") is None
    with pytest.warns(StaleLockWarning, match=f"pid {pid}"):
        StagedDataset.create(None, FAMILY, "replay", resume=True).release()


def test_lock_from_another_host_is_refused(tmp_path):
    path = tmp_path / "lock.json"
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x", "command": "c"}))
    with pytest.raises(LockedError, match=f"host elsewhere.*delete {path}"):
        FileLock(path).acquire()


def test_lock_in_same_process_is_exclusive(tmp_path):
    first = FileLock(tmp_path / "lock.json").acquire()
    with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
        FileLock(tmp_path / "lock.json").acquire()
    first.release()
    assert not (tmp_path / "lock.json").exists()
    FileLock(tmp_path / "lock.json").acquire().release()


_WRITER = """
import sys
from omrl_data.store.writer import StagedDataset
from tests.synthetic import synthetic_task_arrays, synthetic_tasks
resume = len(sys.argv) > 1
s = StagedDataset.create(None, "{family}", "replay", resume=resume)
print("started", flush=True)
for i in range({n_tasks}):
    if i not in s.done_tasks():
        s.write_task(i, synthetic_task_arrays({rows}, 2, 2, task_index=i))
meta = {{"family": "{family}", "tasks": synthetic_tasks("{family}", {n_tasks}).to_dict(), "gamma": 0.99}}
s.commit(meta)
print("committed", flush=True)
"""


def test_kill_9_at_random_moments_leaves_a_resumable_state(omrl_home):
    n_tasks, rows = 8, 20000  # about 50 ms per task group here
    code = _WRITER.format(family=FAMILY, n_tasks=n_tasks, rows=rows)
    env = {**os.environ, "OMRL_HOME": str(omrl_home), "PYTHONPATH": str(REPO)}
    rng = random.Random(0)
    expected = {i: synthetic_task_arrays(rows, 2, 2, task_index=i) for i in range(n_tasks)}
    interrupted = 0
    for attempt, delay in enumerate([0.05, rng.uniform(0.0, 0.3), rng.uniform(0.1, 0.5), rng.uniform(0.2, 0.8)]):
        args = [sys.executable, "-c", code] + (["resume"] if attempt else [])
        child = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
        _wait_line(child, "started")
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if catalog.list_datasets():  # it finished before the kill: the version must be whole
            break
        interrupted += 1
        # whatever the moment, the staging is resumable and holds only whole, exact groups
        with pytest.warns(StaleLockWarning, match="that process is gone"):
            staged = StagedDataset.create(None, FAMILY, "replay", resume=True)
        assert staged.dataset_id == "omrl/point_robot_sparse/replay-v1"
        assert not list((zarr_io.data_root(staged.path) / "tasks").glob(".tmp-*"))
        for i in staged.done_tasks():
            got = zarr_io.read_task_group(staged.path, i)
            assert all(np.array_equal(got[k], expected[i][k]) for k in expected[i])
        staged.release()
    else:
        resumed = subprocess.run(args[:3] + ["resume"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
    assert interrupted >= 1
    [row] = catalog.list_datasets()
    assert row["id"] == "omrl/point_robot_sparse/replay-v1" and row["transitions"] == n_tasks * rows
    assert manifest.verify(catalog.resolve(row["id"])) == []
    data = omrl_data.load(row["id"])
    for i in range(n_tasks):
        assert all(np.array_equal(data.task_arrays(i)[k], expected[i][k]) for k in expected[i])
    assert not any((omrl_home / ".staging" / "omrl" / FAMILY).iterdir())


def test_killed_after_the_final_move_is_complete(omrl_home):
    staged = StagedDataset.create(None, FAMILY, "replay")
    staged.write_task(0, _arrays(0))
    final = staged.commit(_metadata(1))
    # Simulate a kill between the move and the clean-up: a leftover staging folder.
    leftover = omrl_home / ".staging" / "omrl" / FAMILY / "replay-v1"
    leftover.mkdir(parents=True)
    (leftover / "lock.json").write_text("{}")
    assert catalog.resolve("omrl/point_robot_sparse/replay") == final
    with pytest.raises(BadInput, match="nothing to resume"):
        StagedDataset.create(None, FAMILY, "replay", resume=True)
    assert not leftover.exists()
    assert StagedDataset.create(None, FAMILY, "replay").dataset_id.endswith("-v2")


def test_concurrent_writers_get_distinct_versions(omrl_home):
    first = StagedDataset.create(None, FAMILY, "a")
    second = StagedDataset.create(None, FAMILY, "b")
    assert first.dataset_id.endswith("a-v1") and second.dataset_id.endswith("b-v1")
    first.write_task(0, _arrays(0))
    first.commit(_metadata(1))
    third = StagedDataset.create(None, FAMILY, "a")
    assert third.dataset_id.endswith("a-v2")
    for s in (second, third):
        s.abort()


def test_exact_version_and_commit_as_is(omrl_home, tmp_path):
    """What `pull` does: place a copied version under its own number, byte for byte, verified."""
    from tests.synthetic import make_synthetic_dataset

    source_root = tmp_path / "remote"
    source = catalog.resolve(make_synthetic_dataset(source_root, n_tasks=2, n_rows=30), source_root)
    checksum = manifest.manifest_checksum(source)
    staged = StagedDataset.create(None, FAMILY, "synthetic", version=1)
    shutil.rmtree(staged.path)
    shutil.copytree(source, staged.path)
    final = staged.commit(None)
    assert final.name == "synthetic-v1" and manifest.manifest_checksum(final) == checksum
    assert (final / "metadata.json").read_bytes() == (source / "metadata.json").read_bytes()
    with pytest.raises(BadInput, match="already exists or existed"):
        StagedDataset.create(None, FAMILY, "synthetic", version=1)

    # a tampered copy is refused and nothing is placed
    staged = StagedDataset.create(None, FAMILY, "synthetic", version=5)
    shutil.rmtree(staged.path)
    shutil.copytree(source, staged.path)
    chunk = staged.path / "data.zarr/tasks/0001/rewards/c/0"
    raw = bytearray(chunk.read_bytes())
    raw[-1] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="task 1, array rewards"):
        staged.commit(None)
    assert catalog.versions(FAMILY, "synthetic") == [1]
    staged.abort()


def test_commit_checks_policies_and_family(omrl_home):
    staged = StagedDataset.create(None, FAMILY, "replay")
    staged.write_task(0, _arrays(0))
    np.savez(staged.policies_dir / "task_0000_step_100.npz", w=np.zeros(3))
    (staged.policies_dir / "evil.pkl").write_bytes(b"\x80\x04.")
    with pytest.raises(BadInput, match=r"only \.npz and \.json"):
        staged.commit(_metadata(1))
    (staged.policies_dir / "evil.pkl").unlink()
    with pytest.raises(BadInput, match="differs from the dataset's family"):
        staged.commit({**_metadata(1), "family": "ant_dir"})
    (staged.work_dir / "partial.bin").write_bytes(b"scratch")
    final = staged.commit(_metadata(1))
    assert "policies/task_0000_step_100.npz" in manifest.read_manifest(final)["files"]
    assert not (final / "work").exists()


def test_forked_child_cannot_release_the_parents_lock(omrl_home):
    staged = StagedDataset.create(None, FAMILY, "replay")
    pid = os.fork()
    if pid == 0:  # child: releasing (or being collected) must not drop the parent's lock
        staged.release()
        os._exit(0)
    os.waitpid(pid, 0)
    assert (staged.staging_dir / "lock.json").exists()
    with pytest.raises(LockedError):
        StagedDataset.create(None, FAMILY, "replay", resume=True)
    staged.release()


def test_disk_full_is_one_actionable_error(omrl_home, monkeypatch):
    import errno

    from omrl_data.store.writer import StorageError

    staged = StagedDataset.create(None, FAMILY, "replay")
    staged.write_task(0, _arrays(0))

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zarr_io, "write_task_group", full)
    with pytest.raises(StorageError, match="No space left on device; free space .* --resume"):
        staged.write_task(1, _arrays(1))
    monkeypatch.setattr(manifest, "write_manifest", full)
    with pytest.raises(StorageError, match="No space left"):
        staged.commit(_metadata(1))
    assert catalog.list_datasets() == [] and staged.done_tasks() == {0}


def test_readers_never_see_a_half_written_version(omrl_home):
    """A reader polling the catalog while versions are committed only ever sees whole ones."""
    child = _spawn(
        f"""
        from tests.synthetic import make_synthetic_dataset
        print("go", flush=True)
        for k in range(4):
            make_synthetic_dataset(n_tasks=3, n_rows=2000, seed=k)
        print("done", flush=True)
        """,
        omrl_home,
    )
    _wait_line(child, "go")
    checked = set()
    while True:
        finished = child.poll() is not None  # one more full pass after the writer exits
        for row in catalog.list_datasets():
            if row["id"] not in checked:
                assert manifest.verify(row["path"]) == [], row["id"]
                assert row["transitions"] == 6000
                checked.add(row["id"])
        if finished:
            break
        time.sleep(0.005)  # leave the writer some of the 2 cores
    child.wait()
    assert child.returncode == 0
    assert len(checked) == 4


def test_concurrent_first_loads_build_one_cache(omrl_home):
    from tests.synthetic import make_synthetic_dataset

    dataset_id = make_synthetic_dataset(n_tasks=4, n_rows=20000)
    code = f"""
        import numpy as np, omrl_data
        d = omrl_data.load("{dataset_id}")
        print(float(np.asarray(d.fields["observations"], dtype=np.float64).sum()), flush=True)
        """
    children = [_spawn(code, omrl_home) for _ in range(2)]
    sums = [float(c.communicate(timeout=120)[0].strip()) for c in children]
    assert all(c.returncode == 0 for c in children)
    expected = float(np.asarray(omrl_data.load(dataset_id).fields["observations"], dtype=np.float64).sum())
    assert sums == [expected, expected]
    cache = omrl_home / ".cache"
    assert [p.name for p in cache.iterdir()] == [manifest.manifest_checksum(catalog.resolve(dataset_id))]
