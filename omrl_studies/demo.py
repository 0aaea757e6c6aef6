"""The main job (``omrl-train demo``, ``make demo``): the whole story in a few minutes.

1. Pull the embedded dataset (``embedded/``: a slice of a cheetah_vel collection on the MACAW
   velocity grid, held-out velocities inside the training range; every file checked against its
   manifest) into the catalog, or reuse it there. Without the embedded folder, collect
   :func:`demo_collect_config` (or reuse / resume a collection of that recipe).
2. Train MACAW on the training tasks (a smaller network and batch than the paper, the small
   budget's outer lrs; everything else is ``omrl-train macaw``'s default), evaluating on the
   held-out tasks as it goes.
3. Report, per held-out task: the return before adaptation, after adaptation on 256 offline
   transitions of that task, of a uniform random policy and of standing still, raw and
   normalised; save the learning curve.

The data and the training settings are the definitions right below (:data:`EMBEDDED_ID`,
:func:`demo_collect_config`, :data:`DEMO_TRAINING`); change the demo there. Every setting is
resolved and checked before any data is touched, so ``--steps 0`` or ``--set nosuch=1`` fail in
a second.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omrl_data.errors import BadInput

DEMO_NAME = "demo"  # dataset name: omrl/cheetah_vel/demo-vN
DEMO_ALGORITHM = "macaw"
# The embedded dataset: a published remote (``omrl-data publish ... --to file://...``) in the
# repository, made by :func:`demo_collect_config`'s recipe (its card says the command). The main
# job pulls it into the catalog, every byte checked against its manifest, instead of collecting:
# a collection that fits the ten minutes gives data whose behaviour barely beats standing still.
EMBEDDED_REMOTE = Path(__file__).resolve().parents[1] / "embedded"
EMBEDDED_ID = "omrl/cheetah_vel/demo-v2"


def demo_collect_config() -> Any:
    """The collection the embedded dataset was sliced from (its recipe; ``--workers 2`` fixes the
    two SAC shards). The main job does not run it when the embedded dataset is there: it takes
    ~27 min on this 2-core machine (idle: less). The embedded version is its slice
    ``omrl-data slice omrl/cheetah_vel/vel10b-v1 --name demo --collect-range 0.5:1`` (18 MB):
    the later half of each task's replay stream (the 20 MB cap holds half the rows; measured,
    2 seeds each: 10k rows spread over the whole stream gave 0.20 / 0.69 / 0.29 normalised after
    adaptation, the later half 1.11 / 1.14), normalised against the parent's references."""
    from omrl_data.collection import CollectConfig, SacConfig

    return CollectConfig(
        family="cheetah_vel",
        tasks=10,  # MACAW grid linspace(0.075, 3.0, 10)
        grid=True,
        split="interpolation",
        split_args={"every": 4},  # held out: grid positions 2 and 6 (v* 0.725, 2.025; inside the training range)
        name=DEMO_NAME,
        mode="shared",  # one task-conditioned SAC per worker over a vector of its task envs
        steps_per_task=20_000,
        seed=0,
        workers=2,
        sac=SacConfig(net_arch=(256, 256), learning_starts=1000, updates_per_step=2.0),  # 40k SAC updates per shard
    )


# MACAW settings of the main job (everything not named here is omrl-train's default; only the
# network size, batch sizes and outer lrs differ, as the fidelity protocol's small budget).
DEMO_TRAINING = [
    "train.steps=4000",  # measured on demo-v2 (seeds 0 / 1): 0.90 / 0.93 normalised after 1,000, 1.23 / 1.21 after 3,000, 1.11 / 1.14 after 4,000
    "train.eval_every=1000",
    "train.checkpoint_every=0",
    "train.log_every=10",
    "eval.episodes=5",  # deterministic episodes per policy and adaptation batch (the same policy's 3-episode mean moved by up to 0.6 normalised between reset seeds)
    "eval.adapt_draws=2",  # two adaptation batches per held-out task, "after" = their mean
    "algo.width=64",
    "algo.latent_dim=16",
    "algo.support_size=128",
    "algo.query_size=128",
    "algo.value_lr=1e-3",  # the paper's 1e-5 / 1e-4 are for ~1e5 meta-steps
    "algo.policy_lr=1e-3",
]


def embedded_dataset(root: str | Path | None = None, console: Any = None) -> Any:
    """The embedded dataset in the catalog (pulled from the repository, every checksum checked, the
    first time; reused after), as a :class:`DatasetChoice`, or None when the repository has none."""
    from omrl_data.errors import DatasetNotFound
    from omrl_data.publish import pull
    from omrl_data.store import catalog
    from omrl_studies.datasets import DatasetChoice

    if not (EMBEDDED_REMOTE / "index.json").is_file():
        return None
    t0 = time.time()
    try:
        catalog.resolve(EMBEDDED_ID, root)
        action = "reused"
    except DatasetNotFound:  # not in the catalog yet
        if console is not None:
            console.print(f"pulling the embedded dataset {EMBEDDED_ID} from {EMBEDDED_REMOTE} (checksums verified)")
        pull(EMBEDDED_ID, EMBEDDED_REMOTE.as_uri(), root)
        action = "pulled"
    return DatasetChoice(EMBEDDED_ID, action, time.time() - t0)


class DemoInterrupted(KeyboardInterrupt):
    """Ctrl-C during the main job; ``resume_command`` continues it."""

    def __init__(self, resume_command: str, what: str):
        super().__init__(f"{what} interrupted; resume with: {resume_command}")
        self.resume_command = resume_command
        self.what = what


@dataclass
class DemoResult:
    dataset_id: str  # the dataset trained on
    dataset_action: str  # reused | resumed | collected
    run_dir: Path  # the run folder
    eval: dict[str, Any]  # the final evaluation (Evaluator.evaluate)
    episodes: int  # deterministic episodes per task and policy
    seconds: float  # wall time of the whole job
    adapt_draws: int = 1  # adaptation batches per task ("after" = mean over draws x episodes)


def demo_command(root: str | Path | None = None, out: str | Path | None = None, steps: int | None = None,
                 device: str = "cpu", overrides: list[str] | None = None) -> str:
    """The ``omrl-train demo`` command line with these options (what a rerun types)."""
    parts = ["omrl-train", "demo"]
    if root is not None:
        parts += ["--root", str(root)]
    if out is not None:
        parts += ["--out", str(out)]
    if steps is not None:
        parts += ["--steps", str(steps)]
    if device != "cpu":
        parts += ["--device", device]
    for s in overrides or []:
        parts += ["--set", s]
    return shlex.join(parts)


def prepare(root: str | Path | None = None, out: str | Path | None = None, steps: int | None = None,
            device: str = "cpu", overrides: list[str] | None = None) -> tuple[Any, list[str], Path]:
    """Resolve and check everything before any work: ``(collect config, training settings, run folder)``.

    Raises BadInput (one line) for a bad setting, a run folder that already holds a run, or a
    collection recipe that cannot be collected.
    """
    from omrl_data.collection.plan import make_plan
    from omrl_studies.checks import resolve_training

    config = demo_collect_config()
    rows = make_plan(config).rows_per_task
    run_dir = Path(out) if out else _fresh_run_dir(Path("runs") / "demo-macaw-cheetah_vel")
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInput(f"--out {run_dir} is a file; give a folder for the run")
    if (run_dir / "checkpoints" / "latest.pt").exists():
        raise BadInput(f"run folder {run_dir} already holds a run; pass another --out (or leave it out for a fresh folder)")
    settings = [f"out={run_dir}", f"train.device={device}", *DEMO_TRAINING]
    if root is not None:
        settings.append(f"root={root}")
    if steps is not None:
        settings.append(f"train.steps={steps}")
    settings += list(overrides or [])
    resolve_training(DEMO_ALGORITHM, settings, config.family, rows)
    return config, settings, run_dir


def run_demo(
    root: str | None = None,
    out: str | None = None,
    steps: int | None = None,
    device: str = "cpu",
    overrides: list[str] | None = None,
    console: Any = None,
    progress: bool = True,
) -> DemoResult:
    """Check, collect (or reuse / resume), train MACAW, evaluate; returns the final table and the run folder."""
    from omrl_algos.train import RunResult, resolve_config, train
    from omrl_data.collection import CollectionInterrupted
    from omrl_studies.datasets import ensure_dataset

    t0 = time.time()
    config, settings, run_dir = prepare(root, out, steps, device, overrides)
    rerun = demo_command(root, out, steps, device, overrides)
    try:
        choice = embedded_dataset(root, console) or ensure_dataset(config, root, console=console, progress=progress)
    except (CollectionInterrupted, KeyboardInterrupt):
        # The same command finds the unfinished collection (same recipe) and resumes it.
        raise DemoInterrupted(rerun, "the demo's collection") from None
    cfg = resolve_config(DEMO_ALGORITHM, [f"dataset={choice.dataset_id}", *settings])
    if console is not None:
        console.print(f"training MACAW for {cfg.train.steps} meta-steps on {choice.dataset_id} -> {run_dir}")
    try:
        result: RunResult = train(cfg, progress=progress, console=console)
    except KeyboardInterrupt:
        if (run_dir / "checkpoints" / "latest.pt").exists():
            cmd = shlex.join(["omrl-train", DEMO_ALGORITHM, "--out", str(run_dir), "--resume"])
        else:  # nothing saved yet: the demo again (it reuses the dataset) in a fresh folder
            cmd = demo_command(root, None, steps, device, overrides)
        raise DemoInterrupted(cmd, "the demo's training") from None
    return DemoResult(choice.dataset_id, choice.action, result.run_dir, result.eval or {}, cfg.eval.episodes, time.time() - t0, cfg.eval.adapt_draws)


def _fresh_run_dir(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ... when an earlier demo run is there."""
    if not base.exists():
        return base
    k = 2
    while Path(f"{base}-{k}").exists():
        k += 1
    return Path(f"{base}-{k}")
