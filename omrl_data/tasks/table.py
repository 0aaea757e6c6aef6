"""The task table: one row per task with its parameters, similarity features and split."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from omrl_data.errors import BadInput

SPLITS = ("train", "test")


@dataclass(frozen=True)
class TaskTable:
    """Tasks of one family.

    family: family name (e.g. ``"ant_dir"``).
    params: per task, a JSON-able dict of named parameters (floats or nested lists of floats).
    features: ``[N, F]`` float32 normalised features; Euclidean distance = task dissimilarity.
    split: per task ``"train"`` or ``"test"``.
    split_kind: how the split was made (``random``, ``interpolation``, ``extrapolation``,
        ``explicit``, ``all``) with its arguments in ``split_args``.
        ``split_args["test_equals_train"]`` true means the test tasks are the training tasks
        (cheetah_dir, as in the papers): every row is labelled ``"train"`` and ``indices("test")``
        returns all of them.
    """

    family: str
    params: tuple[dict[str, Any], ...]
    features: np.ndarray
    split: tuple[str, ...]
    split_kind: str = "random"
    split_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        feats = np.asarray(self.features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] != len(self.params):
            raise ValueError(f"features must be [N, F] with N = {len(self.params)}, got {feats.shape}")
        if len(self.split) != len(self.params):
            raise ValueError("split must have one entry per task")
        bad = set(self.split) - set(SPLITS)
        if bad:
            raise ValueError(f"unknown split labels {sorted(bad)}; expected {SPLITS}")
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "params", tuple(dict(p) for p in self.params))
        object.__setattr__(self, "split", tuple(self.split))

    def __len__(self) -> int:
        return len(self.params)

    def indices(self, split: str | None = None) -> np.ndarray:
        """Task indices of a split (``"train"``/``"test"``), or all tasks for ``None``/``"all"``."""
        if split in (None, "all"):
            return np.arange(len(self), dtype=np.int64)
        if split not in SPLITS:
            raise BadInput(f"unknown split {split!r}; expected one of train, test, all")
        if split == "test" and self.split_args.get("test_equals_train"):
            return np.arange(len(self), dtype=np.int64)
        return np.array([i for i, s in enumerate(self.split) if s == split], dtype=np.int64)

    def with_split(self, split: tuple[str, ...] | list[str], kind: str, **args: Any) -> "TaskTable":
        return replace(self, split=tuple(split), split_kind=kind, split_args=dict(args))

    def subset(self, indices: np.ndarray | list[int]) -> "TaskTable":
        """The rows ``indices`` in that order (re-indexed from 0)."""
        idx = [int(i) for i in indices]
        return replace(
            self,
            params=tuple(self.params[i] for i in idx),
            features=self.features[idx],
            split=tuple(self.split[i] for i in idx),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "split_kind": self.split_kind,
            "split_args": self.split_args,
            "tasks": [
                {"index": i, "params": p, "features": self.features[i].tolist(), "split": s}
                for i, (p, s) in enumerate(zip(self.params, self.split))
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskTable":
        tasks = sorted(d["tasks"], key=lambda t: t["index"])
        feats = np.array([t["features"] for t in tasks], dtype=np.float32).reshape(len(tasks), -1)
        return cls(
            family=d["family"],
            params=tuple(t["params"] for t in tasks),
            features=feats,
            split=tuple(t["split"] for t in tasks),
            split_kind=d.get("split_kind", "explicit"),
            split_args=d.get("split_args", {}),
        )
