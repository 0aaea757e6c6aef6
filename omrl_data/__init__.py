"""omrl_data: multi-task offline datasets for offline meta-RL.

Data flows one way: tasks -> collection -> store -> catalog -> sampler. This package never
imports ``omrl_algos``.

``import omrl_data`` registers the Gymnasium ids of the task families (``omrl/AntDir-v0``, ...),
as ``import ale_py`` does for Atari; ``gymnasium.make("omrl_data.tasks:omrl/AntDir-v0")`` works
without any import. See docs/gymnasium.md.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "TaskTable": "omrl_data.tasks.table",
    "TaskBatch": "omrl_data.batch",
    "get_family": "omrl_data.tasks",
    "family_names": "omrl_data.tasks",
    "load": "omrl_data.dataset",
    "MultiTaskDataset": "omrl_data.dataset",
    "TaskBatchSampler": "omrl_data.sampler",
}

__all__ = sorted(_LAZY)


try:  # register the Gymnasium ids (about 0.15 s: gymnasium itself; MuJoCo is not imported)
    import omrl_data.tasks  # noqa: F401,E402
except ImportError:  # pragma: no cover - gymnasium missing: only the env features need it
    pass


def __getattr__(name: str) -> Any:
    # Lazy so that `import omrl_data` stays cheap and an optional dependency breaks only the
    # feature that needs it.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'omrl_data' has no attribute {name!r}")
