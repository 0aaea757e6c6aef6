"""Aggregating a study's run folders into results.md / results.csv / results.json and a plot.

Per family x algorithm: the normalised score after and before adaptation (mean +- std over
seeds), the raw returns after and before, and the family's references on the held-out tasks:
random policy, standing still and the behaviour tiers of the data.

Normalised score of one run = mean over its test tasks of (R - R_stand_still) / (R_expert -
R_stand_still). It is taken from eval.json's ``normalised`` fields when the evaluation wrote them,
else computed. The references R_stand_still and R_expert come from the dataset
(``metadata["references"]``, or ``omrl_data.references.references_of`` when that module is
there), else from eval.json's per-task ``stand_still`` / ``expert`` fields; else they and the
score are left blank.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from omrl_studies.runs import RunOutcome, read_eval


# ------------------------------------------------------------------------------ references
def dataset_references(dataset_id: str, root: Any = None) -> dict[str, Any]:
    """The references of a dataset (per task lists) and its behaviour statistics; {} if none.

    Returns ``{"stand_still": [...], "expert": [...], "random": [...], "informative": [...],
    "basis": str, "first10pct": [...], "last10pct": [...]}`` with whatever is known.
    """
    from omrl_data.store import catalog

    try:
        meta = catalog.read_metadata(catalog.resolve(dataset_id, root), missing_ok=True) or {}
    except Exception:  # noqa: BLE001 - a results table must not fail on a missing dataset
        return {}
    refs = dict(meta.get("references") or {})
    if not refs:
        try:  # branch refs: computed on load (a few rollouts per task), cached
            from omrl_data.dataset import load
            from omrl_data.references import references_of  # type: ignore[import-not-found]

            refs = dict(references_of(load(dataset_id, root=root)) or {})
        except Exception:  # noqa: BLE001 - not there yet, or not computable: leave blank
            refs = {}
    stats = meta.get("task_stats") or []
    by_index = {int(s.get("index", i)): s for i, s in enumerate(stats)}
    n = len((meta.get("tasks") or {}).get("params", [])) or len(stats)
    refs["first10pct"] = [by_index.get(i, {}).get("return_first10pct") for i in range(n)]
    refs["last10pct"] = [by_index.get(i, {}).get("return_last10pct") for i in range(n)]
    return refs


def normalised(ret: float | None, stand_still: float | None, expert: float | None) -> float | None:
    """(R - R_stand_still) / (R_expert - R_stand_still), None when it cannot be formed."""
    if ret is None or stand_still is None or expert is None:
        return None
    span = float(expert) - float(stand_still)
    if not math.isfinite(span) or abs(span) < 1e-12:
        return None
    return (float(ret) - float(stand_still)) / span


def _pick(values: list | None, task: int) -> float | None:
    if not values or task >= len(values):
        return None
    v = values[task]
    return None if v is None or isinstance(v, bool) else float(v)


def _flag(values: list | None, task: int) -> bool | None:
    return bool(values[task]) if values and task < len(values) and values[task] is not None else None


def run_row(eval_json: dict[str, Any], refs: dict[str, Any]) -> dict[str, Any]:
    """One run's numbers: means over its test tasks, and per task (see the module docstring)."""
    tasks = []
    for row in eval_json.get("tasks", []):
        t = int(row["task"])
        ss = _pick(refs.get("stand_still"), t)
        ex = _pick(refs.get("expert"), t)
        if ss is None or ex is None:  # no dataset references: the evaluation's own fields, if any
            ss, ex = row.get("stand_still"), row.get("expert")
        norm = dict(row.get("normalised") or {})
        for key in ("before", "after", "random"):
            if norm.get(key) is None and row.get(key) is not None:
                norm[key] = normalised(row[key], ss, ex)
        tasks.append({
            "task": t, "params": row.get("params"), "before": row.get("before"), "after": row.get("after"),
            "random": row.get("random"), "stand_still": ss, "expert": ex,
            "first10pct": _pick(refs.get("first10pct"), t), "last10pct": _pick(refs.get("last10pct"), t),
            "informative": _flag(refs.get("informative"), t),
            "normalised": norm,
        })
    mean_norm = dict((eval_json.get("mean") or {}).get("normalised") or {})
    out: dict[str, Any] = {"step": eval_json.get("step"), "tasks": tasks}
    for key in ("before", "after", "random", "stand_still", "expert", "first10pct", "last10pct"):
        out[key] = _mean([r[key] for r in tasks])
    out["normalised"] = {k: mean_norm.get(k, _mean([r["normalised"].get(k) for r in tasks])) for k in ("before", "after", "random")}
    return out


def _mean(values: list) -> float | None:
    vals = [float(v) for v in values if v is not None and not isinstance(v, bool) and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals and len(vals) == len(values) else None


def _mean_std(values: list) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals))


# ------------------------------------------------------------------------------- aggregate
def aggregate(outcomes: list[RunOutcome], root: Any = None) -> dict[str, Any]:
    """Per family x algorithm summaries of the finished runs (failed runs are listed, not scored)."""
    refs_cache: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[str, str], list[tuple[RunOutcome, dict[str, Any]]]] = {}
    failed = []
    for o in outcomes:
        ev = read_eval(o.spec.out)
        if o.action == "failed" or ev is None:
            failed.append({"run": o.spec.label, "command": o.spec.command(), "log": str(o.log), "returncode": o.returncode})
            groups.setdefault((o.spec.family, o.spec.algorithm), [])
            continue
        ds = o.spec.dataset_id
        if ds not in refs_cache:
            refs_cache[ds] = dataset_references(ds, root)
        groups.setdefault((o.spec.family, o.spec.algorithm), []).append((o, run_row(ev, refs_cache[ds])))
    rows = []
    for (family, algo), runs in groups.items():
        r: dict[str, Any] = {"family": family, "algorithm": algo, "seeds": [o.spec.seed for o, _ in runs],
                             "dataset": runs[0][0].spec.dataset_id if runs else None}
        for key in ("after", "before"):
            r[f"normalised_{key}_mean"], r[f"normalised_{key}_std"] = _mean_std([x["normalised"].get(key) for _, x in runs])
            r[f"return_{key}_mean"], r[f"return_{key}_std"] = _mean_std([x[key] for _, x in runs])
        r["normalised_random"] = _mean_std([x["normalised"].get("random") for _, x in runs])[0]
        for key in ("random", "stand_still", "expert", "first10pct", "last10pct"):
            r[key] = _mean_std([x[key] for _, x in runs])[0]
        # Per test task, mean over seeds (e.g. cheetah_dir's two directions separately).
        per_task: dict[int, dict[str, Any]] = {}
        for _, x in runs:
            for t in x["tasks"]:
                d = per_task.setdefault(t["task"], {"task": t["task"], "params": t["params"], "after": [], "before": [],
                                                    "normalised_after": [], "normalised_before": [],
                                                    "random": t["random"], "stand_still": t["stand_still"], "expert": t["expert"],
                                                    "informative": t["informative"]})
                d["after"].append(t["after"])
                d["before"].append(t["before"])
                d["normalised_after"].append(t["normalised"].get("after"))
                d["normalised_before"].append(t["normalised"].get("before"))
        r["tasks"] = [{**d, **{k: _mean_std(d[k])[0] for k in ("after", "before", "normalised_after", "normalised_before")}}
                      for d in sorted(per_task.values(), key=lambda d: d["task"])]
        r["runs"] = [{"seed": o.spec.seed, "out": str(o.spec.out), "command": o.spec.command(), "action": o.action,
                      "seconds": round(o.seconds, 1), "after": x["after"], "before": x["before"],
                      "normalised_after": x["normalised"].get("after"), "normalised_before": x["normalised"].get("before")}
                     for o, x in runs]
        rows.append(r)
    return {"rows": rows, "failed": failed, "commands": [o.spec.command() for o in outcomes]}


# ---------------------------------------------------------------------------------- writing
CSV_COLUMNS = [
    "family", "algorithm", "seeds", "normalised_after_mean", "normalised_after_std", "normalised_before_mean",
    "normalised_before_std", "return_after_mean", "return_after_std", "return_before_mean", "return_before_std",
    "random", "normalised_random", "stand_still", "expert", "first10pct", "last10pct", "dataset",
]


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pm(mean: Any, std: Any, digits: int = 2) -> str:
    if mean is None:
        return ""
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def write_files(out_dir: Path, doc: dict[str, Any], columns: list[str], rows: list[dict[str, Any]], md: str,
                draw: Any) -> dict[str, Path]:
    """The one writer of every study: results.json (``doc``, atomically), results.csv (``rows`` x
    ``columns``), results.md (``md``) and results.png (``draw(path)``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"results.{k}" for k in ("json", "csv", "md", "png")}
    tmp = paths["json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(paths["json"])
    with open(paths["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([" ".join(map(str, r[c])) if isinstance(r.get(c), list) else ("" if r.get(c) is None else r[c]) for c in columns])
    paths["md"].write_text(md)
    draw(paths["png"])
    return paths


def write_results(out_dir: Path, summary: dict[str, Any], header: dict[str, Any]) -> dict[str, Path]:
    """results.json (everything), results.csv (one row per family x algorithm), results.md, results.png."""
    doc = {**header, **summary}
    return write_files(out_dir, doc, CSV_COLUMNS, summary["rows"], markdown(doc),
                       lambda path: plot(summary["rows"], path, header.get("title", "fidelity")))


def markdown(doc: dict[str, Any]) -> str:
    lines = [f"# {doc.get('title', 'Study results')}", ""]
    if doc.get("command"):
        lines += [f"Command: `{doc['command']}`", ""]
    walls = doc.get("wall_seconds") or {}
    if walls:
        lines += ["Wall time: " + ", ".join(f"{k} {_f(v, 0)} s" for k, v in walls.items() if not isinstance(v, dict)), ""]
    lines += [
        "Normalised score = (R - R_stand_still) / (R_expert - R_stand_still) on the held-out tasks, mean ± std over seeds;",
        "R_expert is the expert tier of the task's data. Returns are undiscounted, per episode. Behaviour tiers: mean",
        "episode return of the first / last 10% of each test task's data. Blank = not available.",
        "",
        "| family | algorithm | seeds | normalised after | normalised before | return after | return before | random | stand still | behaviour first 10% | behaviour last 10% (expert tier) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["rows"]:
        exp = _f(r.get("last10pct"), 1) + (f" ({_f(r.get('expert'), 1)})" if r.get("expert") is not None else "")
        lines.append(
            f"| {r['family']} | {r['algorithm']} | {len(r['seeds'])} | {_pm(r['normalised_after_mean'], r['normalised_after_std'])} "
            f"| {_pm(r['normalised_before_mean'], r['normalised_before_std'])} | {_pm(r['return_after_mean'], r['return_after_std'], 1)} "
            f"| {_pm(r['return_before_mean'], r['return_before_std'], 1)} | {_f(r.get('random'), 1)} | {_f(r.get('stand_still'), 1)} "
            f"| {_f(r.get('first10pct'), 1)} | {exp} |"
        )
    lines += ["", "## Per held-out task (mean over seeds)", "",
              "| family | algorithm | task | params | normalised after | normalised before | return after | return before | random | stand still | expert | informative |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in doc["rows"]:
        for t in r["tasks"]:
            params = ", ".join(f"{k}={short_value(v)}" for k, v in (t.get("params") or {}).items())
            lines.append(
                f"| {r['family']} | {r['algorithm']} | {t['task']} | {params} | {_f(t['normalised_after'])} | {_f(t['normalised_before'])} "
                f"| {_f(t['after'], 1)} | {_f(t['before'], 1)} | {_f(t.get('random'), 1)} | {_f(t.get('stand_still'), 1)} | {_f(t.get('expert'), 1)} "
                f"| {'' if t.get('informative') is None else ('yes' if t['informative'] else 'NO: expert tier does not beat standing still')} |"
            )
    if doc.get("datasets"):
        lines += ["", "## Datasets", ""]
        for fam, d in doc["datasets"].items():
            lines.append(f"- {fam}: `{d['dataset_id']}` ({d['action']}, {_f(d.get('seconds'), 0)} s); recipe: `{d.get('command', '')}`")
    if doc.get("failed"):
        lines += ["", "## Failed runs", ""]
        lines += [f"- {x['run']} (exit {x['returncode']}): log {x['log']}" for x in doc["failed"]]
    lines += ["", "## Commands of every run", "", "```"]
    lines += doc.get("commands", [])
    lines += ["```", ""]
    return "\n".join(lines)


def short_value(v: Any) -> str:
    """A task parameter for a table cell: floats to 3 significant digits, lists element-wise."""
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return "[" + ", ".join(short_value(x) for x in v) + "]"
    return str(v)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """One panel per family: normalised score after (and before) adaptation per algorithm, with
    std over seeds; raw returns with the random / stand-still lines where no normalisation exists."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(r["family"] for r in rows))
    if not families:
        return
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.6), squeeze=False)
    for ax, fam in zip(axes[0], families):
        rs = [r for r in rows if r["family"] == fam]
        norm = any(r["normalised_after_mean"] is not None for r in rs)
        key = "normalised" if norm else "return"
        x = np.arange(len(rs))
        for off, when, alpha in ((-0.2, "before", 0.45), (0.2, "after", 0.95)):
            means = [r[f"{key}_{when}_mean"] if r[f"{key}_{when}_mean"] is not None else np.nan for r in rs]
            stds = [r[f"{key}_{when}_std"] or 0.0 for r in rs]
            ax.bar(x + off, means, 0.4, yerr=stds, alpha=alpha, label=f"{when} adaptation", capsize=3)
        if norm:
            ax.axhline(0.0, color="k", lw=0.8, ls=":", label="stand still (0)")
            ax.axhline(1.0, color="g", lw=0.8, ls="--", label="expert tier (1)")
            rnd = [r.get("normalised_random") for r in rs if r.get("normalised_random") is not None]
        else:
            ss = [r.get("stand_still") for r in rs if r.get("stand_still") is not None]
            if ss:
                ax.axhline(ss[0], color="k", lw=0.8, ls=":", label="stand still")
            rnd = [r.get("random") for r in rs if r.get("random") is not None]
        if rnd:
            ax.axhline(float(np.mean(rnd)), color="r", lw=0.8, ls="-.", label="random")
        ax.set_xticks(x, [r["algorithm"] for r in rs])
        ax.set_title(fam)
        ax.set_ylabel("normalised score" if norm else "return")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------- the robustness studies
STUDY_CSV_COLUMNS = [
    "study", "section", "setting", "x", "algorithm", "seeds", "normalised_after_mean", "normalised_after_std",
    "normalised_before_mean", "normalised_before_std", "return_after_mean", "return_after_std", "return_before_mean",
    "return_before_std", "random", "normalised_random", "stand_still", "expert", "drop_pct", "dataset",
]


def point_view(ev: dict[str, Any], point: Any, family: str, train_range: Any = None) -> dict[str, Any] | None:
    """The eval.json of a run as one study point sees it: only the point's test tasks (withheld:
    inside or outside the training range), and "after" = the return after ``online_step`` online
    env steps (online); the means are then recomputed. None when no task is left."""
    from omrl_studies.studies import in_range

    tasks = list(ev.get("tasks") or [])
    changed = False
    if point.tasks is not None:
        tasks = [t for t in tasks if in_range(family, t.get("params") or {}, tuple(train_range)) == (point.tasks == "in")]
        changed = True
    if point.online_step is not None:
        key = str(point.online_step)
        if any(key not in (t.get("online") or {}) for t in tasks):
            return None
        tasks = [{**t, "after": t["online"][key], "normalised": {k: v for k, v in (t.get("normalised") or {}).items() if k != "after"}}
                 for t in tasks]
        changed = True
    if not tasks:
        return None
    return {**ev, "tasks": tasks, "mean": {} if changed else ev.get("mean")}


def base_task_indices(dataset_id: str, root: Any = None) -> list[int] | None:
    """The base dataset's index of each task of a slice (its lineage), None for a non-slice."""
    from omrl_data.store import catalog

    try:
        meta = catalog.read_metadata(catalog.resolve(dataset_id, root), missing_ok=True) or {}
    except Exception:  # noqa: BLE001 - a table must not fail on a missing dataset
        return None
    parent = (meta.get("lineage") or {}).get("parent_tasks")
    return [int(t) for t in parent] if parent is not None else None


def percentage_drop(reference: float | None, value: float | None) -> float | None:
    """100 (reference - value) / |reference|: how much of the expert score a tier loses (Table IV)."""
    if reference is None or value is None or not math.isfinite(reference) or abs(reference) < 1e-12:
        return None
    return 100.0 * (reference - value) / abs(reference)


def aggregate_points(plan: Any, outcomes: list[RunOutcome], root: Any = None) -> dict[str, Any]:
    """Per study point x algorithm: mean and std over seeds of the normalised score and returns
    (after / before adaptation), references, per test task means, and (data-quality) the
    percentage drop against the expert tier of the same section and algorithm."""
    o = plan.options
    train_range = (plan.info or {}).get("train_range")
    by_key: dict[tuple[str, str], list[RunOutcome]] = {}
    for oc in outcomes:
        by_key.setdefault((oc.spec.tag, oc.spec.algorithm), []).append(oc)
    refs_cache: dict[str, dict[str, Any]] = {}
    base_cache: dict[str, list[int] | None] = {}
    rows, failed = [], []
    for oc in outcomes:
        if oc.action == "failed":
            failed.append({"run": oc.spec.label, "command": oc.spec.command(), "log": str(oc.log), "returncode": oc.returncode})
    for p in plan.points:
        for algo in plan.algorithms:
            runs = []
            for oc in by_key.get((p.training, algo), []):
                if oc.action == "failed":
                    continue
                ev = read_eval(oc.spec.out, "eval.json" if p.evaluation is None else f"eval-{p.evaluation}.json")
                view = None if ev is None else point_view(ev, p, o.family, train_range)
                if view is None:
                    continue
                ds = str(ev.get("dataset") or oc.spec.dataset_id)
                if ds not in refs_cache:
                    refs_cache[ds] = dataset_references(ds, root)
                    base_cache[ds] = base_task_indices(ds, root)
                row = run_row(view, refs_cache[ds])
                for t in row["tasks"]:
                    b = base_cache[ds]
                    t["base_task"] = b[t["task"]] if b is not None and t["task"] < len(b) else t["task"]
                runs.append((oc, row))
            if not by_key.get((p.training, algo)):
                continue
            r: dict[str, Any] = {"study": o.study, "section": p.section, "point": p.key, "setting": p.label, "x": p.x,
                                 "algorithm": algo, "seeds": [oc.spec.seed for oc, _ in runs],
                                 "dataset": runs[0][0].spec.dataset_id if runs else None}
            for key in ("after", "before"):
                r[f"normalised_{key}_mean"], r[f"normalised_{key}_std"] = _mean_std([x["normalised"].get(key) for _, x in runs])
                r[f"return_{key}_mean"], r[f"return_{key}_std"] = _mean_std([x[key] for _, x in runs])
            r["normalised_random"] = _mean_std([x["normalised"].get("random") for _, x in runs])[0]
            for key in ("random", "stand_still", "expert"):
                r[key] = _mean_std([x[key] for _, x in runs])[0]
            per_task: dict[int, dict[str, Any]] = {}
            for _, x in runs:
                for t in x["tasks"]:
                    d = per_task.setdefault(t["base_task"], {"task": t["base_task"], "params": t["params"], "after": [], "normalised_after": []})
                    d["after"].append(t["after"])
                    d["normalised_after"].append(t["normalised"].get("after"))
            r["tasks"] = [{**d, "after": _mean_std(d["after"])[0], "normalised_after": _mean_std(d["normalised_after"])[0]}
                          for d in sorted(per_task.values(), key=lambda d: d["task"])]
            r["runs"] = [{"seed": oc.spec.seed, "out": str(oc.spec.out), "command": oc.spec.command(), "action": oc.action,
                          "seconds": round(oc.seconds, 1), "after": x["after"], "before": x["before"],
                          "normalised_after": x["normalised"].get("after"), "normalised_before": x["normalised"].get("before")}
                         for oc, x in runs]
            r["drop_pct"] = None
            rows.append(r)
    if o.study == "data-quality":
        for r in rows:
            ref = next((x for x in rows if x["section"] == r["section"] and x["algorithm"] == r["algorithm"] and x["setting"] == "expert"), None)
            if ref is not None:
                r["drop_pct"] = percentage_drop(ref["normalised_after_mean"], r["normalised_after_mean"])
    return {"rows": rows, "failed": failed, "commands": [oc.spec.command() for oc in outcomes]}


def _drop(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}%"


def study_markdown(doc: dict[str, Any]) -> str:
    rows = doc["rows"]
    lines = [f"# {doc.get('title', 'Study results')}", ""]
    if doc.get("command"):
        lines += [f"Command: `{doc['command']}`", ""]
    walls = doc.get("wall_seconds") or {}
    if walls:
        lines += ["Wall time: " + ", ".join(f"{k} {_f(v, 0)} s" for k, v in walls.items() if not isinstance(v, dict))
                  + (f"; load average at the end {', '.join(f'{x:.1f}' for x in doc['machine']['loadavg_at_end'])}"
                     if (doc.get("machine") or {}).get("loadavg_at_end") else ""), ""]
    lines += [f"Varied: **{doc.get('varied', '')}**. Normalised score = (R - R_stand_still) / (R_expert - R_stand_still) on the",
              "test tasks (R_expert: the expert tier of the full collection, the same scale for every slice); mean ± std over",
              "seeds of each seed's mean over the test tasks." + (" Drop = 100 (expert - tier) / |expert| of the mean normalised score."
                                                                   if doc.get("study") == "data-quality" else ""), ""]
    sections = list(dict.fromkeys(r["section"] for r in rows))
    for sec in sections:
        rs = [r for r in rows if r["section"] == sec]
        settings = list(dict.fromkeys(r["setting"] for r in rs))
        algos = list(dict.fromkeys(r["algorithm"] for r in rs))
        if sec:
            lines += [f"## {sec}", ""]
        head = "offline adaptation (0)" if doc.get("study") == "online" else None
        cols = [(head if (head and s == "0") else s) for s in settings]
        lines += ["| algorithm | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
        for a in algos:
            cells = []
            for s in settings:
                r = next((x for x in rs if x["algorithm"] == a and x["setting"] == s), None)
                if r is None:
                    cells.append("")
                    continue
                key = "normalised" if r["normalised_after_mean"] is not None else "return"
                cell = _pm(r[f"{key}_after_mean"], r[f"{key}_after_std"], 2 if key == "normalised" else 1)
                if r.get("drop_pct") is not None and s != "expert":
                    cell += f" ({r['drop_pct']:+.1f}% drop)"
                cells.append(cell + (f" [{len(r['seeds'])}]" if cell else "failed"))
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        lines += ["", "(normalised score after adaptation, mean ± std over seeds [seeds]; raw return where no normalisation exists)", ""]
    lines += ["## Every row", "",
              "| section | setting | algorithm | seeds | normalised after | normalised before | return after | return before | random | stand still | expert tier | drop vs expert |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['section']} | {r['setting']} | {r['algorithm']} | {len(r['seeds'])} | {_pm(r['normalised_after_mean'], r['normalised_after_std'])} "
            f"| {_pm(r['normalised_before_mean'], r['normalised_before_std'])} | {_pm(r['return_after_mean'], r['return_after_std'], 1)} "
            f"| {_pm(r['return_before_mean'], r['return_before_std'], 1)} | {_f(r.get('random'), 1)} | {_f(r.get('stand_still'), 1)} "
            f"| {_f(r.get('expert'), 1)} | {_drop(r.get('drop_pct'))} |")
    lines += ["", "## Per test task (mean over seeds; task = index in the base dataset)", "",
              "| section | setting | algorithm | task | params | normalised after | return after |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        for t in r["tasks"]:
            params = ", ".join(f"{k}={short_value(v)}" for k, v in (t.get("params") or {}).items())
            lines.append(f"| {r['section']} | {r['setting']} | {r['algorithm']} | {t['task']} | {params} | {_f(t['normalised_after'])} | {_f(t['after'], 1)} |")
    data = doc.get("data") or {}
    if data:
        lines += ["", "## Data", ""]
        b = data.get("base") or {}
        lines.append(f"- base: `{b.get('dataset_id')}` ({b.get('action')}{', ' + _f(b.get('seconds'), 0) + ' s' if b.get('seconds') else ''})"
                     + (f"; recipe: `{b['command']}`" if b.get("command") else ""))
        for key, d in (data.get("slices") or {}).items():
            lines.append(f"- {key}: `{d['dataset_id']}` ({d['action']}), slice with lineage: `{d['command']}`")
    if doc.get("info"):
        lines += ["", "## Study facts", "", "```", json.dumps(doc["info"], default=str), "```"]
    if doc.get("failed"):
        lines += ["", "## Failed runs", ""]
        lines += [f"- {x['run']} (exit {x['returncode']}): log {x['log']}" for x in doc["failed"]]
    lines += ["", "## Commands of every run", "", "```"]
    lines += doc.get("commands", [])
    lines += ["```", ""]
    return "\n".join(lines)


def study_plot(rows: list[dict[str, Any]], path: Path, title: str, varied: str) -> None:
    """One panel per section: the score after adaptation against the varied setting, one line per
    algorithm, mean with the std over seeds as error bars (numeric settings on a numeric axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = list(dict.fromkeys(r["section"] for r in rows))
    if not sections:
        return
    fig, axes = plt.subplots(1, len(sections), figsize=(5.0 * len(sections), 3.8), squeeze=False)
    for ax, sec in zip(axes[0], sections):
        rs = [r for r in rows if r["section"] == sec]
        norm = any(r["normalised_after_mean"] is not None for r in rs)
        key = "normalised" if norm else "return"
        settings = list(dict.fromkeys(r["setting"] for r in rs))
        numeric = all(isinstance(r["x"], (int, float)) and not isinstance(r["x"], bool) for r in rs)
        pos = {s: (next(r["x"] for r in rs if r["setting"] == s) if numeric else i) for i, s in enumerate(settings)}
        algos = list(dict.fromkeys(r["algorithm"] for r in rs))
        for j, a in enumerate(algos):
            ar = [r for r in rs if r["algorithm"] == a]
            xs = [pos[r["setting"]] + (0 if numeric else (j - (len(algos) - 1) / 2) * 0.08) for r in ar]
            ys = [np.nan if r[f"{key}_after_mean"] is None else r[f"{key}_after_mean"] for r in ar]
            es = [r[f"{key}_after_std"] or 0.0 for r in ar]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=a)
        if norm:
            ax.axhline(0.0, color="k", lw=0.8, ls=":")
            ax.axhline(1.0, color="g", lw=0.8, ls="--")
        if numeric:
            ax.set_xticks(sorted(set(pos.values())))
        else:
            ax.set_xticks(list(pos.values()), settings, rotation=15 if max(len(s) for s in settings) > 8 else 0, fontsize=8)
        ax.set_xlabel(varied)
        ax.set_ylabel("normalised score after adaptation" if norm else "return after adaptation")
        if sec:  # the figure's title says the study; a panel's, its section
            ax.set_title(sec, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_study_results(out_dir: Path, summary: dict[str, Any], header: dict[str, Any]) -> dict[str, Path]:
    """results.json / .csv / .md / .png of a robustness study (through :func:`write_files`)."""
    doc = {**header, **summary}
    return write_files(out_dir, doc, STUDY_CSV_COLUMNS, summary["rows"], study_markdown(doc),
                       lambda path: study_plot(summary["rows"], path, header.get("title", "study"), header.get("varied", "")))
