"""Run configuration: dataclasses with a comment per field, files, and ``--set key=value``.

A run is described by :class:`RunConfig`: which algorithm on which dataset, the shared training
and evaluation settings, and the algorithm's own dataclass config under ``algo``. The resolved
config is saved as ``config.yaml`` (and ``config.json``) in the run folder, and a run folder's
config file can be given back with ``--config`` to repeat it. Overrides use dotted keys:
``train.steps=500``, ``eval.episodes=3``, ``algo.width=64``, ``dataset=omrl/bandit/random``.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from omrl_data.errors import BadInput


@dataclass
class TrainConfig:
    """The shared training loop (``omrl_algos.train``)."""

    steps: int = 10_000  # meta-steps (outer updates) in total
    eval_every: int = 250  # meta-steps between evaluations (reference: 250); 0 = only at the end
    checkpoint_every: int = 1000  # meta-steps between kept periodic checkpoints; 0 = none (latest is always kept)
    log_every: int = 10  # meta-steps between training-metric rows
    seed: int = 0  # seed of network init, the task-batch sampler and evaluation
    device: str = "cpu"  # torch device of networks and batches: cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads; 0 = auto: the cores not busy (load average), at most 4
    stop_on_nan: bool = True  # stop with one line when a training metric becomes NaN/inf; false = keep going
    lr_decay: str = "none"  # outer-lr schedule over `steps`, every group of the algorithm's optimizer: none | cosine | linear
    lr_final: float = 0.1  # lr at the last meta-step as a fraction of the configured one (cosine / linear)


@dataclass
class EvalConfig:
    """Evaluation on the held-out tasks (``omrl_algos.evaluation``), shared by all algorithms."""

    adapt_batch: int = 256  # transitions of the test task's offline data used to adapt (paper 001, Alg. 2)
    episodes: int = 1  # deterministic rollouts per test task and policy (reference: 1)
    adapt_draws: int = 1  # offline mode: independent adaptation batches per test task, each adapted on and rolled out `episodes` times; "after" is the mean over all (more draws: less noise from which rows the batch holds)
    random_policy: bool = True  # also report a uniform random policy per task
    max_tasks: int = 0  # evaluate only the first N test tasks; 0 = all
    online_steps: tuple[int, ...] = ()  # online fine-tuning checkpoints in env steps, e.g. (0, 500, 1000); empty = off
    online_value_updates: int = 100  # value Adam updates per online round (reference: 100)
    online_policy_updates: int = 200  # policy Adam updates per online round (reference: 200)
    online_lr: float = 1e-5  # Adam lr of online fine-tuning (reference: 1e-5)
    online_batch: int = 256  # transitions per online update
    online_burn_in: int = 0  # rounds collected before the first update (reference: 25; 0 suits a 0/500/1k table)
    mode: str = "auto"  # protocol: offline (adapt on the test task's offline data) | online_context (explore, then evaluate with the collected context) | zero_shot (the agent reads the trial's history from its first step) | auto = the algorithm's default (offline; r2pgo: zero_shot)
    explore_episodes: int = 1  # online_context: exploration episodes collected before the evaluation episodes
    trial_episodes: int = 5  # zero_shot: episodes per trial, reported one by one (paper 004 Table 1: episodes 1..5)


@dataclass
class RunConfig:
    """One training run: ``omrl-train <algorithm> --dataset ID``."""

    algorithm: str = "macaw"  # registered algorithm name (omrl_algos.registry)
    dataset: str = ""  # dataset id or path (omrl-data list shows them)
    root: str | None = None  # dataset root; None = $OMRL_HOME or ~/.omrl
    out: str | None = None  # run folder; None = runs/<algorithm>-<dataset name>-s<seed>
    train: TrainConfig = field(default_factory=TrainConfig)  # the training loop
    eval: EvalConfig = field(default_factory=EvalConfig)  # evaluation
    algo: Any = None  # the algorithm's own dataclass config (e.g. MacawConfig)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["eval"]["online_steps"] = list(self.eval.online_steps)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Defaults of the named algorithm, updated by ``d`` (unknown keys are an error)."""
        from omrl_algos.registry import get_algorithm

        d = dict(d)
        cfg = cls(algorithm=str(d.get("algorithm", "macaw")))
        cfg.algo = get_algorithm(cfg.algorithm).Config()
        _update(cfg, d, "")
        return cfg

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        d = self.to_dict()
        (folder / "config.json").write_text(json.dumps(d, indent=2) + "\n")
        (folder / "config.yaml").write_text(yaml.safe_dump(d, sort_keys=False))


def default_config(algorithm: str) -> RunConfig:
    """The defaults of ``algorithm`` (BadInput naming the registered ones if unknown)."""
    return RunConfig.from_dict({"algorithm": algorithm})


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A config file (YAML or JSON, possibly partial) as a nested dict."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.yaml"
    if not p.is_file():
        raise BadInput(f"config file {path} does not exist; give a .yaml/.json file or a run folder")
    try:
        d = yaml.safe_load(p.read_text())  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        raise BadInput(f"config file {p} is not valid YAML/JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(d, dict):
        raise BadInput(f"config file {p} must hold a mapping of settings, got {type(d).__name__}")
    return d


def apply_overrides(cfg: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """Apply ``key=value`` strings (dotted keys, YAML values) to ``cfg`` in place and return it."""
    for item in overrides:
        if "=" not in item:
            raise BadInput(f"--set {item!r} must look like key=value, e.g. train.steps=500 or algo.width=64")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        target = cfg
        for i, part in enumerate(parts[:-1]):
            target = getattr(target, part, None) if dataclasses.is_dataclass(target) and _has(target, part) else None
            if not dataclasses.is_dataclass(target):
                raise BadInput(f"unknown setting {key!r}; settings are {', '.join(all_keys(cfg))}")
        _set(target, parts[-1], value, key, cfg)
    return cfg


def all_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted setting name of a config."""
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out += all_keys(value, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


# --------------------------------------------------------------------------------------- helpers
def _has(obj: Any, name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(obj)}


def _update(obj: Any, d: dict[str, Any], prefix: str) -> None:
    for key, value in d.items():
        if not _has(obj, key):
            raise BadInput(f"unknown setting {prefix + key!r}; settings are {', '.join(all_keys(obj, prefix))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise BadInput(f"setting {prefix + key!r} is a group; give a mapping of its fields")
            _update(current, value, f"{prefix}{key}.")
        else:
            _set(obj, key, value, prefix + key, obj)


def _set(obj: Any, name: str, value: Any, key: str, root: Any) -> None:
    if not _has(obj, name) or dataclasses.is_dataclass(getattr(obj, name)):
        raise BadInput(f"unknown setting {key!r}; settings are {', '.join(all_keys(root))}")
    hint = typing.get_type_hints(type(obj))[name]
    setattr(obj, name, _coerce(value, hint, key))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` as type ``hint`` (int, float, bool, str, tuple[...], X | None), or BadInput."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except BadInput as e:
                errors.append(str(e))
        raise BadInput(errors[0] if errors else f"setting {key!r} cannot be {value!r}")
    if hint is Any:
        return value
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else ([] if value in (None, "") else [value])
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, key) for v in items)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise BadInput(f"setting {key!r} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise BadInput(f"setting {key!r} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInput(f"setting {key!r} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, (dict, list)) or value is None:
            raise BadInput(f"setting {key!r} must be a string, got {value!r}")
        return str(value)
    return value
