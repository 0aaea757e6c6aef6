"""`omrl-data list | info | verify | delete`: the local catalog."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cli.common import console, err_console, fail, human_size, print_versions, user_errors

RootOption = typer.Option(None, "--root", help="Catalog root (default: $OMRL_HOME, else ~/.omrl).")


def _short(value) -> str:
    """Task parameters in a few characters: ``goal=[0.924,0.383]``."""
    if isinstance(value, dict):
        return " ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _fmt(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}"


def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    root: Optional[Path] = RootOption,
    remote: Optional[str] = typer.Option(None, "--remote", help="List what is published at this URL instead (folder, file://, s3://)."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help="S3 endpoint for --remote on a non-AWS store (default: botocore's $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL)."),
) -> None:
    """Every local dataset version: family, tasks (train/test), transitions, size, created, parent.

    With --remote URL: the versions published there (from the remote's index).
    """
    if remote is not None:
        from cli.data_share import print_remote

        print_remote(remote, as_json, endpoint_url)
        return
    from omrl_data.store import catalog

    from omrl_data.store.lock import describe
    from omrl_data.store.writer import unfinished_writes

    where = catalog.resolve_root(root)
    if where.exists() and not where.is_dir():
        from omrl_data.errors import BadInput

        raise BadInput(f"the catalog root {where} is a file, not a folder; pass --root a folder (or fix $OMRL_HOME)")
    every = catalog.list_datasets(root)
    if as_json:
        print(json.dumps(every, indent=1))
        return
    for w in unfinished_writes(root):
        state = f"being written by {describe(w['writer'])}" if w["writer"] else "interrupted: continue it with --resume"
        console.print(f"[yellow]unfinished[/] {w['id']}: {w['tasks_done']} task(s) written, {state}", highlight=False, soft_wrap=True)
    rows = [r for r in every if not r.get("damaged")]
    for r in every:
        if r.get("damaged"):
            console.print(f"[red]damaged[/] {r['id']}: {r['damaged']} (remove it: omrl-data delete {r['id']} --yes)", highlight=False, soft_wrap=True)
    if not rows:
        console.print(f"no datasets under {catalog.resolve_root(root)}")
        return
    print_versions(rows, f"datasets under {catalog.resolve_root(root)}", "created")


def info_cmd(
    dataset: str = typer.Argument(..., help="Dataset id (omrl/<family>/<name>[-v<N>]) or folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (summary, metadata, per-task statistics)."),
    root: Optional[Path] = RootOption,
) -> None:
    """Metadata, lineage, per-task counts and return statistics of one dataset, and its
    normalised-score references per task (stand-still, random, expert tier; uninformative tasks
    flagged)."""
    from omrl_data.store import catalog

    d = catalog.info(dataset, root)
    refs, refs_note = _references(Path(d["path"]), d["metadata"])
    d["references"], d["references_note"] = refs, refs_note
    if as_json:
        print(json.dumps(d, indent=1, default=str))
        return
    meta = d["metadata"]
    console.print(f"[bold]{d['id']}[/]  ({d['path']})")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="cyan")
    head.add_column()
    collection = meta.get("collection") or {}
    for key, value in (
        ("family", d["family"]),
        ("env", f"{meta.get('env_id', '-')} {meta.get('env_kwargs') or ''}".strip()),
        ("obs_dim / act_dim", f"{meta.get('obs_dim', '-')} / {meta.get('act_dim', '-')}"),
        ("tasks (train/test)", f"{d['tasks']} ({d['train_tasks']}/{d['test_tasks']}), split {meta.get('tasks', {}).get('split_kind', '-')}"),
        ("transitions", f"{d['transitions']:,}"),
        ("gamma / horizon", f"{meta.get('gamma', '-')} / {meta.get('horizon', '-')}"),
        ("collection", ", ".join(f"{k}={v}" for k, v in collection.items() if not isinstance(v, dict)) or "-"),
        ("size on disk", human_size(d["size_bytes"])),
        ("created", str(d["created"] or "-")),
        ("format version", str(d["format_version"])),
        ("manifest checksum", d["manifest_checksum"]),
        ("packages", ", ".join(f"{k} {v}" for k, v in (meta.get("package_versions") or {}).items()) or "-"),
    ):
        head.add_row(key, str(value))
    lineage = d.get("lineage")
    if lineage:
        head.add_row("parent", f"{lineage.get('parent')} (manifest {str(lineage.get('parent_manifest', '-'))[:16]}...)")
        head.add_row("slice spec", json.dumps(lineage.get("spec", {}), sort_keys=True))
    console.print(head)
    table = Table(title="tasks", caption="eps: episodes; return: mean undiscounted episode return (first/last: of the first/last 10% of episodes)")
    for col in ("task", "split", "params", "rows", "eps", "return", "min", "max", "first", "last"):
        if col == "params":
            table.add_column(col, min_width=12, max_width=40, overflow="fold")
        else:
            table.add_column(col, justify="left" if col == "split" else "right", no_wrap=True)
    for t in d["per_task"]:
        params = _short(t["params"])
        table.add_row(
            str(t["index"]),
            str(t["split"]),
            params if len(params) <= 60 else params[:57] + "...",
            f"{t['transitions']:,}",
            f"{t['episodes']:,}",
            _fmt(t["return_mean"]),
            _fmt(t["return_min"]),
            _fmt(t["return_max"]),
            _fmt(t["return_first10pct"]),
            _fmt(t["return_last10pct"]),
        )
    console.print(table)
    _print_references(refs, refs_note, d["id"])


def _references(folder: Path, meta: dict):
    """``(references, note)``: the stored ones, else computed now in memory (note says so), else
    None with the reason (e.g. task parameters this family cannot build)."""
    from omrl_data.references import references_for_display

    refs, how, detail = references_for_display(folder, meta)
    if how == "stored":
        return refs, "stored in the metadata" + (f" (those of its parent {detail}, re-indexed)" if detail else "")
    if how == "computed":
        return refs, "computed now, not stored (`omrl-data references ID` stores them)"
    return None, f"cannot be computed: {detail}"


def _print_references(refs, note: str, dataset_id: str) -> None:
    from omrl_data.references import uninformative_sentence

    if refs is None:
        console.print(f"[yellow]normalised-score references {note}[/]", highlight=False, soft_wrap=True)
        return
    table = Table(title="normalised-score references (raw returns)", caption="normalised = (R - stand-still) / (expert - stand-still)")
    for col in ("task", "stand-still", "random", "expert", "scorable"):
        table.add_column(col, justify="left" if col == "scorable" else "right", no_wrap=True)
    for i, (lo, rnd, hi, ok) in enumerate(zip(refs["stand_still"], refs["random"], refs["expert"], refs["informative"])):
        table.add_row(str(i), _fmt(lo), _fmt(rnd), _fmt(hi), "yes" if ok else "[bold red]no: uninformative[/]")
    console.print(table)
    console.print(f"[dim]basis: {refs.get('basis', '-')}; {refs.get('episodes')} rollouts per task; {note}[/]", highlight=False, soft_wrap=True)
    sentence = uninformative_sentence(refs)
    if sentence:
        console.print(f"[yellow]{sentence}[/]", highlight=False, soft_wrap=True)


def references_cmd(
    dataset: str = typer.Argument(..., help="Dataset id (omrl/<family>/<name>[-v<N>]) or folder."),
    force: bool = typer.Option(False, "--force", help="Recompute and rewrite references the version already has."),
    root: Optional[Path] = RootOption,
) -> None:
    """Compute the normalised-score references of a version and write them into its metadata.

    For versions made before references existed (newer collections have them). The version is
    verified, then rewritten atomically (data hard-linked, new metadata.json and manifest.json,
    one atomic swap); `omrl-data verify` passes afterwards. Its manifest checksum changes.
    """
    from omrl_data.references import store_references
    from omrl_data.store import catalog, manifest

    folder = catalog.resolve(dataset, root)
    name = catalog.dataset_id_of(folder)
    refs, written = store_references(folder, root, force=force)
    if written:
        console.print(f"[green]written[/] references into {name} (manifest {manifest.manifest_checksum(folder)[:16]}...)")
    else:
        console.print(f"{name} already has references (use --force to recompute them)")
    _print_references(refs, "stored in the metadata", name)


def verify_cmd(
    dataset: str = typer.Argument(..., help="Dataset id or folder."),
    root: Optional[Path] = RootOption,
) -> None:
    """Recompute every checksum; name the task and array of each failing file; exit 3 on failure."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from omrl_data.store import catalog, manifest

    folder = catalog.resolve(dataset, root)
    try:
        total = manifest.total_size(folder)
    except Exception:
        total = None
    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    ) as bar:
        job = bar.add_task("verifying", total=total)
        problems = manifest.verify(folder, progress=lambda n: bar.advance(job, n))
    name = catalog.dataset_id_of(folder)
    if problems and not catalog.is_complete(folder):
        from omrl_data.errors import DatasetNotFound

        raise DatasetNotFound(f"{name} was deleted while it was being verified ({folder} is gone)")
    if problems:
        for p in problems:
            err_console.print(f"[red]{p}[/]", highlight=False, soft_wrap=True)
        fail(f"{name}: {len(problems)} problem(s) found; the dataset is damaged or was changed", 3)
    n_files = len(manifest.read_manifest(folder)["files"])
    console.print(f"[green]ok[/] {name}: {n_files} files match the manifest ({manifest.manifest_checksum(folder)[:16]}...)")
    derived = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in ("manifest.json", "metadata.json"))
    if derived:
        console.print(f"not covered by the manifest (derived, regenerate with `omrl-data card {name}`): {', '.join(derived)}", highlight=False, soft_wrap=True)


def delete_cmd(
    dataset: str = typer.Argument(..., help="Dataset id (a version, or without -vN the latest) or folder."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    root: Optional[Path] = RootOption,
) -> None:
    """Delete one dataset version (and its loading cache); asks first unless --yes."""
    from omrl_data.store import catalog

    folder = catalog.resolve_damaged(dataset, root)
    name = catalog.dataset_id_of(folder)
    children = [r["id"] for r in catalog.list_datasets(root) if r["parent"] == name]
    if children:
        err_console.print(f"[yellow]note:[/] {name} is the parent of {', '.join(children)}", highlight=False, soft_wrap=True)
    from cli import common

    if not yes:
        try:
            ok = typer.confirm(f"delete {name} ({folder})?", default=False)
        except Exception as e:  # click's Abort: end of input (no terminal) or Ctrl-C at the prompt
            if type(e).__name__ != "Abort":
                raise
            if common.stdin_is_terminal():
                err_console.print("[yellow]interrupted[/]: not deleted")
                raise typer.Exit(130)
            fail(f"not deleting {name}: no answer to the confirmation (stdin is not a terminal); pass --yes to delete without asking", 2)
        if not ok:
            err_console.print("not deleted")
            raise typer.Exit(1)
    catalog.delete(folder, root)
    console.print(f"deleted {name}")


def register(app: typer.Typer) -> None:
    def ex(*lines: str) -> str:
        return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)

    app.command("list", epilog=ex("omrl-data list", "omrl-data list --json --root /data/omrl",
                                  "omrl-data list --remote s3://bucket/datasets"))(user_errors(list_cmd))
    app.command("info", epilog=ex("omrl-data info omrl/ant_dir/replay", "omrl-data info omrl/ant_dir/replay-v1 --json"))(user_errors(info_cmd))
    app.command("references", epilog=ex("omrl-data references omrl/cheetah_vel/replay-v1",
                                         "omrl-data references omrl/cheetah_vel/replay-v1 --force"))(user_errors(references_cmd))
    app.command("verify", epilog=ex("omrl-data verify omrl/ant_dir/replay-v1"))(user_errors(verify_cmd))
    app.command("delete", epilog=ex("omrl-data delete omrl/ant_dir/expert-v2", "omrl-data delete omrl/ant_dir/expert-v2 --yes"))(user_errors(delete_cmd))
