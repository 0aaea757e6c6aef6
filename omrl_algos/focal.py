"""FOCAL: fully-offline meta-RL with distance metric learning and behaviour regularisation
(Li, Yang and Luo, ICLR 2021; reference.md section 6).

- Context encoder: deterministic, one embedding per transition ``[s, a, r, s']``, the task latent
  the mean over the context's transitions.
- Representation loss (the encoder is trained by it alone): the negative-power distance metric
  loss over every pair of context sets of the meta-batch (two sets per task):
  same task ``sqrt(mean |z_a - z_b|^2 + 1e-3)``, different tasks ``1 / (mean |z_a - z_b|^2 + 0.1)``
  (:func:`omrl_algos.context_losses.focal_metric_loss`).
- Policy: a behaviour-regularised actor-critic on ``[s, z]`` with z detached
  (:class:`omrl_algos.offline_ac.OfflineActorCritic`, BRAC with policy and value penalty).
- Test time: offline context (FOCAL's fully offline protocol): the agent's context is
  transitions of the test task's offline data; ``eval.mode=online_context`` or ``zero_shot`` are
  selectable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from omrl_algos.context_baseline import ContextBaseline, ContextBaselineConfig
from omrl_algos.context_losses import focal_metric_loss
from omrl_data.batch import TaskBatch


@dataclass
class FocalConfig(ContextBaselineConfig):
    """FOCAL's settings (the shared ones in ContextBaselineConfig)."""

    beta: float = 1.0  # weight of the behaviour-regularisation divergence (FOCAL trains with BRAC; 0 = plain SAC)
    metric_weight: float = 1.0  # weight of the distance metric loss
    metric_power: float = 1.0  # n of the negative-power branch 1 / (D^n + 0.1) (FOCAL: 1)


class Focal(ContextBaseline):
    name = "focal"
    Config: ClassVar[type] = FocalConfig
    default_eval_mode = "offline"

    def set_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """``[2T, d]``: the mean embedding of each of the two context sets of every task."""
        c = self.config
        t = x.shape[0]
        return self.task_latent(x.view(t, 2, c.context_size, -1)).flatten(0, 1)

    def representation_loss(self, x: torch.Tensor, context: TaskBatch) -> dict[str, dict[str, torch.Tensor]]:
        z = self.set_embeddings(x)
        tasks = context.task_index.to(z.device).repeat_interleave(2)
        terms = focal_metric_loss(z, tasks, self.config.metric_power)
        return {"encoder": {**terms, "loss": self.config.metric_weight * terms["loss"], "metric_loss": terms["loss"].detach()}}
