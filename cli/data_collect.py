"""`omrl-data collect`: parse the options, call ``omrl_data.collection.collect``, print the id."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from cli.common import console, user_errors
from omrl_data.errors import BadInput

EXAMPLES = """
[bold]Examples[/]

  [dim]# 50 ant_dir tasks, one shared SAC learner per worker shard, default budget[/]
  omrl-data collect ant_dir --tasks 50 --workers 2

  [dim]# MACAW's recipe: one SAC per task, whole replay stream, the paper's test tasks[/]
  omrl-data collect cheetah_vel --tasks 40 --grid --split explicit --test-tasks 2,7,15,23,26 --mode per-task

  [dim]# FOCAL-style checkpoint rollouts: save the policy every 5k steps, roll out 10 episodes[/]
  omrl-data collect walker_params --tasks 20 --checkpoint-every 5000 --checkpoint-rollouts 10

  [dim]# uniform random actions (the "random" quality level), on a Ray cluster[/]
  omrl-data collect point_robot_sparse --tasks 40 --mode random --backend ray --ray-address auto

  [dim]# a held-out task every 3rd grid position, a smaller SAC[/]
  omrl-data collect cheetah_vel --tasks 6 --grid --split interpolation --split-arg every=3 --sac net_arch=128,128

  [dim]# continue an interrupted collection (same options plus --resume; printed on Ctrl-C)[/]
  omrl-data collect ant_dir --tasks 50 --workers 2 --resume
"""


def _test_tasks(value: Optional[str]) -> Optional[list[int]]:
    if value is None:
        return None
    try:
        return [int(v) for v in value.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise BadInput(f"--test-tasks takes comma-separated task indices such as 2,7,15, got {value!r}") from None


def _split_args(items: list[str]) -> dict:
    from omrl_data.collection.config import split_args_from_settings

    return split_args_from_settings(items)


def _sac(items: list[str]):
    from omrl_data.collection.config import sac_from_settings

    return sac_from_settings(items)


def register(app: typer.Typer) -> None:
    @app.command("collect", epilog=EXAMPLES)
    @user_errors
    def collect_cmd(
        family: str = typer.Argument(..., help="Task family, e.g. ant_dir, cheetah_vel, point_robot_sparse."),
        tasks: int = typer.Option(..., "--tasks", help="Number of tasks to sample."),
        seed: int = typer.Option(0, "--seed", help="Seed of task sampling, learners and environments."),
        grid: bool = typer.Option(False, "--grid", help="Use the papers' fixed task grid instead of random tasks."),
        split: str = typer.Option("random", "--split", help="Train/test split: random | interpolation | extrapolation | explicit."),
        test_tasks: Optional[str] = typer.Option(None, "--test-tasks", help="Held-out task indices for --split explicit, e.g. 2,7,15."),
        split_arg: list[str] = typer.Option([], "--split-arg", help="Split argument KEY=VALUE, e.g. every=3 (interpolation), train_range=0,1 (extrapolation), test_fraction=0.2 (random); repeatable."),
        sac: list[str] = typer.Option([], "--sac", help="SAC setting KEY=VALUE, e.g. net_arch=128,128, learning_starts=500, ent_coef=0.2; repeatable."),
        name: Optional[str] = typer.Option(None, "--name", help="Dataset name (default: replay, or random in random mode)."),
        steps_per_task: Optional[int] = typer.Option(None, "--steps-per-task", help="Learner env steps per task (default: the family's)."),
        mode: str = typer.Option("shared", "--mode", help="shared (one SAC over all tasks of a shard) | per-task | random."),
        checkpoint_every: int = typer.Option(0, "--checkpoint-every", help="Save the policy every C env steps per task (0 = never)."),
        checkpoint_rollouts: int = typer.Option(0, "--checkpoint-rollouts", help="Stochastic episodes rolled out from each checkpoint."),
        gamma: Optional[float] = typer.Option(None, "--gamma", help="Discount of the stored Monte Carlo returns (default: the family's, 0.99; bandit 0.01; see `omrl-data families`)."),
        workers: Optional[int] = typer.Option(None, "--workers", help="Parallel workers (tasks in per-task/random mode, task shards in shared mode); default: one per CPU core."),
        backend: str = typer.Option("local", "--backend", help="local processes | ray tasks."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Existing Ray cluster (default: start a local Ray runtime)."),
        device: str = typer.Option("cpu", "--device", help="Torch device of the SAC learners: cpu | cuda."),
        chunk_seconds: float = typer.Option(120.0, "--chunk-seconds", help="SAC learners save their progress this often; a kill loses at most this much (resume continues from it)."),
        root: Optional[Path] = typer.Option(None, "--root", help="Catalog root (default: $OMRL_HOME, else ~/.omrl)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the latest unfinished collection of this family/name."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Start without asking (asked only on a terminal)."),
    ) -> None:
        """Collect a multi-task offline dataset (SAC replay streams, checkpoint rollouts or random actions).

        Prints the plan (tasks, steps, mode, workers, estimated time and size), shows progress,
        and prints the new dataset id. Ctrl-C stops cleanly and prints the command that resumes.
        """
        from omrl_data.collection import CollectConfig, collect
        from omrl_data.collection.plan import default_workers

        if workers is not None and workers > 0:
            from cli.common import err_console

            limits = [(int(tasks), "task(s) to collect")] if isinstance(tasks, int) and tasks > 0 else []
            if backend == "local":
                limits.append((default_workers(), "CPU core(s) this process may use"))
            bound, why = min(limits, default=(workers, ""))
            if workers > bound:
                err_console.print(f"[yellow]note:[/] --workers {workers} is more than the {bound} {why}; using --workers {bound}",
                                  highlight=False, soft_wrap=True)
                workers = bound

        split_args = {}
        parsed = _test_tasks(test_tasks)
        if parsed is not None:
            split_args["test_tasks"] = parsed
        split_args = {**_split_args(split_arg), **split_args}
        config = CollectConfig(
            family=family, tasks=tasks, seed=seed, grid=grid, split=split, split_args=split_args, name=name,
            steps_per_task=steps_per_task, mode=mode, checkpoint_every=checkpoint_every,
            checkpoint_rollouts=checkpoint_rollouts, gamma=gamma, workers=default_workers() if workers is None else workers, backend=backend,
            ray_address=ray_address, device=device, chunk_seconds=chunk_seconds, sac=_sac(sac),
        )
        ask = not yes and sys.stdin.isatty() and sys.stdout.isatty()
        confirm = (lambda plan: typer.confirm("start the collection?", default=True)) if ask else None
        dataset_id = collect(config, root=root, progress=True, resume=resume, confirm=confirm, console=console)
        console.print(f"[bold green]done[/]: {dataset_id}")
