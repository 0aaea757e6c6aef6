"""Train/test splits of a task set.

Four kinds, all deterministic:

- ``random``: a seeded held-out fraction (``test_fraction``, default 0.1, at least one task and
  at least one training task). Families with ``test_equals_train`` (cheetah_dir: the papers
  evaluate on the two training directions) and single-task sets label every task ``"train"`` and
  set ``split_args["test_equals_train"] = True``; ``TaskTable.indices("test")`` then returns all.
- ``interpolation``: tasks sorted by ``family.order_key``; every ``every``-th one (default 10,
  starting at position ``every // 2``) is held out, never the first or last, so each test task
  lies inside the training range.
- ``extrapolation``: tasks whose key lies in ``train_range = (lo, hi)`` (half-open; default
  ``family.default_train_range``) train, the rest test, e.g. cheetah_vel train v* < 1.
- ``explicit``: ``test_tasks`` lists the held-out task indices.

``make_split(family, params, kind, seed=0, **args) -> (labels, split_args)`` computes the labels
of a list of parameter dicts; ``resplit(table, kind, seed=0, **args)`` re-splits a table.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from omrl_data.errors import BadInput

if TYPE_CHECKING:
    from omrl_data.tasks.base import TaskFamily
    from omrl_data.tasks.table import TaskTable

SPLIT_KINDS = ("random", "interpolation", "extrapolation", "explicit")

# The arguments each kind accepts (anything else is a user error).
_ARGS = {
    "random": ("test_fraction",),
    "interpolation": ("every",),
    "extrapolation": ("train_range",),
    "explicit": ("test_tasks",),
}


def make_split(
    family: "TaskFamily", params: Sequence[dict[str, Any]], kind: str = "random", seed: int = 0, **args: Any
) -> tuple[list[str], dict[str, Any]]:
    """Per-task labels ``"train"``/``"test"`` and the JSON-able arguments that reproduce them."""
    if kind not in SPLIT_KINDS:
        raise BadInput(f"unknown split {kind!r}; accepted: {', '.join(SPLIT_KINDS)}")
    extra = [k for k, v in args.items() if k not in _ARGS[kind] and v is not None]
    if extra:
        raise BadInput(f"split {kind!r} does not take {', '.join(extra)}; it accepts {', '.join(_ARGS[kind])}")
    n = len(params)
    if kind == "random":
        return _random(family, n, seed, args.get("test_fraction"))
    if kind == "explicit":
        return _explicit(n, args.get("test_tasks"))
    if family.test_equals_train:
        raise BadInput(f"{family.name} has two tasks evaluated as train = test; use split random or explicit")
    keys = np.array([family.order_key(p) for p in params], dtype=np.float64)
    if kind == "interpolation":
        return _interpolation(family, keys, args.get("every"))
    return _extrapolation(family, keys, args.get("train_range"))


def resplit(table: "TaskTable", kind: str, seed: int = 0, **args: Any) -> "TaskTable":
    """``table`` with a new split (same tasks, same order)."""
    from omrl_data.tasks import get_family

    labels, split_args = make_split(get_family(table.family), table.params, kind, seed=seed, **args)
    return table.with_split(labels, kind, **split_args)


def _random(family: "TaskFamily", n: int, seed: int, test_fraction: Any) -> tuple[list[str], dict[str, Any]]:
    frac = 0.1 if test_fraction is None else test_fraction
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 < frac < 1.0:
        raise BadInput(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if family.test_equals_train or n == 1:
        return ["train"] * n, {"seed": seed, "test_equals_train": True}
    n_test = min(max(1, round(frac * n)), n - 1)
    # Its own stream (seed, 1): the split never shifts the parameter draws made from `seed`.
    test = np.random.default_rng([seed, 1]).choice(n, size=n_test, replace=False)
    labels = ["train"] * n
    for i in test:
        labels[int(i)] = "test"
    return labels, {"seed": seed, "test_fraction": float(frac)}


def _explicit(n: int, test_tasks: Any) -> tuple[list[str], dict[str, Any]]:
    if test_tasks is None or isinstance(test_tasks, (str, bytes)) or not hasattr(test_tasks, "__iter__"):
        raise BadInput(f"split 'explicit' needs test_tasks, a list of task indices in 0..{n - 1}")
    idx = list(test_tasks)
    if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < n for i in idx):
        raise BadInput(f"test_tasks must be task indices in 0..{n - 1}, got {idx}")
    idx = sorted({int(i) for i in idx})
    if not idx or len(idx) == n:
        raise BadInput(f"test_tasks must hold out at least one and at most {n - 1} of the {n} tasks, got {idx}")
    labels = ["test" if i in idx else "train" for i in range(n)]
    return labels, {"test_tasks": idx}


def _interpolation(family: "TaskFamily", keys: np.ndarray, every: Any) -> tuple[list[str], dict[str, Any]]:
    n = len(keys)
    k = 10 if every is None else every
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise BadInput(f"interpolation 'every' must be an integer >= 2, got {every!r}")
    if n < 3:
        raise BadInput(f"interpolation needs at least 3 tasks (first and last train), got {n}")
    order = np.argsort(keys, kind="stable")
    # Never the first or last in order: a test task must lie between training tasks.
    positions = list(range(k // 2, n - 1, k)) or [(n - 1) // 2]
    labels = ["train"] * n
    for p in positions:
        labels[int(order[p])] = "test"
    return labels, {"every": int(k), "order": family.order_name}


def _extrapolation(family: "TaskFamily", keys: np.ndarray, train_range: Any) -> tuple[list[str], dict[str, Any]]:
    rng_ = family.default_train_range if train_range is None else train_range
    try:
        lo, hi = (float(x) for x in rng_)
    except (TypeError, ValueError):
        raise BadInput(f"train_range must be two numbers lo,hi, got {train_range!r}") from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise BadInput(f"train_range must have lo < hi, got {train_range!r}")
    train = (keys >= lo) & (keys < hi)
    n_train = int(train.sum())
    if n_train == 0 or n_train == len(keys):
        side = "no training task" if n_train == 0 else "no test task"
        raise BadInput(
            f"extrapolation with {family.order_name} in [{lo:g}, {hi:g}) as training range leaves {side} "
            f"among {len(keys)} tasks; sample more tasks or pass another train_range"
        )
    labels = ["train" if t else "test" for t in train]
    return labels, {"train_range": [lo, hi], "order": family.order_name}


def parse_index_list(text: str) -> list[int]:
    """``"2,7,15"`` -> ``[2, 7, 15]`` (task indices as typed on a command line)."""
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise BadInput(f"test tasks must be comma-separated task indices like 2,7,15; got {text!r}") from None


def parse_range(text: str) -> tuple[float, float]:
    """``"0,1"`` -> ``(0.0, 1.0)`` (a half-open training range as typed on a command line)."""
    parts = text.replace(" ", "").split(",")
    try:
        lo, hi = (float(x) for x in parts)
    except ValueError:
        raise BadInput(f"train range must be two numbers lo,hi like 0,1; got {text!r}") from None
    return lo, hi
