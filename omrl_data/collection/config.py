"""The configuration of one collection run, saved in the dataset's metadata."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MODES = ("shared", "per-task", "random")
BACKENDS = ("local", "ray")


def family_gamma(family: str) -> float | None:
    """The family's ``default_gamma`` (0.99; the bandit 0.01), or None for a name that is not a
    family (validation then names the accepted families)."""
    from omrl_data.errors import BadInput
    from omrl_data.tasks import get_family

    try:
        return float(get_family(family).default_gamma)
    except BadInput:
        return None


@dataclass
class SacConfig:
    """Stable-Baselines3 SAC settings used by the `shared` and `per-task` modes."""

    net_arch: tuple[int, ...] = (256, 256)  # hidden sizes of actor and both critics
    learning_rate: float = 3e-4  # Adam lr of actor, critics and entropy coefficient
    batch_size: int = 256  # transitions per gradient step
    buffer_size: int = 1_000_000  # learner replay capacity (the stored stream is kept separately)
    learning_starts: int = 1000  # env steps per task of uniform random actions before learning
    tau: float = 0.005  # target-network Polyak rate
    ent_coef: str | float = "auto"  # "auto" tunes it; a float fixes it (CORRO used 0.2)
    updates_per_step: float = 1.0  # gradient steps per vector env step (shared: one step serves N transitions)


@dataclass
class CollectConfig:
    """One `omrl-data collect` run. Every field is recorded in the dataset metadata."""

    family: str  # task family name, e.g. "ant_dir"
    tasks: int  # number of tasks to sample
    seed: int = 0  # seed of task sampling, SAC learners and environments
    grid: bool = False  # use the papers' fixed task grid instead of random sampling
    split: str = "random"  # train/test split kind: random | interpolation | extrapolation
    split_args: dict[str, Any] = field(default_factory=dict)  # extra split arguments (e.g. test_tasks)
    name: str | None = None  # dataset name; default: "replay" for SAC modes, "random" for random
    steps_per_task: int | None = None  # env steps of the learner per task; None = the family's default
    mode: str = "shared"  # shared | per-task | random
    checkpoint_every: int = 0  # save the policy every C env steps per task (0 = never)
    checkpoint_rollouts: int = 0  # stochastic episodes rolled out from each checkpoint
    gamma: float | None = None  # discount of the stored Monte Carlo returns; None = the family's default_gamma
    workers: int = 1  # parallel processes (tasks in per-task mode, task shards in shared mode)
    backend: str = "local"  # local processes or ray tasks
    ray_address: str | None = None  # existing Ray cluster; None starts a local Ray runtime
    device: str = "cpu"  # torch device of the SAC learners
    sac: SacConfig = field(default_factory=SacConfig)  # learner hyperparameters

    def __post_init__(self) -> None:
        if self.gamma is None:
            self.gamma = family_gamma(self.family)

    def dataset_name(self) -> str:
        return self.name or ("random" if self.mode == "random" else "replay")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sac"]["net_arch"] = list(self.sac.net_arch)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CollectConfig":
        d = dict(d)
        sac = dict(d.pop("sac", {}))
        if "net_arch" in sac:
            sac["net_arch"] = tuple(sac["net_arch"])
        return cls(**d, sac=SacConfig(**sac))
