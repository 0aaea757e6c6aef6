"""A small comparison of the gradient-based algorithms on one MuJoCo family (cheetah_vel).

1. Collect (or reuse, when a dataset with the same collection settings is in the catalog) a small
   cheetah_vel dataset: the MACAW velocity grid with ``--tasks`` tasks, every 4th grid position
   held out (interpolation split), task-conditioned shared SAC for ``--steps-per-task`` env steps
   per task (the replay stream is the dataset).
2. Train every algorithm for ``--steps`` meta-steps per seed with the same network and batch
   sizes (those of the main job: width 64, latent 32, 4 tasks x 128 / 128 transitions), through
   the same loop as ``omrl-train`` (``omrl_algos.train.train``).
3. Evaluate on the held-out tasks after offline adaptation (256 transitions of each test task,
   the algorithm's own adaptation, deterministic 200-step rollouts) and report, per algorithm,
   the mean over test tasks, then mean and spread (standard deviation, min-max) over seeds.

Each run prints the ``omrl-train`` command that repeats it. Results go to ``--out``
(``results.json``, ``results.md``) and the run folders under it.

Run: ``.venv/bin/python benchmarks/compare_algorithms.py`` (``--help`` for options; ``--quick``
for a reduced version: 1 seed, fewer steps).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omrl_algos.train import resolve_config, train  # noqa: E402

NET = ["algo.width=64", "algo.latent_dim=32"]
META = NET + ["algo.meta_batch=4", "algo.support_size=128", "algo.query_size=128"]
# The main job's outer lrs (README.md, "The main job"): the paper's value lr 1e-5 needs ~1e5 steps.
ACTOR_CRITIC = META + ["algo.value_lr=1e-3", "algo.policy_lr=3e-4"]

VARIANTS: dict[str, tuple[str, list[str]]] = {
    "MACAW": ("macaw", ACTOR_CRITIC),
    "MACEGA": ("macega", ACTOR_CRITIC),
    "MACEGA no_evolving_gradient": ("macega", ACTOR_CRITIC + ["algo.no_evolving_gradient=true"]),
    "MACEGA no_gradient_agreement": ("macega", ACTOR_CRITIC + ["algo.no_gradient_agreement=true"]),
    "Offline MT+FT": ("mtft", NET + ["algo.meta_batch=4", "algo.batch_size=128", "algo.value_lr=1e-3", "algo.policy_lr=3e-4"]),
    "meta-BC": ("metabc", META + ["algo.policy_lr=3e-4"]),
}


def collect_config(tasks: int, steps_per_task: int, workers: int) -> Any:
    from omrl_data.collection import CollectConfig, SacConfig

    return CollectConfig(
        family="cheetah_vel",
        tasks=tasks,
        grid=True,  # MACAW grid linspace(0.075, 3.0, tasks)
        split="interpolation",
        split_args={"every": 4},  # held out: every 4th grid position, inside the training range
        name="compare",
        mode="shared",
        steps_per_task=steps_per_task,
        seed=0,
        workers=workers,
        sac=SacConfig(net_arch=(128, 128), learning_starts=1000),
    )


def find_or_collect(config: Any, root: str | None) -> str:
    """The newest catalog dataset collected with the same settings, else a new collection."""
    from omrl_data.collection import collect
    from omrl_data.store import catalog

    def comparable(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in ("workers", "backend", "ray_address", "device")}

    wanted = comparable(config.to_dict())
    for version in reversed(catalog.versions(config.family, config.name, root)):
        folder = catalog.resolve(f"omrl/{config.family}/{config.name}-v{version}", root)
        meta = catalog.read_metadata(folder, missing_ok=True) or {}
        if comparable(meta.get("collection", {})) == wanted:
            print(f"reusing dataset {catalog.dataset_id_of(folder)}")
            return catalog.dataset_id_of(folder)
    print(f"collecting {config.family} ({config.tasks} tasks x {config.steps_per_task} steps, shared SAC, {config.workers} workers)")
    return collect(config, root=root, progress=True)


def command_line(algorithm: str, dataset: str, settings: list[str], root: str | None) -> str:
    """The ``omrl-train`` command of one run."""
    parts = [".venv/bin/omrl-train", algorithm, "--dataset", dataset]
    if root is not None:
        parts += ["--root", root]
    for s in settings:
        parts += ["--set", s]
    return " ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=12, help="cheetah_vel grid tasks (every 4th held out)")
    ap.add_argument("--steps-per-task", type=int, default=8000, help="SAC env steps per task for the dataset")
    ap.add_argument("--workers", type=int, default=1, help="collection processes (1: one SAC over all tasks, the least compute)")
    ap.add_argument("--steps", type=int, default=300, help="meta-steps per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=1, help="deterministic rollouts per test task and policy")
    ap.add_argument("--algorithms", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME", help=f"subset of: {', '.join(VARIANTS)}")
    ap.add_argument("--root", default=None, help="dataset root (default $OMRL_HOME or ~/.omrl)")
    ap.add_argument("--dataset", default=None, help="use this dataset id instead of collecting")
    ap.add_argument("--out", default="runs/compare", help="folder for run folders and results")
    ap.add_argument("--quick", action="store_true", help="reduced version: seed 0 only, 100 meta-steps")
    ap.add_argument("--summary", metavar="RESULTS_JSON", help="only print the table of an earlier run's results.json")
    args = ap.parse_args()
    if args.summary:
        return summarise(args.summary)
    if args.quick:
        args.seeds, args.steps = [0], 100

    t0 = time.time()
    dataset = args.dataset or find_or_collect(collect_config(args.tasks, args.steps_per_task, args.workers), args.root)
    print(f"dataset {dataset} ready after {time.time() - t0:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"dataset": dataset, "steps": args.steps, "seeds": args.seeds, "episodes": args.episodes, "runs": []}
    for label in args.algorithms:
        algorithm, extra = VARIANTS[label]
        for seed in args.seeds:
            run_dir = out / f"{label.replace(' ', '_').replace('+', '')}-s{seed}"
            settings = [f"train.steps={args.steps}", "train.eval_every=0", "train.checkpoint_every=0", "train.log_every=25",
                        "train.threads=1", f"train.seed={seed}", f"eval.episodes={args.episodes}", f"out={run_dir}", *extra]
            print(f"\n[{label}, seed {seed}] {command_line(algorithm, dataset, settings, args.root)}")
            cfg = resolve_config(algorithm, [f"dataset={dataset}", *([f"root={args.root}"] if args.root else []), *settings])
            start = time.time()
            result = train(cfg, progress=False)
            seconds = time.time() - start
            mean = result.eval["mean"]
            print(f"  after adaptation {mean['after']:.1f}  before {mean['before']:.1f}  random {mean.get('random', float('nan')):.1f}  ({seconds:.0f} s)")
            results["runs"].append({"variant": label, "algorithm": algorithm, "seed": seed, "seconds": seconds, "mean": mean,
                                    "tasks": [{"task": r["task"], "params": r["params"], "before": r["before"], "after": r["after"], "random": r.get("random")} for r in result.eval["tasks"]],
                                    "command": command_line(algorithm, dataset, settings, args.root)})
            (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = summary_table(results)
    (out / "results.md").write_text(table + "\n")
    print("\n" + table)
    print(f"\ntotal {time.time() - t0:.0f} s; results in {out / 'results.json'} and {out / 'results.md'}")


def summary_table(results: dict[str, Any]) -> str:
    """Markdown: per variant, return after adaptation (mean over test tasks) over seeds.

    A run whose training diverged (non-finite return) is left out of the mean and counted in
    the ``diverged`` column.
    """
    lines = [
        f"dataset `{results['dataset']}`, {results['steps']} meta-steps, seeds {results['seeds']}, {results['episodes']} episode(s) per test task",
        "",
        "| algorithm | after adaptation: mean ± std over seeds | min .. max | before adaptation | random policy | diverged | s per run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    variants = list(dict.fromkeys(r["variant"] for r in results["runs"]))
    rows = []
    for v in variants:
        runs = [r for r in results["runs"] if r["variant"] == v]
        ok = [r for r in runs if math.isfinite(r["mean"]["after"])]
        after = [r["mean"]["after"] for r in ok]
        if after:
            mean, std = statistics.fmean(after), (statistics.stdev(after) if len(after) > 1 else 0.0)
            cells = f"{mean:.1f} ± {std:.1f} | {min(after):.1f} .. {max(after):.1f} | {statistics.fmean(r['mean']['before'] for r in ok):.1f}"
        else:
            mean, cells = -math.inf, "diverged | | "
        rand = statistics.fmean(r["mean"].get("random", math.nan) for r in runs)
        seconds = statistics.fmean(r["seconds"] for r in runs)
        rows.append((mean, f"| {v} | {cells} | {rand:.1f} | {len(runs) - len(ok)} of {len(runs)} | {seconds:.0f} |"))
    lines += [row for _, row in sorted(rows, key=lambda x: -x[0])]
    return "\n".join(lines)


def summarise(path: str) -> None:
    """Print (and write beside it) the table of an existing results.json."""
    results = json.loads(Path(path).read_text())
    table = summary_table(results)
    Path(path).with_suffix(".md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
