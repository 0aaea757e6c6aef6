"""Training runs of a study: each one a normal ``omrl-train`` run folder made by a subprocess.

A :class:`RunSpec` is one (family, algorithm, seed). Its :meth:`RunSpec.command` is the exact
``omrl-train`` command line, printed in the results so that any single run can be repeated.
:func:`run_all` runs the specs ``workers`` at a time (one per core by default), each with its own
log file, and shows a rich progress display; finished runs are skipped and unfinished ones resumed
(``omrl-train --resume``) when ``resume`` is set.
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

    @property
    def label(self) -> str:
        return f"{self.family}/{self.algorithm}/s{self.seed}"

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
        """The shell command that makes this run folder from scratch."""
        return shlex.join(["omrl-train", *self.args()])

    def status(self) -> str:
        """``done`` (eval.json of the final meta-step), ``partial`` (a checkpoint to resume) or ``new``."""
        ev = read_eval(self.out)
        if ev is not None and int(ev.get("step", -1)) >= self.steps and ev.get("mean") and ev.get("tasks"):
            return "done"
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
        for item in self.settings:
            key, _, raw = item.partition("=")
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


def read_eval(run_dir: Path) -> dict[str, Any] | None:
    p = Path(run_dir) / "eval.json"
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
    action: str  # "skipped" (already done) | "trained" | "resumed" | "failed"
    seconds: float
    returncode: int | None = None
    log: Path | None = None
    tail: list[str] = field(default_factory=list)  # last lines of the log of a failed run


def run_all(
    specs: list[RunSpec],
    workers: int,
    resume: bool = False,
    console: Any = None,
    progress: bool = True,
    on_done: Callable[[RunOutcome], None] | None = None,
    poll_s: float = 0.5,
) -> list[RunOutcome]:
    """Run every spec (``workers`` subprocesses at a time) and return their outcomes in spec order.

    resume: skip finished runs, continue partial ones with ``--resume``; without it a spec whose
    folder already holds a run is an error (checked by the caller before anything starts).
    Ctrl-C stops the running subprocesses (their last checkpoint stays) and re-raises.
    """
    exe = train_executable()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    outcomes: dict[int, RunOutcome] = {}
    todo: list[int] = []
    for i, spec in enumerate(specs):
        state = spec.status()
        if state == "done" and resume:
            outcomes[i] = RunOutcome(spec, "skipped", 0.0, 0, spec.out / LOG_FILE)
        else:
            todo.append(i)
    display = _Display(console, specs, len(specs) - len(todo), enabled=progress and console is not None)
    running: dict[int, tuple[subprocess.Popen, float, str, Any]] = {}
    try:
        while todo or running:
            while todo and len(running) < max(1, workers):
                i = todo.pop(0)
                spec = specs[i]
                action = "resumed" if resume and spec.status() == "partial" else "trained"
                spec.out.mkdir(parents=True, exist_ok=True)
                log = open(spec.out / LOG_FILE, "a" if action == "resumed" else "w")
                log.write(f"$ {spec.command()}{' --resume' if action == 'resumed' else ''}\n")
                log.flush()
                argv = [*exe, *spec.args(), "--quiet", *(["--resume"] if action == "resumed" else [])]
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                        preexec_fn=_die_with_parent)
                running[i] = (proc, time.time(), action, log)
                display.start(i)
            time.sleep(poll_s)
            for i in list(running):
                proc, t0, action, log = running[i]
                display.update(i, last_step(specs[i].out))
                if proc.poll() is None:
                    continue
                log.close()
                del running[i]
                spec = specs[i]
                ok = proc.returncode == 0 and spec.status() == "done"
                outcome = RunOutcome(spec, action if ok else "failed", time.time() - t0, proc.returncode, spec.out / LOG_FILE)
                if not ok:
                    outcome.tail = _tail(spec.out / LOG_FILE)
                outcomes[i] = outcome
                display.finish(i, outcome)
                if on_done is not None:
                    on_done(outcome)
    except BaseException:
        for proc, _, _, log in running.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.time() + 10
        for proc, _, _, log in running.values():
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        raise
    finally:
        display.stop()
    return [outcomes[i] for i in range(len(specs))]


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
