"""Schema checks of a stored version: its metadata and its arrays' shapes and dtypes.

A manifest proves that bytes did not change since it was written; it does not prove the bytes
make sense. A version written by another tool, edited by hand, or crafted, can match its
manifest and still hold a split label ``"validation"``, a task without features, ``gamma: "abc"``
or an array whose shape disagrees with the metadata. ``metadata_problems`` and ``array_problems``
find those, each as one line naming the file and the field; ``check_version`` raises the first
as an IntegrityError. ``load``, ``verify``, ``slice`` and ``pull`` all go through here.

Keys this module does not know are left alone (other parts of omrl add their own).
"""
from __future__ import annotations

import json
import math
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from omrl_data.errors import IntegrityError
from omrl_data.schema import DATA_DIR, FIELDS, FORMAT_VERSION, METADATA_FILE, task_group_name

SPLIT_LABELS = ("train", "test")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def metadata_problems(meta: Any) -> list[str]:
    """Every schema problem of a parsed ``metadata.json``, as ``metadata.json: <field>: <what>``."""
    p: list[str] = []

    def bad(field: str, what: str) -> None:
        p.append(f"{METADATA_FILE}: {field}: {what}")

    if not isinstance(meta, dict):
        return [f"{METADATA_FILE}: must hold a JSON object, not {type(meta).__name__}"]
    if meta.get("format_version") != FORMAT_VERSION:
        bad("format_version", f"is {meta.get('format_version')!r}; this omrl reads {FORMAT_VERSION}")
    if not isinstance(meta.get("family"), str) or not meta.get("family"):
        bad("family", f"must be a family name, not {meta.get('family')!r}")
    for key in ("dataset_id", "name", "env_id", "created"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], str):
            bad(key, f"must be a string, not {meta[key]!r}")
    for key in ("obs_dim", "act_dim", "horizon"):
        if key in meta and not (_is_int(meta[key]) and meta[key] >= 1):
            bad(key, f"must be a positive integer, not {meta[key]!r}")
    if "version" in meta and not (_is_int(meta["version"]) and meta["version"] >= 1):
        bad("version", f"must be an integer >= 1, not {meta['version']!r}")
    if "gamma" in meta and not (_is_number(meta["gamma"]) and 0.0 <= float(meta["gamma"]) <= 1.0):
        bad("gamma", f"must be a number in [0, 1], not {meta['gamma']!r}")
    for key in ("env_kwargs", "collection", "package_versions", "source_names", "observation_space", "action_space"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], dict):
            bad(key, f"must be a JSON object, not {type(meta[key]).__name__}")
    if "lineage" in meta and meta["lineage"] is not None:
        lin = meta["lineage"]
        if not isinstance(lin, dict):
            bad("lineage", f"must be a JSON object, not {type(lin).__name__}")
        elif lin.get("parent") is not None and not isinstance(lin.get("parent"), str):
            bad("lineage.parent", f"must be a dataset id, not {lin.get('parent')!r}")

    n_tasks = None
    tasks = meta.get("tasks")
    if not isinstance(tasks, dict):
        bad("tasks", "missing or not a task table (a JSON object with family, split_kind, tasks)")
    else:
        rows = tasks.get("tasks")
        if not isinstance(rows, list) or not rows:
            bad("tasks.tasks", "must be a non-empty list of tasks")
        else:
            n_tasks = len(rows)
            n_feat = None
            seen = set()
            for k, t in enumerate(rows):
                where = f"tasks.tasks[{k}]"
                if not isinstance(t, dict):
                    bad(where, "must be a JSON object with index, params, features, split")
                    continue
                idx = t.get("index")
                if not _is_int(idx) or not 0 <= idx < n_tasks or idx in seen:
                    bad(f"{where}.index", f"must be a distinct integer in 0..{n_tasks - 1}, not {idx!r}")
                else:
                    seen.add(idx)
                if not isinstance(t.get("params"), dict):
                    bad(f"{where}.params", "missing or not a JSON object")
                feats = t.get("features")
                if not isinstance(feats, list) or not feats or not all(_is_number(f) and math.isfinite(f) for f in feats):
                    bad(f"{where}.features", "missing, empty, or not a list of finite numbers")
                else:
                    if n_feat is not None and len(feats) != n_feat:
                        bad(f"{where}.features", f"has {len(feats)} values; task 0 has {n_feat}")
                    n_feat = n_feat if n_feat is not None else len(feats)
                if t.get("split") not in SPLIT_LABELS:
                    bad(f"{where}.split", f"is {t.get('split')!r}; expected one of {', '.join(SPLIT_LABELS)}")
        if "split_kind" in tasks and not isinstance(tasks["split_kind"], str):
            bad("tasks.split_kind", f"must be a string, not {tasks['split_kind']!r}")
        if "split_args" in tasks and not isinstance(tasks["split_args"], dict):
            bad("tasks.split_args", f"must be a JSON object, not {type(tasks['split_args']).__name__}")
        if "family" in tasks and isinstance(meta.get("family"), str) and tasks["family"] != meta["family"]:
            bad("tasks.family", f"is {tasks['family']!r} but the dataset's family is {meta['family']!r}")
    if "task_rows" in meta:
        tr = meta["task_rows"]
        if not isinstance(tr, list) or not all(_is_int(r) and r >= 0 for r in tr):
            bad("task_rows", "must be a list of row counts (integers >= 0)")
        elif n_tasks is not None and len(tr) != n_tasks:
            bad("task_rows", f"has {len(tr)} entries for {n_tasks} tasks")
    return p


def array_problems(folder: str | Path, meta: dict[str, Any]) -> list[str]:
    """Every array of every task group against the schema and the metadata: present, the schema's
    dtype, ``[rows, obs_dim]`` / ``[rows, act_dim]`` / ``[rows]``, rows equal to ``task_rows``.
    Call after ``metadata_problems(meta) == []``."""
    folder = Path(folder)
    p: list[str] = []
    n_tasks = len(meta["tasks"]["tasks"])
    obs_dim, act_dim = meta.get("obs_dim"), meta.get("act_dim")
    task_rows = meta.get("task_rows")
    for i in range(n_tasks):
        group = folder / DATA_DIR / task_group_name(i)
        rel_group = f"{DATA_DIR}/{task_group_name(i)}"
        gmeta = _read_zarr_json(group / "zarr.json")
        if isinstance(gmeta, str):
            p.append(f"{rel_group}/zarr.json: task {i}: {gmeta}")
            continue
        if gmeta.get("node_type") != "group":
            p.append(f"{rel_group}/zarr.json: task {i}: node_type is {gmeta.get('node_type')!r}, expected 'group'")
            continue
        rows = set()
        for f in FIELDS:
            rel = f"{rel_group}/{f.name}/zarr.json"
            ameta = _read_zarr_json(folder / rel)
            if isinstance(ameta, str):
                p.append(f"{rel}: task {i}, array {f.name}: {ameta}")
                continue
            shape, dtype = ameta.get("shape"), ameta.get("data_type")
            if ameta.get("node_type") != "array" or not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
                p.append(f"{rel}: task {i}, array {f.name}: not an array description with a shape")
                continue
            if isinstance(dtype, dict):
                dtype = dtype.get("name")
            try:
                ok_dtype = np.dtype(dtype) == f.dtype
            except TypeError:
                ok_dtype = False
            if not ok_dtype:
                p.append(f"{rel}: task {i}, array {f.name}: data_type {dtype!r}; the schema says {f.dtype}")
            want_tail = {"": [], "obs": [obs_dim], "act": [act_dim]}[f.per_step_shape]
            if len(shape) != 1 + len(want_tail) or (want_tail and want_tail[0] is not None and shape[1:] != want_tail):
                p.append(f"{rel}: task {i}, array {f.name}: shape {shape}; the metadata says [rows{''.join(f', {d}' for d in want_tail)}]")
                continue
            rows.add(shape[0])
        if len(rows) > 1:
            p.append(f"{rel_group}: task {i}: arrays have different row counts {sorted(rows)}")
        elif rows and isinstance(task_rows, list) and i < len(task_rows) and task_rows[i] not in rows:
            p.append(f"{rel_group}: task {i}: arrays have {rows.pop()} rows; {METADATA_FILE} task_rows says {task_rows[i]}")
    return p


def _read_zarr_json(path: Path) -> dict[str, Any] | str:
    """The parsed zarr.json, or a one-line description of why it is unusable."""
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        return "missing zarr.json"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"zarr.json is unreadable ({type(e).__name__})"
    if not isinstance(d, dict):
        return f"zarr.json must hold a JSON object, not {type(d).__name__}"
    return d


def version_problems(folder: str | Path, meta: Any | None = None) -> list[str]:
    """Metadata and array problems of a version folder (reads ``metadata.json`` unless given)."""
    folder = Path(folder)
    if meta is None:
        try:
            meta = json.loads((folder / METADATA_FILE).read_text())
        except FileNotFoundError:
            return [f"{METADATA_FILE}: missing"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            return [f"{METADATA_FILE}: not valid JSON ({type(e).__name__})"]
    problems = metadata_problems(meta)
    return problems or array_problems(folder, meta)


def check_version(folder: str | Path, meta: Any | None = None) -> None:
    """IntegrityError naming the version, file and field of the first schema problem."""
    problems = version_problems(folder, meta)
    if problems:
        more = f" (and {len(problems) - 1} more; run `omrl-data verify {folder}`)" if len(problems) > 1 else ""
        raise IntegrityError(f"{folder}: {problems[0]}{more}")
