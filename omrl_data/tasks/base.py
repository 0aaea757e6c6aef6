"""The task-family interface every family implements.

A family is a distribution over MDPs that share spaces and horizon, with named task parameters.
Contract used by collection, catalog, sampler and evaluation (keep these signatures):

- ``family.sample_tasks(n, seed, grid=False, split="random", **split_args) -> TaskTable``
- ``family.features(params) -> np.ndarray [F]`` (normalised; Euclidean distance = dissimilarity)
- ``family.make_env(params, **kwargs) -> gymnasium.Env`` (time limit = ``family.horizon``,
  truncation on the limit); ``env.unwrapped.set_task(params)`` switches task in place.
- ``family.obs_dim``, ``family.act_dim``, ``family.env_id``, ``family.param_names``,
  ``family.horizon``, ``family.papers``, ``family.default_gamma`` (the discount a collection
  stores Monte Carlo returns with unless ``--gamma`` says otherwise).

Splits that need an order of the tasks (``interpolation``, ``extrapolation``) use
``family.order_key(params)``, a scalar named by ``family.order_name``; ``extrapolation`` trains
on ``family.default_train_range`` of that key unless told otherwise.
"""
from __future__ import annotations

import abc
import math
from typing import Any, Sequence

import numpy as np

from omrl_data.errors import BadInput
from omrl_data.tasks.table import TaskTable


class TaskFamily(abc.ABC):
    name: str  # registry name, e.g. "ant_dir"
    env_id: str  # Gymnasium id, e.g. "omrl/AntDir-v0"
    param_names: tuple[str, ...]  # names of the task parameters
    horizon: int  # episode length (time-limit truncation)
    papers: tuple[str, ...]  # the source papers that use this family
    obs_dim: int
    act_dim: int
    max_tasks: int | None = None  # cheetah_dir has exactly 2
    default_tasks: int = 10  # how many tasks a default collection uses
    test_equals_train: bool = False  # random split evaluates on the training tasks (cheetah_dir)
    order_name: str = ""  # what order_key measures, e.g. "target_velocity"
    default_train_range: tuple[float, float] | None = None  # extrapolation: train on keys in [lo, hi)
    description: str = ""  # one line for `omrl-data families`
    default_gamma: float = 0.99  # discount of the stored Monte Carlo returns unless --gamma is given

    @abc.abstractmethod
    def sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        """``n`` task parameter dicts drawn from the family's task distribution."""

    def grid_params(self, n: int) -> list[dict[str, Any]] | None:
        """The fixed grid of ``n`` tasks the papers used, or None if the family has none."""
        return None

    @abc.abstractmethod
    def features(self, params: dict[str, Any]) -> np.ndarray:
        """Normalised similarity features ``[F]`` of one task."""

    @abc.abstractmethod
    def order_key(self, params: dict[str, Any]) -> float:
        """A scalar that orders tasks for the interpolation and extrapolation splits."""

    @abc.abstractmethod
    def default_params(self) -> dict[str, Any]:
        """The task an env is built with when no task is given."""

    def sample_tasks(
        self, n: int, seed: int = 0, grid: bool = False, split: str = "random", **split_args: Any
    ) -> TaskTable:
        """A reproducible task table of ``n`` tasks with a train/test split.

        The same ``(n, seed, grid, split, split_args)`` always gives the same table. Parameters
        come from ``np.random.default_rng(seed)``; the random split draws from its own stream, so
        changing the split never changes the tasks.
        """
        from omrl_data.tasks.splits import make_split

        n = check_count(n, self.name, self.max_tasks)
        seed = check_seed(seed)
        if grid:
            raw = self.grid_params(n)
            if raw is None:
                raise BadInput(f"{self.name} has no fixed task grid; sample tasks without --grid")
        else:
            raw = self.sample_params(n, np.random.default_rng(int(seed)))
        params = [self.validate_params(p) for p in raw]
        feats = np.stack([self.features(p) for p in params]).astype(np.float32)
        labels, args = make_split(self, params, split, seed=int(seed), **split_args)
        return TaskTable(self.name, tuple(params), feats, tuple(labels), split, args)

    @abc.abstractmethod
    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Checked, normalised copy of ``params``; raises BadInput naming what is accepted."""

    def make_env(self, params: dict[str, Any] | None = None, **kwargs: Any):
        """A Gymnasium env of task ``params`` (the family's default task when None)."""
        import gymnasium

        import omrl_data.tasks  # noqa: F401  (registers the env ids)

        task = self.default_params() if params is None else self.validate_params(params)
        return gymnasium.make(self.env_id, task=task, **kwargs)

    def summary(self) -> dict[str, Any]:
        """What `omrl-data families` prints: one JSON-able row."""
        return {
            "name": self.name,
            "env_id": self.env_id,
            "params": list(self.param_names),
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "horizon": self.horizon,
            "max_tasks": self.max_tasks,
            "grid": self.grid_params(2) is not None,
            "papers": list(self.papers),
            "default_gamma": self.default_gamma,
            "description": self.description,
        }


# ---- parameter checking shared by the families -------------------------------------------------


MAX_TASKS = 100_000  # a task table larger than this is a typo, not a plan (and would not fit in memory)


def check_count(n: Any, family: str, max_tasks: int | None = None) -> int:
    """``n`` as a positive int (at most ``max_tasks``, and at most MAX_TASKS), else BadInput."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise BadInput(f"number of tasks must be a positive integer, got {n!r}")
    if max_tasks is not None and n > max_tasks:
        raise BadInput(f"{family} has exactly {max_tasks} tasks; asked for {n} (accepted: 1..{max_tasks})")
    if n > MAX_TASKS:
        raise BadInput(f"{n} tasks is more than omrl handles ({MAX_TASKS:,} at most); ask for fewer tasks")
    return int(n)


def check_seed(seed: Any, what: str = "seed") -> int:
    """``seed`` as an int in 0..2**63-1 (what numpy, torch and Gymnasium all accept), else BadInput."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise BadInput(f"{what} must be an integer from 0 to 2**63-1, got {seed!r}")
    return int(seed)


def check_keys(params: Any, family: str, names: Sequence[str]) -> dict[str, Any]:
    """``params`` must be a dict with exactly the keys ``names``."""
    accepted = ", ".join(names)
    if not isinstance(params, dict):
        raise BadInput(f"{family} task parameters must be a dict with keys {accepted}; got {type(params).__name__}")
    missing = [k for k in names if k not in params]
    extra = [k for k in params if k not in names]
    if missing or extra:
        what = "; ".join(
            s for s in (f"missing {', '.join(missing)}" if missing else "", f"unknown {', '.join(map(str, extra))}" if extra else "") if s
        )
        raise BadInput(f"bad {family} task parameters ({what}); accepted keys: {accepted}")
    return params


def check_float(value: Any, family: str, name: str, low: float, high: float, high_open: bool = False) -> float:
    """A finite float in ``[low, high]`` (or ``[low, high)``)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    ok = math.isfinite(x) and low <= x and (x < high if high_open else x <= high)
    if isinstance(value, bool) or not ok:
        bracket = ")" if high_open else "]"
        raise BadInput(f"{family} parameter {name} must be a number in [{low:g}, {high:g}{bracket}, got {value!r}")
    return x


def check_array(value: Any, family: str, name: str, shape: tuple[int, ...], low: float, high: float) -> list:
    """A float array of ``shape`` with entries in ``[low, high]``, returned as nested lists."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.shape != shape or not np.all(np.isfinite(a)) or np.any(a < low) or np.any(a > high):
        raise BadInput(
            f"{family} parameter {name} must be an array of shape {list(shape)} with entries in [{low:g}, {high:g}]"
        )
    return a.tolist()


class GoalAngleFeatures:
    """Mixin of the families parameterised by one ``goal_angle`` (ant_dir, point_robot_sparse):
    features (cos, sin), so Euclidean distance follows the angle around the circle; ordered by angle."""

    def features(self, params: dict[str, Any]) -> np.ndarray:
        a = params["goal_angle"]
        return np.array([np.cos(a), np.sin(a)], dtype=np.float32)

    def order_key(self, params: dict[str, Any]) -> float:
        return float(params["goal_angle"])

