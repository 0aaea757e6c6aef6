"""Reusing a collection: does a stored version hold the data a :class:`CollectConfig` asks for?

A dataset's ``metadata["collection"]`` is ``CollectConfig.to_dict()`` of its run plus fields that
describe how that run went, so comparing it whole with a new config never matches. The
**recipe** is what decides the data: every config field except

- execution fields (:data:`~omrl_data.collection.plan.EXECUTION_FIELDS`: ``workers``,
  ``backend``, ``ray_address``, ``device``, ``chunk_seconds``), which change how the work runs, not what is
  collected, and
- the dataset ``name``, which only labels it,

compared after filling in the defaults (``steps_per_task`` and ``gamma`` of the family), so a
config that leaves them out matches a version that spelled them out. Runtime fields of the
stored dict (``units``, ``resumed``, ``wall_seconds``) are ignored, with one exception: in
``shared`` mode one SAC learns each shard of tasks, and the shards follow ``--workers``, so there
the stored shard layout (``units``) must equal the one the config would make. In ``random``
mode the SAC settings are left out too (there is no learner).

Slices and imports are never a match (their ``collection`` dict, where present, is the
parent's, but their rows are not the collection's).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from omrl_data.collection.config import CollectConfig
from omrl_data.errors import OmrlError

RUNTIME_FIELDS = ("units", "resumed", "wall_seconds")  # written by the run, not by the config
LABEL_FIELDS = ("name",)


def recipe(config: CollectConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The recipe of a config (or of a stored ``collection`` dict): defaults filled in, execution,
    runtime and label fields left out. Raises TypeError/ValueError for a dict that is not a
    collection config (unknown keys)."""
    from omrl_data.collection.plan import EXECUTION_FIELDS, resolved

    d = dict(config.to_dict() if isinstance(config, CollectConfig) else config)
    for k in RUNTIME_FIELDS:
        d.pop(k, None)
    d = resolved(CollectConfig.from_dict(d)).to_dict()
    if d["mode"] == "random":
        d.pop("sac")  # no learner: SAC settings cannot change uniform random actions
    return {k: v for k, v in d.items() if k not in EXECUTION_FIELDS and k not in LABEL_FIELDS}


def same_recipe(config: CollectConfig, metadata: Mapping[str, Any]) -> bool:
    """True when the version whose ``metadata.json`` is ``metadata`` was collected with the
    recipe of ``config`` (see the module docstring): same family, tasks, seed, grid, split and
    split arguments, steps per task, mode, checkpoints, gamma and SAC settings; workers,
    backend, Ray address, device, name and the run's own fields (units, resumed, wall time) do
    not count, except the shard layout in shared mode. False for slices, imports and metadata
    without a collection dict. Never raises for odd metadata (it is then not a match)."""
    from omrl_data.collection.plan import make_units

    stored = metadata.get("collection")
    if not isinstance(stored, Mapping) or metadata.get("lineage"):
        return False
    if metadata.get("family") not in (None, config.family):
        return False
    try:
        theirs = recipe(stored)
    except (TypeError, ValueError, KeyError, OmrlError):
        return False
    if recipe(config) != theirs:
        return False
    if config.mode == "shared":
        units = stored.get("units")
        if units is None or [list(map(int, u)) for u in units] != make_units(config.mode, int(config.tasks), int(config.workers)):
            return False
    return True


def find_dataset(config: CollectConfig, root: str | Path | None = None, any_name: bool = False) -> str | None:
    """The id of the newest complete version collected with ``config``'s recipe, else None.

    Looks at ``omrl/<family>/<config name>-v*`` (``config.dataset_name()``: ``replay`` or
    ``random`` unless ``name`` is set), newest version first; ``any_name=True`` looks at every
    name of the family. Versions are not re-verified here (``omrl_data.load`` does that on first
    load). Use it to skip a collection that already exists::

        dataset_id = find_dataset(config, root) or collect(config, root=root)
    """
    from omrl_data.schema import DEFAULT_NAMESPACE
    from omrl_data.store import catalog

    root_path = catalog.resolve_root(root)
    parent = root_path / DEFAULT_NAMESPACE / config.family
    if any_name:
        names = sorted({p.name.rsplit("-v", 1)[0] for p in parent.iterdir() if "-v" in p.name and not p.name.startswith(".")}) if parent.is_dir() else []
    else:
        names = [config.dataset_name()]
    found: list[tuple[str, int, Path, dict[str, Any]]] = []
    for name in names:
        for v in catalog.versions(config.family, name, root_path):
            folder = parent / f"{name}-v{v}"
            try:
                meta = catalog.read_metadata(folder, missing_ok=True) or {}
            except OmrlError:  # damaged metadata: not a version to reuse
                continue
            found.append((str(meta.get("created") or ""), v, folder, meta))
    for _, _, folder, meta in sorted(found, key=lambda f: (f[0], f[1]), reverse=True):
        if same_recipe(config, meta):
            return catalog.dataset_id_of(folder)
    return None


__all__ = ["RUNTIME_FIELDS", "find_dataset", "recipe", "same_recipe"]
