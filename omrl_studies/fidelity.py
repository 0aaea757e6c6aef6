"""The fidelity protocol (``omrl-study fidelity``): do the algorithms learn from omrl data?

For each family of the budget (``omrl_studies.recipes``):

1. **data**: reuse the dataset collected with the budget's recipe, resume its unfinished
   collection, or collect it (``omrl_studies.datasets.ensure_dataset``);
2. **training**: every (algorithm, seed) as a normal ``omrl-train`` run folder
   ``OUT/runs/<family>/<algo>/s<seed>``, ``workers`` subprocesses at a time, each with one torch
   thread; the final evaluation of each run is on the family's held-out tasks;
3. **results**: ``OUT/results.md``, ``results.csv``, ``results.json`` and ``results.png``: per
   family x algorithm, normalised score and raw returns after and before adaptation (mean +- std
   over seeds), random, standing still and the behaviour tiers, the exact command of every run,
   and the wall time of each phase.

Every setting is resolved and checked before anything is collected or trained, so a bad option
costs a second. ``resume`` skips finished runs and continues unfinished ones.
"""
from __future__ import annotations

import os
import platform
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omrl_data.errors import BadInput
from omrl_studies import recipes
from omrl_studies.runs import RunOutcome, RunSpec

RUNS_DIR = "runs"


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C during a study; ``resume_command`` continues it."""

    def __init__(self, resume_command: str):
        super().__init__(f"interrupted; resume with: {resume_command}")
        self.resume_command = resume_command


@dataclass
class FidelityOptions:
    budget: str = recipes.DEFAULT_BUDGET
    seeds: int = 3  # seeds 0 .. seeds-1 of every (family, algorithm)
    algorithms: tuple[str, ...] = recipes.ALGORITHMS
    families: tuple[str, ...] | None = None  # None = the protocol's families (recipes.FAMILIES) of the budget; others with a recipe (hopper_params, walker_params) on request
    workers: int | None = None  # parallel training runs (and collection workers); None = one per core
    out: str | Path | None = None  # study folder; None = studies/fidelity-<budget>
    resume: bool = False
    root: str | Path | None = None  # catalog root; None = $OMRL_HOME or ~/.omrl
    device: str = "cpu"  # torch device of SAC collection and of training


@dataclass
class FidelityPlan:
    options: FidelityOptions
    out: Path
    workers: int
    families: tuple[str, ...]
    algorithms: tuple[str, ...]
    collect: dict[str, Any]  # family -> CollectConfig
    settings: dict[tuple[str, str], list[str]]  # (family, algo) -> --set settings
    steps: dict[tuple[str, str], int]  # (family, algo) -> meta-steps

    def command(self, resume: bool = False) -> str:
        o = self.options
        parts = ["omrl-study", "fidelity", "--budget", o.budget, "--seeds", str(o.seeds),
                 "--algorithms", ",".join(self.algorithms), "--families", ",".join(self.families),
                 "--workers", str(self.workers), "--out", str(self.out)]
        if o.root is not None:
            parts += ["--root", str(o.root)]
        if o.device != "cpu":
            parts += ["--device", o.device]
        if resume:
            parts.append("--resume")
        return shlex.join(parts)


@dataclass
class FidelityResult:
    out: Path
    paths: dict[str, Path]  # results.json / csv / md / png
    summary: dict[str, Any]  # see omrl_studies.results.aggregate
    outcomes: list[RunOutcome]
    wall_seconds: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.action == "failed"]


def _names(value: Any, accepted: tuple[str, ...], what: str, flag: str, budget: str) -> tuple[str, ...]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    if not items:
        raise BadInput(f"{flag} needs at least one {what}; budget {budget} accepts: {', '.join(accepted)}")
    bad = [v for v in items if v not in accepted]
    if bad:
        raise BadInput(f"unknown {what} {bad[0]!r} in {flag}; budget {budget} accepts: {', '.join(accepted)}")
    return tuple(dict.fromkeys(items))


def plan_fidelity(options: FidelityOptions) -> FidelityPlan:
    """Resolve and check every setting of the study; writes nothing. Raises BadInput (one line)."""
    from omrl_algos.registry import algorithm_names
    from omrl_data.collection.plan import default_workers, make_plan
    from omrl_studies.checks import resolve_training

    budget = recipes.check_budget(options.budget)
    if isinstance(options.seeds, bool) or not isinstance(options.seeds, int) or options.seeds < 1:
        raise BadInput(f"--seeds must be a positive integer, got {options.seeds!r}")
    workers = default_workers() if options.workers is None else options.workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise BadInput(f"--workers must be a positive integer, got {workers!r}")
    default = tuple(f for f in recipes.families_of(options.budget) if f in recipes.FAMILIES)
    families = default if options.families is None else _names(
        options.families, recipes.families_of(options.budget), "family", "--families", options.budget)
    registered = tuple(a for a in algorithm_names() if a in budget["algo"])
    algorithms = _names(options.algorithms, registered, "algorithm", "--algorithms", options.budget)
    out = Path(options.out) if options.out is not None else Path("studies") / f"fidelity-{options.budget}"
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; give a folder for the study")
    collect, settings, steps = {}, {}, {}
    for fam in families:
        cfg = recipes.collect_config(options.budget, fam, workers, options.device)
        rows = make_plan(cfg).rows_per_task  # validates the collection recipe (nothing written)
        collect[fam] = cfg
        for algo in algorithms:
            s = recipes.as_overrides(recipes.training_settings(options.budget, fam, algo))
            if options.device != "cpu":
                s.append(f"train.device={options.device}")
            run_cfg = resolve_training(algo, s, fam, rows)
            settings[(fam, algo)] = [x for x in s if not x.startswith("train.device=")]
            steps[(fam, algo)] = int(run_cfg.train.steps)
    runs_dir = out / RUNS_DIR
    if not options.resume and runs_dir.is_dir() and any(runs_dir.rglob("config.json")):
        raise BadInput(f"{out} already holds a study; pass --resume to continue it, or another --out")
    plan = FidelityPlan(options, out, workers, families, algorithms, collect, settings, steps)
    for spec in run_specs(plan, {f: "" for f in families}):
        spec.check_settings()  # a resumed study whose recipe changed: before any collection
    return plan


def plan_lines(plan: FidelityPlan) -> list[str]:
    """What the study will do: per family reuse / resume / collect, and the runs to train."""
    from omrl_data.collection.plan import make_plan
    from omrl_studies.datasets import find_dataset, find_unfinished

    lines = []
    for fam in plan.families:
        cfg = plan.collect[fam]
        found = find_dataset(cfg, plan.options.root)
        staged = None if found else find_unfinished(cfg, plan.options.root)
        what = (f"reuse {found}" if found else f"resume {staged}" if staged else
                f"collect {make_plan(cfg).transitions:,} transitions ({cfg.mode}, {cfg.tasks} tasks)")
        lines.append(f"  {fam}: {what}")
    specs = run_specs(plan, {f: "" for f in plan.families})
    states = [s.status() for s in specs]
    done = states.count("done") if plan.options.resume else 0
    partial = states.count("partial") if plan.options.resume else 0
    lines.append(f"  runs: {len(specs)} ({done} finished, {partial} to continue, {len(specs) - done - partial} to train), "
                 f"{plan.workers} at a time")
    return lines


def run_specs(plan: FidelityPlan, dataset_ids: dict[str, str]) -> list[RunSpec]:
    o = plan.options
    specs = []
    for fam in plan.families:
        for algo in plan.algorithms:
            for seed in range(o.seeds):
                specs.append(RunSpec(
                    family=fam, algorithm=algo, seed=seed, dataset_id=dataset_ids[fam],
                    out=plan.out / RUNS_DIR / fam / algo / f"s{seed}", settings=list(plan.settings[(fam, algo)]),
                    steps=plan.steps[(fam, algo)], root=None if o.root is None else str(o.root),
                    device=None if o.device == "cpu" else o.device,
                ))
    return specs


def run_fidelity(options: FidelityOptions, console: Any = None, progress: bool = True) -> FidelityResult:
    """Run the whole protocol (see the module docstring); returns the written results."""
    from omrl_data.collection import CollectionInterrupted
    from omrl_data.collection.plan import resume_command
    from omrl_data.store import catalog
    from omrl_studies.datasets import ensure_dataset, recipe_of
    from omrl_studies.results import aggregate, write_results
    from omrl_studies.runs import run_all

    t_start = time.time()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    plan = plan_fidelity(options)
    resume_cmd = plan.command(resume=True)
    plan.out.mkdir(parents=True, exist_ok=True)
    if console is not None:
        console.print(f"fidelity study, budget [bold]{options.budget}[/]: {len(plan.families)} families x "
                      f"{len(plan.algorithms)} algorithms x {options.seeds} seeds, {plan.workers} workers -> {plan.out}")
    if console is not None:
        for line in plan_lines(plan):
            console.print(line, highlight=False, soft_wrap=True)
    walls: dict[str, Any] = {"collection_per_family": {}}
    datasets: dict[str, dict[str, Any]] = {}
    try:
        t0 = time.time()
        for fam in plan.families:
            cfg = plan.collect[fam]
            choice = ensure_dataset(cfg, options.root, console=console, progress=progress)
            walls["collection_per_family"][fam] = round(choice.seconds, 1)
            datasets[fam] = {
                "dataset_id": choice.dataset_id, "action": choice.action, "seconds": round(choice.seconds, 1),
                "recipe": recipe_of(cfg),
                "command": resume_command(cfg, None if options.root is None else catalog.resolve_root(options.root)).removesuffix(" --resume"),
            }
        walls["collection"] = round(time.time() - t0, 1)

        specs = run_specs(plan, {f: d["dataset_id"] for f, d in datasets.items()})
        for spec in specs:
            spec.check_folder()
        t0 = time.time()
        outcomes = run_all(specs, plan.workers, resume=options.resume, console=console, progress=progress)
        walls["training"] = round(time.time() - t0, 1)
    except CollectionInterrupted:
        raise StudyInterrupted(resume_cmd) from None
    except KeyboardInterrupt:
        raise StudyInterrupted(resume_cmd) from None

    t0 = time.time()
    summary = aggregate(outcomes, options.root)
    walls["training_per_run"] = {o.spec.label: round(o.seconds, 1) for o in outcomes}
    header = {
        "title": f"Fidelity protocol, budget {options.budget}",
        "budget": options.budget,
        "command": plan.command(),
        "resume_command": resume_cmd,
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "workers": plan.workers,
        "seeds": options.seeds,
        "families": list(plan.families),
        "algorithms": list(plan.algorithms),
        "datasets": datasets,
        "training_settings": {f"{fam}/{algo}": s for (fam, algo), s in plan.settings.items()},
        "wall_seconds": walls,
    }
    paths = write_results(plan.out, summary, header)
    walls["aggregation"] = round(time.time() - t0, 1)
    walls["total"] = round(time.time() - t_start, 1)
    paths = write_results(plan.out, summary, header)  # again, with the aggregation and total times
    return FidelityResult(plan.out, paths, summary, outcomes, walls)
