"""Slices: derived datasets (a subset of tasks, rows or a new split) with recorded lineage.

A slice is a new immutable version, written through the same staged writer as a collection. Its
``metadata.json`` records where it came from::

    lineage = {"parent": "omrl/cheetah_vel/replay-v1",     # parent id
               "parent_manifest": "<sha256>",              # parent's manifest checksum
               "parent_tasks": [0, 3, 5],                  # parent index of each slice task
               "spec": {...SliceSpec.to_dict()...}}

Row selection works on whole episodes (a maximal run of equal ``episode_index``), so every
episode of a slice keeps its first and last step, its ``terminated``/``truncated`` flags and
consistent Monte Carlo returns. Quality tiers follow the papers: ``random`` / ``medium`` /
``expert`` are the first / middle / last third of each task's stream in collect-step order
(MACAW used the first / middle / last 100k transitions of each SAC replay buffer). An episode
belongs to the range that holds its midpoint, so the three tiers partition every stream.

Tasks whose rows do not change (only re-indexed or re-split) are not rewritten: their files are
hard-linked from the parent (copied where the filesystem cannot link). A link is a second name
for the same bytes, so the slice stays whole when its parent is deleted or published, and it
never refers to the parent by path.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from omrl_data.errors import BadInput, IntegrityError
from omrl_data.schema import DEFAULT_NAMESPACE, POLICIES_DIR, SOURCE_NAMES, task_group_name
from omrl_data.store import catalog, manifest, zarr_io

QUALITY_TIERS: dict[str, tuple[float, float]] = {
    "random": (0.0, 1.0 / 3.0),  # first third of each task's stream: the learner is still poor
    "medium": (1.0 / 3.0, 2.0 / 3.0),
    "expert": (2.0 / 3.0, 1.0),  # last third: the learner is close to converged
}
SOURCES = {name: value for value, name in SOURCE_NAMES.items()}  # "replay" -> 0, ...
RESPLIT_KINDS = ("random", "interpolation", "extrapolation", "explicit")
SPLITS = ("train", "test")
# Parent metadata keys that describe the parent version itself, not the data (the writer sets them anew).
_VERSION_KEYS = ("dataset_id", "name", "version", "created", "task_rows", "format_version")


@dataclass(frozen=True)
class SliceSpec:
    """What a slice keeps. Filters apply in this order: tasks, split, source, range, max_per_task."""

    tasks: tuple[int, ...] | None = None  # parent task indices to keep, in this order; None = all
    split: str | None = None  # keep only "train" or only "test" tasks of the parent split
    source: str | None = None  # keep only rows of this source: replay | checkpoint | random
    quality: str | None = None  # random | medium | expert: first / middle / last third
    collect_range: tuple[float, float] | None = None  # (a, b): fraction a..b of each stream
    max_per_task: int | None = None  # at most K transitions per task (whole episodes, spread evenly)
    resplit: str | None = None  # new train/test split: random | interpolation | extrapolation | explicit
    resplit_args: dict[str, Any] = field(default_factory=dict)  # its arguments (seed, test_fraction, ...)

    def __post_init__(self) -> None:
        if self.tasks is not None:
            if not self.tasks:
                raise BadInput("--tasks selects no task; give indices like 0,2,5-9")
            if len(set(self.tasks)) != len(self.tasks):
                raise BadInput(f"--tasks lists a task twice: {list(self.tasks)}")
            object.__setattr__(self, "tasks", tuple(int(t) for t in self.tasks))
        if self.split is not None and self.split not in SPLITS:
            raise BadInput(f"unknown split {self.split!r}; accepted: train, test")
        if self.source is not None and self.source not in SOURCES:
            raise BadInput(f"unknown source {self.source!r}; accepted: {', '.join(SOURCES)}")
        if self.quality is not None and self.quality not in QUALITY_TIERS:
            raise BadInput(f"unknown quality {self.quality!r}; accepted: {', '.join(QUALITY_TIERS)}")
        if self.quality is not None and self.collect_range is not None:
            raise BadInput("give --quality or --collect-range, not both (a quality tier is a collect range)")
        if self.collect_range is not None:
            a, b = (float(x) for x in self.collect_range)
            if not 0.0 <= a < b <= 1.0:
                raise BadInput(f"collect range must be A:B with 0 <= A < B <= 1, got {a:g}:{b:g}")
            object.__setattr__(self, "collect_range", (a, b))
        if self.max_per_task is not None and (isinstance(self.max_per_task, bool) or int(self.max_per_task) < 1):
            raise BadInput(f"--max-per-task must be a positive number of transitions, got {self.max_per_task!r}")
        if self.resplit is not None and self.resplit not in RESPLIT_KINDS:
            raise BadInput(f"unknown re-split {self.resplit!r}; accepted: {', '.join(RESPLIT_KINDS)}")
        if self.resplit is None and self.resplit_args:
            raise BadInput("split arguments were given without --resplit")

    @property
    def row_range(self) -> tuple[float, float] | None:
        """The fraction of each stream kept: the quality tier's or the explicit collect range."""
        return QUALITY_TIERS[self.quality] if self.quality else self.collect_range

    def filters_rows(self) -> bool:
        return self.source is not None or self.row_range is not None or self.max_per_task is not None

    def is_empty(self) -> bool:
        return self == SliceSpec()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = None if self.tasks is None else list(self.tasks)
        d["collect_range"] = None if self.collect_range is None else list(self.collect_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SliceSpec":
        d = dict(d)
        if d.get("tasks") is not None:
            d["tasks"] = tuple(d["tasks"])
        if d.get("collect_range") is not None:
            d["collect_range"] = tuple(d["collect_range"])
        return cls(**d)

    def cli_flags(self) -> str:
        """The ``omrl-data slice`` options that reproduce this spec."""
        parts = []
        if self.tasks is not None:
            parts.append("--tasks " + ",".join(str(t) for t in self.tasks))
        for flag, value in (("--split", self.split), ("--source", self.source), ("--quality", self.quality)):
            if value is not None:
                parts.append(f"{flag} {value}")
        if self.collect_range is not None:
            parts.append(f"--collect-range {self.collect_range[0]:g}:{self.collect_range[1]:g}")
        if self.max_per_task is not None:
            parts.append(f"--max-per-task {self.max_per_task}")
        if self.resplit is not None:
            parts.append(f"--resplit {self.resplit}")
            parts.append(split_arg_flags(self.resplit_args))
        return " ".join(p for p in parts if p)


# ----------------------------------------------------------------------------------------------
# Parsing command-line forms


def parse_task_list(text: str) -> tuple[int, ...]:
    """``"0,2,5-7"`` -> ``(0, 2, 5, 6, 7)``; BadInput naming the accepted form otherwise."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise BadInput(f"bad task list {text!r}: expected indices and ranges like 0,2,5-9")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo:
            raise BadInput(f"bad task range {part!r} in {text!r}: the end must not be below the start")
        out.extend(range(lo, hi + 1))
    return tuple(out)


def parse_collect_range(text: str) -> tuple[float, float]:
    """``"0.5:1"`` -> ``(0.5, 1.0)``: fractions of each task's stream in collect-step order."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*:\s*([0-9]*\.?[0-9]+)\s*", str(text))
    if not m:
        raise BadInput(f"bad collect range {text!r}: expected A:B with fractions 0 <= A < B <= 1, e.g. 0.5:1")
    a, b = float(m[1]), float(m[2])
    if not 0.0 <= a < b <= 1.0:
        raise BadInput(f"bad collect range {text!r}: expected 0 <= A < B <= 1")
    return a, b


def split_args_from_options(
    test_tasks: str | None = None,
    test_fraction: float | None = None,
    every: int | None = None,
    train_range: str | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """The split arguments of ``--test-tasks 1,4 --test-fraction 0.2 --every 5 --train-range 0,1.5
    --split-seed 3`` (the same options as ``omrl-data tasks``), leaving out those not given."""
    out: dict[str, Any] = {}
    if test_tasks is not None:
        out["test_tasks"] = list(parse_task_list(test_tasks))
    if test_fraction is not None:
        out["test_fraction"] = float(test_fraction)
    if every is not None:
        out["every"] = int(every)
    if train_range is not None:
        try:
            lo, hi = (float(x) for x in str(train_range).split(","))
        except ValueError:
            raise BadInput(f"bad --train-range {train_range!r}: expected lo,hi, e.g. 0,1.5") from None
        out["train_range"] = [lo, hi]
    if seed is not None:
        out["seed"] = int(seed)
    return out


def split_arg_flags(args: dict[str, Any]) -> str:
    """The inverse of :func:`split_args_from_options`: command-line options of split arguments."""
    flags = {"test_tasks": "--test-tasks", "test_fraction": "--test-fraction", "every": "--every", "train_range": "--train-range", "seed": "--split-seed"}
    parts = []
    for k, v in sorted(args.items()):
        if k not in flags:
            continue
        text = ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) if isinstance(v, (list, tuple)) else (f"{v:g}" if isinstance(v, float) else str(v))
        parts.append(f"{flags[k]} {text}")
    return " ".join(parts)


# ----------------------------------------------------------------------------------------------
# Row selection (pure functions of one task's columns)


def episode_bounds(episode_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts [E], ends [E])`` row ranges of the maximal runs of equal ``episode_index``."""
    n = len(episode_index)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(episode_index) != 0) + 1]).astype(np.int64)
    ends = np.append(starts[1:], n).astype(np.int64)
    return starts, ends


def range_mask(collect_step: np.ndarray, episode_index: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Rows ``[n]`` bool of the episodes in fraction ``[lo, hi)`` of the stream in collect-step order.

    Episodes are ordered by the ``collect_step`` of their first row (ties keep stored order) and
    laid end to end; an episode is in the range when its midpoint is, so the ranges ``[0, 1/3)``,
    ``[1/3, 2/3)``, ``[2/3, 1)`` split a stream into three tiers with every episode in exactly one.
    """
    n = len(episode_index)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    starts, ends = episode_bounds(episode_index)
    order = np.argsort(np.asarray(collect_step)[starts], kind="stable")
    lengths = (ends - starts)[order]
    mid = (np.cumsum(lengths) - lengths / 2.0) / n  # midpoints as fractions of the stream
    keep = (mid >= lo) & (mid < hi) if hi < 1.0 else mid >= lo
    for e in order[keep]:
        mask[starts[e] : ends[e]] = True
    return mask


def cap_mask(episode_index: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` of the rows in ``mask``: whole episodes spread evenly over the stream (so a
    cap keeps the mix of early and late data); an episode longer than ``k`` is cut to ``k`` rows."""
    rows = np.flatnonzero(mask)
    if len(rows) <= k:
        return mask
    starts, ends = episode_bounds(np.asarray(episode_index)[rows])
    lengths = ends - starts
    out = np.zeros_like(mask)
    for m in range(max(1, int(len(starts) * k // len(rows))), 0, -1):
        chosen = np.unique(np.round(np.linspace(0, len(starts) - 1, m)).astype(np.int64))
        if lengths[chosen].sum() <= k:
            for e in chosen:
                out[rows[starts[e] : ends[e]]] = True
            return out
    out[rows[:k]] = True  # the first episode alone is longer than k
    return out


def select_rows(columns: dict[str, np.ndarray], spec: SliceSpec) -> np.ndarray:
    """Row indices (ascending) of one task kept by ``spec``; ``columns`` needs ``collect_step``,
    ``episode_index`` and ``source``."""
    episode_index = np.asarray(columns["episode_index"])
    mask = np.ones(len(episode_index), dtype=bool)
    if spec.source is not None:
        mask &= np.asarray(columns["source"]) == SOURCES[spec.source]
    if spec.row_range is not None:
        lo, hi = spec.row_range
        rows = np.flatnonzero(mask)
        sub = range_mask(np.asarray(columns["collect_step"])[rows], episode_index[rows], lo, hi)
        mask[:] = False
        mask[rows[sub]] = True
    if spec.max_per_task is not None:
        mask = cap_mask(episode_index, mask, int(spec.max_per_task))
    return np.flatnonzero(mask)


# ----------------------------------------------------------------------------------------------
# Writing a slice


def slice_dataset(
    parent: str | Path,
    name: str,
    spec: SliceSpec,
    root: str | Path | None = None,
    on_task: Callable[[int, int], None] | None = None,
    command: str | None = None,
) -> str:
    """Write the slice ``spec`` of ``parent`` as a new version of ``<family>/<name>``; return its id.

    ``on_task(done, total)`` is called after each task (for progress bars). BadInput when the
    spec selects nothing or names tasks the parent does not have.
    """
    from omrl_data.store.writer import StagedDataset
    from omrl_data.tasks.table import TaskTable

    catalog.check_name(name)
    catalog.check_writable(catalog.resolve_root(root))
    parent_dir = catalog.resolve(parent, root)
    # Full checksums: linked files and rewritten rows must not carry tampered bytes into a
    # version whose new manifest would vouch for them.
    problems = manifest.verify(parent_dir)
    if problems:
        raise IntegrityError(f"parent {parent} is damaged ({problems[0]}); run `omrl-data verify` on it")
    meta = catalog.read_metadata(parent_dir)
    parent_id = catalog.dataset_id_of(parent_dir)
    table = TaskTable.from_dict(meta["tasks"])
    keep = _select_tasks(table, spec)
    new_table = table.subset(keep)
    if spec.resplit is not None:
        new_table = _resplit(new_table, spec)

    # Decide every task's rows before writing anything, so a spec that empties a task fails early.
    plans: list[tuple[int, np.ndarray | None]] = []
    for j in keep:
        if not spec.filters_rows():
            plans.append((j, None))
            continue
        cols = zarr_io.read_task_group(parent_dir, j, ("collect_step", "episode_index", "source"))
        rows = select_rows(cols, spec)
        if len(rows) == 0:
            raise BadInput(f"the slice keeps no rows of parent task {j} ({_describe(spec)}); choose other tasks or filters")
        plans.append((j, None if len(rows) == len(cols["episode_index"]) else rows))

    try:
        namespace = catalog.parse_id(parent_id).namespace
    except BadInput:  # a folder outside any catalog: the slice goes to the default namespace
        namespace = DEFAULT_NAMESPACE
    staged = StagedDataset.create(root, meta["family"], name, namespace=namespace, command=command)
    try:
        zarr_io.ensure_store(staged.path)
        linked = 0
        for i, (j, rows) in enumerate(plans):
            if rows is None:
                linked += _link_tree(zarr_io.data_root(parent_dir) / task_group_name(j), zarr_io.data_root(staged.path) / task_group_name(i))
            else:
                arrays = zarr_io.read_task_group(parent_dir, j)
                staged.write_task(i, {k: v[rows] for k, v in arrays.items()})
            if on_task:
                on_task(i + 1, len(plans))
        _link_policies(parent_dir / POLICIES_DIR, staged.path / POLICIES_DIR, keep)
        new_meta = {k: v for k, v in meta.items() if k not in _VERSION_KEYS}
        new_meta["tasks"] = new_table.to_dict()
        new_meta.pop("task_stats", None)  # statistics of the parent's rows; `info` recomputes them
        refs = _parent_references(parent_dir, meta, keep)
        new_meta.pop("references", None)
        if refs is not None:
            new_meta["references"] = refs
        if isinstance(meta.get("learner_stats"), dict):  # per-task learner summaries, re-keyed by slice index
            new_meta["learner_stats"] = {str(i): meta["learner_stats"][str(j)] for i, j in enumerate(keep) if str(j) in meta["learner_stats"]}
        new_meta["lineage"] = {
            "parent": parent_id,
            "parent_manifest": manifest.manifest_checksum(parent_dir),
            "parent_tasks": [int(j) for j in keep],
            "spec": spec.to_dict(),
            "op": "slice",
        }
        new_meta["changelog"] = list(meta.get("changelog") or _origin_entry(meta, parent_id)) + [
            {
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "id": staged.dataset_id,
                "change": f"slice of {parent_id}" + (f": {spec.cli_flags()}" if not spec.is_empty() else " (all data)"),
            }
        ]
        staged.commit(new_meta)
    except BaseException:
        staged.abort()
        raise
    return staged.dataset_id


def _parent_references(parent_dir: Path, meta: dict[str, Any], keep: list[int]) -> dict[str, Any] | None:
    """The parent's normalised-score references re-indexed to the slice's tasks.

    A slice keeps its parent's references (computed now if the parent has none) rather than
    recomputing them from its own rows: stand-still and random belong to the task, and the
    expert reference stays the expert tier of the whole collection, so a method trained on the
    ``random`` or ``medium`` slice is scored on the same scale as one trained on all the data.
    None when the parent's tasks cannot be built here (the slice then has none either).
    """
    from omrl_data.errors import OmrlError
    from omrl_data.references import compute_references_of_folder

    refs = meta.get("references")
    if refs is None:
        try:
            refs = compute_references_of_folder(parent_dir, meta)
        except OmrlError:
            return None
    out = dict(refs)
    for key, values in refs.items():
        if isinstance(values, list) and len(values) == len((meta.get("tasks") or {}).get("tasks", [])):
            out[key] = [values[j] for j in keep]
    out["from_parent"] = catalog.dataset_id_of(parent_dir)
    return out


def _select_tasks(table, spec: SliceSpec) -> list[int]:
    n = len(table)
    keep = list(spec.tasks) if spec.tasks is not None else list(range(n))
    bad = [t for t in keep if not 0 <= t < n]
    if bad:
        raise BadInput(f"--tasks {bad} not in the parent's tasks 0..{n - 1}")
    if spec.split is not None:
        in_split = set(int(i) for i in table.indices(spec.split))
        if spec.split == "test" and table.split_args.get("test_equals_train"):
            in_split = set(range(n))  # cheetah_dir-style: the test tasks are the training tasks
        keep = [t for t in keep if t in in_split]
        if not keep:
            raise BadInput(f"the parent has no {spec.split} tasks among those selected")
    return keep


def _resplit(table, spec: SliceSpec):
    from omrl_data.tasks.splits import resplit

    args = dict(spec.resplit_args)
    seed = int(args.pop("seed", 0))
    try:
        return resplit(table, spec.resplit, seed=seed, **args)
    except (KeyError, TypeError, ValueError) as e:  # parameters that the family does not know
        raise BadInput(f"cannot re-split: the task parameters do not fit family {table.family} ({type(e).__name__}: {e})") from e


def _describe(spec: SliceSpec) -> str:
    return spec.cli_flags() or "no filters"


def _origin_entry(meta: dict[str, Any], dataset_id: str) -> list[dict[str, Any]]:
    """The first changelog entry of a dataset that has none: its own creation."""
    how = "collected" if meta.get("collection") else "created"
    return [{"date": meta.get("created"), "id": dataset_id, "change": how}]


def _link_policies(src: Path, dst: Path, keep: list[int]) -> None:
    """Checkpoint policies of the kept tasks: ``policies/task_<j>/`` of the parent becomes
    ``policies/task_<i>/`` of the slice (i = slice index of parent task j); other entries are
    kept as they are only when the task list is unchanged (their meaning may depend on it)."""
    if not src.is_dir():
        return
    unchanged = list(keep) == list(range(len(keep))) and not any(
        re.fullmatch(r"task_(\d+)", p.name) and int(p.name[5:]) >= len(keep) for p in src.iterdir()
    )
    for i, j in enumerate(keep):
        task_dir = src / f"task_{j:04d}"
        if task_dir.is_dir():
            _link_tree(task_dir, dst / f"task_{i:04d}")
    if unchanged:
        for p in src.iterdir():
            if not re.fullmatch(r"task_\d+", p.name):
                if p.is_dir():
                    _link_tree(p, dst / p.name)
                else:
                    dst.mkdir(parents=True, exist_ok=True)
                    _link_tree_file(p, dst / p.name)


def _link_tree_file(a: Path, b: Path) -> None:
    try:
        os.link(a, b)
    except OSError:
        shutil.copy2(a, b)


def _link_tree(src: Path, dst: Path) -> int:
    """Hard-link every file under ``src`` to the same place under ``dst`` (copy where links are
    impossible, e.g. across filesystems). Returns the number of files linked, not copied."""
    linked = 0
    for dirpath, _, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            a, b = Path(dirpath, f), dst / rel / f
            try:
                os.link(a, b)
                linked += 1
            except OSError:
                shutil.copy2(a, b)
    return linked


__all__ = [
    "QUALITY_TIERS",
    "SliceSpec",
    "parse_collect_range",
    "split_args_from_options",
    "parse_task_list",
    "range_mask",
    "select_rows",
    "slice_dataset",
]
