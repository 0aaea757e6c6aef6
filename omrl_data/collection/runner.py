"""Running a collection: plan, lock, workers (local processes or Ray tasks), progress, commit.

The driver (this module, in the process that called :func:`collect`) never collects data itself.
It validates the request, samples the tasks, reserves and locks the new version
(``StagedDataset``), saves the plan, hands units of work to workers and relays their progress.
Each worker runs ``learners.collect_shard`` on its unit and writes that unit's task groups
straight into the staging folder (one writer per group, each group atomic). When every task is
complete the driver writes the metadata and commits (manifest last, one atomic move).

Interruptions: Ctrl-C terminates the workers, releases the lock and keeps the staging folder;
``--resume`` then redoes only tasks whose group is missing. A kill -9 of the driver leaves the same
state: the kernel drops its ``flock``, and the workers die with it (``PR_SET_PDEATHSIG``, plus a
watchdog thread), so no orphan can write into a staging folder that a resumed run has taken over.
"""
from __future__ import annotations

import ctypes
import dataclasses
import importlib.metadata
import math
import multiprocessing as mp
import os
import queue
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.console import Console

from omrl_data import errors
from omrl_data.collection import plan as planning
from omrl_data.collection.config import CollectConfig
from omrl_data.collection.display import CollectionProgress, plan_table, summary_table, unit_label
from omrl_data.collection.plan import CollectionPlan
from omrl_data.errors import BadInput, IntegrityError, LockedError, OmrlError
from omrl_data.schema import FORMAT_VERSION, SOURCE_NAMES
from omrl_data.store import catalog, manifest, writer, zarr_io
from omrl_data.store.lock import LOCK_FILE, StaleLockWarning, describe, holder

REPORT_INTERVAL_S = 0.25  # a worker forwards a task's progress at most this often
CALIBRATION_STEPS = 300  # env steps per task of the calibration run behind the time estimate
LEARNER_STATS_FILE = "learner_stats.json"  # per-task learner summaries, kept in staging across resumes
_PACKAGES = ("numpy", "gymnasium", "mujoco", "stable-baselines3", "torch", "zarr", "rich", "omrl")


class CollectionInterrupted(KeyboardInterrupt):
    """Ctrl-C during a collection; the staging folder is kept and ``resume_command`` continues it."""

    def __init__(self, dataset_id: str, resume_command: str):
        super().__init__(f"{dataset_id} interrupted; resume with: {resume_command}")
        self.dataset_id = dataset_id
        self.resume_command = resume_command


# ================================================================================================
# public entry point
# ================================================================================================
def collect(
    config: CollectConfig,
    root: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
    confirm: Callable[[CollectionPlan], bool] | None = None,
    console: Console | None = None,
    calibrate: bool | None = None,
) -> str:
    """Collect a multi-task dataset and return its new id ``omrl/<family>/<name>-v<N>``.

    progress: print the plan, live bars and the summary table (on ``console``).
    resume: continue the latest unfinished collection of this family/name (same settings).
    confirm: called with the plan (after it is shown); returning False stops before anything is
        written (BadInput "collection cancelled").
    calibrate: time a short run first for the estimate (default: when the plan is shown).
    Raises BadInput (nothing written), LockedError (another collector holds the target),
    CollectionInterrupted on Ctrl-C (staging kept, resumable).
    """
    console = console or Console()
    root_path = catalog.resolve_root(root)
    request = planning.make_plan(config)  # validates; writes nothing
    cfg = request.config
    family, name = cfg.family, cfg.dataset_name()
    resume_cmd = planning.resume_command(cfg, None if root is None else root_path)

    if resume:
        staged = _reopen(root_path, family, name, console)
        try:
            saved = staged.load_plan()
            plan = request if saved is None else planning.plan_from_saved(saved, request, staged.dataset_id)
            if saved is None:
                staged.save_plan(plan.to_dict())
            done = staged.done_tasks() & set(range(plan.n_tasks))
            remaining = 1 - len(done) / plan.n_tasks
            planning.check_root(root_path, int(plan.est_bytes * remaining) + plan.work_bytes)
            rest = [u for u in plan.units if not set(u) <= done]
            if rest and (calibrate if calibrate is not None else (progress or confirm is not None)):
                plan.est_seconds = estimate_seconds(dataclasses.replace(plan, units=rest), console if progress else None)
            if progress:
                console.print(plan_table(plan, staged.dataset_id, done))
            if confirm is not None and not confirm(plan):
                raise BadInput("collection cancelled; the unfinished version is kept as it was")
        except BaseException:
            staged.release()
            raise
        return _run(staged, plan, done, progress, console, resume_cmd)

    planning.check_root(root_path, request.est_bytes + request.work_bytes)
    _refuse_if_running(root_path, family, name, resume_cmd)
    if calibrate if calibrate is not None else (progress or confirm is not None):
        request.est_seconds = estimate_seconds(request, console if progress else None)
    if progress:
        console.print(plan_table(request))
    if confirm is not None and not confirm(request):
        raise BadInput("collection cancelled; nothing was written")
    try:
        staged = writer.StagedDataset.create(root_path, family, name, command=_command_line())
    except KeyboardInterrupt:
        # Interrupted while reserving: a reserved folder (if any) is a resumable, empty staging and
        # its lock went with the half-made writer object.
        if progress:
            console.print(f"[yellow]interrupted[/]; resume with:\n  {resume_cmd}", highlight=False, soft_wrap=True)
        raise CollectionInterrupted(f"omrl/{family}/{name}", resume_cmd) from None
    return _run(staged, request, set(), progress, console, resume_cmd, new=True)


# ================================================================================================
# lock and staging
# ================================================================================================
def _command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "omrl_data.collection.collect"


def _refuse_if_running(root: Path, family: str, name: str, resume_cmd: str = "") -> None:
    """Fail fast (before calibrating) if another collector is writing this family/name, or if an
    interrupted collection of it exists (say how to resume or discard it, never start v<N+1>
    silently beside it)."""
    parent = root / catalog.STAGING_DIR / "omrl" / family
    if not parent.is_dir():
        return
    interrupted = []
    for v in writer.unfinished(family, name, root):
        info = holder(parent / f"{name}-v{v}" / LOCK_FILE)
        if info is not None:
            raise LockedError(
                f"omrl/{family}/{name}-v{v} is being written by {describe(info)}; "
                "wait for it, stop it, or choose another --name"
            )
        interrupted.append(v)
    if interrupted:
        v = interrupted[-1]
        folder = parent / f"{name}-v{v}"
        tasks = zarr_io.data_root(folder / writer.DATASET_SUBDIR) / "tasks"
        done = sum(1 for p in tasks.iterdir() if p.name.isdigit()) if tasks.is_dir() else 0
        from omrl_data.collection.chunks import saved_steps

        steps = saved_steps(folder / writer.WORK_SUBDIR)
        learners = f", learners saved at step {', '.join(map(str, steps))}" if steps else ""
        raise BadInput(
            f"an unfinished collection omrl/{family}/{name}-v{v} exists ({done} task(s) written{learners}, interrupted); "
            f"continue it with: {resume_cmd or '--resume'}  or discard it with: rm -r {folder}  (or choose another --name)"
        )


def _reopen(root: Path, family: str, name: str, console: Console) -> writer.StagedDataset:
    """The latest unfinished staging of family/name, locked (LockedError if a collector runs)."""
    if not writer.unfinished(family, name, root):  # checked first: create() would make folders
        raise BadInput(f"nothing to resume: no unfinished omrl/{family}/{name} under {root}; run without --resume")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StaleLockWarning)
        staged = writer.StagedDataset.create(root, family, name, resume=True, command=_command_line())
    for w in caught:
        if issubclass(w.category, StaleLockWarning):
            console.print(f"[dim]{w.message}[/]", highlight=False)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return staged


# ================================================================================================
# the run
# ================================================================================================
def _run(staged: writer.StagedDataset, plan: CollectionPlan, done: set[int], progress: bool,
         console: Console, resume_cmd: str, new: bool = False) -> str:
    """Run the units not yet done, then commit. The lock is released however this ends."""
    started = time.perf_counter()
    try:
        learner_stats = _load_learner_stats(staged)
        todo = [k for k, unit in enumerate(plan.units) if not set(unit) <= done]
        if new:  # inside the try: a Ctrl-C right after the lock was taken is handled like any other
            staged.save_plan(plan.to_dict())
            if progress:
                console.print(f"writing [bold]{staged.dataset_id}[/] (staging {staged.staging_dir})")
        with CollectionProgress(plan, done, console, enabled=progress) as bars:
            if todo:
                runner = _run_ray if plan.config.backend == "ray" else _run_local
                for k, stats in runner(plan, todo, staged.path, bars.report, staged.work_dir):
                    learner_stats.update({str(int(t)): _jsonable(s) for t, s in (stats or {}).items()})
                    manifest.write_json_atomic(staged.staging_dir / LEARNER_STATS_FILE, learner_stats)
                    bars.unit_done(k)
        missing = sorted(set(range(plan.n_tasks)) - staged.done_tasks())
        if missing:
            raise IntegrityError(f"{staged.dataset_id}: the workers finished but tasks {missing} have no data group")
        task_stats = []
        for i in range(plan.n_tasks):
            s = {"index": i, "split": plan.tasks.split[i], **catalog.task_statistics(staged.path, i)}
            learner = learner_stats.get(str(i)) or {}
            # The learner's windows cover its own stream only (no checkpoint rollouts, no episode
            # cut short by the budget): prefer them where it reported them.
            for ours, theirs in (("return_first10pct", "return_first_10pct"), ("return_last10pct", "return_last_10pct")):
                if learner.get(theirs) is not None:
                    s[ours] = learner[theirs]
            task_stats.append(s)
        meta = build_metadata(plan, task_stats, learner_stats)
        refs = _references(staged, meta, console if progress else None)
        if refs is not None:
            meta["references"] = refs
        # Wall time of this run (the last one, if the collection was resumed), workers to commit.
        meta["collection"]["wall_seconds"] = round(time.perf_counter() - started, 2)
        meta["collection"]["resumed"] = bool(done) or not new
        staged.commit(meta)
    except KeyboardInterrupt:
        staged.release()
        if progress:
            console.print(f"[yellow]interrupted[/]: {staged.dataset_id} is kept in staging; resume with:\n  {resume_cmd}",
                          highlight=False, soft_wrap=True)
        raise CollectionInterrupted(staged.dataset_id, resume_cmd) from None
    except BaseException:
        staged.release()
        if progress:
            console.print(f"[yellow]{staged.dataset_id} is kept in staging[/]; after fixing the cause, resume with:\n  "
                          f"{resume_cmd}", highlight=False, soft_wrap=True)
        raise
    if progress:
        elapsed = planning.human_seconds(time.perf_counter() - started)
        estimate = "" if plan.est_seconds is None else f", estimated {planning.human_seconds(plan.est_seconds)}"
        title = f"{staged.dataset_id}: {sum(s['transitions'] for s in task_stats):,} transitions in {elapsed}{estimate}"
        console.print(summary_table(task_stats, title, meta.get("references")))
    return staged.dataset_id


def _references(staged: writer.StagedDataset, meta: dict[str, Any], console: Console | None) -> dict[str, Any] | None:
    """Normalised-score references of the staged tasks (a few seeded rollouts per task, seconds).
    A failure here must not lose the collection: it is reported and the version is committed
    without them (``omrl-data references ID`` adds them later)."""
    from omrl_data.references import REFERENCE_EPISODES, compute_references_of_folder

    if console is not None:
        console.print(f"[dim]normalised-score references: {REFERENCE_EPISODES} stand-still and random rollouts per task...[/]")
    try:
        return compute_references_of_folder(staged.path, meta)
    except OmrlError as e:
        if console is not None:
            console.print(f"[yellow]no references: {e}[/]", highlight=False, soft_wrap=True)
        return None


def _load_learner_stats(staged: writer.StagedDataset) -> dict[str, Any]:
    import json

    path = staged.staging_dir / LEARNER_STATS_FILE
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}  # only summaries; the data itself is in the task groups


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def _shard(plan: CollectionPlan, k: int) -> list[tuple[int, dict]]:
    return [(int(i), dict(plan.tasks.params[i])) for i in plan.units[k]]


def _threads_per_worker(workers: int) -> int:
    # SAC's networks (256 x 256, batch 256) are too small for intra-op parallelism to pay: two
    # torch threads on a busy 2-core machine ran a calibration 8x slower than one. Parallelism
    # comes from workers.
    return 1


def _raise_worker_error(plan: CollectionPlan, k: int, kind: str, message: str, tb: str) -> None:
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, OmrlError):
        raise cls(message)
    import errno
    import re

    m = re.match(r"\[Errno (\d+)\] ([^:]*)", message)
    if m and int(m[1]) in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):  # a full or read-only disk
        raise errors.StorageError(
            f"worker on {unit_label(plan.units[k])} could not write: {m[2]}; free space or fix permissions, then run the "
            "same command with --resume (finished tasks are kept)"
        )
    raise RuntimeError(f"worker failed on {unit_label(plan.units[k])}: {kind}: {message}\n--- worker traceback ---\n{tb}")


# ------------------------------------------------------------------------------------------------
# local processes
# ------------------------------------------------------------------------------------------------
def _die_with_parent(parent_pid: int) -> None:
    """Make this worker die when the driver dies, even by kill -9 (Linux prctl; else a watchdog)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="omrl-parent-watchdog").start()


def _set_threads(threads: int, needs_torch: bool) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if needs_torch:
        import torch

        torch.set_num_threads(threads)


def _throttled(send: Callable[[int, int], None]) -> Callable[[int, int], None]:
    """A ``report(task, steps)`` for ``collect_shard`` that forwards to ``send`` at most once per
    ``REPORT_INTERVAL_S`` per task (learners call it every step; queues are not that cheap)."""
    last: dict[int, float] = {}

    def report(task: int, steps: int) -> None:
        now = time.monotonic()
        if now - last.get(task, 0.0) >= REPORT_INTERVAL_S:
            last[task] = now
            send(int(task), int(steps))

    return report


def _worker_main(config_dict: dict, out_dir: str, units_q, msg_q, threads: int, parent_pid: int, work_dir: str) -> None:
    """One local worker process: collect units from ``units_q`` until a None arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _die_with_parent(parent_pid)
    config = CollectConfig.from_dict(config_dict)
    _set_threads(threads, config.mode != "random")
    from omrl_data.collection.learners import collect_shard

    report = _throttled(lambda task, steps: msg_q.put(("progress", task, steps)))

    while True:
        item = units_q.get()
        if item is None:
            return
        k, shard = item
        try:
            stats = collect_shard(config, shard, Path(out_dir), report=report, work_dir=Path(work_dir))
            msg_q.put(("done", k, _jsonable(stats)))
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the driver
            msg_q.put(("error", k, type(e).__name__, str(e), traceback.format_exc()))
            return


def _run_local(plan: CollectionPlan, todo: list[int], out_dir: Path, report: Callable[[int, int], None], work_dir: Path):
    """Run units ``todo`` on ``workers`` spawned processes; yields ``(unit, learner_stats)`` as they finish."""
    ctx = mp.get_context("spawn")
    units_q, msg_q = ctx.Queue(), ctx.Queue()
    n_proc = min(plan.config.workers, len(todo))
    for k in todo:
        units_q.put((k, _shard(plan, k)))
    for _ in range(n_proc):
        units_q.put(None)
    threads = _threads_per_worker(n_proc)
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(plan.config.to_dict(), str(out_dir), units_q, msg_q, threads, os.getpid(), str(work_dir)),
            name=f"omrl-collect-{w}",
        )
        for w in range(n_proc)
    ]
    remaining = set(todo)
    try:
        for p in procs:
            p.start()
        while remaining:
            try:
                msg = msg_q.get(timeout=0.5)
            except queue.Empty:
                crashed = [p for p in procs if p.exitcode not in (None, 0)]
                if crashed or all(p.exitcode is not None for p in procs):
                    try:
                        msg = msg_q.get(timeout=1.0)  # a last message may still be in the pipe
                    except queue.Empty:
                        codes = ", ".join(f"{p.name} exit code {p.exitcode}" for p in procs if p.exitcode)
                        # Killed from outside (e.g. out of memory: -9): the user can act on it.
                        raise OmrlError(f"a collection worker died with units left ({codes}); "
                                        "if memory ran out, resume with fewer --workers") from None
                else:
                    continue
            if msg[0] == "progress":
                report(msg[1], msg[2])
            elif msg[0] == "done":
                remaining.discard(msg[1])
                yield msg[1], {int(t): s for t, s in (msg[2] or {}).items()}
            else:
                _raise_worker_error(plan, *msg[1:])
    finally:
        _stop_processes(procs)
        for q in (units_q, msg_q):
            q.cancel_join_thread()
            q.close()


def _stop_processes(procs: list) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 5.0
    for p in procs:
        if p.pid is None:
            continue
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


# ------------------------------------------------------------------------------------------------
# Ray
# ------------------------------------------------------------------------------------------------
def _ray_unit(config_dict: dict, shard: list, out_dir: str, progress_q, threads: int, work_dir: str) -> dict:
    """One unit as a Ray task (runs on any node that sees ``out_dir``)."""
    config = CollectConfig.from_dict(config_dict)
    _set_threads(threads, config.mode != "random")
    from omrl_data.collection.learners import collect_shard

    report = _throttled(lambda task, steps: progress_q.put_nowait((task, steps)))
    # Ray workers can outlive a killed driver by tens of seconds: check it before each write.
    zarr_io.set_write_guard(_driver_guard(Path(out_dir), progress_q))
    try:
        return _jsonable(collect_shard(config, shard, Path(out_dir), report=report, work_dir=Path(work_dir)))
    finally:
        zarr_io.set_write_guard(None)


class DriverGone(OmrlError):
    """The collection's driver process died; a worker must not write any more."""


def _driver_guard(out_dir: Path, progress_q: Any = None) -> Callable[[], None]:
    """A check that the driver holding the staging lock still lives: on its host, its pid; on
    another node, its progress queue (an actor that dies with the driver) must answer."""
    import socket

    from omrl_data.store.lock import pid_alive, read_lock_info

    info = read_lock_info(out_dir.parent / LOCK_FILE) or {}

    def check() -> None:
        if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
            if not pid_alive(info["pid"]):
                raise DriverGone(f"the collection's driver (pid {info['pid']}) is gone; not writing")
        elif progress_q is not None:
            try:
                progress_q.qsize()
            except Exception as e:  # noqa: BLE001 - any failure to reach the actor means no driver
                raise DriverGone(f"the collection's driver is unreachable ({type(e).__name__}); not writing") from None

    return check


def _run_ray(plan: CollectionPlan, todo: list[int], out_dir: Path, report: Callable[[int, int], None], work_dir: Path):
    """Run units ``todo`` as Ray tasks, at most ``workers`` at a time; yields ``(unit, learner_stats)``.

    Uses an initialised Ray, else ``--ray-address``, else a small local runtime (shut down after).
    Progress comes back through a Ray queue (an actor). On a cluster, ``out_dir`` must be on a
    filesystem every node sees.
    """
    planning.prepare_ray_auth(plan.config.ray_address or os.environ.get("RAY_ADDRESS"))  # before `import ray`
    import ray
    from ray.util.queue import Queue

    cfg = plan.config
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": True}
        # Ray's conventions: --ray-address, else $RAY_ADDRESS (an existing cluster: Ray sizes it,
        # so no num_cpus), else a small local runtime.
        address = cfg.ray_address or os.environ.get("RAY_ADDRESS") or None
        if address:
            try:
                ray.init(address=None if address == os.environ.get("RAY_ADDRESS") else address, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                where = "--ray-address" if cfg.ray_address else "$RAY_ADDRESS"
                raise BadInput(
                    f"cannot connect to the Ray cluster at {address!r} ({first}); check {where}. A cluster started with "
                    "`ray start` (Ray >= 2.52) uses token authentication: set RAY_AUTH_MODE=token with the cluster's token "
                    "in RAY_AUTH_TOKEN or ~/.ray/auth_token, or use --ray-address auto on one of its nodes"
                ) from None
        else:
            # address="local": always a new runtime, even if `ray start` left a cluster address here
            ray.init(address="local", num_cpus=cfg.workers, object_store_memory=80 * 2**20, **kwargs)
        started = True
    running: dict[Any, int] = {}
    try:
        progress_q = Queue(actor_options={"num_cpus": 0})
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_unit)
        waiting = list(todo)
        threads = _threads_per_worker(cfg.workers)
        while waiting or running:
            while waiting and len(running) < cfg.workers:
                k = waiting.pop(0)
                running[remote.remote(cfg.to_dict(), _shard(plan, k), str(out_dir), progress_q, threads, str(work_dir))] = k
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
            pending = progress_q.qsize()
            for task, steps in progress_q.get_nowait_batch(pending) if pending else []:
                report(task, steps)
            for ref in ready:
                k = running.pop(ref)
                try:
                    stats = ray.get(ref)
                except ray.exceptions.RayTaskError as e:  # collect_shard raised
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    _raise_worker_error(plan, k, type(cause).__name__, str(cause).splitlines()[0] if str(cause) else "", str(e))
                except ray.exceptions.RayError as e:  # the worker or its node died
                    raise OmrlError(f"the Ray task of {unit_label(plan.units[k])} died ({type(e).__name__}); "
                                    "resume to redo its tasks") from None
                yield k, {int(t): s for t, s in (stats or {}).items()}
    finally:
        for ref in running:  # interrupted or failed: stop what still runs
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort while stopping
                pass
        if started:
            ray.shutdown()


# ================================================================================================
# calibration and metadata
# ================================================================================================
def _timed_shard(config: CollectConfig, shard: list[tuple[int, dict]]) -> tuple[float, float]:
    """``(env steps per second per task, fixed seconds per unit)`` of one short collect_shard run.

    The rate comes from the learner's progress reports (between its first and last report), so
    that set-up (envs, networks) and writing the group count once per unit, not per step.
    """
    from omrl_data.collection.learners import collect_shard

    marks: list[tuple[float, int]] = []

    def report(task: int, steps: int) -> None:
        if task == shard[0][0]:
            marks.append((time.perf_counter(), int(steps)))

    threads = None
    if config.mode != "random":
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(_threads_per_worker(1))  # as a worker runs it
    try:
        with tempfile.TemporaryDirectory(prefix="omrl-calibrate-") as tmp:
            zarr_io.ensure_store(tmp)
            t0 = time.perf_counter()
            collect_shard(config, shard, Path(tmp), report=report)
            total = time.perf_counter() - t0
    finally:
        if threads is not None:
            torch.set_num_threads(threads)
    steps = int(config.steps_per_task)
    if len(marks) >= 2 and marks[-1][0] - marks[0][0] > 0.05 and marks[-1][1] > marks[0][1]:
        rate = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
        return rate, max(0.0, total - steps / rate)
    return steps / max(total, 1e-6), 0.0


def estimate_seconds(plan: CollectionPlan, console: Console | None = None) -> float | None:
    """Wall time of the whole plan, from timing a few hundred steps of the first unit.

    Adds up, per unit: set-up and writing (measured), random-action steps, learning steps and
    checkpoint rollouts; spreads the units over ``min(workers, cores)`` lanes; adds a worker's
    start-up (the import time of the learners, measured here). It assumes the cores are free.
    """
    cfg = plan.config
    k_steps = int(cfg.steps_per_task)
    n_cal = min(CALIBRATION_STEPS, k_steps)
    shard = [(int(i), dict(plan.tasks.params[i])) for i in plan.units[0]]
    base = cfg.to_dict() | {"steps_per_task": n_cal, "checkpoint_every": 0, "checkpoint_rollouts": 0, "workers": 1}
    try:
        if console is not None:
            console.print(f"[dim]calibrating: {n_cal} steps of {unit_label([i for i, _ in shard])}...[/]")
        t0 = time.perf_counter()
        import omrl_data.collection.learners  # noqa: F401  (what every worker imports first)

        if cfg.mode != "random":
            import stable_baselines3  # noqa: F401
            import torch  # noqa: F401
        startup = time.perf_counter() - t0
        random_rate, random_fixed = _timed_shard(CollectConfig.from_dict(base | {"mode": "random"}), shard[:1])
        learn_rate, learn_fixed = None, 0.0
        if cfg.mode != "random":
            sac = base["sac"] | {"learning_starts": 0}
            learn_rate, learn_fixed = _timed_shard(CollectConfig.from_dict(base | {"sac": sac}), shard)
    except OmrlError:
        raise
    except Exception as e:  # noqa: BLE001 - an estimate must never stop a collection
        if console is not None:
            console.print(f"[yellow]calibration failed ({type(e).__name__}: {e}); no time estimate[/]")
        return None
    per_unit = []
    for unit in plan.units:
        m = len(unit)
        if cfg.mode == "random":
            t = random_fixed * m + m * k_steps / random_rate
        else:
            ls = min(cfg.sac.learning_starts, k_steps)
            # per-task: one learner per unit; shared: one vector step moves every task of the shard,
            # so the calibrated rate (per task) already includes the shard's width.
            t = learn_fixed + m * ls / random_rate + (k_steps - ls) / learn_rate
            if cfg.checkpoint_every:
                # Rollouts step the env and run the actor only: roughly half the raw stepping rate
                # (a guess, not measured).
                t += m * (k_steps // cfg.checkpoint_every) * cfg.checkpoint_rollouts * plan.horizon / (random_rate / 2)
        per_unit.append(t)
    lanes = max(1, min(cfg.workers, os.cpu_count() or 1, len(per_unit)))
    return startup + max(sum(per_unit) / lanes, max(per_unit))


def _space_dict(space) -> dict[str, Any]:
    import gymnasium

    d: dict[str, Any] = {"type": type(space).__name__, "shape": list(space.shape or ()), "dtype": str(space.dtype)}
    if isinstance(space, gymnasium.spaces.Box):
        for key in ("low", "high"):
            v = np.asarray(getattr(space, key), dtype=np.float64)
            v = np.where(np.isfinite(v), v, np.nan)
            flat = np.unique(v)
            if len(flat) == 1:
                d[key] = None if np.isnan(flat[0]) else float(flat[0])
            else:
                d[key] = [None if np.isnan(x) else float(x) for x in v.ravel()]
    elif isinstance(space, gymnasium.spaces.Discrete):
        d["n"] = int(space.n)
    return d


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def build_metadata(plan: CollectionPlan, task_stats: list[dict], learner_stats: dict[str, Any]) -> dict[str, Any]:
    """Everything a reader needs besides the arrays (see ``omrl_data.schema`` for the layout)."""
    from omrl_data.tasks import get_family

    cfg = plan.config
    family = get_family(cfg.family)
    env = family.make_env(plan.tasks.params[0])
    try:
        obs_space, act_space = _space_dict(env.observation_space), _space_dict(env.action_space)
    finally:
        env.close()
    return {
        "family": cfg.family,
        "name": cfg.dataset_name(),
        "tasks": plan.tasks.to_dict(),
        "env_id": family.env_id,
        "env_kwargs": {},  # per task: {"task": params} from the task table (family.make_env(params))
        "param_names": list(family.param_names),
        "papers": list(family.papers),
        "observation_space": obs_space,
        "action_space": act_space,
        "obs_dim": int(family.obs_dim),
        "act_dim": int(family.act_dim),
        "gamma": float(cfg.gamma),
        "horizon": int(family.horizon),
        "collection": {**cfg.to_dict(), "units": plan.units},
        "package_versions": package_versions(),
        "format_version": FORMAT_VERSION,
        "source_names": {str(k): v for k, v in SOURCE_NAMES.items()},
        "task_stats": [_jsonable(s) for s in task_stats],
        "learner_stats": learner_stats,
    }
