"""`omrl-data families` and `omrl-data tasks`: the task families and their sampled task sets."""
from __future__ import annotations

import json
from typing import Any, Optional

import typer
from rich import box
from rich.table import Table

from cli.common import console, user_errors

SPLIT_HELP = "random | interpolation | extrapolation (default: random, or explicit with --test-tasks)."


def _compact(value: Any) -> str:
    """A parameter in a few characters: floats to 3 digits, long arrays as shape and mean."""
    import numpy as np

    if isinstance(value, dict):
        return " ".join(f"{k}={_compact(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        a = np.asarray(value, dtype=float)
        if a.size > 6:
            return f"[{'x'.join(map(str, a.shape))} mean {a.mean():+.2f}]"
        return "[" + ",".join(f"{x:.3g}" for x in a.ravel()) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def families_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """The task families: env id, parameters, observation and action dims, horizon, papers (default gamma in the caption).

    Examples:

      omrl-data families

      omrl-data families --json
    """
    from omrl_data.tasks import family_names, get_family

    rows = [get_family(n).summary() for n in family_names()]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    gammas = sorted({r["default_gamma"] for r in rows}, key=lambda g: -sum(r["default_gamma"] == g for r in rows))
    other = ", ".join(f"{r['name']} {r['default_gamma']:g}" for r in rows if r["default_gamma"] != gammas[0])
    caption = f"default --gamma {gammas[0]:g}" + (f" ({other})" if other else "") + "; --json adds parameter shapes and descriptions"
    table = Table(title="task families", box=box.SIMPLE_HEAD, caption=caption)
    table.add_column("family / env id", no_wrap=True)
    table.add_column("parameters", overflow="fold")
    for col in ("obs", "act", "horizon"):
        table.add_column(col, justify="right")
    table.add_column("papers")
    for r in rows:
        # walker/hopper parameters are per-field log-scale arrays: name the fields once.
        log_fields = [p.removesuffix("_log_scale") for p in r["params"] if p.endswith("_log_scale")]
        params = ", ".join(log_fields) + " (log-scales)" if log_fields else ", ".join(r["params"])
        table.add_row(
            f"{r['name']}\n[dim]{r['env_id']}[/]", params, str(r["obs_dim"]), str(r["act_dim"]),
            str(r["horizon"]), ", ".join(r["papers"]),
        )
    console.print(table)


def tasks_cmd(
    family: str = typer.Argument(..., help="Family name (see `omrl-data families`)."),
    tasks: Optional[int] = typer.Option(None, "--tasks", "-n", help="Number of tasks (default: the family's usual count)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the task draw and of the random split."),
    grid: bool = typer.Option(False, "--grid", help="The papers' fixed grid instead of random tasks."),
    split: Optional[str] = typer.Option(None, "--split", help=SPLIT_HELP),
    test_tasks: Optional[str] = typer.Option(None, "--test-tasks", help="Held-out task indices, e.g. 2,7,15,23,26."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="random split: held-out fraction (default 0.1)."),
    every: Optional[int] = typer.Option(None, "--every", help="interpolation split: hold out every k-th task in parameter order (default 10)."),
    train_range: Optional[str] = typer.Option(None, "--train-range", help="extrapolation split: training range lo,hi of the ordering parameter."),
    as_json: bool = typer.Option(False, "--json", help="Print the task table as JSON (TaskTable.to_dict())."),
) -> None:
    """Sample a reproducible task set: index, parameters, features and train/test split.

    Examples:

      omrl-data tasks ant_dir --tasks 50 --seed 0

      omrl-data tasks cheetah_vel --tasks 40 --grid --test-tasks 2,7,15,23,26

      omrl-data tasks cheetah_vel --tasks 40 --grid --split extrapolation --train-range 0,1

      omrl-data tasks point_robot_sparse --tasks 20 --grid --split interpolation --json
    """
    from omrl_data.tasks import get_family
    from omrl_data.tasks.splits import parse_index_list, parse_range

    fam = get_family(family)
    n = fam.default_tasks if tasks is None else tasks
    split_args: dict[str, Any] = {
        "test_tasks": parse_index_list(test_tasks) if test_tasks is not None else None,
        "test_fraction": test_fraction,
        "every": every,
        "train_range": parse_range(train_range) if train_range is not None else None,
    }
    kind = split or ("explicit" if test_tasks is not None else "random")
    table = fam.sample_tasks(n, seed=seed, grid=grid, split=kind, **{k: v for k, v in split_args.items() if v is not None})
    d = table.to_dict()
    n_train, n_test = len(table.indices("train")), len(table.indices("test"))
    if as_json:
        d["counts"] = {"tasks": len(table), "train": n_train, "test": n_test}
        print(json.dumps(d, indent=1))
        return
    same = table.split_args.get("test_equals_train")
    caption = f"{n_train} train / {n_test} test" + (" (test = train)" if same else "")
    table_out = Table(title=f"{fam.name}: {len(table)} tasks, {table.split_kind} split, seed {seed}", caption=caption)
    for col in ("index", "parameters", "features", "split"):
        table_out.add_column(col, justify="right" if col == "index" else "left")
    for t in d["tasks"]:
        label = "train+test" if same else t["split"]
        style = "cyan" if t["split"] == "test" else None
        table_out.add_row(str(t["index"]), _compact(t["params"]), _compact(t["features"]), label, style=style)
    console.print(table_out)


def register(app: typer.Typer) -> None:
    app.command("families")(user_errors(families_cmd))
    app.command("tasks")(user_errors(tasks_cmd))
