"""Training runs of a study: each one a normal ``omrl-train`` run folder made by a subprocess.

A :class:`RunSpec` is one (family, algorithm, seed) of a study point (``tag``). Its
:meth:`RunSpec.command` is the exact ``omrl-train`` command line, printed in the results so that
any single run can be repeated; its :class:`EvalSpec` s are ``omrl-eval`` commands run on the
finished run folder (another adaptation dataset, online fine-tuning), each kept as
``eval-<tag>.json`` there. :func:`run_all` runs the specs ``workers`` at a time (one per core by
default) as local subprocesses or as Ray tasks (``backend="ray"``), each with its own log file,
and shows a rich progress display; finished runs are skipped and unfinished ones resumed
(``omrl-train --resume``; only the missing evaluations of a trained run) when ``resume`` is set.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from omrl_data.errors import BadInput

LOG_FILE = "train.log"  # stdout and stderr of the run's omrl-train process, in its run folder
# Settings a resumed run may change without mixing recipes (eval.* may change too).
EXTENDABLE = ("train.eval_every", "train.log_every", "train.threads", "train.checkpoint_every", "train.device")


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(a)), abs(float(b)))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b


@dataclass
class EvalSpec:
    """``omrl-eval RUN ARGS`` after training; its result is kept as ``eval-<tag>.json`` in the run folder."""

    tag: str  # file-name-safe name of this evaluation (e.g. adapt-medium, online)
    args: list[str] = field(default_factory=list)  # omrl-eval options after the run folder

    @property
    def file(self) -> str:
        return f"eval-{self.tag}.json"


@dataclass
class RunSpec:
    family: str
    algorithm: str
    seed: int
    dataset_id: str
    out: Path  # the run folder
    settings: list[str]  # --set key=value settings (the recipe's), in order
    steps: int  # meta-steps the run trains for (train.steps of the settings)
    root: str | None = None  # catalog root, when not the default
    device: str | None = None
    tag: str = ""  # the study point this run belongs to ("" in the fidelity protocol)
    evaluations: list[EvalSpec] = field(default_factory=list)  # omrl-eval runs after training

    @property
    def label(self) -> str:
        return f"{self.family}/{self.tag + '/' if self.tag else ''}{self.algorithm}/s{self.seed}"

    def args(self) -> list[str]:
        """The arguments after ``omrl-train``."""
        out = [self.algorithm, "--dataset", self.dataset_id, "--seed", str(self.seed), "--out", str(self.out)]
        if self.root is not None:
            out += ["--root", str(self.root)]
        if self.device is not None:
            out += ["--device", self.device]
        for s in self.settings:
            out += ["--set", s]
        return out

    def command(self) -> str:
        """The shell command that makes this run folder from scratch (then its evaluations)."""
        return " && ".join([shlex.join(["omrl-train", *self.args()]), *self.eval_commands()])

    def eval_args(self, e: EvalSpec) -> list[str]:
        """The arguments after ``omrl-eval`` of one evaluation."""
        out = [str(self.out), *e.args]
        if self.device is not None:
            out += ["--device", self.device]
        return out

    def eval_commands(self) -> list[str]:
        """The ``omrl-eval`` command of each evaluation, with the rename that keeps its file."""
        return [shlex.join(["omrl-eval", *self.eval_args(e)]) + " && "
                + shlex.join(["mv", str(self.out / EVAL_OUT), str(self.out / e.file)]) for e in self.evaluations]

    def trained(self) -> bool:
        """Whether eval.json holds the evaluation of the final meta-step."""
        ev = read_eval(self.out)
        return ev is not None and int(ev.get("step", -1)) >= self.steps and bool(ev.get("mean")) and bool(ev.get("tasks"))

    def missing_evaluations(self) -> list[EvalSpec]:
        """The evaluations whose file is missing or older than the final meta-step."""
        out = []
        for e in self.evaluations:
            ev = read_eval(self.out, e.file)
            if ev is None or int(ev.get("step", -1)) < self.steps or not ev.get("tasks"):
                out.append(e)
        return out

    def status(self) -> str:
        """``done`` (eval.json of the final meta-step and every evaluation), ``trained`` (only
        evaluations missing), ``partial`` (a checkpoint to resume) or ``new``."""
        if self.trained():
            return "trained" if self.missing_evaluations() else "done"
        if (self.out / "checkpoints" / "latest.pt").is_file():
            return "partial"
        return "new"

    def saved_config(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.out / "config.json").read_text())
        except (OSError, ValueError):
            return None  # none, or half-written: the run is redone

    def check_settings(self) -> None:
        """BadInput when the folder holds a run made with other settings than the recipe's now.

        A run folder may be continued to more meta-steps (``train.steps`` grew) and evaluated with
        other evaluation settings; anything else (network, batches, learning rates, fewer
        meta-steps) would mix two recipes in one table.
        """
        import yaml

        cfg = self.saved_config()
        if cfg is None:
            return
        if cfg.get("algorithm") not in (None, self.algorithm):
            raise BadInput(f"{self.out} holds a {cfg.get('algorithm')} run, but this study trains {self.algorithm} there; use another --out")
        last: dict[str, str] = {}
        for item in self.settings:  # a later --set of a key overrides an earlier one, as in omrl-train
            key, _, raw = item.partition("=")
            last[key] = raw
        for key, raw in last.items():
            if key.split(".")[0] == "eval" or key in EXTENDABLE:
                continue
            node: Any = cfg
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            want = yaml.safe_load(raw)
            if key == "train.steps":
                if node is not None and int(node) > int(want):
                    raise BadInput(f"{self.out} was trained for {node} meta-steps, the recipe now says {want}; "
                                   "use another --out (a run can be continued to more steps, not fewer)")
                continue
            if node is not None and not _same_value(node, want):
                raise BadInput(f"{self.out} was made with {key}={node}, the recipe now says {key}={raw}; "
                               "use another --out, or delete that run folder to redo it")

    def check_folder(self) -> None:
        """BadInput when the folder holds a run of another dataset or algorithm (a stale study)."""
        cfg = self.saved_config()
        if cfg is None:
            return
        if cfg.get("algorithm") != self.algorithm or cfg.get("dataset") != self.dataset_id:
            raise BadInput(
                f"{self.out} holds a {cfg.get('algorithm')} run on {cfg.get('dataset')}, but this study trains "
                f"{self.algorithm} on {self.dataset_id}; use another --out"
            )
        self.check_settings()


EVAL_OUT = "eval_latest.json"  # what omrl-eval writes for the latest checkpoint


def read_eval(run_dir: Path, name: str = "eval.json") -> dict[str, Any] | None:
    p = Path(run_dir) / name
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except (OSError, ValueError):
        return None


def train_executable() -> list[str]:
    """How to start ``omrl-train`` with this interpreter (its console script when installed)."""
    script = Path(sys.executable).parent / "omrl-train"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'omrl-train'; from cli.train import main; main()"]


def eval_executable() -> list[str]:
    """How to start ``omrl-eval`` with this interpreter (its console script when installed)."""
    script = Path(sys.executable).parent / "omrl-eval"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'omrl-eval'; from cli.train import eval_main; eval_main()"]


@dataclass
class Step:
    """One subprocess of a run's job: training, or one evaluation (``rename``: its output file)."""

    argv: list[str]
    line: str  # the command as written into the run's log
    rename: tuple[str, str] | None = None  # (written, kept) file names in the run folder, after success


def job_steps(spec: RunSpec, resume: bool) -> tuple[str, list[Step]]:
    """``(action, steps)`` of a spec: what is still to do for it, in order."""
    state = spec.status() if resume else "new"
    steps: list[Step] = []
    action = {"partial": "resumed", "trained": "evaluated"}.get(state, "trained")
    if state in ("new", "partial"):
        extra = ["--resume"] if state == "partial" else []
        steps.append(Step([*train_executable(), *spec.args(), "--quiet", *extra],
                          f"$ {shlex.join(['omrl-train', *spec.args()])}{' --resume' if extra else ''}"))
    todo = spec.evaluations if state in ("new", "partial") else spec.missing_evaluations()
    for e in todo:
        steps.append(Step([*eval_executable(), *spec.eval_args(e)], f"$ {shlex.join(['omrl-eval', *spec.eval_args(e)])}",
                          (EVAL_OUT, e.file)))
    return action, steps


def run_job(out: str, steps: list[dict[str, Any]], append: bool, env: dict[str, str] | None = None) -> int:
    """Run a job's steps one after another in the run folder ``out`` (log: ``train.log``), stop at
    the first failure; returns the last exit code. Used by the Ray backend on any node that sees
    ``out`` (the local backend does the same with its own polling)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    code = 0
    with open(folder / LOG_FILE, "a" if append else "w") as log:
        for st in steps:
            log.write(st["line"] + "\n")
            log.flush()
            code = subprocess.call(st["argv"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=dict(os.environ, **(env or {})), preexec_fn=_die_with_parent)
            if code != 0:
                return code
            if st.get("rename"):
                os.replace(folder / st["rename"][0], folder / st["rename"][1])
    return code


def last_step(run_dir: Path) -> int:
    """The latest meta-step in a run's metrics.csv (0 when none yet); reads only the file's tail."""
    p = Path(run_dir) / "metrics.csv"
    try:
        with open(p, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 2048))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        head = line.split(",", 1)[0]
        if head.isdigit():
            return int(head)
    return 0


@dataclass
class RunOutcome:
    spec: RunSpec
    action: str  # "skipped" (already done) | "trained" | "resumed" | "evaluated" (only evaluations) | "failed"
    seconds: float
    returncode: int | None = None
    log: Path | None = None
    tail: list[str] = field(default_factory=list)  # last lines of the log of a failed run


BACKENDS = ("local", "ray")


def run_all(
    specs: list[RunSpec],
    workers: int,
    resume: bool = False,
    console: Any = None,
    progress: bool = True,
    on_done: Callable[[RunOutcome], None] | None = None,
    poll_s: float = 0.5,
    backend: str = "local",
    ray_address: str | None = None,
) -> list[RunOutcome]:
    """Run every spec (``workers`` at a time) and return their outcomes in spec order.

    Each spec is a job: training (unless finished), then its evaluations, in one log file.
    backend: ``local`` subprocesses, or ``ray`` tasks (one CPU each; on a cluster the run folders
    and the catalog must be on a filesystem every node sees), see :func:`ray_session`.
    resume: skip finished runs, continue partial ones with ``--resume``, run only the missing
    evaluations of trained ones; without it a spec whose folder already holds a run is an error
    (checked by the caller before anything starts).
    Ctrl-C stops the running subprocesses or Ray tasks (their last checkpoint stays) and re-raises.
    """
    if backend not in BACKENDS:
        raise BadInput(f"unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    outcomes: dict[int, RunOutcome] = {}
    jobs: dict[int, tuple[str, list[Step]]] = {}
    for i, spec in enumerate(specs):
        if resume and spec.status() == "done":
            outcomes[i] = RunOutcome(spec, "skipped", 0.0, 0, spec.out / LOG_FILE)
        else:
            jobs[i] = job_steps(spec, resume)
    display = _Display(console, specs, len(outcomes), enabled=progress and console is not None)

    def finish(i: int, action: str, t0: float, code: int | None) -> None:
        spec = specs[i]
        ok = code == 0 and spec.status() == "done"
        outcome = RunOutcome(spec, action if ok else "failed", time.time() - t0, code, spec.out / LOG_FILE)
        if not ok:
            outcome.tail = _tail(spec.out / LOG_FILE)
        outcomes[i] = outcome
        display.finish(i, outcome)
        if on_done is not None:
            on_done(outcome)

    try:
        if not jobs:
            pass  # everything was finished already: no runtime to start
        elif backend == "ray":
            _run_ray(specs, jobs, workers, ray_address, env, display, finish, poll_s)
        else:
            _run_local(specs, jobs, workers, env, display, finish, poll_s)
    finally:
        display.stop()
    return [outcomes[i] for i in range(len(specs))]


def _run_local(specs, jobs, workers, env, display, finish, poll_s) -> None:
    """Subprocesses on this machine; a job's next step starts in the same slot when one ends."""
    full_env = dict(os.environ, **env)
    todo = list(jobs)
    running: dict[int, list[Any]] = {}  # i -> [proc, t0, action, log, remaining steps, current step]

    def launch(i: int, st: Step, log: Any) -> subprocess.Popen:
        log.write(st.line + "\n")
        log.flush()
        return subprocess.Popen(st.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env,
                                preexec_fn=_die_with_parent)

    try:
        while todo or running:
            while todo and len(running) < max(1, workers):
                i = todo.pop(0)
                spec = specs[i]
                action, steps = jobs[i]
                spec.out.mkdir(parents=True, exist_ok=True)
                log = open(spec.out / LOG_FILE, "w" if action == "trained" else "a")
                if not steps:  # nothing left to run (a race with another study): judge the folder
                    log.close()
                    finish(i, action, time.time(), 0)
                    continue
                running[i] = [launch(i, steps[0], log), time.time(), action, log, steps[1:], steps[0]]
                display.start(i)
            time.sleep(poll_s)
            for i in list(running):
                proc, t0, action, log, rest, current = running[i]
                display.update(i, last_step(specs[i].out))
                if proc.poll() is None:
                    continue
                code = proc.returncode
                if code == 0 and current.rename is not None:
                    try:
                        os.replace(specs[i].out / current.rename[0], specs[i].out / current.rename[1])
                    except OSError:
                        code = 1
                if code == 0 and rest:
                    running[i][0], running[i][4], running[i][5] = launch(i, rest[0], log), rest[1:], rest[0]
                    continue
                log.close()
                del running[i]
                finish(i, action, t0, code)
    except BaseException:
        for proc, _, _, log, _, _ in running.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.time() + 10
        for proc, _, _, log, _, _ in running.values():
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        raise


def check_backend(backend: str, ray_address: str | None) -> None:
    """BadInput for an unknown backend, ``--ray-address`` without ``--backend ray``, Ray missing,
    or a cluster address that does not answer (``omrl-data collect``'s rules)."""
    from omrl_data.collection.plan import check_ray_address, prepare_ray_auth

    if backend not in BACKENDS:
        raise BadInput(f"unknown --backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    if ray_address and backend != "ray":
        raise BadInput("--ray-address needs --backend ray")
    if backend == "ray":
        prepare_ray_auth(ray_address or os.environ.get("RAY_ADDRESS"))
        try:
            import ray  # noqa: F401
        except ImportError:
            raise BadInput("--backend ray needs Ray: pip install 'omrl[ray]'") from None
        if ray_address:
            check_ray_address(ray_address)
        elif os.environ.get("RAY_ADDRESS"):
            check_ray_address(os.environ["RAY_ADDRESS"])


def ray_session(ray_address: str | None, workers: int) -> bool:
    """Connect as ``omrl-data collect`` does: an initialised Ray, else ``--ray-address``, else
    ``$RAY_ADDRESS``, else a small local runtime of ``workers`` CPUs. Returns whether this call
    started it (then the caller shuts it down)."""
    from omrl_data.collection.plan import prepare_ray_auth

    prepare_ray_auth(ray_address or os.environ.get("RAY_ADDRESS"))
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    if address:
        try:
            ray.init(address=None if address == os.environ.get("RAY_ADDRESS") else address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BadInput(f"cannot connect to the Ray cluster at {address!r} ({first}); check --ray-address "
                           "(token authentication: RAY_AUTH_MODE=token and the cluster's token)") from None
    else:
        ray.init(address="local", num_cpus=max(1, workers), object_store_memory=80 * 2**20, **kwargs)
    return True


def _run_ray(specs, jobs, workers, ray_address, env, display, finish, poll_s) -> None:
    """Each job as one Ray task (:func:`run_job`), at most ``workers`` at a time."""
    import ray

    started = ray_session(ray_address, workers)
    remote = ray.remote(num_cpus=1, max_retries=0)(run_job)
    running: dict[Any, tuple[int, float, str]] = {}
    todo = list(jobs)
    try:
        while todo or running:
            while todo and len(running) < max(1, workers):
                i = todo.pop(0)
                action, steps = jobs[i]
                plain = [{"argv": st.argv, "line": st.line, "rename": st.rename} for st in steps]
                ref = remote.remote(str(specs[i].out), plain, action != "trained", env)
                running[ref] = (i, time.time(), action)
                display.start(i)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=poll_s)
            for ref, (i, _, _) in running.items():
                display.update(i, last_step(specs[i].out))
            for ref in ready:
                i, t0, action = running.pop(ref)
                try:
                    code = int(ray.get(ref))
                except ray.exceptions.RayError:  # the worker or its node died
                    code = None
                finish(i, action, t0, code)
    finally:
        for ref in running:  # interrupted: stop what still runs (its subprocess gets SIGTERM with it)
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort while stopping
                pass
        if started:
            ray.shutdown()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the study process dies (even by kill -9), so no
    orphaned run keeps writing into a folder that a resumed study takes over (Linux prctl)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _tail(path: Path, n: int = 5) -> list[str]:
    try:
        return [line for line in path.read_text(errors="replace").splitlines() if line.strip()][-n:]
    except OSError:
        return []


class _Display:
    """One bar for the whole study and one per running run (meta-steps), with rich."""

    def __init__(self, console: Any, specs: list[RunSpec], already: int, enabled: bool):
        self.enabled, self.specs, self.console = enabled, specs, console
        self.bars: dict[int, Any] = {}
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
        )
        self.total = self.progress.add_task("[bold]runs", total=len(specs), completed=already)
        self.progress.start()

    def start(self, i: int) -> None:
        if self.enabled:
            s = self.specs[i]
            self.bars[i] = self.progress.add_task(f"  {s.label}", total=s.steps, completed=last_step(s.out))

    def update(self, i: int, step: int) -> None:
        if self.enabled and i in self.bars:
            self.progress.update(self.bars[i], completed=min(step, self.specs[i].steps))

    def finish(self, i: int, outcome: RunOutcome) -> None:
        if not self.enabled:
            return
        from rich.text import Text

        self.progress.remove_task(self.bars.pop(i))
        self.progress.advance(self.total)
        s = outcome.spec
        if outcome.action == "failed":
            self.progress.console.print(f"[red]failed[/] {s.label} (exit {outcome.returncode}); log: {outcome.log}",
                                        highlight=False)
            for line in outcome.tail:
                self.progress.console.print(Text(f"  {line}", style="dim"))
        else:
            ev = read_eval(s.out) or {}
            m = ev.get("mean", {})
            norm = (m.get("normalised") or {}).get("after")
            extra = f", normalised {norm:.2f}" if isinstance(norm, (int, float)) else ""
            self.progress.console.print(
                f"[green]{outcome.action}[/] {s.label}: after adaptation {m.get('after', float('nan')):.1f}"
                f" (before {m.get('before', float('nan')):.1f}{extra}) in {outcome.seconds:.0f} s", highlight=False)

    def stop(self) -> None:
        if self.enabled:
            self.progress.stop()
