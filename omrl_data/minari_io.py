"""Minari interoperability: export an omrl dataset as Minari datasets, and import them back.

Minari has no notion of tasks, so a dataset of N tasks becomes N Minari datasets (one per task)
under one Minari namespace, written into Minari's own root (``$MINARI_DATASETS_PATH``, default
``~/.minari/datasets``) so that ``minari list local`` and ``minari.load_dataset`` see them::

    <namespace>/                         default: the omrl id, e.g. omrl/cheetah_vel/replay-v1
        namespace_metadata.json          "omrl": task table, features, splits, dataset ids,
                                         field meanings and the whole omrl metadata.json
        task0000-v0/ ... taskNNNN-v0/    one HDF5 Minari dataset per task

Each Minari dataset's env spec is the family's Gymnasium id with the task in its kwargs, so
``recover_environment()`` builds that task's env (importing ``omrl_data.tasks`` registers the
ids; the spec's entry point is a module path, so loading works without it too). Every episode's
metadata carries ``task_index``, ``split``, the task parameters as JSON (``task_json``) and
flattened (``task/<name>``).

Minari stores T + 1 observations per episode and the standard per-step keys; the omrl columns
that Minari has no place for (``episode_index``, ``step_in_episode``, ``collect_step``,
``source``, ``checkpoint_step``, ``mc_returns``, ``mc_bootstrap_discount``) go into the episode's
``infos``, one value per transition (aligned with ``actions``, not Minari's reset-first
convention). ``next_observations`` is stored in ``infos`` too where it differs from the next
row's observation. So an omrl -> Minari -> omrl round trip gives back every value bit for bit.

Importing a Minari dataset that omrl did not write fills in what it lacks: episode numbers in
stored order, ``collect_step`` = rows before it (stored order = collect order), ``source`` =
replay, ``checkpoint_step`` = -1, and Monte Carlo returns with ``--gamma``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from omrl_data.errors import BadInput, OmrlError
from omrl_data.schema import FIELDS, FIELDS_BY_NAME, SOURCE_NAMES, SOURCE_REPLAY
from omrl_data.slicing import episode_bounds
from omrl_data.store import catalog, manifest, zarr_io

NAMESPACE_KEY = "omrl"  # key of our block inside Minari's namespace metadata
DATASET_VERSION = 0  # Minari version number of every exported per-task dataset
INFO_FIELDS = ("episode_index", "step_in_episode", "collect_step", "source", "checkpoint_step", "mc_returns", "mc_bootstrap_discount")


class MinariUnavailable(OmrlError):
    """Minari is not installed."""


def _minari():
    try:
        import minari
    except ImportError as e:  # a missing optional dependency breaks only this feature
        raise MinariUnavailable("Minari is not installed; `pip install minari` to export or import Minari datasets") from e
    return minari


@contextmanager
def _quiet() -> Iterator[None]:
    # Minari warns about every metadata field left empty (author email, permalink, ...).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def task_dataset_id(namespace: str, task_index: int) -> str:
    """Minari id of one task's dataset: ``<namespace>/task0003-v0``."""
    return f"{namespace}/task{task_index:04d}-v{DATASET_VERSION}"


def default_namespace(dataset_id: str) -> str:
    """The Minari namespace an omrl dataset is exported to by default: its own id."""
    return dataset_id


def _check_namespace(namespace: str) -> str:
    from minari.namespace import validate_namespace

    try:
        validate_namespace(namespace)
    except ValueError:
        raise BadInput(
            f"bad Minari namespace {namespace!r}: use two or more letters, digits, '-', '_', with '/' between levels"
        ) from None
    return namespace


# ----------------------------------------------------------------------------------------------
# Spaces


def space_from_json(d: dict[str, Any]):
    """A Gymnasium Box from the JSON form in omrl metadata (``low``/``high`` None = unbounded)."""
    import gymnasium

    if not isinstance(d, dict) or d.get("type", "Box") != "Box":
        raise BadInput(f"only Box spaces can be exported to Minari, got {d!r}")
    shape = tuple(int(s) for s in d["shape"])
    dtype = np.dtype(d.get("dtype") or "float32")

    def bound(x: Any, default: float) -> Any:
        if x is None:
            return default
        return float(x) if np.ndim(x) == 0 else np.asarray(x, dtype=dtype)

    low, high = bound(d.get("low"), -np.inf), bound(d.get("high"), np.inf)
    return gymnasium.spaces.Box(low=low, high=high, shape=shape, dtype=dtype)


def space_to_json(space) -> dict[str, Any]:
    """The JSON form of a Box (uniform bounds as one number, infinite bounds as None)."""
    import gymnasium

    if not isinstance(space, gymnasium.spaces.Box):
        raise BadInput(f"only Box observation and action spaces can be imported, got {type(space).__name__}")

    def bound(x: np.ndarray) -> Any:
        x = np.asarray(x, dtype=np.float64)
        if np.all(np.isinf(x)):
            return None
        return float(x.flat[0]) if np.all(x == x.flat[0]) else x.tolist()

    return {"type": "Box", "shape": list(space.shape), "low": bound(space.low), "high": bound(space.high), "dtype": str(space.dtype)}


def _task_env_spec(meta: dict[str, Any], params: dict[str, Any] | None):
    """The registered env spec of the dataset's env id with this task in its kwargs (``params``
    None: without a task, the same spec for every task), or None when the id is not registered
    (then the dataset has no recoverable env)."""
    import gymnasium

    import omrl_data.tasks  # noqa: F401  (registers the omrl ids)

    env_id = meta.get("env_id")
    if not env_id or env_id not in gymnasium.registry:
        return None
    spec = gymnasium.spec(env_id)
    kwargs = {**spec.kwargs, **(meta.get("env_kwargs") or {})}
    if params is not None:
        kwargs["task"] = params
    return dataclasses.replace(spec, kwargs=kwargs)


def _flat_params(params: dict[str, Any], prefix: str = "task") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = f"{prefix}/{k}"
        if isinstance(v, dict):
            out.update(_flat_params(v, key))
        else:
            try:
                out[key] = np.asarray(v)
            except ValueError:  # ragged lists: JSON holds them anyway
                continue
    return out


# ----------------------------------------------------------------------------------------------
# Export


def export_minari(
    id_or_path: str | Path,
    namespace: str | None = None,
    root: str | Path | None = None,
    on_task: Callable[[int, int], None] | None = None,
    author: str = "omrl",
    code_permalink: str | None = None,
    combinable: bool = False,
) -> list[str]:
    """Write one Minari dataset per task of an omrl dataset; return their Minari ids (by task).

    ``code_permalink``: recorded as Minari's code permalink (e.g. the commit of the code that
    collected the data); default none, rather than a URL that does not point at that code.
    The observation and action spaces declare the dtype of the stored arrays (float32).
    ``combinable``: every task's env spec is the family's, without the task, so that
    ``minari.combine_datasets`` accepts them (it refuses specs that differ); each step's
    ``infos["task_index"]`` then says its task, since combining keeps infos but not episode
    metadata. ``recover_environment()`` gives the default task then (see docs/minari.md).

    Refuses (BadInput) when any of the target Minari ids exists. If writing fails part-way, the
    Minari datasets written so far are deleted again.
    """
    minari = _minari()
    from minari.data_collector import EpisodeBuffer
    from minari.namespace import create_namespace, list_local_namespaces, update_namespace_metadata

    from omrl_data.tasks.table import TaskTable

    folder = catalog.resolve(id_or_path, root)
    problems = manifest.verify(folder)  # Minari has no checksums: export only verified data
    if problems:
        from omrl_data.errors import IntegrityError

        raise IntegrityError(f"{id_or_path} is damaged ({problems[0]}); run `omrl-data verify` on it")
    meta = catalog.read_metadata(folder)
    dataset_id = catalog.dataset_id_of(folder)
    namespace = _check_namespace(namespace or default_namespace(dataset_id))
    table = TaskTable.from_dict(meta["tasks"])
    ids = [task_dataset_id(namespace, i) for i in range(len(table))]
    from minari.storage.datasets_root_dir import get_dataset_path

    taken = [m for m in ids if Path(get_dataset_path(m)).exists()]
    if taken:
        raise BadInput(
            f"Minari dataset {taken[0]} already exists; pick another --namespace or delete it with `minari delete {taken[0]}`"
        )
    refs = _export_references(folder, meta)
    # Declare what is stored: the arrays are float32 even where the env's own space is float64.
    obs_space = space_from_json({**(meta.get("observation_space") or {"shape": [meta["obs_dim"]]}), "dtype": FIELDS_BY_NAME["observations"].dtype.name})
    act_space = space_from_json({**(meta.get("action_space") or {"shape": [meta["act_dim"]]}), "dtype": FIELDS_BY_NAME["actions"].dtype.name})

    written: list[str] = []
    try:
        for i in range(len(table)):
            arrays = zarr_io.read_task_group(folder, i)
            params = table.params[i]
            spec = _task_env_spec(meta, None if combinable else params)
            with _quiet():
                ds = minari.create_dataset_from_buffers(
                    dataset_id=ids[i],
                    buffer=list(_episode_buffers(arrays, EpisodeBuffer, task_index=i if combinable else None)),
                    env=spec,
                    observation_space=obs_space,
                    action_space=act_space,
                    algorithm_name=_algorithm_name(meta),
                    author=author,
                    code_permalink=code_permalink,
                    description=f"Task {i} ({table.split[i]}) of omrl dataset {dataset_id}: {json.dumps(params)}",
                )
            written.append(ids[i])
            ds.storage.update_metadata(
                {
                    "omrl_dataset": dataset_id,
                    "omrl_family": table.family,
                    "omrl_task_index": i,
                    "omrl_split": table.split[i],
                    "omrl_task_params": params,
                    **_reference_scores(refs, i),
                }
            )
            n_ep = ds.total_episodes
            episode_meta = {"task_index": i, "split": table.split[i], "task_json": json.dumps(params), **_flat_params(params)}
            ds.storage.update_episode_metadata([episode_meta] * n_ep, range(n_ep))
            if on_task:
                on_task(i + 1, len(table))
        ns_meta = {
            NAMESPACE_KEY: {
                "dataset_id": dataset_id,
                "manifest_checksum": manifest.manifest_checksum(folder),
                "family": table.family,
                "datasets": ids,
                "task_table": table.to_dict(),
                "features": table.features.tolist(),
                "splits": {s: [int(i) for i in table.indices(s)] for s in ("train", "test")},
                "fields": {f.name: {"dtype": f.dtype.name, "meaning": f.meaning, "in_minari": _where(f.name)} for f in FIELDS},
                "metadata": meta,
            }
        }
        description = f"omrl dataset {dataset_id}: {len(table)} tasks of {table.family}, one Minari dataset per task"
        if namespace in list_local_namespaces():
            update_namespace_metadata(namespace, description=description, **ns_meta)
        else:
            create_namespace(namespace, description=description, **ns_meta)
    except BaseException:
        for m in written:
            try:
                _quiet_delete(m)
            except OSError:
                pass
        raise
    return ids


def _export_references(folder: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The version's normalised-score references (stored, else computed now; None if impossible)."""
    from omrl_data.references import compute_references_of_folder

    if meta.get("references") is not None:
        return meta["references"]
    try:
        return compute_references_of_folder(folder, meta)
    except OmrlError:
        return None


def _reference_scores(refs: dict[str, Any] | None, i: int) -> dict[str, Any]:
    """Minari's ``ref_min_score`` / ``ref_max_score`` of task i (stand-still and expert
    references), so that ``minari.get_normalized_score`` gives omrl's normalised score."""
    if not refs or refs["expert"][i] is None or refs["stand_still"][i] is None:
        return {}
    return {
        "ref_min_score": float(refs["stand_still"][i]),
        "ref_max_score": float(refs["expert"][i]),
        "num_episodes_average_score": int(refs.get("episodes") or 0),
        "omrl_reference_basis": str(refs.get("basis", "")),
        "omrl_informative": bool(refs["informative"][i]),
    }


def _where(name: str) -> str:
    return {
        "observations": "observations[:-1]",
        "next_observations": "observations[1:] (infos['next_observations'] where it differs)",
        "actions": "actions",
        "rewards": "rewards",
        "terminated": "terminations",
        "truncated": "truncations",
    }.get(name, f"infos['{name}']")


def _quiet_delete(minari_id: str) -> None:
    import shutil

    from minari.storage.datasets_root_dir import get_dataset_path

    shutil.rmtree(get_dataset_path(minari_id), ignore_errors=True)


def _algorithm_name(meta: dict[str, Any]) -> str:
    mode = (meta.get("collection") or {}).get("mode")
    return {"shared": "SAC (one multi-task learner, replay stream)", "per-task": "SAC (one learner per task, replay stream)", "random": "uniform random actions"}.get(
        str(mode), str(mode or "unknown")
    )


def _episode_buffers(arrays: dict[str, np.ndarray], EpisodeBuffer, task_index: int | None = None) -> Iterator[Any]:
    starts, ends = episode_bounds(arrays["episode_index"])
    obs, nxt = arrays["observations"], arrays["next_observations"]
    for e, (s, t) in enumerate(zip(starts, ends)):
        infos = {k: arrays[k][s:t] for k in INFO_FIELDS}
        if task_index is not None:
            infos["task_index"] = np.full(t - s, task_index, dtype=np.int64)
        if not np.array_equal(nxt[s : t - 1], obs[s + 1 : t]):
            infos["next_observations"] = nxt[s:t]
        yield EpisodeBuffer(
            id=e,
            observations=np.concatenate([obs[s:t], nxt[t - 1 : t]]),
            actions=arrays["actions"][s:t],
            rewards=arrays["rewards"][s:t],
            terminations=arrays["terminated"][s:t],
            truncations=arrays["truncated"][s:t],
            infos=infos,
        )


# ----------------------------------------------------------------------------------------------
# Import


@dataclasses.dataclass
class MinariSource:
    """What an import reads: Minari ids (one per task), and what is known about their tasks."""

    datasets: list[str]  # Minari dataset ids, task order
    family: str | None = None  # omrl family name
    params: list[dict[str, Any] | None] = dataclasses.field(default_factory=list)  # per dataset, None = unknown
    splits: list[str | None] = dataclasses.field(default_factory=list)  # per dataset "train"/"test", None = unknown
    table: Any = None  # the exported TaskTable, when the namespace holds one
    metadata: dict[str, Any] | None = None  # the exported omrl metadata, when the namespace holds it
    manifest_checksum: str | None = None  # the exported version's manifest checksum, likewise


def read_source(names: Sequence[str]) -> MinariSource:
    """Resolve command-line names: one Minari namespace written by ``export``, or Minari ids."""
    _minari()
    from minari.namespace import get_namespace_metadata, list_local_namespaces
    from minari.storage.datasets_root_dir import get_dataset_path

    from omrl_data.tasks.table import TaskTable

    names = [str(n).strip().rstrip("/") for n in names]
    if not names:
        raise BadInput("name a Minari namespace written by `omrl-data export`, or one Minari dataset id per task")
    if len(names) == 1 and names[0] in list_local_namespaces():
        block = get_namespace_metadata(names[0]).get(NAMESPACE_KEY)
        if isinstance(block, dict) and block.get("datasets"):
            table = TaskTable.from_dict(block["task_table"])
            return MinariSource(
                datasets=list(block["datasets"]),
                family=table.family,
                params=list(table.params),
                splits=list(table.split),
                table=table,
                metadata=block.get("metadata"),
                manifest_checksum=block.get("manifest_checksum"),
            )
        found = sorted(
            p.parent.relative_to(get_dataset_path()).as_posix() for p in Path(get_dataset_path(names[0])).glob("*/data")
        )
        if not found:
            raise BadInput(f"Minari namespace {names[0]!r} holds no datasets and no omrl task table")
        names = found
    for n in names:
        if not (Path(get_dataset_path(n)) / "data").is_dir():
            raise BadInput(f"no local Minari dataset {n!r} under {get_dataset_path()}; see `minari list local`")
    return MinariSource(datasets=list(names), params=[None] * len(names), splits=[None] * len(names))


def import_minari(
    names: Sequence[str],
    name: str,
    family: str | None = None,
    params: Sequence[dict[str, Any]] | None = None,
    split: str | None = None,
    split_args: dict[str, Any] | None = None,
    gamma: float | None = None,
    root: str | Path | None = None,
    on_task: Callable[[int, int], None] | None = None,
    command: str | None = None,
) -> str:
    """Build an omrl dataset from Minari datasets (one per task); return its id.

    Task parameters come, in this order of preference, from ``params`` (one dict per dataset),
    the namespace metadata written by ``export``, each dataset's episode metadata
    (``task_json``), or its dataset metadata. ``split`` (a split kind with ``split_args``)
    re-splits; otherwise stored labels are kept, or a random split is made.
    """
    minari = _minari()
    from omrl_data.store.writer import StagedDataset
    from omrl_data.tasks import get_family
    from omrl_data.tasks.splits import make_split
    from omrl_data.tasks.table import TaskTable

    catalog.check_name(name)
    src = read_source(names)
    if params is not None:
        if len(params) != len(src.datasets):
            raise BadInput(f"--params was given {len(params)} times for {len(src.datasets)} Minari datasets; give one per dataset, in order")
        src.params = [dict(p) for p in params]
    loaded = []
    for i, mid in enumerate(src.datasets):
        try:
            with _quiet():
                ds = minari.load_dataset(mid)
        except Exception as e:  # Minari raises plain ValueError/KeyError for unreadable datasets
            raise BadInput(f"cannot load Minari dataset {mid} ({type(e).__name__}: {e})") from e
        loaded.append(ds)
        raw = ds.storage.metadata
        if src.params[i] is None:
            src.params[i] = _params_from_minari(ds, raw)
        if src.splits[i] is None and raw.get("omrl_split") in ("train", "test"):
            src.splits[i] = raw["omrl_split"]
        src.family = src.family or family or raw.get("omrl_family")
    if family and src.family != family:
        src.family = family
    if not src.family:
        raise BadInput("the task family is unknown: pass --family (see `omrl-data families`)")
    fam = get_family(src.family)
    for mid, ds in zip(src.datasets, loaded):  # data of another env cannot be this family's
        dims = (int(np.prod(ds.observation_space.shape)), int(np.prod(ds.action_space.shape)))
        if dims != (int(fam.obs_dim), int(fam.act_dim)):
            raise BadInput(
                f"Minari dataset {mid} has observation/action dims {dims[0]}/{dims[1]}, but {fam.name} has "
                f"{fam.obs_dim}/{fam.act_dim}; it was not recorded on a {fam.name} env (choose the right --family)"
            )
    missing = [src.datasets[i] for i, p in enumerate(src.params) if p is None]
    if missing:
        raise BadInput(
            f"task parameters of {missing[0]} are unknown (no omrl metadata): pass --params JSON once per dataset, e.g. "
            f"--params '{json.dumps(fam.default_params() if hasattr(fam, 'default_params') else {})}'"
        )
    checked = [fam.validate_params(p) for p in src.params]
    if src.table is not None and split is None and params is None:
        table = src.table
    else:
        features = np.stack([fam.features(p) for p in checked]) if checked else np.zeros((0, 0))
        if split is None and all(s is not None for s in src.splits):
            labels, kind, args = list(src.splits), "explicit", {"test_tasks": [i for i, s in enumerate(src.splits) if s == "test"]}
        else:
            args_in = dict(split_args or {})
            seed = int(args_in.pop("seed", 0))
            labels, args = make_split(fam, checked, split or "random", seed=seed, **args_in)
            kind = split or "random"
        table = TaskTable(family=fam.name, params=tuple(checked), features=features, split=tuple(labels), split_kind=kind, split_args=args)

    meta = _import_metadata(src, loaded, fam, gamma)
    g = float(meta["gamma"])
    staged = StagedDataset.create(root, fam.name, name, command=command)
    try:
        for i, ds in enumerate(loaded):
            staged.write_task(i, _task_arrays(ds, g, meta))
            if on_task:
                on_task(i + 1, len(loaded))
        meta["tasks"] = table.to_dict()
        _keep_references_if_same_tasks(meta, src, table)
        staged.commit(meta)
    except BaseException:
        staged.abort()
        raise
    return staged.dataset_id


def _keep_references_if_same_tasks(meta: dict[str, Any], src: MinariSource, table) -> None:
    """Exported references hold only for the exported tasks in their order; otherwise drop them
    (they are computed again on load, or stored by ``omrl-data references``)."""
    exported = [t.get("params") for t in ((src.metadata or {}).get("tasks") or {}).get("tasks", [])]
    if meta.get("references") is not None and exported != [dict(p) for p in table.params]:
        meta.pop("references")


def _params_from_minari(ds, raw: dict[str, Any]) -> dict[str, Any] | None:
    if ds.total_episodes:
        ep_meta = next(iter(ds.storage.get_episode_metadata([int(ds.episode_indices[0])])))
        if "task_json" in ep_meta:
            return json.loads(str(ep_meta["task_json"]))
    p = raw.get("omrl_task_params")
    if isinstance(p, dict):
        return dict(p)
    # Recorded by someone else on an omrl env: the task is the env's constructor argument.
    spec = getattr(ds, "env_spec", None)
    task = (getattr(spec, "kwargs", None) or {}).get("task") if spec is not None else None
    return dict(task) if isinstance(task, dict) else None


def _import_metadata(src: MinariSource, loaded: list, fam, gamma: float | None) -> dict[str, Any]:
    """metadata.json of the imported dataset: the exported one when the namespace has it."""
    minari = _minari()
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if src.metadata is not None:
        meta = {k: v for k, v in src.metadata.items() if k not in ("dataset_id", "name", "version", "created", "task_rows", "format_version", "tasks")}
        parent = src.metadata.get("dataset_id")
        if gamma is not None and float(gamma) != float(meta.get("gamma", gamma)):
            raise BadInput(f"--gamma {gamma} differs from the exported dataset's gamma {meta.get('gamma')}; its stored returns use that one")
    else:
        first = loaded[0]
        meta = {
            "family": fam.name,
            "env_id": first.env_spec.id if first.env_spec is not None else fam.env_id,
            "env_kwargs": {k: v for k, v in (first.env_spec.kwargs if first.env_spec is not None else {}).items() if k != "task"},
            "obs_dim": int(np.prod(first.observation_space.shape)),
            "act_dim": int(np.prod(first.action_space.shape)),
            "observation_space": space_to_json(first.observation_space),
            "action_space": space_to_json(first.action_space),
            "gamma": 0.99 if gamma is None else float(gamma),
            "horizon": getattr(fam, "horizon", None),
            "collection": {"mode": "minari-import", "sources": list(src.datasets)},
            "package_versions": {"minari": minari.__version__, "numpy": np.__version__},
            "source_names": {str(k): v for k, v in SOURCE_NAMES.items()},
        }
        parent = None
    meta["lineage"] = {
        "parent": parent,
        "parent_manifest": src.manifest_checksum,
        "op": "import-minari",
        "spec": {"minari_datasets": list(src.datasets)},
    }
    prior = list(meta.get("changelog") or ([{"date": src.metadata.get("created"), "id": parent, "change": "collected"}] if parent else []))
    meta["changelog"] = prior + [{"date": now, "id": None, "change": f"imported from Minari ({', '.join(src.datasets[:2])}{', ...' if len(src.datasets) > 2 else ''})"}]
    return meta


def _task_arrays(ds, gamma: float, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The omrl columns of one Minari dataset, episodes in id order."""
    from omrl_data.returns import mc_returns

    parts: dict[str, list[np.ndarray]] = {f.name: [] for f in FIELDS}
    has_all_infos = True
    rows = 0
    for e, ep in enumerate(ds.iterate_episodes()):
        obs = np.asarray(ep.observations)
        if not isinstance(ep.observations, np.ndarray) or obs.ndim != 2:
            raise BadInput(f"{ds.id}: only flat Box observations can be imported (episode {ep.id})")
        t = len(ep.rewards)
        infos = ep.infos or {}
        parts["observations"].append(obs[:t])
        parts["next_observations"].append(np.asarray(infos["next_observations"]) if "next_observations" in infos else obs[1 : t + 1])
        parts["actions"].append(np.asarray(ep.actions).reshape(t, -1))
        parts["rewards"].append(np.asarray(ep.rewards))
        parts["terminated"].append(np.asarray(ep.terminations))
        parts["truncated"].append(np.asarray(ep.truncations))
        if all(k in infos and len(infos[k]) == t for k in INFO_FIELDS):
            for k in INFO_FIELDS:
                parts[k].append(np.asarray(infos[k]))
        else:
            has_all_infos = False
            parts["episode_index"].append(np.full(t, e))
            parts["step_in_episode"].append(np.arange(t))
            parts["collect_step"].append(rows + np.arange(t))
            parts["source"].append(np.full(t, SOURCE_REPLAY))
            parts["checkpoint_step"].append(np.full(t, -1))
        rows += t
    obs_dim, act_dim = int(meta["obs_dim"]), int(meta["act_dim"])
    out = {}
    for f in FIELDS:
        chunks = parts[f.name]
        if f.name in ("mc_returns", "mc_bootstrap_discount") and not has_all_infos:
            continue
        if chunks:
            out[f.name] = np.concatenate(chunks).astype(f.dtype, copy=False)
        else:
            extra = {"": (), "obs": (obs_dim,), "act": (act_dim,)}[f.per_step_shape]
            out[f.name] = np.zeros((0, *extra), dtype=f.dtype)
    if not has_all_infos:
        ret, disc = mc_returns(out["rewards"], out["episode_index"], out["terminated"], gamma)
        out["mc_returns"], out["mc_bootstrap_discount"] = ret, disc
    return {k: out[k].astype(FIELDS_BY_NAME[k].dtype, copy=False) for k in out}


__all__ = ["export_minari", "import_minari", "read_source", "task_dataset_id", "default_namespace"]
