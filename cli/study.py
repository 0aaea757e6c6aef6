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
    algorithms: str = typer.Option("macaw,macega,mtft,metabc", "--algorithms",
                                   help="comma-separated algorithms (default: the four gradient-based ones; the context methods r2pgo, focal, corro, csro, borel, pearl on request)"),
    families: Optional[str] = typer.Option(None, "--families", help="comma-separated families (default: the protocol's four; hopper_params, walker_params on request)"),
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


# ---------------------------------------------------------------- the robustness studies
# Options every study shares (typer needs them spelled out per command; their meaning is one place).
_ALGOS_HELP = "comma-separated algorithms (default macaw,macega,mtft)"
_COMMON_EPILOG = ("Every study: --seeds N (default 3), --workers N (runs at a time), --backend local|ray [--ray-address ADDR], "
                  "--budget small|full|tiny, --out DIR, --resume (continue: finished runs are kept), --dataset ID "
                  "(default: the budget's recipe dataset, reused or collected), --root, --device, --quiet.")


def _common(
    budget: str = typer.Option("small", "--budget", help="small (2-core CPU) | full (the papers' sizes, GPU) | tiny (tests)"),
    seeds: int = typer.Option(3, "--seeds", help="seeds per setting and algorithm (0 .. N-1)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="runs at a time (default: one per core)"),
    backend: str = typer.Option("local", "--backend", help="local processes | ray tasks"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="existing Ray cluster (default: start a local Ray runtime)"),
    out: Optional[Path] = typer.Option(None, "--out", help="study folder (default studies/<study>-<family>-<budget>)"),
    resume: bool = typer.Option(False, "--resume", help="keep finished runs, continue unfinished ones"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="base dataset id (default: the budget's recipe dataset)"),
    root: Optional[Path] = typer.Option(None, "--root", help="dataset root (default $OMRL_HOME or ~/.omrl)"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N"),
    quiet: bool = typer.Option(False, "--quiet", help="no plan, progress or tables; only the result paths"),
) -> dict:
    return dict(budget=budget, seeds=seeds, workers=workers, backend=backend, ray_address=ray_address, out=out,
                resume=resume, dataset=dataset, root=root, device=device, quiet=quiet)


def _study(study: str, family: str, algorithms: str, common: dict, **specific) -> None:
    from omrl_studies.studies import StudyInterrupted, StudyOptions, run_study

    quiet = common.pop("quiet")
    options = StudyOptions(study=study, family=family, algorithms=algorithms, **common, **specific)
    try:
        result = run_study(options, console=None if quiet else console, progress=not quiet)
    except StudyInterrupted as e:
        err_console.print(f"[yellow]interrupted[/]; resume with:\n  {e.resume_command}", highlight=False, soft_wrap=True)
        sys.exit(130)
    if not quiet:
        print_study(result.summary["rows"], f"{study}: {family}, budget {options.budget}")
        w = result.wall_seconds
        console.print(f"wall time: data {w.get('data', 0):.0f} s, training {w.get('training', 0):.0f} s, total {w.get('total', 0):.0f} s")
    for kind in ("md", "csv", "json", "png"):
        console.print(f"written: [bold]{result.paths[kind]}[/]")
    if result.failed:
        err_console.print(f"[bold red]error:[/] {len(result.failed)} run(s) failed: "
                          + ", ".join(o.spec.label for o in result.failed) + f"; logs in their run folders, see {result.paths['md']}",
                          highlight=False, soft_wrap=True)
        sys.exit(1)


def _options(fn):
    """Add the shared options of :func:`_common` to a study command (as typer parameters)."""
    import functools
    import inspect
    import typing

    def resolved(f):  # this module's annotations are strings (__future__); typer needs the types
        hints = typing.get_type_hints(f)
        return [p.replace(annotation=hints.get(p.name, p.annotation)) for p in inspect.signature(f).parameters.values()]

    shared = resolved(_common)
    own = [p for p in resolved(fn) if p.name != "common"]

    @functools.wraps(fn)
    def wrapper(**kw):
        common = {p.name: kw.pop(p.name) for p in shared}
        return fn(common=_common(**common), **kw)

    wrapper.__signature__ = inspect.Signature(own + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in shared])
    return wrapper


@app.command("task-count", help="Train on nested subsets of the training tasks (slices with lineage), the same test tasks.",
             epilog="Examples:\n\n  omrl-study task-count cheetah_vel --counts 3,5,8\n\n"
                    "  omrl-study task-count cheetah_vel --counts 3,5 --algorithms macaw --seeds 1 --workers 1\n\n" + _COMMON_EPILOG)
@user_errors
@_options
def task_count(
    family: str = typer.Argument(..., help="task family"),
    counts: str = typer.Option(..., "--counts", help="numbers of training tasks, e.g. 3,5,10"),
    subset_seed: int = typer.Option(0, "--subset-seed", help="seed of the permutation whose prefixes are the subsets"),
    algorithms: str = typer.Option("macaw,macega,mtft", "--algorithms", help=_ALGOS_HELP),
    common: dict = None,
) -> None:
    from omrl_studies.studies import parse_ints

    _study("task-count", family, algorithms, common, counts=parse_ints(counts, "--counts"), subset_seed=subset_seed)


@app.command("meta-batch", help="Train with each meta-batch size (tasks per meta-step).",
             epilog="Examples:\n\n  omrl-study meta-batch cheetah_vel --sizes 1,2,5,8\n\n" + _COMMON_EPILOG)
@user_errors
@_options
def meta_batch(
    family: str = typer.Argument(..., help="task family"),
    sizes: str = typer.Option(..., "--sizes", help="meta-batch sizes, e.g. 1,2,5,10"),
    algorithms: str = typer.Option("macaw,macega,mtft", "--algorithms", help=_ALGOS_HELP),
    common: dict = None,
) -> None:
    from omrl_studies.studies import parse_ints

    _study("meta-batch", family, algorithms, common, sizes=parse_ints(sizes, "--sizes"))


@app.command(help="Train on a range of the task parameter only; report test tasks in and out of that range separately.",
             epilog="Examples:\n\n  omrl-study withheld cheetah_vel --train-range 0,2\n\n"
                    "  omrl-study withheld ant_dir --train-range 0,1.5708 --dataset omrl/ant_dir/replay\n\n" + _COMMON_EPILOG)
@user_errors
@_options
def withheld(
    family: str = typer.Argument(..., help="task family"),
    train_range: Optional[str] = typer.Option(None, "--train-range", help="lo,hi of the family's order key (default: the family's)"),
    algorithms: str = typer.Option("macaw,macega,mtft", "--algorithms", help=_ALGOS_HELP),
    common: dict = None,
) -> None:
    from omrl_studies.studies import parse_range

    _study("withheld", family, algorithms, common, train_range=None if train_range is None else parse_range(train_range))


@app.command("data-quality", help="Expert / medium / random thirds of the data: for meta-training, and for the adaptation data only.",
             epilog="Examples:\n\n  omrl-study data-quality cheetah_dir\n\n"
                    "  omrl-study data-quality cheetah_vel --tiers expert,random --variants meta-training\n\n" + _COMMON_EPILOG)
@user_errors
@_options
def data_quality(
    family: str = typer.Argument(..., help="task family"),
    tiers: str = typer.Option("expert,medium,random", "--tiers", help="quality tiers (expert is the reference)"),
    variants: str = typer.Option("meta-training,adaptation", "--variants", help="meta-training and/or adaptation"),
    algorithms: str = typer.Option("macaw,macega,mtft", "--algorithms", help=_ALGOS_HELP),
    common: dict = None,
) -> None:
    _study("data-quality", family, algorithms, common, tiers=tuple(t.strip() for t in tiers.split(",") if t.strip()),
           variants=tuple(v.strip() for v in variants.split(",") if v.strip()))


@app.command(help="Online fine-tuning after offline adaptation: returns after each number of online env steps.",
             epilog="Examples:\n\n  omrl-study online cheetah_vel --online-steps 0,500,1000\n\n" + _COMMON_EPILOG)
@user_errors
@_options
def online(
    family: str = typer.Argument(..., help="task family"),
    online_steps: str = typer.Option("0,500,1000", "--online-steps", help="online env steps, e.g. 0,500,1000"),
    algorithms: str = typer.Option("macaw,macega,mtft", "--algorithms", help=_ALGOS_HELP),
    common: dict = None,
) -> None:
    from omrl_studies.studies import parse_ints

    _study("online", family, algorithms, common, online_steps=parse_ints(online_steps, "--online-steps", minimum=0))


@app.command(help="Every ablation setting the algorithm declares, next to the full method.",
             epilog="Examples:\n\n  omrl-study ablations macaw cheetah_vel\n\n  omrl-study ablations macega cheetah_dir --seeds 2\n\n"
                    + _COMMON_EPILOG)
@user_errors
@_options
def ablations(
    algorithm: str = typer.Argument(..., help="algorithm whose ablations to run (macaw, macega)"),
    family: str = typer.Argument(..., help="task family"),
    common: dict = None,
) -> None:
    from omrl_studies.ablations import ablations_of

    ablations_of(algorithm)
    _study("ablations", family, algorithm, common)


def print_study(rows: list[dict], title: str) -> None:
    table = Table(title=title, caption="normalised: (R - stand still) / (expert tier - stand still); mean ± std over seeds")
    for col in ("section", "setting", "algorithm", "seeds", "normalised after", "return after", "drop vs expert"):
        table.add_column(col, justify="left" if col in ("section", "setting", "algorithm") else "right")
    for r in rows:
        n = "" if r["normalised_after_mean"] is None else f"{r['normalised_after_mean']:.2f} ± {r['normalised_after_std']:.2f}"
        ret = "" if r["return_after_mean"] is None else f"{r['return_after_mean']:.1f} ± {r['return_after_std']:.1f}"
        drop = "" if r.get("drop_pct") is None else f"{r['drop_pct']:.1f}%"
        table.add_row(r["section"], r["setting"], r["algorithm"], str(len(r["seeds"])), n, ret, drop)
    console.print(table)


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
