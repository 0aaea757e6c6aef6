"""Reuse a dataset collected with the same recipe, resume an unfinished one, or collect it.

``ensure_dataset(config, root)`` is what the main job and the studies call before training:

1. a complete version of ``<family>/<name>`` whose stored ``metadata["collection"]`` has the same
   recipe (:func:`same_recipe`) is reused (the newest such version);
2. else an unfinished collection of the same recipe (a staging folder left by Ctrl-C or a kill)
   is resumed;
3. else a new version is collected.

The lookup itself is the library's (``omrl_data.collection.same_recipe`` / ``find_dataset``);
:func:`recipe_of` stays here for :func:`find_unfinished` and the study's plan.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from omrl_data.collection.plan import EXECUTION_FIELDS

# Fields of metadata["collection"] written by the run itself, not part of the recipe.
RUNTIME_FIELDS = ("units", "resumed", "wall_seconds")


@dataclass
class DatasetChoice:
    dataset_id: str  # the dataset to train on
    action: str  # "reused" | "resumed" | "collected"
    seconds: float  # wall time spent here (0 for a reuse, apart from the lookup)


def recipe_of(config: Any) -> dict[str, Any]:
    """The recipe of a CollectConfig or a stored ``metadata["collection"]`` dict: defaults resolved
    (steps per task, name), execution and runtime fields dropped, JSON-normalised.

    In shared mode the shard layout (which tasks one SAC learns together) changes the data, so it
    stays in the recipe as ``shards``; elsewhere ``workers`` only sets the parallelism.
    """
    from omrl_data.collection import CollectConfig
    from omrl_data.collection.plan import make_units, resolved

    if isinstance(config, dict):
        d = dict(config)
        units = d.get("units")
        known = {k: v for k, v in d.items() if k in CollectConfig.__dataclass_fields__}
        cfg = CollectConfig.from_dict(known)
    else:
        cfg, units = config, None
    cfg = resolved(cfg)
    out = {k: v for k, v in cfg.to_dict().items() if k not in EXECUTION_FIELDS and k not in RUNTIME_FIELDS}
    if cfg.mode == "shared":
        out["shards"] = units if units is not None else make_units("shared", cfg.tasks, cfg.workers)
    return json.loads(json.dumps(out))


def same_recipe(stored: dict[str, Any], config: Any) -> bool:
    """Whether a stored ``metadata["collection"]`` describes the same data as ``config``
    (the library's rule, :func:`omrl_data.collection.same_recipe`)."""
    from omrl_data.collection import same_recipe as library_same_recipe

    return library_same_recipe(config, {"collection": stored, "family": config.family})


def find_dataset(config: Any, root: Any = None) -> str | None:
    """The id of the newest complete version with ``config``'s recipe, under any name of the family
    (the same recipe under another name is the same data)."""
    from omrl_data.collection import find_dataset as library_find_dataset

    return library_find_dataset(config, root, any_name=True)


def find_unfinished(config: Any, root: Any = None) -> str | None:
    """The id of the latest unfinished collection of ``config``'s family/name, if it has the same
    recipe (``collect(..., resume=True)`` continues the latest one only)."""
    from omrl_data.collection.plan import make_plan
    from omrl_data.store import catalog, writer

    name = config.dataset_name()
    root_path = catalog.resolve_root(root)
    unfinished = writer.unfinished(config.family, name, root_path)
    if not unfinished:
        return None
    v = unfinished[-1]
    plan_file = root_path / catalog.STAGING_DIR / "omrl" / config.family / f"{name}-v{v}" / writer.PLAN_FILE
    try:
        saved = json.loads(plan_file.read_text())
    except (OSError, ValueError):
        return None
    stored = dict(saved.get("config") or {})
    stored["units"] = saved.get("units")
    if recipe_of(stored) != recipe_of(make_plan(config).config):
        return None
    return f"omrl/{config.family}/{name}-v{v}"


def ensure_dataset(config: Any, root: Any = None, console: Any = None, progress: bool = True) -> DatasetChoice:
    """Reuse, resume or collect the dataset of ``config`` (see the module docstring)."""
    import time

    from omrl_data.collection import collect

    t0 = time.time()
    found = find_dataset(config, root)
    if found is not None:
        if console is not None:
            console.print(f"reusing dataset [bold]{found}[/] (same collection recipe)")
        return DatasetChoice(found, "reused", time.time() - t0)
    staged = find_unfinished(config, root)
    if staged is not None:
        if console is not None:
            console.print(f"resuming the unfinished collection [bold]{staged}[/] (same collection recipe)")
        dataset_id = collect(config, root=root, progress=progress, resume=True, console=console)
        return DatasetChoice(dataset_id, "resumed", time.time() - t0)
    if console is not None:
        console.print(f"collecting [bold]{config.family}[/] ({config.mode} mode, {config.tasks} tasks); later runs reuse it")
    dataset_id = collect(config, root=root, progress=progress, console=console)
    return DatasetChoice(dataset_id, "collected", time.time() - t0)
