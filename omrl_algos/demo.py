"""The main job (``omrl-train demo``, ``make demo``): the whole story in about ten minutes.

1. Collect a small cheetah_vel dataset (task-conditioned shared SAC over the MACAW velocity grid,
   every ``every``-th task held out, so each test velocity lies inside the training range), or
   reuse it when a dataset with the same collection settings is already in the catalog.
2. Train MACAW on the training tasks (a smaller network and batch than the paper so that it fits
   the budget on a 2-core CPU; everything else as in the paper), evaluating on the held-out
   tasks as it goes.
3. Report, per held-out task: the return before adaptation, after adaptation on 256 offline
   transitions of that task, and of a uniform random policy; save the learning curve.

Nothing is downloaded. The budget below was measured on the 2-core development machine (see
README.md, "The main job").
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omrl_algos.train import RunResult, resolve_config, train

DEMO_NAME = "demo"  # dataset name: omrl/cheetah_vel/demo-vN


def demo_collect_config() -> Any:
    """The collection of the main job."""
    from omrl_data.collection import CollectConfig, SacConfig

    return CollectConfig(
        family="cheetah_vel",
        tasks=6,  # MACAW grid linspace(0.075, 3.0, 6)
        grid=True,
        split="interpolation",
        split_args={"every": 3},  # held out: grid positions 1, 4 (inside the training range)
        name=DEMO_NAME,
        mode="shared",  # one task-conditioned SAC per worker over a vector of its task envs
        steps_per_task=20_000,
        seed=0,
        workers=2,
        sac=SacConfig(net_arch=(128, 128), learning_starts=1000),
    )


# MACAW settings of the main job (everything not named here is the paper default).
DEMO_TRAINING = [
    "train.steps=300",
    "train.eval_every=100",
    "train.checkpoint_every=0",
    "train.log_every=10",
    "eval.episodes=1",
    "algo.width=64",
    "algo.latent_dim=16",
    "algo.support_size=128",
    "algo.query_size=128",
    "algo.meta_batch=4",
    "algo.reward_scale=0.01",  # returns of about -200 become about -2, so one inner value step is sane
    "algo.inner_lr_init=0.01",  # the paper's 1e-3 barely adapts within a few hundred meta-steps
    "algo.lr_lr=0.01",
    "algo.value_lr=1e-3",  # the paper's 1e-5 / 1e-4 are for ~1e5 meta-steps
    "algo.policy_lr=1e-3",
]


@dataclass
class DemoResult:
    dataset_id: str  # the dataset trained on
    run_dir: Path  # the run folder
    eval: dict[str, Any]  # the final evaluation (Evaluator.evaluate)
    episodes: int  # deterministic episodes per task and policy
    seconds: float  # wall time of the whole job


def find_or_collect(root: str | None, console: Any = None, progress: bool = True) -> str:
    """The demo dataset's id: the newest version collected with the same settings, else a new one."""
    from omrl_data.collection import collect
    from omrl_data.store import catalog

    config = demo_collect_config()
    wanted = _comparable(config.to_dict())
    for version in reversed(catalog.versions(config.family, DEMO_NAME, root)):
        folder = catalog.resolve(f"omrl/{config.family}/{DEMO_NAME}-v{version}", root)
        meta = catalog.read_metadata(folder, missing_ok=True) or {}
        if _comparable(meta.get("collection", {})) == wanted:
            if console is not None:
                console.print(f"reusing dataset [bold]{catalog.dataset_id_of(folder)}[/] (same collection settings)")
            return catalog.dataset_id_of(folder)
    if console is not None:
        console.print("collecting the demo dataset (cheetah_vel, shared SAC); later runs reuse it")
    return collect(config, root=root, progress=progress, console=console)


def _comparable(d: dict[str, Any]) -> dict[str, Any]:
    # Execution settings (workers, backend, device) do not change what is collected.
    return {k: v for k, v in d.items() if k not in ("workers", "backend", "ray_address", "device")}


def run_demo(
    root: str | None = None,
    out: str | None = None,
    steps: int | None = None,
    device: str = "cpu",
    overrides: list[str] | None = None,
    console: Any = None,
    progress: bool = True,
) -> DemoResult:
    """Collect (or reuse), train MACAW, evaluate; returns the final per-task table and the run folder."""
    t0 = time.time()
    dataset_id = find_or_collect(root, console, progress)
    run_dir = Path(out) if out else _fresh_run_dir(Path("runs") / "demo-macaw-cheetah_vel")
    settings = [f"dataset={dataset_id}", f"out={run_dir}", f"train.device={device}", *DEMO_TRAINING]
    if root is not None:
        settings.append(f"root={root}")
    if steps is not None:
        settings.append(f"train.steps={steps}")
    cfg = resolve_config("macaw", settings + list(overrides or []))
    if console is not None:
        console.print(f"training MACAW for {cfg.train.steps} meta-steps on {dataset_id} -> {run_dir}")
    result: RunResult = train(cfg, progress=progress, console=console)
    return DemoResult(dataset_id, result.run_dir, result.eval or {}, cfg.eval.episodes, time.time() - t0)


def _fresh_run_dir(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ... when an earlier demo run is there."""
    if not base.exists():
        return base
    k = 2
    while Path(f"{base}-{k}").exists():
        k += 1
    return Path(f"{base}-{k}")
