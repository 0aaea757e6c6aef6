"""What a collection shows on the terminal: the plan, live progress bars, the summary table.

Progress is counted in env steps of the learners (``report(task, steps)`` from the workers). One
overall bar, plus one bar per unit of work being run (a task in per-task and random mode, a shard
of tasks in shared mode), so there are never more bars than workers.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from omrl_data.collection.plan import CollectionPlan, human_bytes, human_seconds


class RateColumn(ProgressColumn):
    """Transitions per second of one bar (rich's own speed estimate over its recent updates)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("     - tr/s" if speed is None else f"{speed:>8,.0f} tr/s", style="progress.data.speed")


def unit_label(tasks: list[int]) -> str:
    if len(tasks) == 1:
        return f"task {tasks[0]}"
    return f"tasks {tasks[0]}-{tasks[-1]}" if tasks == list(range(tasks[0], tasks[-1] + 1)) else f"{len(tasks)} tasks"


def plan_table(plan: CollectionPlan, dataset_id: str | None = None, done: set[int] | None = None) -> Table:
    """The plan as a two-column table (printed before anything starts)."""
    c = plan.config
    t = Table(title="collection plan", show_header=False, title_justify="left", box=None, padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    if dataset_id:
        t.add_row("dataset", dataset_id)
    n_test = len(plan.tasks.indices("test"))
    t.add_row("family", f"{c.family} ({plan.n_tasks} tasks, {n_test} test, split {plan.tasks.split_kind}, seed {c.seed})")
    t.add_row("mode", c.mode + (f", {len(plan.units)} shards" if c.mode == "shared" else ""))
    steps = f"{c.steps_per_task:,} env steps per task"
    if c.checkpoint_every:
        steps += f" + {c.checkpoint_rollouts} rollouts every {c.checkpoint_every:,} steps"
    t.add_row("steps", steps)
    t.add_row("transitions", f"{plan.transitions:,} (at most)")
    t.add_row("workers", f"{c.workers} ({c.backend}{', ' + c.ray_address if c.ray_address else ''}), device {c.device}")
    if done:
        t.add_row("resume", f"{len(done)} of {plan.n_tasks} tasks already complete (kept as they are)")
    t.add_row("est. time", human_seconds(plan.est_seconds) + ("" if plan.est_seconds is None else " (from a calibration run)"))
    t.add_row("est. size", f"{human_bytes(plan.est_bytes)} uncompressed (stored compressed)")
    if plan.work_bytes:
        t.add_row("scratch", f"up to {human_bytes(plan.work_bytes)} while learning (progress saved every "
                  f"{human_seconds(plan.config.chunk_seconds)}; deleted as tasks are written)")
    return t


def summary_table(stats: list[dict[str, Any]], title: str, references: dict[str, Any] | None = None) -> Table:
    """Per task: transitions, episodes, mean return of the first and last 10% of its episodes;
    with ``references`` also the stand-still and expert references (``still``, ``expert``), and in
    ``ok`` a "no" on each task whose expert tier does not clearly beat standing still (the
    caption then says why that matters)."""
    from omrl_data.references import uninformative_sentence

    t = Table(title=title, title_justify="left")
    columns = [("task", "right"), ("split", "left"), ("transitions", "right"), ("episodes", "right"),
               ("return first 10%", "right"), ("return last 10%", "right")]
    if references:  # narrower names, so that the table still fits 80 columns
        columns = [("task", "right"), ("split", "left"), ("rows", "right"), ("eps", "right"),
                   ("first 10%", "right"), ("last 10%", "right"), ("still", "right"), ("expert", "right"), ("ok", "left")]
        sentence = uninformative_sentence(references)
        if sentence:
            t.caption = sentence
            t.caption_justify = "left"
    for name, justify in columns:
        t.add_column(name, justify=justify, no_wrap=name not in ("return first 10%", "return last 10%"))

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    for s in stats:
        row = [str(s["index"]), s.get("split", ""), f"{s['transitions']:,}", f"{s['episodes']:,}",
               fmt(s.get("return_first10pct")), fmt(s.get("return_last10pct"))]
        if references:
            i = int(s["index"])
            ok = references["informative"][i]
            row += [fmt(references["stand_still"][i]), fmt(references["expert"][i]), "yes" if ok else "[bold red]no[/]"]
        t.add_row(*row)
    return t


class CollectionProgress:
    """Live bars fed by ``report(task, steps)``; a no-op when ``enabled`` is False."""

    def __init__(self, plan: CollectionPlan, done: set[int], console: Console, enabled: bool = True):
        self.enabled = enabled
        self.steps_per_task = int(plan.config.steps_per_task)
        self.steps = {i: (self.steps_per_task if i in done else 0) for i in range(plan.n_tasks)}
        self.unit_of = {t: k for k, unit in enumerate(plan.units) for t in unit}
        self.units = plan.units
        self.bars: dict[int, Any] = {}
        self.progress = Progress(
            TextColumn("{task.description:>14}"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            RateColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            refresh_per_second=4,
        )
        total = self.steps_per_task * plan.n_tasks
        self.overall = self.progress.add_task("all tasks", total=total, completed=sum(self.steps.values()))

    def __enter__(self) -> "CollectionProgress":
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.progress.stop()

    def report(self, task: int, steps: int) -> None:
        steps = min(int(steps), self.steps_per_task)
        delta = steps - self.steps.get(task, 0)
        if delta <= 0:
            return
        self.steps[task] = steps
        self.progress.advance(self.overall, delta)
        k = self.unit_of.get(task)
        if k is None:
            return
        if k not in self.bars:
            unit = self.units[k]
            already = sum(self.steps[t] for t in unit) - delta
            self.bars[k] = self.progress.add_task(unit_label(unit), total=self.steps_per_task * len(unit), completed=already)
        self.progress.advance(self.bars[k], delta)

    def unit_done(self, k: int) -> None:
        for t in self.units[k]:
            self.report(t, self.steps_per_task)
        if k in self.bars:
            self.progress.remove_task(self.bars.pop(k))
