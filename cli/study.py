"""`omrl-study`: studies that collect, train and evaluate in one command (``omrl_studies``).

The commands parse options and print; the studies themselves live in ``omrl_studies``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cli.common import console, err_console, user_errors

app = typer.Typer(name="omrl-study", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Studies over omrl datasets and algorithms: collect (or reuse), train, evaluate, report.")


@app.callback()
def _root() -> None:
    """Studies over omrl datasets and algorithms: collect (or reuse), train, evaluate, report."""


@app.command(
    help=(
        "The fidelity protocol: per family, collect the budget's dataset (or reuse it), train every "
        "algorithm with every seed (a normal omrl-train run folder each, in parallel), evaluate on the "
        "held-out tasks, and write results.md / .csv / .json and results.png."
    ),
    epilog=(
        "Examples:\n\n"
        "  omrl-study fidelity\n\n"
        "  omrl-study fidelity --budget small --seeds 3 --out studies/fidelity-small\n\n"
        "  omrl-study fidelity --families cheetah_dir,bandit --algorithms macaw,mtft --workers 2\n\n"
        "  omrl-study fidelity --out studies/fidelity-small --resume\n\n"
        "  omrl-study fidelity --budget full --device cuda --workers 8 --root /data/omrl"
    ),
)
@user_errors
def fidelity(
    budget: str = typer.Option("small", "--budget", help="small (2-core CPU, < 1 h) | full (the papers' sizes, GPU) | tiny (tests)"),
    seeds: int = typer.Option(3, "--seeds", help="seeds per family and algorithm (0 .. N-1)"),
    algorithms: str = typer.Option("macaw,macega,mtft,metabc", "--algorithms", help="comma-separated algorithms"),
    families: Optional[str] = typer.Option(None, "--families", help="comma-separated families (default: all of the budget)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="parallel runs and collection workers (default: one per core)"),
    out: Optional[Path] = typer.Option(None, "--out", help="study folder (default studies/fidelity-<budget>)"),
    resume: bool = typer.Option(False, "--resume", help="skip finished runs, continue unfinished ones"),
    root: Optional[Path] = typer.Option(None, "--root", help="dataset root (default $OMRL_HOME or ~/.omrl)"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N (SAC collection and training)"),
    quiet: bool = typer.Option(False, "--quiet", help="no plan, progress or tables; only the result paths"),
) -> None:
    from omrl_studies.fidelity import FidelityOptions, StudyInterrupted, run_fidelity

    options = FidelityOptions(budget=budget, seeds=seeds, algorithms=algorithms, families=families, workers=workers,
                              out=out, resume=resume, root=root, device=device)
    try:
        result = run_fidelity(options, console=None if quiet else console, progress=not quiet)
    except StudyInterrupted as e:
        err_console.print(f"[yellow]interrupted[/]; resume with:\n  {e.resume_command}", highlight=False, soft_wrap=True)
        sys.exit(130)
    if not quiet:
        print_summary(result.summary["rows"], f"fidelity, budget {budget}")
        w = result.wall_seconds
        console.print(f"wall time: collection {w.get('collection', 0):.0f} s, training {w.get('training', 0):.0f} s, "
                      f"total {w.get('total', 0):.0f} s")
    for kind in ("md", "csv", "json", "png"):
        console.print(f"written: [bold]{result.paths[kind]}[/]")
    if result.failed:
        err_console.print(f"[bold red]error:[/] {len(result.failed)} run(s) failed: "
                          + ", ".join(o.spec.label for o in result.failed) + f"; logs in their run folders, see {result.paths['md']}",
                          highlight=False, soft_wrap=True)
        sys.exit(1)


@app.command(
    help="Show a budget's recipes: the collection command of each family and every algorithm's training settings.",
    epilog="Examples:\n\n  omrl-study recipes\n\n  omrl-study recipes --budget full\n\n  omrl-study recipes --json",
)
@user_errors
def recipes(
    budget: str = typer.Option("small", "--budget", help="small | full | tiny"),
    as_json: bool = typer.Option(False, "--json", help="print the recipes as JSON"),
) -> None:
    import json

    from omrl_studies.recipes import describe

    d = describe(budget)
    if as_json:
        print(json.dumps(d, indent=2))
        return
    for family, f in d["families"].items():
        console.print(f"[bold]{family}[/]: {f['tasks']} tasks ({f['train_tasks']} train, test {f['test_tasks']}), "
                      f"{f['transitions']:,} transitions", highlight=False)
        console.print(f"  {f['collect']}", highlight=False, soft_wrap=True)
        for algo, settings in f["training"].items():
            console.print(f"  [dim]{algo}:[/] " + " ".join(settings), highlight=False, soft_wrap=True)


def print_summary(rows: list[dict], title: str) -> None:
    table = Table(title=title, caption="normalised: (R - stand still) / (expert tier - stand still); mean ± std over seeds")
    for col in ("family", "algorithm", "normalised after", "normalised before", "return after", "return before",
                "random", "stand still", "expert tier"):
        table.add_column(col, justify="left" if col in ("family", "algorithm") else "right")

    def pm(m, s, d=2):
        return "" if m is None else f"{m:.{d}f} ± {s:.{d}f}"

    def f(v, d=1):
        return "" if v is None else f"{v:.{d}f}"

    for r in rows:
        table.add_row(r["family"], r["algorithm"], pm(r["normalised_after_mean"], r["normalised_after_std"]),
                      pm(r["normalised_before_mean"], r["normalised_before_std"]),
                      pm(r["return_after_mean"], r["return_after_std"], 1), pm(r["return_before_mean"], r["return_before_std"], 1),
                      f(r.get("random")), f(r.get("stand_still")), f(r.get("expert")))
    console.print(table)


def main() -> None:
    from cli.common import run_app

    run_app(app)


if __name__ == "__main__":
    main()
