"""The papers' robustness and ablation studies (``omrl-study task-count | meta-batch | withheld |
data-quality | online | ablations``), on one engine.

A study varies one thing and keeps the rest of the budget's recipe (``omrl_studies.recipes``):

- ``task-count``: training on nested subsets of the training tasks (the first k of one seeded
  permutation, so every subset contains the smaller ones), each a slice with lineage of the base
  dataset that keeps every test task: the same test tasks for every count. The meta-batch is
  lowered to k where the recipe's is larger (a meta-batch cannot hold more tasks than there are).
- ``meta-batch``: ``algo.meta_batch`` = each size.
- ``withheld``: a re-split slice: the training tasks whose ``family.order_key`` lies in the
  half-open ``train_range`` train, every other task is a test task; the results report the test
  tasks inside the range (the base split's held-out ones) and outside it separately.
- ``data-quality``: the quality slices (first / middle / last third of each task's stream) for
  the meta-training data (``meta-training``: train and adapt on the tier, paper 000 Table IV),
  and the adaptation data only (``adaptation``: the method trained on the expert tier adapts at
  meta-test on the tier's data, paper 001 Fig. 5 left); percentage drop of the normalised score
  against expert.
- ``online``: one training per (algorithm, seed), then ``omrl-eval --online-steps ...``; the table
  has the returns after each number of online steps (paper 000 Table III layout).
- ``ablations``: every setting the algorithm declares (``omrl_studies.ablations``) next to the
  full method.

Every run is a normal ``omrl-train`` run folder ``OUT/runs/<setting>/<algo>/s<seed>`` (plus its
``omrl-eval`` files), run by :func:`omrl_studies.runs.run_all` (local subprocesses or Ray tasks);
``resume`` continues the unfinished runs only; results are written by
:func:`omrl_studies.results.write_study_results`.
"""
from __future__ import annotations

import math
import os
import platform
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omrl_data.errors import BadInput
from omrl_data.slicing import QUALITY_TIERS, SliceSpec
from omrl_studies import recipes
from omrl_studies.runs import EvalSpec, RunOutcome, RunSpec

STUDIES = ("task-count", "meta-batch", "withheld", "data-quality", "online", "ablations")
DEFAULT_ALGORITHMS = ("macaw", "macega", "mtft")  # the methods (context methods join when they land)
VARIANTS = ("meta-training", "adaptation")  # data-quality: which data the tier replaces
RUNS_DIR = "runs"


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C during a study; ``resume_command`` continues it."""

    def __init__(self, resume_command: str):
        super().__init__(f"interrupted; resume with: {resume_command}")
        self.resume_command = resume_command


@dataclass
class StudyOptions:
    study: str  # one of STUDIES
    family: str  # task family (omrl-data families)
    algorithms: tuple[str, ...] | str = DEFAULT_ALGORITHMS  # ablations: the one algorithm
    budget: str = recipes.DEFAULT_BUDGET  # small | full | tiny: the recipe of data and training
    seeds: int = 3  # seeds 0 .. seeds-1 of every setting and algorithm
    workers: int | None = None  # runs at a time; None = one per core
    backend: str = "local"  # local subprocesses | ray tasks
    ray_address: str | None = None  # existing Ray cluster (backend ray); None = $RAY_ADDRESS or a local runtime
    out: str | Path | None = None  # study folder; None = studies/<study>-<family>-<budget>
    resume: bool = False  # continue a study: finished runs are kept, unfinished ones continued
    root: str | Path | None = None  # catalog root; None = $OMRL_HOME or ~/.omrl
    device: str = "cpu"  # torch device of training (and of a collection the study needs)
    dataset: str | None = None  # base dataset id; None = the budget's recipe of the family (reused or collected)
    counts: tuple[int, ...] = ()  # task-count: numbers of training tasks
    subset_seed: int = 0  # task-count: seed of the permutation whose prefixes are the nested subsets
    sizes: tuple[int, ...] = ()  # meta-batch: tasks per meta-batch
    train_range: tuple[float, float] | None = None  # withheld: [lo, hi) of family.order_key; None = the family's default
    tiers: tuple[str, ...] = ("expert", "medium", "random")  # data-quality: quality tiers (expert first: the reference)
    variants: tuple[str, ...] = VARIANTS  # data-quality: meta-training and/or adaptation
    online_steps: tuple[int, ...] = (0, 500, 1000)  # online: env steps of online fine-tuning reported


@dataclass
class SliceNeed:
    """A slice of the base dataset that the study trains or adapts on (made once, then reused)."""

    key: str  # the setting it belongs to (part of its catalog name)
    spec: SliceSpec  # what it keeps


@dataclass
class Training:
    """One training setting: every algorithm x seed trains with it."""

    key: str  # folder name under runs/
    data: SliceNeed | None = None  # None = the base dataset
    settings: dict[str, list[str]] = field(default_factory=dict)  # algorithm -> extra --set settings
    evaluations: list[tuple[str, SliceNeed | None, list[str]]] = field(default_factory=list)  # (tag, adaptation data, omrl-eval args)
    algorithms: tuple[str, ...] | None = None  # only these algorithms (None = all of the study)


@dataclass
class Point:
    """One cell of the study's table per algorithm: where its numbers come from."""

    key: str  # unique within the study
    label: str  # the value of the varied setting, as the table says it
    x: Any  # position on the plot's x axis (a number, or the label for a categorical setting)
    training: str  # Training.key of the runs
    evaluation: str | None = None  # tag of the omrl-eval file; None = the run's own eval.json
    section: str = ""  # table / plot panel (data-quality variant, withheld: in / out of range)
    tasks: str | None = None  # withheld: "in" or "out" of the training range; None = every test task
    online_step: int | None = None  # online: the return after this many online env steps


@dataclass
class StudyPlan:
    options: StudyOptions  # as given
    out: Path  # the study folder
    workers: int  # runs at a time (resolved)
    algorithms: tuple[str, ...]  # checked against the registry and the budget
    varied: str  # what the x axis is
    trainings: list[Training]  # every training setting, in table order
    points: list[Point]  # every cell of the table per algorithm
    settings: dict[tuple[str, str], list[str]]  # (training key, algo) -> every --set setting
    steps: dict[tuple[str, str], int]  # (training key, algo) -> meta-steps
    collect: Any = None  # CollectConfig of the base dataset when it comes from the recipe
    base_dataset: str | None = None  # the base dataset id when given
    info: dict[str, Any] = field(default_factory=dict)  # study facts for the report (subsets, split, ...)

    def command(self, resume: bool = False) -> str:
        o = self.options
        parts = ["omrl-study", o.study]
        parts += [self.algorithms[0], o.family] if o.study == "ablations" else [o.family, "--algorithms", ",".join(self.algorithms)]
        if o.study == "task-count":
            parts += ["--counts", ",".join(map(str, o.counts)), "--subset-seed", str(o.subset_seed)]
        elif o.study == "meta-batch":
            parts += ["--sizes", ",".join(map(str, o.sizes))]
        elif o.study == "withheld":
            lo, hi = self.info["train_range"]
            parts += ["--train-range", f"{lo:g},{hi:g}"]
        elif o.study == "data-quality":
            parts += ["--tiers", ",".join(o.tiers), "--variants", ",".join(o.variants)]
        elif o.study == "online":
            parts += ["--online-steps", ",".join(map(str, o.online_steps))]
        parts += ["--budget", o.budget, "--seeds", str(o.seeds), "--workers", str(self.workers), "--out", str(self.out)]
        if o.backend != "local":
            parts += ["--backend", o.backend]
        if o.ray_address:
            parts += ["--ray-address", o.ray_address]
        if o.dataset is not None:
            parts += ["--dataset", o.dataset]
        if o.root is not None:
            parts += ["--root", str(o.root)]
        if o.device != "cpu":
            parts += ["--device", o.device]
        if resume:
            parts.append("--resume")
        return shlex.join(parts)


@dataclass
class StudyResult:
    out: Path  # the study folder
    paths: dict[str, Path]  # results.json / csv / md / png
    summary: dict[str, Any]  # see omrl_studies.results.aggregate_points
    outcomes: list[RunOutcome]  # one per run, in plan order
    wall_seconds: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.action == "failed"]


# ------------------------------------------------------------------------------ parsing helpers
def parse_ints(text: Any, flag: str, minimum: int = 1) -> tuple[int, ...]:
    """``"3,5,10"`` -> ``(3, 5, 10)`` (sorted, distinct); BadInput naming ``flag`` otherwise."""
    items = [str(x).strip() for x in (text.split(",") if isinstance(text, str) else text)]
    items = [x for x in items if x]
    try:
        values = [int(x) for x in items]
    except ValueError:
        raise BadInput(f"{flag} must be comma-separated integers, e.g. 3,5,10; got {text!r}") from None
    if not values:
        raise BadInput(f"{flag} needs at least one value, e.g. 3,5,10")
    bad = [v for v in values if v < minimum]
    if bad:
        raise BadInput(f"{flag} values must be >= {minimum}, got {bad[0]}")
    return tuple(sorted(set(values)))


def parse_range(text: Any, flag: str = "--train-range") -> tuple[float, float]:
    """``"0,1"`` -> ``(0.0, 1.0)`` with lo < hi."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        lo, hi = (float(x) for x in parts)
    except (TypeError, ValueError):
        raise BadInput(f"{flag} must be two numbers lo,hi, e.g. 0,1; got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise BadInput(f"{flag} must have finite lo < hi, got {text!r}")
    return lo, hi


def _names(value: Any, accepted: tuple[str, ...], what: str, flag: str) -> tuple[str, ...]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    if not items:
        raise BadInput(f"{flag} needs at least one {what}; accepted: {', '.join(accepted)}")
    bad = [v for v in items if v not in accepted]
    if bad:
        raise BadInput(f"unknown {what} {bad[0]!r} in {flag}; accepted: {', '.join(accepted)}")
    return tuple(dict.fromkeys(items))


# ------------------------------------------------------------------------------ task selections
def nested_subsets(train_tasks: list[int], counts: tuple[int, ...], seed: int) -> dict[int, list[int]]:
    """count -> the first ``count`` tasks of one seeded permutation of ``train_tasks`` (sorted):
    each subset contains every smaller one."""
    if max(counts) > len(train_tasks):
        raise BadInput(f"--counts {max(counts)} exceeds the {len(train_tasks)} training tasks of the dataset; "
                       f"use counts up to {len(train_tasks)} or a dataset with more tasks")
    order = np.random.default_rng([int(seed), 15]).permutation(np.asarray(sorted(train_tasks), dtype=np.int64))
    return {k: sorted(int(t) for t in order[:k]) for k in counts}


def withheld_split(table: Any, train_range: tuple[float, float]) -> dict[str, list[int]]:
    """The withheld split of a task table: ``train`` = its training tasks whose order key lies in
    [lo, hi); ``in`` = its test tasks inside the range; ``out`` = every task outside it."""
    from omrl_data.tasks import get_family

    fam = get_family(table.family)
    lo, hi = train_range
    keys = [float(fam.order_key(p)) for p in table.params]
    inside = [lo <= k < hi for k in keys]
    test = set(int(i) for i in table.indices("test")) if not table.split_args.get("test_equals_train") else set()
    split = {"train": [i for i in range(len(keys)) if inside[i] and i not in test],
             "in": [i for i in range(len(keys)) if inside[i] and i in test],
             "out": [i for i in range(len(keys)) if not inside[i]]}
    if not split["train"]:
        raise BadInput(f"--train-range {lo:g},{hi:g} holds no training task of the dataset ({fam.order_name} of its "
                       f"tasks: {', '.join(f'{k:.3g}' for k in keys)})")
    if not split["out"]:
        raise BadInput(f"--train-range {lo:g},{hi:g} holds every task, so nothing is withheld ({fam.order_name} of its "
                       f"tasks: {', '.join(f'{k:.3g}' for k in keys)})")
    return split


def in_range(family: str, params: dict[str, Any], train_range: tuple[float, float]) -> bool:
    from omrl_data.tasks import get_family

    k = float(get_family(family).order_key(params))
    return train_range[0] <= k < train_range[1]


# ------------------------------------------------------------------------------ the six studies
def _study_task_count(o: StudyOptions, table: Any, base_cfg: dict[str, Any]) -> tuple[str, list[Training], list[Point], dict]:
    if not o.counts:
        raise BadInput("task-count needs --counts, e.g. --counts 3,5,10")
    train = [int(i) for i in table.indices("train")]
    test = [int(i) for i in table.indices("test")] if not table.split_args.get("test_equals_train") else []
    if not test:
        raise BadInput(f"task-count needs held-out test tasks; the dataset's {table.family} split evaluates on the training tasks")
    subsets = nested_subsets(train, o.counts, o.subset_seed)
    trainings, points = [], []
    for k, tasks in subsets.items():
        key = f"n{k}"
        settings = {a: ([f"algo.meta_batch={k}"] if (c.get("meta_batch") or 0) > k else []) for a, c in base_cfg.items()}
        trainings.append(Training(key, SliceNeed(key, SliceSpec(tasks=tuple(sorted(tasks + test)))), settings))
        points.append(Point(key, str(k), k, key))
    return "training tasks", trainings, points, {"subsets": {str(k): v for k, v in subsets.items()}, "test_tasks": test,
                                                 "subset_seed": o.subset_seed}


def _study_meta_batch(o: StudyOptions, table: Any, base_cfg: dict[str, Any]) -> tuple[str, list[Training], list[Point], dict]:
    if not o.sizes:
        raise BadInput("meta-batch needs --sizes, e.g. --sizes 1,2,5,10")
    n_train = len(table.indices("train")) if not table.split_args.get("test_equals_train") else len(table)
    if max(o.sizes) > n_train:
        raise BadInput(f"--sizes {max(o.sizes)} exceeds the {n_train} training tasks of the dataset; use sizes up to {n_train}")
    missing = [a for a, c in base_cfg.items() if "meta_batch" not in c]
    if missing:
        raise BadInput(f"{missing[0]} has no meta-batch setting (algo.meta_batch); leave it out of --algorithms")
    trainings = [Training(f"mb{b}", None, {a: [f"algo.meta_batch={b}"] for a in base_cfg}) for b in o.sizes]
    points = [Point(f"mb{b}", str(b), b, f"mb{b}") for b in o.sizes]
    return "meta-batch size", trainings, points, {}


def _study_withheld(o: StudyOptions, table: Any, base_cfg: dict[str, Any]) -> tuple[str, list[Training], list[Point], dict]:
    from omrl_data.tasks import get_family

    fam = get_family(o.family)
    rng = o.train_range if o.train_range is not None else fam.default_train_range
    if rng is None:
        raise BadInput(f"{o.family} has no default training range; pass --train-range lo,hi of {fam.order_name or 'its order key'}")
    rng = parse_range(rng)
    split = withheld_split(table, rng)
    test = sorted(split["in"] + split["out"])
    spec = SliceSpec(resplit="explicit", resplit_args={"test_tasks": test})
    trainings = [Training("withheld", SliceNeed("withheld", spec))]
    points = []
    if split["in"]:
        points.append(Point("in", "in range", "in range", "withheld", section="", tasks="in"))
    points.append(Point("out", "out of range", "out of range", "withheld", section="", tasks="out"))
    return f"test tasks ({fam.order_name} in [{rng[0]:g}, {rng[1]:g}) = in range)", trainings, points, {
        "train_range": list(rng), "order_key": fam.order_name, "split": split}


def _study_data_quality(o: StudyOptions, table: Any, base_cfg: dict[str, Any]) -> tuple[str, list[Training], list[Point], dict]:
    tiers = _names(o.tiers, tuple(QUALITY_TIERS), "tier", "--tiers")
    variants = _names(o.variants, VARIANTS, "variant", "--variants")
    if "expert" not in tiers:
        raise BadInput("--tiers must include expert: the percentage drop is against it")
    tiers = ("expert",) + tuple(t for t in tiers if t != "expert")
    trainings: dict[str, Training] = {}
    points = []
    need = {t: SliceNeed(t, SliceSpec(quality=t)) for t in tiers}
    if "meta-training" in variants:
        for t in tiers:
            trainings[t] = Training(t, need[t])
            points.append(Point(f"meta-{t}", t, t, t, section="meta-training data"))
    if "adaptation" in variants:
        expert = trainings.setdefault("expert", Training("expert", need["expert"]))
        for t in tiers:
            if t == "expert":
                points.append(Point("adapt-expert", t, t, "expert", section="adaptation data only"))
                continue
            expert.evaluations.append((f"adapt-{t}", need[t], []))
            points.append(Point(f"adapt-{t}", t, t, "expert", evaluation=f"adapt-{t}", section="adaptation data only"))
    return "data quality", list(trainings.values()), points, {"tiers": {t: list(QUALITY_TIERS[t]) for t in tiers}}


def _study_online(o: StudyOptions, table: Any, base_cfg: dict[str, Any]) -> tuple[str, list[Training], list[Point], dict]:
    steps = tuple(sorted(set(int(s) for s in o.online_steps)))
    if not steps or any(s < 0 for s in steps):
        raise BadInput(f"--online-steps must be integers >= 0, e.g. 0,500,1000; got {o.online_steps!r}")
    trainings = [Training("online", None, {}, [("online", None, ["--online-steps", ",".join(map(str, steps))])])]
    points = [Point(f"online{s}", str(s), s, "online", evaluation="online", online_step=s) for s in steps]
    return "online env steps", trainings, points, {}


def _study_ablations(o: StudyOptions, table: Any, base_cfg: dict[str, Any]) -> tuple[str, list[Training], list[Point], dict]:
    from omrl_studies.ablations import ablation_settings, ablations_of

    (algo,) = tuple(base_cfg)
    trainings, points = [], []
    for a in ablations_of(algo):
        extra = ablation_settings(algo, a, base_cfg[algo]["__settings__"], o.family)
        trainings.append(Training(a.key, None, {algo: extra}))
        points.append(Point(a.key, a.label, a.label, a.key))
    return "setting", trainings, points, {"ablations": {t.key: t.settings[algo] for t in trainings}}


BUILDERS = {
    "task-count": _study_task_count,
    "meta-batch": _study_meta_batch,
    "withheld": _study_withheld,
    "data-quality": _study_data_quality,
    "online": _study_online,
    "ablations": _study_ablations,
}


# ------------------------------------------------------------------------------------- planning
def base_tasks(options: StudyOptions, collect: Any) -> Any:
    """The task table of the base dataset (from the catalog, or from the recipe's plan)."""
    from omrl_data.collection.plan import make_plan
    from omrl_data.store import catalog
    from omrl_data.tasks.table import TaskTable

    if options.dataset is not None:
        meta = catalog.read_metadata(catalog.resolve(options.dataset, options.root))
        if meta.get("family") != options.family:
            raise BadInput(f"--dataset {options.dataset} is a {meta.get('family')} dataset, not {options.family}")
        return TaskTable.from_dict(meta["tasks"])
    return make_plan(collect).tasks


def plan_study(options: StudyOptions) -> StudyPlan:
    """Resolve and check every setting of the study; writes nothing but a slice-free plan. BadInput (one line)."""
    from omrl_algos.registry import algorithm_names
    from omrl_data.collection.plan import default_workers, make_plan
    from omrl_data.tasks import get_family
    from omrl_studies.checks import resolve_training
    from omrl_studies.runs import check_backend

    o = options
    if o.study not in STUDIES:
        raise BadInput(f"unknown study {o.study!r}; accepted: {', '.join(STUDIES)}")
    budget = recipes.check_budget(o.budget)
    get_family(o.family)
    if isinstance(o.seeds, bool) or not isinstance(o.seeds, int) or o.seeds < 1:
        raise BadInput(f"--seeds must be a positive integer, got {o.seeds!r}")
    workers = default_workers() if o.workers is None else o.workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise BadInput(f"--workers must be a positive integer, got {workers!r}")
    check_backend(o.backend, o.ray_address)
    registered = tuple(a for a in algorithm_names() if a in budget["algo"])
    algorithms = _names(o.algorithms, registered, "algorithm", "--algorithms")
    if o.study == "ablations" and len(algorithms) != 1:
        raise BadInput("ablations takes one algorithm: omrl-study ablations ALGO FAMILY")
    collect = None
    rows = None
    if o.dataset is None:
        if o.family not in budget["collect"]:
            raise BadInput(f"budget {o.budget!r} has no recipe for {o.family}; pass --dataset ID of a {o.family} dataset")
        collect = recipes.collect_config(o.budget, o.family, workers, o.device)
        rows = make_plan(collect).rows_per_task
        if o.study == "data-quality":
            rows //= 3  # a tier is a third of each task's stream
    table = base_tasks(o, collect)
    base_cfg: dict[str, dict[str, Any]] = {}
    for algo in algorithms:
        s = recipes.as_overrides(recipes.training_settings(o.budget, o.family, algo))
        cfg = resolve_training(algo, s, o.family, rows)
        base_cfg[algo] = {**vars(cfg.algo), "__settings__": s}
    varied, trainings, points, info = BUILDERS[o.study](o, table, base_cfg)
    settings, steps = {}, {}
    for t in trainings:
        for algo in (t.algorithms or algorithms):
            s = base_cfg[algo]["__settings__"] + list(t.settings.get(algo, []))
            if o.device != "cpu":
                s = s + [f"train.device={o.device}"]
            run_cfg = resolve_training(algo, s, o.family, rows)
            settings[(t.key, algo)] = [x for x in s if not x.startswith("train.device=")]
            steps[(t.key, algo)] = int(run_cfg.train.steps)
    out = Path(o.out) if o.out is not None else Path("studies") / f"{o.study}-{o.family}-{o.budget}"
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; give a folder for the study")
    runs_dir = out / RUNS_DIR
    if not o.resume and runs_dir.is_dir() and any(runs_dir.rglob("config.json")):
        raise BadInput(f"{out} already holds a study; pass --resume to continue it, or another --out")
    plan = StudyPlan(o, out, workers, algorithms, varied, trainings, points, settings, steps, collect, o.dataset, info)
    for spec in run_specs(plan, "", {}):
        spec.check_settings()  # a resumed study whose recipe changed: before any data work
    return plan


def run_specs(plan: StudyPlan, base_id: str, slice_ids: dict[str, str]) -> list[RunSpec]:
    """Every (training, algorithm, seed) run of the plan, with its evaluations."""
    o = plan.options
    specs = []
    for t in plan.trainings:
        dataset = slice_ids.get(t.data.key, "") if t.data is not None else base_id
        evals = [EvalSpec(tag, [*(["--set", f"dataset={slice_ids.get(data.key, '')}"] if data is not None else []), *args])
                 for tag, data, args in t.evaluations]
        for algo in (t.algorithms or plan.algorithms):
            for seed in range(o.seeds):
                specs.append(RunSpec(
                    family=o.family, algorithm=algo, seed=seed, dataset_id=dataset,
                    out=plan.out / RUNS_DIR / t.key / algo / f"s{seed}", settings=list(plan.settings[(t.key, algo)]),
                    steps=plan.steps[(t.key, algo)], root=None if o.root is None else str(o.root),
                    device=None if o.device == "cpu" else o.device, tag=t.key, evaluations=list(evals),
                ))
    return specs


def slices_needed(plan: StudyPlan) -> dict[str, SliceNeed]:
    out: dict[str, SliceNeed] = {}
    for t in plan.trainings:
        for need in [t.data] + [d for _, d, _ in t.evaluations]:
            if need is not None:
                out.setdefault(need.key, need)
    return out


# ------------------------------------------------------------------------------------- slices
def slice_name(base_id: str, study: str, key: str) -> str:
    """``omrl/cheetah_vel/vel10b-v1`` + task-count + n3 -> ``vel10b.v1.task-count.n3``."""
    from omrl_data.store import catalog

    ref = catalog.parse_id(base_id)
    return f"{ref.name}.v{ref.version}.{study}.{key}"


def find_slice(base_id: str, name: str, spec: SliceSpec, root: Any = None) -> str | None:
    """The newest complete version of ``<family>/<name>`` sliced from ``base_id`` with ``spec``."""
    from omrl_data.store import catalog

    ref = catalog.parse_id(base_id)
    for v in sorted(catalog.versions(ref.family, name, root, ref.namespace), reverse=True):
        folder = catalog.DatasetRef(ref.namespace, ref.family, name, v).folder(root)
        meta = catalog.read_metadata(folder, missing_ok=True) or {}
        lineage = meta.get("lineage") or {}
        if lineage.get("parent") == base_id and SliceSpec.from_dict(lineage.get("spec") or {}) == spec:
            return catalog.dataset_id_of(folder)
    return None


def ensure_slice(base_id: str, name: str, spec: SliceSpec, root: Any = None) -> tuple[str, str]:
    """``(id, "reused" | "sliced")``: the slice of ``base_id`` with ``spec`` (lineage recorded)."""
    from omrl_data.slicing import slice_dataset

    found = find_slice(base_id, name, spec, root)
    if found is not None:
        return found, "reused"
    flags = spec.cli_flags()
    command = f"omrl-data slice {base_id} --name {name}" + (f" {flags}" if flags else "")
    return slice_dataset(base_id, name, spec, root, command=command), "sliced"


# ------------------------------------------------------------------------------------- running
def prepare_data(plan: StudyPlan, console: Any = None, progress: bool = True) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The base dataset (given, or the recipe's: reused, resumed or collected) and every slice the
    study needs (reused when one with the same parent and spec exists): ``(base id, slice ids by
    setting, what was done for the report)``."""
    from omrl_data.collection.plan import resume_command
    from omrl_data.store import catalog
    from omrl_studies.datasets import ensure_dataset, recipe_of

    o = plan.options
    data: dict[str, Any] = {}
    if plan.collect is not None:
        choice = ensure_dataset(plan.collect, o.root, console=console, progress=progress)
        base_id = choice.dataset_id
        data["base"] = {"dataset_id": base_id, "action": choice.action, "seconds": round(choice.seconds, 1),
                        "recipe": recipe_of(plan.collect),
                        "command": resume_command(plan.collect, None if o.root is None else catalog.resolve_root(o.root)).removesuffix(" --resume")}
    else:
        base_id = catalog.dataset_id_of(catalog.resolve(o.dataset, o.root))
        data["base"] = {"dataset_id": base_id, "action": "given", "seconds": 0.0}
    slice_ids: dict[str, str] = {}
    data["slices"] = {}
    for key, need in slices_needed(plan).items():
        name = slice_name(base_id, o.study, key)
        sid, action = ensure_slice(base_id, name, need.spec, o.root)
        slice_ids[key] = sid
        data["slices"][key] = {"dataset_id": sid, "action": action, "parent": base_id,
                               "command": f"omrl-data slice {base_id} --name {name} {need.spec.cli_flags()}".strip()}
        if console is not None:
            console.print(f"  {action} slice {sid} ({need.spec.cli_flags() or 'all data'})", highlight=False, soft_wrap=True)
    return base_id, slice_ids, data


def run_study(options: StudyOptions, console: Any = None, progress: bool = True) -> StudyResult:
    """Plan, get the data (base dataset and slices), run every run, aggregate, write the results."""
    from omrl_data.collection import CollectionInterrupted
    from omrl_studies.results import aggregate_points, write_study_results
    from omrl_studies.runs import run_all

    t_start = time.time()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    plan = plan_study(options)
    resume_cmd = plan.command(resume=True)
    plan.out.mkdir(parents=True, exist_ok=True)
    o = options
    if console is not None:
        n_runs = sum(len(t.algorithms or plan.algorithms) for t in plan.trainings) * o.seeds
        console.print(f"{o.study} study on [bold]{o.family}[/], budget {o.budget}: {len(plan.trainings)} settings, "
                      f"{n_runs} runs, {plan.workers} at a time ({o.backend}) -> {plan.out}", highlight=False)
    walls: dict[str, Any] = {}
    try:
        t0 = time.time()
        base_id, slice_ids, data = prepare_data(plan, console=console, progress=progress)
        walls["data"] = round(time.time() - t0, 1)
        specs = run_specs(plan, base_id, slice_ids)
        for spec in specs:
            spec.check_folder()
        t0 = time.time()
        outcomes = run_all(specs, plan.workers, resume=o.resume, console=console, progress=progress,
                           backend=o.backend, ray_address=o.ray_address)
        walls["training"] = round(time.time() - t0, 1)
    except CollectionInterrupted:
        raise StudyInterrupted(resume_cmd) from None
    except KeyboardInterrupt:
        raise StudyInterrupted(resume_cmd) from None

    t0 = time.time()
    summary = aggregate_points(plan, outcomes, o.root)
    walls["training_per_run"] = {s.label: round(x.seconds, 1) for s, x in zip(specs, outcomes)}
    header = {
        "title": f"omrl-study {o.study}: {o.family}, budget {o.budget}",
        "study": o.study, "family": o.family, "budget": o.budget, "varied": plan.varied,
        "command": plan.command(), "resume_command": resume_cmd, "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "workers": plan.workers, "backend": o.backend, "seeds": o.seeds, "algorithms": list(plan.algorithms),
        "data": data, "info": plan.info,
        "training_settings": {f"{t}/{a}": s for (t, a), s in plan.settings.items()},
        "wall_seconds": walls,
    }
    walls["aggregation"] = round(time.time() - t0, 1)
    walls["total"] = round(time.time() - t_start, 1)
    paths = write_study_results(plan.out, summary, header)
    return StudyResult(plan.out, paths, summary, outcomes, walls)
