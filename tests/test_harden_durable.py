"""Issue 10 item 15: SAC collections (shared and per-task) are durable at chunk granularity.

A learner commits a chunk every ``chunk_seconds``: the rows recorded since the previous chunk,
the replay rows added since then, and the learner's whole state (networks, optimisers, RNGs,
counters, each env's episode in progress). A kill loses at most the steps after the last chunk,
and the resumed run continues from it to the very rows an uninterrupted run records.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from omrl_data.collection import CollectConfig, SacConfig, collect
from omrl_data.collection import chunks as chunk_store
from omrl_data.collection.learners import collect_shard
from omrl_data.schema import FIELD_NAMES
from omrl_data.store import catalog, manifest, zarr_io

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
FAMILY = "point_robot_sparse"
TINY = SacConfig(net_arch=(16, 16), batch_size=16, learning_starts=40)


def _cli(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("omrl-data")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from cli.data import main; main()", *args]


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
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _committed_chunks(work: Path) -> list[dict]:
    """chunk.json of every committed chunk under a staging work folder, by learner then number."""
    out = []
    for path in sorted(work.glob("learner_*/chunk_*/chunk.json")):
        try:
            out.append(json.loads(path.read_text()) | {"learner": path.parent.parent.name})
        except (OSError, ValueError):
            pass  # being renamed into place
    return out


def _same_rows(folder_a: Path, folder_b: Path, n_tasks: int) -> None:
    for t in range(n_tasks):
        got, want = zarr_io.read_task_group(folder_a, t), zarr_io.read_task_group(folder_b, t)
        assert sorted(got) == sorted(want)
        for name in FIELD_NAMES:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"task {t} {name}")
        episodes = got["episode_index"]
        assert episodes[0] == 0 and set(np.diff(episodes)) <= {0, 1}  # no missing or repeated episode


# ------------------------------------------------------------------------------------------------
_WORKER = """
import sys, torch
from pathlib import Path
torch.set_num_threads(1)
from omrl_data.collection import CollectConfig, SacConfig
from omrl_data.collection.learners import collect_shard
config = CollectConfig(family="point_robot_sparse", tasks=2, steps_per_task=int(sys.argv[2]), chunk_seconds=0.1,
                       checkpoint_every=100, checkpoint_rollouts=1,
                       sac=SacConfig(net_arch=(16, 16), batch_size=16, learning_starts=40))
out = Path(sys.argv[1])
collect_shard(config, [(0, {"goal_angle": 0.5}), (1, {"goal_angle": 2.0})], out / "dataset", work_dir=out / "work")
"""


def test_sigkill_of_a_shared_learner_process_loses_at_most_one_chunk(tmp_path):
    """A process running one shared-SAC shard (2 tasks) is killed with SIGKILL once its learner
    has committed chunks past its first checkpoint; run again, it continues from the last chunk
    on disk (what the kill cost is what came after it) to the rows of an uninterrupted run."""
    steps = 300
    zarr_io.ensure_store(tmp_path / "dataset")
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path), str(steps)], stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (chunks := _committed_chunks(work)) or chunks[-1]["done"] < 150:
            assert proc.poll() is None, f"the learner ended before it was killed: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no chunk past step 150 within 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    chunks = _committed_chunks(work)
    last = chunks[-1]
    assert [c["chunk"] for c in chunks] == list(range(1, len(chunks) + 1))
    assert not last["final"] and 150 <= last["done"] < steps
    assert not any((tmp_path / "dataset" / "data.zarr" / "tasks").iterdir())

    config = CollectConfig(family=FAMILY, tasks=2, steps_per_task=steps, chunk_seconds=1e9, checkpoint_every=100,
                           checkpoint_rollouts=1, sac=TINY)
    shard = [(0, {"goal_angle": 0.5}), (1, {"goal_angle": 2.0})]
    stats = collect_shard(config, shard, tmp_path / "dataset", work_dir=work)
    assert {s["resumed_from_step"] for s in stats.values()} == {last["done"]}
    assert not work.exists() or not any(work.iterdir())
    ref = tmp_path / "ref"
    zarr_io.ensure_store(ref)
    collect_shard(config, shard, ref)
    _same_rows(tmp_path / "dataset", ref, 2)
    assert zarr_io.task_row_counts(ref, 2) == [steps + 3 * 20] * 2  # stream + 3 checkpoints x 1 episode


@pytest.mark.slow
def test_sigkill_of_a_shared_collection_loses_at_most_one_chunk_and_resumes_exactly(omrl_home):
    """The CLI collecting 2 tasks in one shared-SAC shard is killed with SIGKILL once two chunks
    are committed. The resumed run starts from the last committed chunk (not from step 0), and the
    dataset equals, row for row, an uninterrupted collection with the same settings."""
    n_tasks, steps = 2, 1500
    sac = ["--sac", "net_arch=16,16", "--sac", "batch_size=16", "--sac", "learning_starts=40"]
    args = [FAMILY, "--tasks", str(n_tasks), "--steps-per-task", str(steps), "--workers", "1", *sac, "--yes"]
    staging = omrl_home / catalog.STAGING_DIR / "omrl" / FAMILY / "replay-v1"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cli("collect", *args, "--chunk-seconds", "0.2"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while len(_committed_chunks(staging / "work")) < 2:
            assert proc.poll() is None, f"the collection ended before its second chunk: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no second chunk within 120 s"
            time.sleep(0.01)
        workers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers):
        assert time.monotonic() < deadline, "a worker outlived its killed driver"
        time.sleep(0.05)

    chunks = _committed_chunks(staging / "work")
    last = chunks[-1]
    assert [c["chunk"] for c in chunks] == list(range(1, len(chunks) + 1))  # one learner, contiguous
    assert not last["final"] and 0 < last["done"] < steps, last
    assert not (staging / "dataset" / "data.zarr" / "tasks" / "0000").exists()
    again = subprocess.run(_cli("collect", *args), capture_output=True, text=True, timeout=120, env=env)  # no --resume
    assert again.returncode == 2 and f"learners saved at step {last['done']}" in again.stdout + again.stderr, again

    final = subprocess.run(_cli("collect", *args, "--resume"), capture_output=True, text=True, timeout=300, env=env)
    assert final.returncode == 0, final.stderr
    folder = catalog.resolve(f"omrl/{FAMILY}/replay-v1")
    assert manifest.verify(folder) == []
    assert zarr_io.task_row_counts(folder, n_tasks) == [steps] * n_tasks
    meta = catalog.read_metadata(folder)
    # Resumed from the last chunk on disk: what the kill cost is the steps after it, at most one chunk.
    assert [meta["learner_stats"][str(t)]["resumed_from_step"] for t in range(n_tasks)] == [last["done"]] * n_tasks
    assert not staging.exists()

    reference = collect(CollectConfig(family=FAMILY, tasks=n_tasks, steps_per_task=steps, workers=1, sac=TINY,
                                      name="reference"), progress=False)
    ref_folder = catalog.resolve(reference)
    assert all(s["resumed_from_step"] == 0 for s in catalog.read_metadata(ref_folder)["learner_stats"].values())
    _same_rows(folder, ref_folder, n_tasks)


# ------------------------------------------------------------------------------------------------
class _Stop(Exception):
    pass


def _interrupted_then_resumed(config: CollectConfig, shard, tmp_path: Path, stop_at: int):
    """collect_shard stopped (an exception from its progress callback, as a kill would stop it)
    once a committed chunk has ``stop_at`` steps done, then run again on the same folders (with
    no more chunks: ``chunk_seconds`` may change on resume)."""
    out, work = tmp_path / "dataset", tmp_path / "work"
    zarr_io.ensure_store(out)

    def report(task: int, steps: int) -> None:
        chunks = _committed_chunks(work)
        if chunks and chunks[-1]["done"] >= stop_at:
            raise _Stop

    with pytest.raises(_Stop):
        collect_shard(config, shard, out, report=report, work_dir=work)
    committed = _committed_chunks(work)
    assert len(committed) > 1 and not committed[-1]["final"]
    for c in committed:  # the files each chunk holds when the learner stopped
        c["files"] = sorted(p.name for p in (work / c["learner"] / f"chunk_{c['chunk']:06d}").iterdir())
    stats = collect_shard(dataclasses.replace(config, chunk_seconds=1e9), shard, out, work_dir=work)
    return out, committed, stats


@pytest.mark.parametrize(
    "family, mode, steps, extra",
    [
        ("point_robot_sparse", "shared", 300, {"checkpoint_every": 100, "checkpoint_rollouts": 1}),
        ("hopper_params", "shared", 300, {"checkpoint_every": 120, "checkpoint_rollouts": 1}),  # episodes end early
        ("ant_dir", "per-task", 250, {}),
    ],
)
def test_a_stopped_learner_resumes_from_its_last_chunk_to_the_uninterrupted_rows(tmp_path, family, mode, steps, extra):
    from omrl_data.tasks import get_family

    tasks = get_family(family).sample_tasks(2 if mode == "shared" else 1, seed=3)
    shard = [(i, dict(p)) for i, p in enumerate(tasks.params)]
    config = CollectConfig(family=family, tasks=len(shard), mode=mode, steps_per_task=steps, sac=TINY,
                           chunk_seconds=0.05, **extra)
    out, committed, stats = _interrupted_then_resumed(config, shard, tmp_path / "a", stop_at=steps // 2)
    resumed_at = committed[-1]["done"]
    assert 0 < resumed_at < steps
    assert {s["resumed_from_step"] for s in stats.values()} == {resumed_at}

    ref = tmp_path / "ref" / "dataset"
    zarr_io.ensure_store(ref)
    ref_stats = collect_shard(config, shard, ref)  # no work folder: one uninterrupted run in memory
    assert {s["resumed_from_step"] for s in ref_stats.values()} == {0}
    _same_rows(out, ref, len(shard))
    if extra.get("checkpoint_every"):
        from omrl_data.collection import policies

        for t, _ in shard:
            got, want = policies.list_checkpoints(out, t), policies.list_checkpoints(ref, t)
            assert [p.name for p in got] == [p.name for p in want] and got
            for a, b in zip(got, want):
                with np.load(a) as za, np.load(b) as zb:
                    assert all(np.array_equal(za[k], zb[k]) for k in zb.files)
    assert not (tmp_path / "a" / "work").exists() or not any((tmp_path / "a" / "work").iterdir())


def test_old_chunks_keep_only_what_a_resume_needs(tmp_path):
    """Learner states of earlier chunks are dropped once a later one is committed, and replay rows
    that the learner's buffer has overwritten are dropped too: the work folder stays bounded."""
    tasks = [(0, {"goal_angle": 0.5}), (1, {"goal_angle": 2.0})]
    config = CollectConfig(family=FAMILY, tasks=2, steps_per_task=300, chunk_seconds=0.05,
                           sac=SacConfig(net_arch=(16, 16), batch_size=16, learning_starts=40, buffer_size=100))
    out, committed, _ = _interrupted_then_resumed(config, tasks, tmp_path, stop_at=160)
    last = committed[-1]
    assert last["done"] >= 160  # the buffer (50 rows of 2 envs) has wrapped three times
    for c in committed:
        assert (chunk_store.LEARNER_FILE in c["files"]) == (c is last)
        assert (chunk_store.REPLAY_FILE in c["files"]) == (c["replay_rows"][1] > last["done"] - 50), c
    # Chunks are cut by wall time (chunk_seconds), so how many there are depends on the machine's
    # speed and load; the rule above is what must hold, and it drops rows here: the first chunk's
    # rows end at 50, more than the buffer's 50 rows before the last chunk (done >= 160).
    assert sum(chunk_store.REPLAY_FILE in c["files"] for c in committed) < len(committed)
    assert chunk_store.REPLAY_FILE not in committed[0]["files"]
    ref = tmp_path / "ref"
    zarr_io.ensure_store(ref)
    collect_shard(config, tasks, ref)
    _same_rows(out, ref, 2)


def test_chunk_files_left_mid_write_and_a_damaged_state(tmp_path, capfd):
    """A chunk folder killed mid-write is ignored; an unreadable learner state is reported in one
    line and the learner starts over (the rows are still those of an uninterrupted run)."""
    tasks = [(0, {"goal_angle": 0.5}), (1, {"goal_angle": 2.0})]
    config = CollectConfig(family=FAMILY, tasks=2, steps_per_task=200, chunk_seconds=0.05, sac=TINY)
    out, work = tmp_path / "dataset", tmp_path / "work"
    zarr_io.ensure_store(out)

    def report(task: int, steps: int) -> None:
        if len(_committed_chunks(work)) >= 3:
            raise _Stop

    with pytest.raises(_Stop):
        collect_shard(config, tasks, out, report=report, work_dir=work)
    learner = next(work.glob("learner_*"))
    (learner / ".tmp-chunk_000999-deadbeef").mkdir()  # a chunk a kill interrupted before its rename
    last = max(learner.glob("chunk_*"))
    (last / chunk_store.LEARNER_FILE).write_bytes(b"not a torch file")
    stats = collect_shard(dataclasses.replace(config, chunk_seconds=1e9), tasks, out, work_dir=work)
    err = capfd.readouterr().err
    assert "cannot continue" in err and "starting it over" in err and "Traceback" not in err
    assert {s["resumed_from_step"] for s in stats.values()} == {0}
    ref = tmp_path / "ref"
    zarr_io.ensure_store(ref)
    collect_shard(config, tasks, ref)
    _same_rows(out, ref, 2)


@pytest.mark.parametrize("family", ["point_robot_sparse", "cheetah_vel", "cheetah_dir", "ant_dir", "walker_params", "hopper_params"])
def test_an_episode_in_progress_is_restored_exactly(family):
    """The env state a chunk keeps (the RNG before the episode's reset and its actions so far)
    rebuilds the episode in a fresh env: the next steps match the original env's bit for bit."""
    from omrl_data.collection.recorder import TransitionRecorder
    from omrl_data.tasks import get_family

    fam = get_family(family)
    params = fam.sample_tasks(1, seed=1).params[0]
    rng = np.random.default_rng(0)
    original = TransitionRecorder(fam.make_env(params), seed=11)
    space = original.action_space
    original.reset()
    for _ in range(3 * fam.horizon // 2 + 7):  # into the second episode (or later, after falls)
        _, _, terminated, truncated, _ = original.step(rng.uniform(space.low, space.high).astype(space.dtype))
        if terminated or truncated:
            original.reset()
    snap = original.snapshot()
    copy = TransitionRecorder(fam.make_env(params), seed=None)
    copy.restore(snap, copy)
    assert copy.episode == original.episode and copy.t == original.t and len(copy) == 0
    for _ in range(fam.horizon):
        a = rng.uniform(space.low, space.high).astype(space.dtype)
        want, got = original.step(a), copy.step(a)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1:4] == want[1:4]
        if want[2] or want[3]:
            np.testing.assert_array_equal(copy.reset()[0], original.reset()[0])


def test_no_chunk_or_checkpoint_is_written_once_the_write_guard_refuses(tmp_path):
    """Item 17 for the learner's own writes: a worker whose driver is gone (the guard raises)
    commits no chunk and no checkpoint policy, and leaves no temporary behind."""
    from omrl_data.collection import policies

    class Gone(Exception):
        pass

    def refuse():
        raise Gone

    store = chunk_store.Chunks(tmp_path / "learner", [0], {"x": 1})
    rows = {"rewards": np.zeros(3, np.float32)}
    store.commit(3, {0: rows}, {})  # the guard is not set: committed
    zarr_io.set_write_guard(refuse)
    try:
        with pytest.raises(Gone):
            store.commit(6, {0: rows}, {})
        with pytest.raises(Gone):
            policies.write_checkpoint(tmp_path / "policies", 100, {"w": np.zeros(2)}, {"format": "x"})
    finally:
        zarr_io.set_write_guard(None)
    assert sorted(p.name for p in (tmp_path / "learner").iterdir()) == ["chunk_000001", chunk_store.LEARNER_META]
    assert list((tmp_path / "policies").iterdir()) == []
    assert chunk_store.Chunks(tmp_path / "learner", [0], {"x": 1}).count == 1
    assert chunk_store.Chunks(tmp_path / "learner", [0], {"x": 2}).count == 0  # other settings: not continued
