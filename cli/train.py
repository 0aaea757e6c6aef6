"""`omrl-train <algorithm>`, `omrl-train demo` and `omrl-eval`.

Every option becomes a ``key=value`` setting of the run config (``omrl_algos.config``), so the
flags, ``--config FILE`` and ``--set`` go through one path. One command per registered
algorithm (``omrl_algos.registry``), all with the same options.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from cli.common import console, user_errors
from omrl_studies.results import short_value

app = typer.Typer(name="omrl-train", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Train offline meta-RL algorithms on omrl datasets.")
eval_app = typer.Typer(name="omrl-eval", add_completion=False, pretty_exceptions_enable=False)


def _overrides(**flags: Any) -> list[str]:
    """Given flags as ``key=value`` settings (flags left out keep the config's value)."""
    out = []
    for key, value in flags.items():
        if value is not None:
            out.append(f"{key}={value}")
    return out


def print_eval(result: dict[str, Any], title: str = "returns on held-out tasks") -> None:
    """Per test task: return before adaptation, after adaptation, random policy (and online)."""
    table = Table(title=title)
    table.add_column("test task", justify="right")
    table.add_column("task params", overflow="fold")
    table.add_column("before adaptation", justify="right")
    table.add_column("after adaptation", justify="right")
    has_random = "random" in result["mean"]
    if has_random:
        table.add_column("random policy", justify="right")
    has_still = any(row.get("stand_still") is not None for row in result["tasks"])
    if has_still:
        table.add_column("standing still", justify="right")
    # (R - stand still) / (expert tier - stand still), when the evaluation reports it (eval.json "normalised")
    has_norm = any(isinstance(row.get("normalised"), dict) for row in result["tasks"])
    if has_norm:
        table.add_column("normalised after (before)", justify="right")
    online = list(result["mean"].get("online", {}))
    for s in online:
        table.add_column(f"online {s} steps", justify="right")
    for row in result["tasks"]:
        params = ", ".join(f"{k}={short_value(v)}" for k, v in row["params"].items())
        cells = [str(row["task"]), params, f"{row['before']:.2f}", f"{row['after']:.2f}"]
        if has_random:
            cells.append(f"{row['random']:.2f}")
        if has_still:
            cells.append("" if row.get("stand_still") is None else f"{row['stand_still']:.2f}")
        if has_norm:
            cells.append(_norm_cell(row.get("normalised")))
        cells += [f"{row['online'][s]:.2f}" for s in online]
        table.add_row(*cells)
    m = result["mean"]
    cells = ["mean", "", f"{m['before']:.2f}", f"{m['after']:.2f}"]
    if has_random:
        cells.append(f"{m['random']:.2f}")
    if has_still:
        cells.append("" if m.get("stand_still") is None else f"{m['stand_still']:.2f}")
    if has_norm:
        cells.append(_norm_cell(m.get("normalised")))
    cells += [f"{m['online'][s]:.2f}" for s in online]
    table.add_row(*cells, style="bold")
    console.print(table)
    if result.get("mode") and result["mode"] != "offline":
        # online_context: "after" = with the collected context; zero_shot: "after" = episode 1, "before" = no context
        console.print(f"evaluation mode: {result['mode']} (before = the agent with no context)", highlight=False)
    if m.get("episodes"):
        eps = ", ".join(f"{v:.2f}" for v in m["episodes"])
        norm = ", ".join("-" if v is None else f"{v:.2f}" for v in m.get("normalised_episodes") or [])
        console.print(f"zero-shot return of episodes 1..{len(m['episodes'])} of a trial (mean over test tasks): {eps}; normalised: {norm}", highlight=False)


def _norm_cell(norm: Any) -> str:
    """``0.83 (0.12)``: normalised score after (before) adaptation; blank parts when not known."""
    if not isinstance(norm, dict):
        return ""

    def f(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"

    return f"{f(norm.get('after'))} ({f(norm.get('before'))})"




def _make_train_command(name: str) -> None:
    @app.command(
        name=name,
        help=f"Train {name} on a dataset, evaluating on its test tasks.",
        epilog=(
            "Examples:\n\n"
            f"  omrl-train {name} --dataset omrl/cheetah_vel/replay --steps 10000 --eval-every 250 --out runs/{name}-vel\n\n"
            f"  omrl-train {name} --dataset omrl/cheetah_vel/replay --out runs/{name}-vel --steps 20000 --resume\n\n"
            f"  omrl-train {name} --dataset omrl/cheetah_vel/replay --set algo.width=64 --set train.seed=1 --device cuda"
        ),
    )
    @user_errors
    def command(
        dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="dataset id or path (omrl-data list)"),
        root: Optional[str] = typer.Option(None, "--root", help="dataset root (default $OMRL_HOME or ~/.omrl)"),
        steps: Optional[int] = typer.Option(None, "--steps", help="meta-steps in total"),
        eval_every: Optional[int] = typer.Option(None, "--eval-every", help="meta-steps between evaluations (0 = end only)"),
        eval_episodes: Optional[int] = typer.Option(None, "--eval-episodes", help="rollouts per test task and policy"),
        out: Optional[str] = typer.Option(None, "--out", help="run folder (default runs/<algo>-<dataset>-s<seed>)"),
        seed: Optional[int] = typer.Option(None, "--seed", help="seed of init, sampler and evaluation"),
        device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda | cuda:N"),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON config file or run folder"),
        set_: list[str] = typer.Option([], "--set", help="key=value setting, e.g. algo.width=64 (repeatable)"),
        resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its latest checkpoint"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        from omrl_algos.config import default_config
        from omrl_algos.train import resolve_config, train

        flags = _overrides(**{
            "dataset": dataset, "root": root, "train.steps": steps, "train.eval_every": eval_every,
            "eval.episodes": eval_episodes, "out": out, "train.seed": seed, "train.device": device,
        })
        resume_dir = None
        if resume:
            probe = resolve_config(name, flags + list(set_), config)
            if probe.out is None:
                # the default folder depends on the dataset id: resolve it as train() would
                from omrl_algos.train import default_run_dir, load_dataset

                probe.out = str(default_run_dir(probe, load_dataset(probe)))
                flags.append(f"out={probe.out}")
            resume_dir = probe.out
        cfg = resolve_config(name, flags + list(set_), config, resume_dir=resume_dir)
        default_config(name)  # unknown algorithm names fail here, before any work
        result = train(cfg, resume=resume, progress=not quiet, console=console)
        if result.eval is not None:
            print_eval(result.eval, f"{name} on {cfg.dataset} after {result.step} meta-steps")
        console.print(f"run folder: [bold]{result.run_dir}[/] (learning_curve.png, eval.json, metrics.csv, checkpoints/)")


def _register_algorithms() -> None:
    from omrl_algos.registry import algorithm_names

    for name in algorithm_names():
        _make_train_command(name)


_register_algorithms()


@app.command(
    help="The main job: collect a small cheetah_vel dataset (or reuse it), train MACAW, evaluate, plot.",
    epilog=(
        "Examples:\n\n  omrl-train demo\n\n  OMRL_HOME=/tmp/omrl omrl-train demo\n\n"
        "  omrl-train demo --steps 600 --set algo.width=128 --out runs/demo-wide\n\n"
        "The dataset is reused when one with the same recipe exists (an interrupted collection is resumed)."
    ),
)
@user_errors
def demo(
    root: Optional[str] = typer.Option(None, "--root", help="dataset root (default $OMRL_HOME or ~/.omrl)"),
    out: Optional[str] = typer.Option(None, "--out", help="run folder (default runs/demo-macaw-cheetah_vel)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="meta-steps (default: the demo's budget)"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N"),
    set_: list[str] = typer.Option([], "--set", help="extra key=value settings of the training run"),
) -> None:
    import sys

    from cli.common import err_console
    from omrl_studies.demo import DemoInterrupted, run_demo

    try:
        result = run_demo(root=root, out=out, steps=steps, device=device, overrides=list(set_), console=console)
    except DemoInterrupted as e:
        err_console.print(f"[yellow]interrupted[/] ({e.what}); continue with:\n  {e.resume_command}", highlight=False, soft_wrap=True)
        sys.exit(130)
    draws = f", after adaptation on each of {result.adapt_draws} batches" if result.adapt_draws > 1 else ""
    print_eval(result.eval, f"MACAW on {result.dataset_id}: per held-out task, {result.episodes} deterministic episode(s) per policy{draws}")
    console.print(f"learning curve: [bold]{result.run_dir / 'learning_curve.png'}[/]")
    console.print(f"run folder: [bold]{result.run_dir}[/]  (total {result.seconds / 60:.1f} min)")


@eval_app.command(
    help="Evaluate a run's checkpoint again on its held-out tasks (optionally with online fine-tuning).",
    epilog="Examples:\n\n  omrl-eval runs/macaw-vel\n\n  omrl-eval runs/macaw-vel --online-steps 0,500,1000",
)
@user_errors
def evaluate(
    run_dir: Path = typer.Argument(..., help="run folder written by omrl-train"),
    checkpoint: str = typer.Option("latest", "--checkpoint", help="latest, a step number, or a file in checkpoints/"),
    online_steps: Optional[str] = typer.Option(None, "--online-steps", help="comma-separated online step counts, e.g. 0,500,1000"),
    episodes: Optional[int] = typer.Option(None, "--episodes", help="rollouts per test task and policy"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda | cuda:N"),
    set_: list[str] = typer.Option([], "--set", help="key=value setting on top of the run's config"),
) -> None:
    from omrl_algos.train import evaluate_run
    from omrl_data.errors import BadInput

    steps = None
    if online_steps is not None:
        try:
            steps = [int(s) for s in online_steps.split(",") if s.strip()]
        except ValueError:
            raise BadInput(f"--online-steps {online_steps!r} must be comma-separated integers, e.g. 0,500,1000") from None
    overrides = _overrides(**{"eval.episodes": episodes, "train.device": device}) + list(set_)
    result, path = evaluate_run(run_dir, checkpoint, steps, overrides)
    print_eval(result, f"{run_dir} at meta-step {result['step']}")
    console.print(f"written: [bold]{path}[/]")


def main() -> None:
    from cli.common import run_app

    run_app(app)


def eval_main() -> None:
    from cli.common import run_app

    run_app(eval_app)
