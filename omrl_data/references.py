"""Normalised-score references of each task: the returns of standing still, of a uniform random
policy and of the data's expert tier, so that a return R can be reported as
``(R - R_stand_still) / (R_expert - R_stand_still)`` (0 = standing still, 1 = the expert tier).

Stored in the dataset metadata (``metadata["references"]``, covered by the manifest like the
rest of ``metadata.json``)::

    {"stand_still": [float per task],  # return of the family's "do nothing" policy (see basis)
     "random": [float per task],       # return of a uniform random policy
     "expert": [float | None per task],# the max reference: mean return of whole episodes in the
                                       # task's expert tier (bandit: the best arm, see basis)
     "expert_tier": [float | None],    # the data's expert-tier mean for every family (= expert
                                       # except on the bandit); None: no whole episode in the tier
     "informative": [bool per task],   # expert clearly beats stand_still (margin below)
     "episodes": int,                  # rollouts per task behind stand_still and random
     "seed": int,                      # seed of those rollouts (the collection seed)
     "margin": {"relative": 0.05, "per_step": 0.01},
     "basis": str}                     # one line: what min and max mean for this family

Definitions (one line per family in :data:`BASIS`):

- **stand_still** (the minimum): the undiscounted return of the zero action, ``episodes``
  seeded rollouts averaged. For every MuJoCo family zero is zero torque (cheetah: lies still;
  ant: stands and collects its +1 survival bonus; walker/hopper: collapse and terminate early,
  so their minimum is the bonus until the fall); for point_robot_sparse zero keeps the point at
  the origin (return 0). The **bandit has no stand-still** (the zero action pulls arm 0): its
  minimum is the uniform random arm's expected return ``horizon * mean(arm_probs)``.
- **random**: uniform random actions from the action space, ``episodes`` seeded rollouts
  (bandit: exactly ``horizon * mean(arm_probs)``, the expected value, which is what uniform
  actions give since the arm is their argmax).
- **expert** (the maximum): mean undiscounted return of the whole episodes (first step 0, last
  row terminated or truncated) in the task's expert tier, the last third of its stream in
  collect-step order, exactly the rows ``omrl-data slice --quality expert`` keeps
  (:mod:`omrl_data.slicing`). The **bandit** uses the best arm: ``horizon * max(arm_probs)``.
- **informative**: ``expert - stand_still > max(0.05 * |stand_still|, 0.01 * horizon)``: the
  expert tier beats standing still by more than 5% of the stand-still return and by more than
  0.01 reward per step on average (2 over a 200-step MuJoCo episode, 0.2 on the point robot,
  0.1 on the bandit). On a task that fails it (cheetah_vel v* = 0.66 with a weak learner: expert
  -130 vs stand-still -132) the data holds nothing better than standing still, so no offline
  method can be scored on it; ``info``, the card and the collection summary say so.

A **slice** keeps its parent's references re-indexed to its tasks (``"from_parent": id``): the
expert reference stays the expert tier of the whole collection, so a method trained on the
``random`` or ``medium`` slice is scored on the same scale as one trained on all of it. A Minari
import keeps the exported references only when it has exactly the exported tasks.

Computed at collection time (a few rollouts per task: seconds), by ``omrl-data references ID``
for older versions (written into the version: see :func:`store_references`), and on first use
of :attr:`MultiTaskDataset.references` when the metadata has none (in memory only).
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from omrl_data.errors import BadInput, IntegrityError, OmrlError

REFERENCE_EPISODES = 5  # seeded rollouts per task for stand_still and random
RELATIVE_MARGIN = 0.05  # informative: expert - stand_still > 5% of |stand_still| ...
PER_STEP_MARGIN = 0.01  # ... and > 0.01 reward per step of the horizon
TIER_COLUMNS = ("rewards", "episode_index", "collect_step", "source", "step_in_episode", "terminated", "truncated")
KEYS = ("stand_still", "random", "expert", "informative", "episodes", "basis")  # the agreed keys (PLAN.md)

_MUJOCO_BASIS = "min: zero torque ({what}), {n} seeded rollouts; max: mean return of whole episodes in the task's expert tier (last third by collect step)"
BASIS: dict[str, str] = {
    "cheetah_dir": _MUJOCO_BASIS.format(what="the cheetah lies still", n="{n}"),
    "cheetah_vel": _MUJOCO_BASIS.format(what="the cheetah lies still, paying |v*| per step", n="{n}"),
    "ant_dir": _MUJOCO_BASIS.format(what="the ant stands and collects its +1 survival bonus", n="{n}"),
    "walker_params": _MUJOCO_BASIS.format(what="the walker collapses; the +1 bonus until it terminates", n="{n}"),
    "hopper_params": _MUJOCO_BASIS.format(what="the hopper collapses; the +1 bonus until it terminates", n="{n}"),
    "point_robot_sparse": "min: zero action (the point stays at the origin, outside every goal radius: return 0); "
    "max: mean return of whole episodes in the task's expert tier (last third by collect step)",
    "bandit": "no stand-still (the zero action pulls arm 0): min = the uniform random arm's expected return "
    "horizon x mean(arm_probs); max = the best arm's expected return horizon x max(arm_probs)",
}
_GENERIC_BASIS = "min: zero action, {n} seeded rollouts; max: mean return of whole episodes in the task's expert tier (last third by collect step)"

NOT_SCORABLE = "no offline method can be scored on {it} ({its} data holds nothing better than standing still)"

_memory_cache: dict[str, dict[str, Any]] = {}  # manifest checksum -> references computed on load


# ----------------------------------------------------------------------------------------------
# Scores


def normalised_score(ret: float, stand_still: float | None, expert: float | None) -> float:
    """``(ret - stand_still) / (expert - stand_still)``: 0 = standing still, 1 = the expert tier.

    NaN when a reference is missing or not finite, or when ``expert == stand_still`` (no scale).
    A task whose ``informative`` flag is False still gets a number, but it measures noise.
    """
    try:
        r, lo, hi = float(ret), float(stand_still), float(expert)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    if not (math.isfinite(r) and math.isfinite(lo) and math.isfinite(hi)) or hi == lo:
        return math.nan
    return (r - lo) / (hi - lo)


def informative_margin(stand_still: float, horizon: int) -> float:
    """How much the expert reference must exceed ``stand_still`` for a task to be informative."""
    return max(RELATIVE_MARGIN * abs(float(stand_still)), PER_STEP_MARGIN * int(horizon))


def is_informative(expert: float | None, stand_still: float | None, horizon: int) -> bool:
    """``expert - stand_still > max(0.05 |stand_still|, 0.01 horizon)`` (False if either is missing)."""
    if expert is None or stand_still is None or not (math.isfinite(expert) and math.isfinite(stand_still)):
        return False
    return float(expert) - float(stand_still) > informative_margin(stand_still, horizon)


def uninformative_tasks(refs: Mapping[str, Any]) -> list[int]:
    """Indices of the tasks whose expert tier does not clearly beat standing still."""
    return [i for i, ok in enumerate(refs.get("informative") or []) if not ok]


def uninformative_sentence(refs: Mapping[str, Any]) -> str | None:
    """One sentence naming the uninformative tasks (None when every task is informative)."""
    bad = uninformative_tasks(refs)
    if not bad:
        return None
    detail = ", ".join(
        f"{i} (expert {_fmt(refs['expert'][i])} vs stand-still {_fmt(refs['stand_still'][i])})" for i in bad[:8]
    ) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
    one = len(bad) == 1
    why = NOT_SCORABLE.format(it="it" if one else "them", its="its" if one else "their")
    return (f"Uninformative {'task' if one else 'tasks'} {detail}: the expert tier does not clearly beat standing still "
            f"(margin max(5% of |stand-still|, 0.01 x horizon)), so {why}.")


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{float(x):.2f}"


# ----------------------------------------------------------------------------------------------
# Computing


def expert_tier_return(columns: Mapping[str, np.ndarray]) -> float | None:
    """Mean undiscounted return of the whole episodes in one task's expert tier, or None.

    ``columns``: that task's arrays (at least :data:`TIER_COLUMNS`). The tier is the rows that
    ``SliceSpec(quality="expert")`` selects; an episode counts when its first row has
    ``step_in_episode`` 0 and its last row is terminated or truncated (not cut by the budget).
    """
    from omrl_data.slicing import SliceSpec, episode_bounds, select_rows

    rows = select_rows(columns, SliceSpec(quality="expert"))
    if len(rows) == 0:
        return None
    ep = np.asarray(columns["episode_index"])[rows]
    starts, ends = episode_bounds(ep)
    rewards = np.asarray(columns["rewards"], dtype=np.float64)[rows]
    first = np.asarray(columns["step_in_episode"])[rows][starts]
    done = (np.asarray(columns["terminated"], dtype=bool) | np.asarray(columns["truncated"], dtype=bool))[rows][ends - 1]
    whole = (first == 0) & done
    if not whole.any():
        return None
    returns = np.add.reduceat(rewards, starts)
    return float(returns[whole].mean())


def _seed_of(seed: int, task: int, kind: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(task), int(kind)]).generate_state(1)[0])


def rollout_returns(env, policy: str, episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of ``episodes`` rollouts of ``policy`` ("zero" or "random") in ``env``
    (its current task), until termination or the time limit. Seeded: the same call gives the
    same returns."""
    rng = np.random.default_rng(seed)
    space = env.action_space
    low = np.broadcast_to(np.asarray(space.low, dtype=np.float64), space.shape)
    high = np.broadcast_to(np.asarray(space.high, dtype=np.float64), space.shape)
    zero = np.clip(np.zeros(space.shape), low, high).astype(space.dtype)
    out = []
    for e in range(int(episodes)):
        env.reset(seed=int(seed) + e)
        total, done = 0.0, False
        while not done:
            a = zero if policy == "zero" else rng.uniform(low, high).astype(space.dtype)
            _, r, terminated, truncated, _ = env.step(a)
            total += float(r)
            done = bool(terminated or truncated)
        out.append(total)
    return out


def compute_references_for(
    family_name: str,
    params: Sequence[Mapping[str, Any]],
    task_columns: Callable[[int], Mapping[str, np.ndarray]],
    horizon: int | None = None,
    seed: int = 0,
    episodes: int = REFERENCE_EPISODES,
    env_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The references of tasks ``params`` of ``family_name``; ``task_columns(i)`` returns task
    i's arrays (:data:`TIER_COLUMNS`). BadInput when the family or a task cannot be built."""
    from omrl_data.tasks import get_family

    family = get_family(family_name)  # BadInput naming the families
    horizon = int(horizon or family.horizon)
    episodes = int(episodes)
    if episodes < 1:
        raise BadInput(f"references need at least one rollout per task, got episodes={episodes}")
    stand, rand, expert, tier = [], [], [], []
    env = None
    try:
        for i, p in enumerate(params):
            try:
                p = family.validate_params(dict(p))
            except BadInput as e:
                raise BadInput(f"task {i}: {e}") from None
            tier_ret = expert_tier_return(task_columns(i))
            tier.append(tier_ret)
            if family_name == "bandit":
                probs = np.asarray(p["arm_probs"], dtype=np.float64)
                stand.append(float(horizon * probs.mean()))
                rand.append(float(horizon * probs.mean()))
                expert.append(float(horizon * probs.max()))
                continue
            if env is None:
                env = _make_env(family, p, env_kwargs)
            env.unwrapped.set_task(p)
            stand.append(float(np.mean(rollout_returns(env, "zero", episodes, _seed_of(seed, i, 0)))))
            rand.append(float(np.mean(rollout_returns(env, "random", episodes, _seed_of(seed, i, 1)))))
            expert.append(tier_ret)
    finally:
        if env is not None:
            env.close()
    basis = BASIS.get(family_name, _GENERIC_BASIS).replace("{n}", str(episodes))
    return {
        "stand_still": stand,
        "random": rand,
        "expert": expert,
        "expert_tier": tier,
        "informative": [is_informative(x, s, horizon) for x, s in zip(expert, stand)],
        "episodes": episodes,
        "seed": int(seed),
        "margin": {"relative": RELATIVE_MARGIN, "per_step": PER_STEP_MARGIN},
        "basis": basis,
    }


def _make_env(family, params: Mapping[str, Any], env_kwargs: Mapping[str, Any] | None):
    """The family's env, or BadInput when it cannot be built here (missing simulator, bad kwargs)."""
    try:
        return family.make_env(dict(params), **dict(env_kwargs or {}))
    except OmrlError:
        raise
    except (ImportError, TypeError, ValueError, RuntimeError) as e:
        raise BadInput(f"cannot build the {family.name} env here ({type(e).__name__}: {e})") from None


def _seed_from(meta: Mapping[str, Any]) -> int:
    seed = (meta.get("collection") or {}).get("seed", 0)
    return int(seed) if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else 0


def compute_references(dataset, episodes: int = REFERENCE_EPISODES, seed: int | None = None) -> dict[str, Any]:
    """The references (the dict of the module docstring) of a :class:`MultiTaskDataset`.

    Rollouts are seeded by the collection seed (``seed`` overrides it), so the same dataset
    always gets the same references. BadInput when its family or tasks cannot be built here.
    """
    meta = dataset.metadata
    family = meta.get("family") or dataset.tasks.family
    if dataset.path is not None and seed is None and episodes == REFERENCE_EPISODES:
        inherited = _references_of_parent(Path(dataset.path), meta)
        if inherited is not None:
            return inherited
    try:
        return compute_references_for(
            family, dataset.tasks.params, lambda i: dataset.task_arrays(i), meta.get("horizon"),
            _seed_from(meta) if seed is None else seed, episodes, meta.get("env_kwargs"),
        )
    except BadInput as e:
        raise BadInput(f"cannot compute the references of {dataset.id or 'this dataset'}: {e}") from None


def compute_references_of_folder(folder: str | Path, meta: Mapping[str, Any] | None = None, episodes: int = REFERENCE_EPISODES) -> dict[str, Any]:
    """The references of a dataset folder (a committed version or a staging folder), reading only
    the columns they need from zarr. A slice whose parent is in the same catalog gets the
    parent's, re-indexed (as ``slice_dataset`` stores them)."""
    from omrl_data.store import catalog, zarr_io
    from omrl_data.tasks.table import TaskTable

    meta = dict(meta if meta is not None else catalog.read_metadata(folder))
    inherited = _references_of_parent(Path(folder), meta)
    if inherited is not None:
        return inherited
    table = TaskTable.from_dict(meta["tasks"])
    family = meta.get("family") or table.family
    try:
        return compute_references_for(
            family, table.params, lambda i: zarr_io.read_task_group(folder, i, TIER_COLUMNS), meta.get("horizon"),
            _seed_from(meta), episodes, meta.get("env_kwargs"),
        )
    except BadInput as e:
        raise BadInput(f"cannot compute the references of {catalog.dataset_id_of(folder)}: {e}") from None


def _references_of_parent(folder: Path, meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """A slice's references from its parent (same catalog root), or None (not a slice, parent
    gone, or its tasks cannot be built)."""
    from omrl_data.slicing import _parent_references
    from omrl_data.store import catalog

    lineage = meta.get("lineage") or {}
    if lineage.get("op") != "slice" or not lineage.get("parent") or lineage.get("parent_tasks") is None:
        return None
    try:
        parent_dir = catalog.resolve(lineage["parent"], folder.resolve().parents[2])
        return _parent_references(parent_dir, catalog.read_metadata(parent_dir), [int(j) for j in lineage["parent_tasks"]])
    except (OmrlError, IndexError, OSError, TypeError, ValueError):
        return None


def check_references(refs: Any, n_tasks: int) -> dict[str, Any]:
    """``refs`` if it has the agreed keys with one entry per task; IntegrityError otherwise."""
    if not isinstance(refs, dict) or any(k not in refs for k in KEYS):
        raise IntegrityError(f"metadata 'references' must be a dict with keys {', '.join(KEYS)}")
    for k in ("stand_still", "random", "expert", "informative"):
        if not isinstance(refs[k], list) or len(refs[k]) != n_tasks:
            raise IntegrityError(f"metadata references[{k!r}] must list one value per task ({n_tasks})")
    return refs


def references_of(dataset, compute: bool = True) -> dict[str, Any] | None:
    """The references of a dataset: those stored in its metadata, else computed once and kept in
    memory (in ``dataset.metadata["references"]``; the files are not changed: ``omrl-data
    references ID`` writes them). ``compute=False`` returns None instead of computing.
    BadInput when they must be computed and the family or tasks cannot be built here."""
    refs = dataset.metadata.get("references")
    if refs is not None:
        return check_references(refs, dataset.n_tasks)
    key = _cache_key(dataset)
    if key is not None and key in _memory_cache:
        refs = _memory_cache[key]
    elif not compute:
        return None
    else:
        refs = compute_references(dataset)
        if key is not None:
            _memory_cache[key] = refs
    dataset.metadata["references"] = refs
    return refs


def _cache_key(dataset) -> str | None:
    if dataset.path is None:
        return None
    try:
        from omrl_data.store import manifest

        return manifest.manifest_checksum(dataset.path)
    except (OmrlError, OSError):
        return None


# ----------------------------------------------------------------------------------------------
# Writing references into an existing version


def store_references(id_or_path: str | Path, root: str | Path | None = None, force: bool = False,
                     episodes: int = REFERENCE_EPISODES) -> tuple[dict[str, Any], bool]:
    """Compute the references of a committed version and write them into its ``metadata.json``.

    Returns ``(references, written)``; a version that already has them is left alone
    (``written`` False) unless ``force``. Safe against crashes and readers: under the version's
    lock, after a full verify, a copy of the folder is made beside it (data files hard-linked,
    new ``metadata.json`` with the references and a changelog entry that names the previous
    manifest checksum, ``manifest.json`` with the new metadata entry), checked, and swapped in
    with one atomic ``renameat2(RENAME_EXCHANGE)`` (two renames where the kernel lacks it). The
    loading cache of the old checksum is removed (the next load rebuilds it: the cache records
    the version's files, and metadata.json changed). The manifest checksum changes, so a published copy
    should be published again; slices keep the old checksum in their lineage.
    """
    from omrl_data.schema import MANIFEST_FILE, METADATA_FILE
    from omrl_data.store import catalog, manifest
    from omrl_data.store.lock import FileLock

    folder = catalog.resolve(id_or_path, root)
    dataset_id = catalog.dataset_id_of(folder)
    lock = FileLock(folder.parent / f".{folder.name}.lock", what=dataset_id)
    with lock:
        problems = manifest.verify(folder)
        if problems:
            raise IntegrityError(f"{dataset_id} is damaged ({problems[0]}); run `omrl-data verify` on it")
        meta = catalog.read_metadata(folder)
        n_tasks = len((meta.get("tasks") or {}).get("tasks", []))
        if meta.get("references") is not None and not force:
            return check_references(meta["references"], n_tasks), False
        refs = compute_references_of_folder(folder, meta, episodes)
        old_man = manifest.read_manifest(folder)
        old_checksum = manifest.manifest_checksum(manifest=old_man)
        new_meta = dict(meta)
        new_meta["references"] = refs
        new_meta["changelog"] = list(meta.get("changelog") or [{"date": meta.get("created"), "id": dataset_id,
                                                               "change": "collected" if meta.get("collection") else "created"}]) + [{
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "id": dataset_id,
            "change": f"normalised-score references added (omrl-data references); previous manifest {old_checksum}",
        }]
        tmp = folder.parent / f".refs-{folder.name}-{uuid.uuid4().hex[:8]}"
        try:
            _link_copy(folder, tmp, skip=(METADATA_FILE, MANIFEST_FILE, lock.path.name))
            manifest.write_json_atomic(tmp / METADATA_FILE, new_meta)
            new_man = {**old_man, "files": dict(old_man["files"])}
            new_man["files"][METADATA_FILE] = {"sha256": manifest.sha256_file(tmp / METADATA_FILE), "size": (tmp / METADATA_FILE).stat().st_size}
            manifest.write_json_atomic(tmp / MANIFEST_FILE, new_man)
            problems = manifest.verify(tmp, checksums=False)
            if problems:
                raise IntegrityError(f"the updated copy of {dataset_id} does not verify: {problems[0]}; nothing was changed")
            _swap(tmp, folder)  # tmp now holds the old version
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        catalog.remove_cache(old_checksum, root)  # keyed by the old checksum; the next load rebuilds it
    return refs, True


def _link_copy(src: Path, dst: Path, skip: Sequence[str]) -> None:
    """Hard-link every file of ``src`` under ``dst`` (copy where links fail), except top-level ``skip``."""
    for dirpath, dirnames, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            if rel == Path(".") and f in skip:
                continue
            a, b = Path(dirpath, f), dst / rel / f
            try:
                os.link(a, b)
            except OSError:
                shutil.copy2(a, b)


def _swap(a: Path, b: Path) -> None:
    """Exchange two folders atomically (Linux renameat2 RENAME_EXCHANGE), else by two renames."""
    from omrl_data.store import manifest

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
            manifest.fsync_dir(b.parent)
            return
    aside = b.parent / f".swap-{b.name}-{uuid.uuid4().hex[:8]}"
    os.replace(b, aside)
    os.replace(a, b)
    os.replace(aside, a)
    manifest.fsync_dir(b.parent)


__all__ = [
    "BASIS",
    "REFERENCE_EPISODES",
    "compute_references",
    "compute_references_for",
    "compute_references_of_folder",
    "expert_tier_return",
    "is_informative",
    "normalised_score",
    "references_of",
    "store_references",
    "uninformative_sentence",
    "uninformative_tasks",
]


def references_for_display(folder: Any, meta: dict[str, Any]) -> tuple[dict[str, Any] | None, str, str | None]:
    """``(references, how, detail)`` of a version for `info` and the card: ``how`` is "stored"
    (``detail``: the parent id when they are a parent's, re-indexed), "computed" (now, in memory)
    or "unavailable" (``detail``: why, e.g. task parameters this family cannot build)."""
    from omrl_data.errors import OmrlError

    if meta.get("references") is not None:
        return meta["references"], "stored", meta["references"].get("from_parent")
    try:
        return compute_references_of_folder(folder, meta), "computed", None
    except OmrlError as e:
        return None, "unavailable", str(e)
