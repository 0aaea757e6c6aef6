"""Dataset cards: a markdown page (Hugging Face dataset-card conventions) and a learning-progress
plot that describe one dataset version, rendered from its files alone.

``write_card(id)`` writes ``card.md`` and ``learning_progress.png`` into the version folder (they
are regenerable, so the manifest does not cover them); ``write_card(id, out=FILE)`` writes
``FILE`` and the plot beside it. The card holds YAML front matter (license, tags,
task_categories, size_categories, pretty_name), then: summary, how to load it with omrl and
with Minari, the command that regenerates it, task table, splits, per-task statistics per
quality tier, schema, provenance, checksums, citations and changelog.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from omrl_data.schema import FIELDS, MANIFEST_FILE, METADATA_FILE, SOURCE_NAMES
from omrl_data.slicing import QUALITY_TIERS, SliceSpec, episode_bounds, range_mask, split_arg_flags
from omrl_data.store import catalog, manifest, zarr_io

PLOT_FILE = "learning_progress.png"
CARD_FILE = "card.md"
DEFAULT_LICENSE = "cc-by-4.0"

# The papers whose tasks, data recipes and methods the datasets serve (see docs/papers).
CITATIONS: dict[str, str] = {
    "MACAW": """@inproceedings{mitchell2021macaw,
  title     = {Offline Meta-Reinforcement Learning with Advantage Weighting},
  author    = {Mitchell, Eric and Rafailov, Rafael and Peng, Xue Bin and Levine, Sergey and Finn, Chelsea},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2021}
}""",
    "MACEGA": """@misc{chen_macega,
  title  = {Offline Meta-Reinforcement Learning with Evolving Gradient Agreement},
  author = {Chen, Jiaxing and Yuan, Weilin and Chen, Shaofei and Liu, Furong and Ma, Ao and Hu, Zhenzhen and Li, Peng}
}""",
    "Okanovic": """@misc{okanovic_robustness,
  title  = {On the Robustness of Context- and Gradient-based Meta-Reinforcement Learning Algorithms},
  author = {Okanovic, Patrik and Sterzinger, Rafael and Zogaj, Fatjon}
}""",
    "R2PGO": """@misc{li_r2pgo,
  title  = {Efficient Offline Meta-Reinforcement Learning via Robust Task Representations and Adaptive Policy Generation},
  author = {Li, Zhengwei and Lin, Zhenyang and Chen, Yurou and Liu, Zhiyong}
}""",
    "PEARL": """@inproceedings{rakelly2019pearl,
  title     = {Efficient Off-Policy Meta-Reinforcement Learning via Probabilistic Context Variables},
  author    = {Rakelly, Kate and Zhou, Aurick and Quillen, Deirdre and Finn, Chelsea and Levine, Sergey},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2019}
}""",
}


# ----------------------------------------------------------------------------------------------
# Statistics


def _episode_table(folder: Path, task: int) -> dict[str, np.ndarray]:
    """Per episode of one task: first collect_step, return, length, source, and tier."""
    a = zarr_io.read_task_group(folder, task, ("rewards", "episode_index", "collect_step", "source"))
    starts, ends = episode_bounds(a["episode_index"])
    returns = np.add.reduceat(a["rewards"].astype(np.float64), starts) if len(starts) else np.zeros(0)
    tier = np.full(len(starts), -1, dtype=np.int64)
    for t, (lo, hi) in enumerate(QUALITY_TIERS.values()):
        mask = range_mask(a["collect_step"], a["episode_index"], lo, hi)
        tier[mask[starts]] = t
    return {
        "collect_step": a["collect_step"][starts] if len(starts) else np.zeros(0, np.int64),
        "returns": returns,
        "lengths": ends - starts,
        "source": a["source"][starts] if len(starts) else np.zeros(0, np.uint8),
        "tier": tier,
    }


def _stats(returns: np.ndarray, lengths: np.ndarray) -> dict[str, Any]:
    if len(returns) == 0:
        return {"episodes": 0, "transitions": 0, "return_mean": None, "return_min": None, "return_max": None}
    return {
        "episodes": int(len(returns)),
        "transitions": int(lengths.sum()),
        "return_mean": float(returns.mean()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
    }


def task_tier_statistics(folder: str | Path, task: int) -> dict[str, dict[str, Any]]:
    """``{"all"|"random"|"medium"|"expert": {episodes, transitions, return_mean/min/max}}`` of one
    task; tiers are the slicing tiers (first / middle / last third in collect-step order)."""
    ep = _episode_table(Path(folder), task)
    out = {"all": _stats(ep["returns"], ep["lengths"])}
    for t, tier in enumerate(QUALITY_TIERS):
        sel = ep["tier"] == t
        out[tier] = _stats(ep["returns"][sel], ep["lengths"][sel])
    return out


def size_category(n: int) -> str:
    """Hugging Face ``size_categories`` bucket of ``n`` transitions."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return label
    return "100M<n<1B"


# ----------------------------------------------------------------------------------------------
# Plot


def plot_learning_progress(folder: str | Path, out: str | Path) -> Path:
    """Episode return against collect step, one line per task (rolling mean over episodes, raw
    returns as faint dots, checkpoint rollouts as crosses), train solid and test dashed, with the
    quality tiers of task 0 shaded. Writes a PNG and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    meta = catalog.read_metadata(folder)
    tasks = sorted((meta.get("tasks") or {}).get("tasks", []), key=lambda t: t["index"])
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    cmap = plt.get_cmap("viridis")
    n = max(len(tasks), 1)
    tier_edges = None
    all_x, all_y = [], []  # every task's stream episodes, for the mean line
    for k, t in enumerate(tasks):
        ep = _episode_table(folder, int(t["index"]))
        if len(ep["returns"]) == 0:
            continue
        color = cmap(k / max(n - 1, 1))
        style = "-" if t.get("split") == "train" else "--"
        stream = ep["source"] != 1
        x, y = ep["collect_step"][stream], ep["returns"][stream]
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        all_x.append(x)
        all_y.append(y)
        if len(y):
            w = max(1, len(y) // (25 if n <= 10 else 12))  # smoother when many lines overlap
            smooth = np.convolve(y, np.ones(w) / w, mode="valid")
            ax.scatter(x, y, s=3, color=color, alpha=0.15, linewidths=0)
            label = f"task {t['index']} ({t.get('split')})" if n <= 10 else None
            ax.plot(x[w - 1 :], smooth, style, color=color, lw=1.4, label=label)
        ck = ~stream
        if ck.any():
            ax.scatter(ep["collect_step"][ck], ep["returns"][ck], s=10, marker="x", color=color, alpha=0.6)
        if tier_edges is None and len(x):
            # Bands run from a tier's first episode to the next tier's first: they tile the axis.
            tiers = ep["tier"][stream][order]
            firsts = [x[tiers == ti].min() for ti in range(3) if (tiers == ti).any()]
            tier_edges = list(zip(firsts, [*firsts[1:], x.max()]))
    if n > 1 and all_x and sum(len(x) for x in all_x):
        # Mean over tasks in collect-step bins: the trend that many overlapping lines hide.
        xs, ys = np.concatenate(all_x), np.concatenate(all_y)
        edges = np.linspace(xs.min(), xs.max() + 1, min(30, len(np.unique(xs))) + 1)
        which = np.clip(np.digitize(xs, edges) - 1, 0, len(edges) - 2)
        filled = [b for b in range(len(edges) - 1) if np.any(which == b)]
        ax.plot([xs[which == b].mean() for b in filled], [ys[which == b].mean() for b in filled], color="black", lw=2.2, label="mean over tasks")
    for (lo, hi), name, shade in zip(tier_edges or [], QUALITY_TIERS, (0.04, 0.08, 0.12)):
        ax.axvspan(lo, hi, color="black", alpha=shade, lw=0)
        ax.text((lo + hi) / 2, 1.01, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8, color="0.3")
    ax.set_xlabel("collect step (learner env steps on the task)")
    ax.set_ylabel("episode return (undiscounted)")
    ax.set_title(catalog.dataset_id_of(folder), fontsize=10, pad=14)
    ax.grid(alpha=0.3)
    if n <= 10:
        ax.legend(fontsize=7, ncol=2 if n > 5 else 1, loc="best")
    else:
        ax.legend(fontsize=7, loc="best")
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, n - 1))
        fig.colorbar(sm, ax=ax, label="task index (solid train, dashed test)")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


# ----------------------------------------------------------------------------------------------
# Markdown


def collect_command(collection: dict[str, Any]) -> str:
    """The ``omrl-data collect`` command line of a collection config (non-default options only).

    Settings that the command line cannot set (SAC hyperparameters, split arguments other than
    test tasks) are appended as a shell comment, so the line stays honest about them.
    """
    from omrl_data.collection.config import CollectConfig, SacConfig

    defaults = CollectConfig(family=str(collection.get("family") or ""), tasks=0).to_dict()  # gamma: the family's default
    parts = [f"omrl-data collect {collection.get('family')} --tasks {collection.get('tasks')}"]
    for key, value in collection.items():
        if key in ("family", "tasks", "sac", "split_args", "ray_address") or key not in defaults or value == defaults[key]:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                parts.append(flag)
        elif value is not None:
            parts.append(f"{flag} {value}")
    split_args = dict(collection.get("split_args") or {})
    if split_args.get("test_tasks") is not None:
        parts.append(split_arg_flags({"test_tasks": split_args.pop("test_tasks")}))
    other = {k: v for k, v in split_args.items() if k != "seed"}
    sac_defaults = SacConfig().__dict__
    sac = {k: v for k, v in (collection.get("sac") or {}).items() if (list(sac_defaults[k]) if isinstance(sac_defaults.get(k), tuple) else sac_defaults.get(k)) != v}
    parts.append("--yes")
    line = " ".join(parts)
    if other or sac:
        line += "  # with " + json.dumps({**({"split_args": other} if other else {}), **({"sac": sac} if sac else {})})
    return line


def regenerate_commands(meta: dict[str, Any], dataset_id: str) -> list[str]:
    """Commands that rebuild this version from scratch (collect, then any slice), then its card."""
    cmds: list[str] = []
    lineage = meta.get("lineage") or {}
    name = meta.get("name") or "NAME"
    if lineage.get("op") == "slice" and lineage.get("spec") is not None:
        spec = SliceSpec.from_dict(lineage["spec"])
        flags = spec.cli_flags()
        cmds.append(f"omrl-data slice {lineage['parent']} --name {name}" + (f" {flags}" if flags else ""))
    elif lineage.get("op") == "import-minari":
        srcs = (lineage.get("spec") or {}).get("minari_datasets") or []
        ns = srcs[0].rsplit("/", 1)[0] if srcs else "NAMESPACE"
        cmds.append(f"omrl-data import-minari {ns} --name {name}")
    collection = meta.get("collection") or {}
    if not lineage and collection.get("family"):
        try:
            cmds.append(collect_command(collection))
        except (TypeError, ImportError):
            cmds.append("omrl-data collect " + json.dumps(collection))
    cmds.append(f"omrl-data card {dataset_id}")
    return cmds


def _compact_json(obj: Any) -> str:
    """Indented JSON with lists of numbers kept on one line."""
    import re

    text = json.dumps(obj, indent=1, sort_keys=True)
    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _params(p: Any) -> str:
    if isinstance(p, dict):
        return ", ".join(f"{k}={_params(v)}" for k, v in p.items())
    if isinstance(p, (list, tuple)):
        if len(p) > 6:
            return f"[{len(p)} values]"
        return "[" + ", ".join(_params(v) for v in p) + "]"
    if isinstance(p, float):
        return f"{p:.4g}"
    return str(p)


def _task_digest(man: dict[str, Any], task: int) -> str:
    """sha256 over one task's manifest entries: equal digests mean byte-identical task data."""
    prefix = f"data.zarr/tasks/{task:04d}/"
    entries = {k: v for k, v in man["files"].items() if k.startswith(prefix)}
    return hashlib.sha256(manifest.canonical_json(entries)).hexdigest()


def render_card(
    id_or_path: str | Path,
    root: str | Path | None = None,
    license: str = DEFAULT_LICENSE,
    plot_name: str = PLOT_FILE,
    note: str | None = None,
) -> str:
    """The markdown card of a dataset version (YAML front matter + sections); ``note`` is an
    extra paragraph for the summary (e.g. the budget a card's collection ran at)."""
    from omrl_data.minari_io import default_namespace, task_dataset_id

    folder = catalog.resolve(id_or_path, root)
    meta = catalog.read_metadata(folder)
    man = manifest.read_manifest(folder)
    dataset_id = catalog.dataset_id_of(folder)
    row = catalog.summary(folder)
    family = meta.get("family", row["family"])
    tasks = sorted((meta.get("tasks") or {}).get("tasks", []), key=lambda t: t["index"])
    stats = [task_tier_statistics(folder, int(t["index"])) for t in tasks]
    n_eps = sum(s["all"]["episodes"] for s in stats)
    collection = meta.get("collection") or {}
    lineage = meta.get("lineage") or {}
    fam = _family(family)
    papers = list(getattr(fam, "papers", ()) or ())
    pretty = f"omrl {family} {meta.get('name', '')}-v{meta.get('version', '')}".strip()

    L: list[str] = []
    add = L.append
    add(front_matter(pretty, license, family, row["transitions"]))
    add("")
    add(f"# {dataset_id}")
    add("")
    add("## Summary")
    add("")
    desc = getattr(fam, "description", None)
    add(
        f"Multi-task offline dataset of the **{family}** task family"
        + (f" ({desc})" if desc else "")
        + f": {row['tasks']} tasks ({row['train_tasks']} train / {row['test_tasks']} test), "
        f"{row['transitions']:,} transitions in {n_eps:,} episodes, gamma {meta.get('gamma')}{_gamma_note(fam, meta.get('gamma'))}, horizon {meta.get('horizon')}."
    )
    add("")
    if lineage.get("op") == "slice":
        add(f"This is a **slice** of `{lineage.get('parent')}` (parent manifest `{str(lineage.get('parent_manifest'))[:16]}...`): "
            f"`{SliceSpec.from_dict(lineage['spec']).cli_flags() or 'all data'}`.")
    elif lineage.get("op") == "import-minari":
        add(f"**Imported from Minari** ({', '.join(f'`{m}`' for m in (lineage.get('spec') or {}).get('minari_datasets', [])[:3])}...).")
    else:
        mode = collection.get("mode", "unknown")
        add(
            f"Collected with `omrl-data collect` in mode **{mode}**"
            + (f", {collection.get('steps_per_task'):,} learner env steps per task" if isinstance(collection.get("steps_per_task"), int) else "")
            + f", seed {collection.get('seed')}. Rows of each task are in collect order and `collect_step` "
            "records the learner's progress, so each stream follows its learner from the first (random) "
            "steps on; the plot shows how far learning got."
        )
    add("")
    if note:
        add(note)
        add("")
    refs, refs_note = _card_references(folder, meta)
    if refs is not None and _uninformative_sentence(refs):
        add(f"**Warning.** {_uninformative_sentence(refs)}")
        add("")
    add(f"![learning progress]({plot_name})")
    add("")
    add("*Episode return against collect step, per task (solid: train, dashed: test; shaded: quality tiers).*")
    add("")

    add("## Load it")
    add("")
    add("With omrl (`omrl-data pull " + dataset_id + " --from URL` first if it is published elsewhere):")
    add("")
    add("```python")
    add("import omrl_data")
    add(f'ds = omrl_data.load("{dataset_id}")')
    add("ds.tasks.params, ds.tasks.split      # the task table")
    add("ds.task_arrays(0)[\"observations\"]    # one task's columns")
    add('sampler = omrl_data.TaskBatchSampler(ds, tasks="train", meta_batch=8, batch_size=256, seed=0)')
    add("```")
    add("")
    add("With Minari (one Minari dataset per task):")
    add("")
    ns = default_namespace(dataset_id)
    add("```bash")
    add(f"omrl-data export {dataset_id} --format minari")
    add("```")
    add("```python")
    add("import minari, omrl_data.tasks  # importing omrl_data.tasks registers the omrl env ids")
    add(f'ds = minari.load_dataset("{task_dataset_id(ns, 0)}")')
    add("env = ds.recover_environment()   # the env of task 0")
    add("```")
    add("")

    add("## Regenerate")
    add("")
    add("```bash")
    for c in regenerate_commands(meta, dataset_id):
        add(c)
    add("```")
    add("")

    add("## Tasks")
    add("")
    add("| task | split | parameters | features |")
    add("| ---: | --- | --- | --- |")
    for t in tasks:
        add(f"| {t['index']} | {t.get('split')} | {_params(t.get('params'))} | {_params([float(x) for x in t.get('features', [])])} |")
    add("")
    add("## Splits")
    add("")
    table = meta.get("tasks") or {}
    add(f"Kind **{table.get('split_kind')}**, arguments `{json.dumps(table.get('split_args') or {})}`.")
    add("")
    add(f"- train: {[t['index'] for t in tasks if t.get('split') == 'train']}")
    add(f"- test: {[t['index'] for t in tasks if t.get('split') == 'test']}")
    if (table.get("split_args") or {}).get("test_equals_train"):
        add("- test = train (the papers evaluate on the training tasks for this family)")
    add("")

    add("## Per-task statistics")
    add("")
    add("Quality tiers are the first / middle / last third of each task's stream in collect-step order "
        "(`omrl-data slice --quality random|medium|expert`). Returns are undiscounted episode returns.")
    add("")
    add("| task | split | tier | episodes | transitions | return mean | min | max |")
    add("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for t, s in zip(tasks, stats):
        for tier in ("all", *QUALITY_TIERS):
            r = s[tier]
            add(f"| {t['index']} | {t.get('split')} | {tier} | {r['episodes']} | {r['transitions']} | {_fmt(r['return_mean'])} | {_fmt(r['return_min'])} | {_fmt(r['return_max'])} |")
    add("")

    add("## Normalised-score references")
    add("")
    if refs is None:
        add(f"The references {refs_note}.")
    else:
        add("A return R on task i is reported as (R - stand-still) / (expert - stand-still): 0 is the minimum "
            f"reference (standing still, where the family has a way to do nothing), 1 the expert reference. "
            f"Basis: {refs.get('basis')} ({refs_note}).")
        add("")
        add("| task | split | stand-still | random | expert | scorable |")
        add("| ---: | --- | ---: | ---: | ---: | --- |")
        for t in tasks:
            i = int(t["index"])
            add(f"| {i} | {t.get('split')} | {_fmt(refs['stand_still'][i])} | {_fmt(refs['random'][i])} | {_fmt(refs['expert'][i])} | "
                f"{'yes' if refs['informative'][i] else '**no**: the expert tier does not clearly beat standing still'} |")
    add("")

    add("## Schema")
    add("")
    add(f"One zarr v3 group per task (`data.zarr/tasks/NNNN`), one array per field, rows in collect order. obs_dim = {meta.get('obs_dim')}, act_dim = {meta.get('act_dim')}.")
    add("")
    add("| field | dtype | shape | meaning |")
    add("| --- | --- | --- | --- |")
    dims = {"": "", "obs": f", {meta.get('obs_dim')}", "act": f", {meta.get('act_dim')}"}
    for f in FIELDS:
        add(f"| `{f.name}` | {f.dtype.name} | [n{dims[f.per_step_shape]}] | {f.meaning} |")
    add("")
    add(f"`source` values: {', '.join(f'{k} = {v}' for k, v in SOURCE_NAMES.items())}.")
    add("")

    add("## Provenance")
    add("")
    add(f"- created: {meta.get('created')}; format version {meta.get('format_version')}")
    add(f"- environment: `{meta.get('env_id')}` with kwargs `{json.dumps(meta.get('env_kwargs') or {})}` + the task")
    add(f"- observation space: `{json.dumps(meta.get('observation_space'))}`")
    add(f"- action space: `{json.dumps(meta.get('action_space'))}`")
    versions = meta.get("package_versions") or {}
    if versions:
        add("- packages: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    if isinstance(collection.get("wall_seconds"), (int, float)):
        add(f"- collection wall time: {collection['wall_seconds']:,.0f} s")
    if lineage:
        add(f"- lineage: `{json.dumps(lineage)}`")
    add("")
    add("Collection config (seeds included):")
    add("")
    add("```json")
    add(_compact_json(collection))
    add("```")
    add("")

    add("## Checksums")
    add("")
    total = sum(e["size"] for e in man["files"].values())
    add(f"- manifest checksum (sha256 of the canonical `{MANIFEST_FILE}`): `{manifest.manifest_checksum(manifest=man)}`")
    add(f"- `{METADATA_FILE}` sha256: `{man['files'][METADATA_FILE]['sha256']}`")
    add(f"- {len(man['files'])} files, {total:,} bytes; check them all with `omrl-data verify {dataset_id}`")
    add("")
    add("| task | sha256 of its manifest entries |")
    add("| ---: | --- |")
    for t in tasks:
        add(f"| {t['index']} | `{_task_digest(man, int(t['index']))}` |")
    add("")

    add("## Citation")
    add("")
    add(f"The {family} family is used by: {', '.join(papers) if papers else 'see the omrl documentation'}. "
        "If you use this dataset, please cite the papers whose setting it reproduces:")
    add("")
    add("```bibtex")
    cited = [p for p in papers if p in CITATIONS] or ["MACAW"]
    add("\n\n".join(CITATIONS[p] for p in cited))
    add("```")
    add("")

    add("## Changelog")
    add("")
    log = meta.get("changelog") or [{"date": meta.get("created"), "id": dataset_id, "change": "collected" if collection else "created"}]
    for entry in log:
        add(f"- {entry.get('date')}: `{entry.get('id') or dataset_id}`: {entry.get('change')}")
    add("")
    return "\n".join(L)


def _gamma_note(fam: Any, gamma: Any) -> str:
    """`` (the family's default)`` or what the family's default is, so a card states it."""
    default = getattr(fam, "default_gamma", None)
    if default is None or gamma is None:
        return ""
    if float(gamma) == float(default):
        return " (the family's default" + ("; bandit pulls carry no state, so a pull's value is its reward" if fam.name == "bandit" else "") + ")"
    return f" (the family's default is {default:g})"


def _card_references(folder: Path, meta: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The version's references (stored, else computed now) and where they come from."""
    from omrl_data.references import references_for_display

    refs, how, detail = references_for_display(folder, meta)
    if how == "stored":
        return refs, "stored in the dataset metadata" + (f"; those of its parent `{detail}`, re-indexed to its tasks" if detail else "")
    if how == "computed":
        return refs, "computed for this card; `omrl-data references ID` stores them"
    return None, f"could not be computed ({detail})"


def _uninformative_sentence(refs: dict[str, Any]) -> str | None:
    from omrl_data.references import uninformative_sentence

    return uninformative_sentence(refs)


def _family(name: str):
    try:
        from omrl_data.tasks import get_family

        return get_family(name)
    except Exception:  # a family this omrl does not know (e.g. written by a newer release)
        return None


def front_matter(pretty: str, license: str, family: str, transitions: int) -> str:
    """The card's YAML front matter between ``---`` lines, built with a YAML library so that any
    value (``other: see LICENSE``, quotes, ``#``) stays one valid scalar. BadInput for a license
    that is not one line of text."""
    import yaml

    from omrl_data.errors import BadInput

    if not isinstance(license, str) or not license.strip() or any(c in license for c in "\n\r\x00") or len(license) > 200:
        raise BadInput(f"--license {license!r} must be one line of text, e.g. cc-by-4.0, mit or 'other'")
    doc = {
        "pretty_name": pretty,
        "license": license,
        "tags": ["reinforcement-learning", "offline-reinforcement-learning", "meta-reinforcement-learning", "multi-task", "omrl", family],
        "task_categories": ["reinforcement-learning"],
        "size_categories": [size_category(transitions)],
    }
    return "---\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=10_000).rstrip("\n") + "\n---"


def write_card(
    id_or_path: str | Path,
    out: str | Path | None = None,
    root: str | Path | None = None,
    license: str = DEFAULT_LICENSE,
    note: str | None = None,
) -> tuple[Path, Path]:
    """Write the card (default ``<version folder>/card.md``) and its plot beside it; return both paths."""
    folder = catalog.resolve(id_or_path, root)
    md = Path(out) if out is not None else folder / CARD_FILE
    if md.suffix.lower() != ".md":
        from omrl_data.errors import BadInput

        raise BadInput(f"--out {md} must be a .md file (the plot is written beside it)")
    md.parent.mkdir(parents=True, exist_ok=True)
    png_name = PLOT_FILE if out is None else f"{md.stem}_{PLOT_FILE}" if md.stem.lower() not in ("readme", "card") else PLOT_FILE
    png = plot_learning_progress(folder, md.parent / png_name)
    text = render_card(folder, root=root, license=license, plot_name=png.name, note=note)
    tmp = md.parent / f".{md.name}.tmp"
    tmp.write_text(text)
    tmp.replace(md)
    return md, png


__all__ = ["CITATIONS", "plot_learning_progress", "regenerate_commands", "render_card", "task_tier_statistics", "write_card"]
