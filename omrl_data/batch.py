"""The one batch type that flows from the sampler to every algorithm."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass(frozen=True)
class TaskBatch:
    """Transitions of T tasks, B per task. Leading dimensions are always ``[T, B]``.

    observations: ``[T, B, obs_dim]`` float32
    actions: ``[T, B, act_dim]`` float32
    rewards: ``[T, B]`` float32
    next_observations: ``[T, B, obs_dim]`` float32
    terminated: ``[T, B]`` bool
    truncated: ``[T, B]`` bool
    mc_returns: ``[T, B]`` float32, Monte Carlo return-to-go inside the episode
    task_index: ``[T]`` int64, row of each task in the dataset's task table
    task_features: ``[T, F]`` float32, normalised task features
    mask: ``[T, B]`` bool, True for real rows (all True except padded context episodes)
    row_task_index: ``[T, B]`` int64 or None; the task each row came from, where it is not
        ``task_index`` (negatives: row ``[i, b]`` is from another task than anchor ``i``)
    mc_bootstrap_discount: ``[T, B]`` float32 or None (samplers built with ``bootstrap=True``):
        gamma^(T-t) where the row's episode was truncated at T, else 0
    bootstrap_observations: ``[T, B, obs_dim]`` float32 or None (``bootstrap=True``): s_T, the
        final next observation of the row's episode; target ``mc_returns + discount * V(s_T)``
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    mc_returns: torch.Tensor
    task_index: torch.Tensor
    task_features: torch.Tensor
    mask: torch.Tensor
    row_task_index: torch.Tensor | None = None
    mc_bootstrap_discount: torch.Tensor | None = None
    bootstrap_observations: torch.Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return int(self.observations.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.observations.shape[1])

    def to(self, device: str | torch.device) -> "TaskBatch":
        return replace(self, **{f.name: _apply(getattr(self, f.name), lambda x: x.to(device)) for f in fields(self)})

    def task(self, t: int) -> "TaskBatch":
        """Task ``t`` alone, keeping the leading task dimension (``[1, B, ...]``)."""
        return replace(self, **{f.name: _apply(getattr(self, f.name), lambda x: x[t : t + 1]) for f in fields(self)})


def _apply(value: torch.Tensor | None, fn) -> torch.Tensor | None:
    # Optional fields stay None.
    return None if value is None else fn(value)
