"""Run metrics: namespaced keys (``train/...``, ``eval/...``) to CSV and TensorBoard, and plots.

``metrics.csv`` is long form (``step,key,value``), so algorithms can log any keys without a
fixed header, and a resumed run drops rows after its checkpoint step before appending.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.csv"
CURVE_FILE = "learning_curve.png"


class MetricsLogger:
    """Appends metric rows to ``<run>/metrics.csv`` and ``<run>/tensorboard/``.

    resume_step: for a resumed run, the checkpoint step; rows after it are dropped (they
    belong to the interrupted tail) and TensorBoard purges them too.
    """

    def __init__(self, run_dir: str | Path, resume_step: int | None = None, tensorboard: bool = True):
        self.path = Path(run_dir) / METRICS_FILE
        if resume_step is not None and self.path.exists():
            rows = read_metrics(self.path)
            self._write_all([r for r in rows if r["step"] <= resume_step])
        elif not self.path.exists() or resume_step is None:
            self._write_all([])
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=None if resume_step is None else resume_step + 1)
            except ImportError:  # tensorboard is optional; the CSV is the record
                self._tb = None

    def _write_all(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "key", "value"])
            for r in rows:
                w.writerow([r["step"], r["key"], repr(r["value"])])
        tmp.replace(self.path)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            for key, value in metrics.items():
                w.writerow([step, key, repr(float(value))])
        if self._tb is not None:
            for key, value in metrics.items():
                if math.isfinite(float(value)):
                    self._tb.add_scalar(key, float(value), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows ``{"step", "key", "value"}`` of a ``metrics.csv`` (or a run folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / METRICS_FILE
    with open(p, newline="") as f:
        return [{"step": int(r["step"]), "key": r["key"], "value": float(r["value"])} for r in csv.DictReader(f)]


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r["value"]) for r in rows if r["key"] == key]
    return [s for s, _ in pts], [v for _, v in pts]


def plot_learning_curve(run_dir: str | Path, title: str = "") -> Path:
    """``learning_curve.png``: eval returns (before/after adaptation, random) and train losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label, style in (
        ("eval/return_after", "after adaptation", "-o"),
        ("eval/return_before", "before adaptation", "--s"),
        ("eval/return_random", "random policy", ":"),
    ):
        x, y = series(rows, key)
        if x:
            ax1.plot(x, y, style, label=label, markersize=3)
    ax1.set_xlabel("meta-step")
    ax1.set_ylabel("mean return on test tasks")
    ax1.legend()
    ax1.grid(alpha=0.3)
    for key, label in (("train/value_loss", "outer value loss"), ("train/policy_loss", "outer policy loss")):
        x, y = series(rows, key)
        if x:
            ax2.plot(x, y, label=label)
    ax2.set_xlabel("meta-step")
    ax2.set_yscale("symlog")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out = run_dir / CURVE_FILE
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
