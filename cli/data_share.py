"""`omrl-data slice | export | import-minari | publish | pull | card`: derived datasets, Minari
interop, publishing and dataset cards. `omrl-data list --remote URL` (in data_catalog) prints
with :func:`print_remote`; `remote-list URL` is a hidden alias of it."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from cli.common import console, err_console, print_versions, user_errors

RootOption = typer.Option(None, "--root", help="Catalog root (default: $OMRL_HOME, else ~/.omrl).")
EndpointOption = typer.Option(
    None, "--endpoint-url", help="S3 endpoint of a non-AWS store (MinIO, moto); default: botocore's $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS."
)


def _command() -> str:
    return "omrl-data " + " ".join(shlex.quote(a) for a in sys.argv[1:])


class _TaskBar:
    """A transient per-task progress bar on stderr; ``self.update(done, total)`` is the callback."""

    def __init__(self, what: str):
        self.what = what
        self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err_console, transient=True)
        self.job = None

    def __enter__(self) -> "_TaskBar":
        self.bar.__enter__()
        self.job = self.bar.add_task(self.what, total=None)
        return self

    def update(self, done: int, total: int) -> None:
        self.bar.update(self.job, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)


def _bytes_bar(what: str, total: int | None) -> tuple[Progress, Callable[[int], None]]:
    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(), console=err_console, transient=True)
    job = bar.add_task(what, total=total)
    return bar, lambda n: bar.advance(job, n)


# ----------------------------------------------------------------------------------------------


def slice_cmd(
    dataset: str = typer.Argument(..., help="Parent dataset id (omrl/<family>/<name>[-v<N>]) or folder."),
    name: str = typer.Option(..., "--name", help="Name of the new dataset (it gets the next version of that name)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Parent task indices to keep, in this order, e.g. 0,2,5-9."),
    split: Optional[str] = typer.Option(None, "--split", help="Keep only the parent's train or test tasks."),
    quality: Optional[str] = typer.Option(None, "--quality", help="random | medium | expert: first / middle / last third of each task's stream."),
    collect_range: Optional[str] = typer.Option(None, "--collect-range", help="A:B, fractions of each task's stream in collect-step order, e.g. 0.9:1 (the last tenth)."),
    source: Optional[str] = typer.Option(None, "--source", help="Keep only rows of this source: replay | checkpoint | random."),
    max_per_task: Optional[int] = typer.Option(None, "--max-per-task", help="At most K transitions per task (whole episodes spread over the stream)."),
    resplit: Optional[str] = typer.Option(None, "--resplit", help="New train/test split: random | interpolation | extrapolation | explicit."),
    test_tasks: Optional[str] = typer.Option(None, "--test-tasks", help="explicit re-split: held-out task indices of the slice, e.g. 1,4."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="random re-split: held-out fraction (default 0.1)."),
    every: Optional[int] = typer.Option(None, "--every", help="interpolation re-split: hold out every k-th task in parameter order."),
    train_range: Optional[str] = typer.Option(None, "--train-range", help="extrapolation re-split: training range lo,hi."),
    split_seed: Optional[int] = typer.Option(None, "--split-seed", help="random re-split: seed (default 0)."),
    root: Optional[Path] = RootOption,
) -> None:
    """Write a derived dataset as a new version that records its parent and the slice spec.

    Keeps tasks, a split, a quality tier or collect range, a source, at most K rows per task,
    or re-splits the tasks (unchanged data is hard-linked, not copied).

    Examples:

      omrl-data slice omrl/cheetah_vel/replay --name expert --quality expert

      omrl-data slice omrl/cheetah_vel/replay --name ood --resplit extrapolation --train-range 0,1
    """
    from omrl_data.slicing import SliceSpec, parse_collect_range, parse_task_list, slice_dataset, split_args_from_options

    if resplit is None and test_tasks is not None:
        resplit = "explicit"
    spec = SliceSpec(
        tasks=parse_task_list(tasks) if tasks is not None else None,
        split=split,
        source=source,
        quality=quality,
        collect_range=parse_collect_range(collect_range) if collect_range is not None else None,
        max_per_task=max_per_task,
        resplit=resplit,
        resplit_args=split_args_from_options(test_tasks, test_fraction, every, train_range, split_seed),
    )
    with _TaskBar("slicing") as bar:
        new_id = slice_dataset(dataset, name, spec, root=root, on_task=bar.update, command=_command())
    console.print(f"[green]wrote[/] {new_id}  (slice of {dataset}: {spec.cli_flags() or 'all data'})")


def export_cmd(
    dataset: str = typer.Argument(..., help="Dataset id or folder."),
    format: str = typer.Option("minari", "--format", help="Export format: minari (one Minari dataset per task)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="Minari namespace (default: the omrl id, e.g. omrl/cheetah_vel/replay-v1)."),
    combinable: bool = typer.Option(False, "--combinable", help="Same env spec for every task (no task in it), so minari.combine_datasets accepts them; infos['task_index'] names each step's task."),
    code_permalink: Optional[str] = typer.Option(None, "--code-permalink", help="URL of the code that made the data (recorded in Minari's metadata; default: none)."),
    root: Optional[Path] = RootOption,
) -> None:
    """Export a dataset to Minari: one Minari dataset per task, task table in the namespace.

    Writes into Minari's dataset root ($MINARI_DATASETS_PATH), under a namespace whose metadata
    holds the task table, features and splits; episode metadata holds the task parameters.

    Examples:

      omrl-data export omrl/cheetah_vel/replay-v1 --format minari

      minari list local
    """
    from omrl_data.errors import BadInput
    from omrl_data.minari_io import export_minari

    if format != "minari":
        raise BadInput(f"unknown export format {format!r}; accepted: minari")
    import os

    from omrl_data.store import catalog

    minari_root = os.environ.get("MINARI_DATASETS_PATH") or os.path.join(os.path.expanduser("~"), ".minari", "datasets")
    catalog.check_writable(minari_root, "Minari's dataset root", "$MINARI_DATASETS_PATH")
    with _TaskBar("exporting") as bar:
        ids = export_minari(dataset, namespace=namespace, root=root, on_task=bar.update, code_permalink=code_permalink, combinable=combinable)
    console.print(f"[green]exported[/] {len(ids)} Minari datasets: {ids[0]}{' ... ' + ids[-1] if len(ids) > 1 else ''}")


def import_minari_cmd(
    sources: List[str] = typer.Argument(..., help="A Minari namespace written by `export`, or one Minari dataset id per task."),
    name: str = typer.Option(..., "--name", help="Name of the new omrl dataset."),
    family: Optional[str] = typer.Option(None, "--family", help="Task family (needed when the Minari data has no omrl metadata)."),
    params: Optional[List[str]] = typer.Option(None, "--params", help="Task parameters as JSON, once per dataset in order, e.g. '{\"goal_angle\": 1.2}'."),
    split: Optional[str] = typer.Option(None, "--split", help="Split kind to apply (default: the stored split, else random)."),
    test_tasks: Optional[str] = typer.Option(None, "--test-tasks", help="explicit split: held-out task indices."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="random split: held-out fraction."),
    gamma: Optional[float] = typer.Option(None, "--gamma", help="Discount of the Monte Carlo returns computed for foreign data (default 0.99)."),
    root: Optional[Path] = RootOption,
) -> None:
    """Build an omrl dataset from Minari datasets, one per task.

    Task parameters come from the namespace or episode metadata that `export` wrote, or from
    --params (once per dataset, in order).

    Examples:

      omrl-data import-minari omrl/cheetah_vel/replay-v1 --name from-minari

      omrl-data import-minari ns/a-v0 ns/b-v0 --family point_robot_sparse --name mine --params '{"goal_angle": 0.5}' --params '{"goal_angle": 2.5}'
    """
    from omrl_data.errors import BadInput
    from omrl_data.minari_io import import_minari
    from omrl_data.slicing import split_args_from_options

    parsed = None
    if params:
        parsed = []
        for p in params:
            try:
                value = json.loads(p)
            except json.JSONDecodeError as e:
                raise BadInput(f"--params {p!r} is not JSON ({e.msg}); e.g. '{{\"goal_angle\": 1.2}}'") from None
            if not isinstance(value, dict):
                raise BadInput(f"--params {p!r} must be a JSON object of task parameters")
            parsed.append(value)
    if split is None and test_tasks is not None:
        split = "explicit"
    with _TaskBar("importing") as bar:
        new_id = import_minari(
            sources, name, family=family, params=parsed, split=split,
            split_args=split_args_from_options(test_tasks, test_fraction), gamma=gamma, root=root,
            on_task=bar.update, command=_command(),
        )
    console.print(f"[green]wrote[/] {new_id}  (from Minari {' '.join(sources)})")


def publish_cmd(
    dataset: str = typer.Argument(..., help="Dataset id or folder."),
    to: str = typer.Option(..., "--to", help="Remote: a folder, file://PATH or s3://BUCKET/PREFIX."),
    endpoint_url: Optional[str] = EndpointOption,
    card: bool = typer.Option(True, "--card/--no-card", help="Render the dataset card first if the version has none."),
    root: Optional[Path] = RootOption,
) -> None:
    """Upload data, manifest (last) and card; refuses to overwrite a published version.

    Examples:

      omrl-data publish omrl/cheetah_vel/replay-v1 --to s3://my-bucket/omrl

      omrl-data publish omrl/cheetah_vel/replay-v1 --to /shared/omrl-datasets
    """
    from omrl_data.publish import publish
    from omrl_data.store import catalog, manifest

    folder = catalog.resolve(dataset, root)
    bar, advance = _bytes_bar("uploading", manifest.total_size(folder))
    with bar:
        url = publish(folder, to, root=root, endpoint_url=endpoint_url, on_bytes=advance, card=card)
    console.print(f"[green]published[/] {catalog.dataset_id_of(folder)} -> {url}")


def pull_cmd(
    dataset: str = typer.Argument(..., help="Dataset id (omrl/<family>/<name>[-v<N>]; no -vN = latest published)."),
    source: str = typer.Option(..., "--from", help="Remote: a folder, file://PATH or s3://BUCKET/PREFIX."),
    endpoint_url: Optional[str] = EndpointOption,
    root: Optional[Path] = RootOption,
) -> None:
    """Download a published version, verify every checksum, then place it in the catalog.

    Examples:

      omrl-data pull omrl/cheetah_vel/replay-v1 --from s3://my-bucket/omrl
    """
    from omrl_data.publish import pull

    from cli.common import human_size

    bar, advance = _bytes_bar("downloading", None)
    report: dict = {}
    with bar:
        folder = pull(
            dataset, source, root=root, endpoint_url=endpoint_url, on_bytes=advance,
            on_total=lambda n: bar.update(bar.task_ids[0], total=n), report=report,
        )
    if report.get("action") == "already present":
        console.print(
            f"[green]already here[/] {dataset} -> {folder}: nothing downloaded; the local copy has the manifest the remote "
            f"index lists (re-check it with `omrl-data verify {folder}`)", highlight=False, soft_wrap=True,
        )
        return
    console.print(
        f"[green]pulled[/] {dataset} -> {folder}: {report.get('files')} files, {human_size(report.get('bytes') or 0)}, "
        "each size and sha256 checked against the manifest", highlight=False, soft_wrap=True,
    )
    for f, state in (report.get("card") or {}).items():
        if state == "verified":
            console.print(f"card file {f}: sha256 matches the remote index", highlight=False)
        else:
            err_console.print(f"[yellow]note:[/] {f} left out ({state}); regenerate it with `omrl-data card {dataset}`", highlight=False, soft_wrap=True)


def card_cmd(
    dataset: str = typer.Argument(..., help="Dataset id or folder."),
    out: Optional[Path] = typer.Option(None, "--out", help="Markdown file to write (default: card.md in the version folder); the plot goes beside it."),
    hub: Optional[Path] = typer.Option(None, "--hub", help="A Hugging Face Hub-ready folder: writes DIR/README.md and DIR/learning_progress.png."),
    license: str = typer.Option("cc-by-4.0", "--license", help="License named in the card's front matter."),
    note: Optional[str] = typer.Option(None, "--note", help="An extra paragraph for the summary (e.g. the collection budget)."),
    root: Optional[Path] = RootOption,
) -> None:
    """Render the dataset card (markdown with YAML front matter) and its learning-progress plot.

    Examples:

      omrl-data card omrl/cheetah_vel/replay-v1 --out cards/cheetah_vel.md

      omrl-data card omrl/cheetah_vel/replay-v1 --hub hub/cheetah_vel --license cc-by-4.0
    """
    from omrl_data.cards import write_card
    from omrl_data.errors import BadInput
    from omrl_data.store import catalog

    if hub is not None:
        if out is not None:
            raise BadInput("give --out FILE or --hub DIR, not both")
        out = hub / "README.md"  # the Hub reads a dataset repository's card from README.md
    target = out.parent if out is not None else catalog.resolve(dataset, root)
    catalog.check_writable(target, "the card's folder", "--out")
    md, png = write_card(dataset, out=out, root=root, license=license, note=note)
    console.print(f"[green]wrote[/] {md} and {png}")


def remote_list_cmd(
    url: str = typer.Argument(..., help="Remote: a folder, file://PATH or s3://BUCKET/PREFIX."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    endpoint_url: Optional[str] = EndpointOption,
) -> None:
    """Every dataset version published at a remote (from its index)."""
    print_remote(url, as_json, endpoint_url)


def print_remote(url: str, as_json: bool = False, endpoint_url: Optional[str] = None) -> None:
    """Shared by `remote-list` and `list --remote`."""
    from omrl_data.publish import list_remote

    rows = list_remote(url, endpoint_url)
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    if not rows:
        console.print(f"nothing published at {url}")
        return
    print_versions(rows, f"datasets at {url}", "published")


def register(app: typer.Typer) -> None:
    app.command("slice")(user_errors(slice_cmd))
    app.command("export")(user_errors(export_cmd))
    app.command("import-minari")(user_errors(import_minari_cmd))
    app.command("publish")(user_errors(publish_cmd))
    app.command("pull")(user_errors(pull_cmd))
    app.command("card")(user_errors(card_cmd))
    app.command("remote-list", hidden=True)(user_errors(remote_list_cmd))  # alias of `list --remote`



