"""The task-family interface every family implements.

A family is a distribution over MDPs that share spaces and horizon, with named task parameters.
Contract used by collection, catalog, sampler and evaluation (keep these signatures):

- ``family.sample_tasks(n, seed, grid=False, split="random", **split_args) -> TaskTable``
- ``family.features(params) -> np.ndarray [F]`` (normalised; Euclidean distance = dissimilarity)
- ``family.make_env(params, **kwargs) -> gymnasium.Env`` (time limit = ``family.horizon``,
  truncation on the limit); ``env.unwrapped.set_task(params)`` switches task in place.
- ``family.obs_dim``, ``family.act_dim``, ``family.env_id``, ``family.param_names``,
  ``family.horizon``, ``family.papers``.
"""
from __future__ import annotations

import abc
from typing import Any

import numpy as np

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
    def sample_tasks(
        self, n: int, seed: int = 0, grid: bool = False, split: str = "random", **split_args: Any
    ) -> TaskTable:
        """A reproducible task table of ``n`` tasks with a train/test split."""

    @abc.abstractmethod
    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Checked, normalised copy of ``params``; raises BadInput naming what is accepted."""

    def make_env(self, params: dict[str, Any], **kwargs: Any):
        import gymnasium

        import omrl_data.tasks  # noqa: F401  (registers the env ids)

        return gymnasium.make(self.env_id, task=self.validate_params(params), **kwargs)
