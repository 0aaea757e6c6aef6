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
    chunk_seconds: float = 120.0  # SAC learners commit their progress this often (a kill loses at most this much)
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


# ------------------------------------------------------------------------ command-line settings
def _scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.25"`` -> 0.25, ``"0,1"`` -> [0, 1], ``"auto"`` -> "auto"."""
    text = text.strip()
    if "," in text:
        return [_scalar(x.strip()) for x in text.split(",") if x.strip() != ""]
    return _scalar(text)


def _pairs(items: list[str], flag: str, example: str) -> list[tuple[str, str]]:
    from omrl_data.errors import BadInput

    out = []
    for item in items:
        key, sep, raw = str(item).partition("=")
        if not sep or not key.strip():
            raise BadInput(f"{flag} {item!r} must look like key=value, e.g. {flag} {example}")
        out.append((key.strip(), raw))
    return out


def split_args_from_settings(items: list[str]) -> dict[str, Any]:
    """``--split-arg every=3 --split-arg train_range=0,1`` -> ``{"every": 3, "train_range": [0, 1]}``
    (the split itself checks which arguments it accepts)."""
    out: dict[str, Any] = {}
    for key, raw in _pairs(items, "--split-arg", "every=3"):
        value = _value(raw)
        if key == "test_tasks" and not isinstance(value, list):
            value = [value]
        out[key] = value
    return out


def sac_from_settings(items: list[str]) -> SacConfig:
    """``--sac net_arch=128,128 --sac learning_starts=500`` -> a :class:`SacConfig` (BadInput for
    an unknown field or a value of the wrong type)."""
    from omrl_data.errors import BadInput

    fields = SacConfig.__dataclass_fields__
    values: dict[str, Any] = {}
    for key, raw in _pairs(items, "--sac", "net_arch=128,128"):
        if key not in fields:
            raise BadInput(f"unknown SAC setting {key!r} in --sac; settings are {', '.join(fields)}")
        value = _value(raw)
        default = getattr(SacConfig(), key)
        try:
            if key == "net_arch":
                items_ = value if isinstance(value, list) else [value]
                if not items_ or not all(isinstance(v, int) and v > 0 for v in items_):
                    raise ValueError
                value = tuple(items_)
            elif key == "ent_coef":
                if not (value == "auto" or (isinstance(value, (int, float)) and value > 0)):
                    raise ValueError
                value = value if value == "auto" else float(value)
            elif isinstance(default, int):
                if not isinstance(value, int):
                    raise ValueError
            elif isinstance(default, float):
                if not isinstance(value, (int, float)):
                    raise ValueError
                value = float(value)
        except ValueError:
            accepted = {"net_arch": "hidden sizes such as 256,256", "ent_coef": "auto or a positive number"}.get(
                key, f"a{'n integer' if isinstance(default, int) else ' number'}")
            raise BadInput(f"--sac {key}={raw!r}: expected {accepted}") from None
        values[key] = value
    return SacConfig(**values)


def sac_settings(sac: SacConfig) -> list[str]:
    """The ``--sac key=value`` settings that give ``sac`` (fields that differ from the defaults)."""
    out = []
    default = SacConfig()
    for key in SacConfig.__dataclass_fields__:
        value, base = getattr(sac, key), getattr(default, key)
        if key == "net_arch":
            value, base = tuple(value), tuple(base)
        if value != base:
            out.append(f"{key}={','.join(str(v) for v in value) if isinstance(value, (list, tuple)) else value}")
    return out


def split_arg_settings(split_args: dict[str, Any]) -> list[str]:
    """The ``--split-arg key=value`` settings that give ``split_args`` (test_tasks has --test-tasks)."""
    out = []
    for key, value in split_args.items():
        if key == "test_tasks" or value is None:
            continue
        out.append(f"{key}={','.join(str(v) for v in value) if isinstance(value, (list, tuple)) else value}")
    return out
