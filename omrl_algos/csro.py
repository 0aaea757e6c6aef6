"""CSRO: context shift reduction for offline meta-RL (Gao et al., NeurIPS 2023).

- Context encoder: FOCAL's (deterministic per-transition embeddings, mean-aggregated).
- Representation loss, max-min mutual information: FOCAL's distance metric loss (maximise the
  information z holds about the task) plus ``club_weight`` times the CLUB upper bound on the
  mutual information between a transition's embedding z and the behaviour policy's ``(s, a)``
  (minimise what z says about how the data was collected;
  :func:`omrl_algos.context_losses.club_upper_bound`). CLUB's variational ``q(z | s, a)`` (a
  Gaussian MLP) is trained by maximum likelihood on detached embeddings, its own group.
- Policy: FOCAL's behaviour-regularised actor-critic on ``[s, z]``, z detached.
- Test time: online context collection by default, with CSRO's non-prior collection: while the
  agent's context is empty it explores with uniform random actions (not with the policy on a
  prior latent, whose actions would shift the context towards the training data's behaviour),
  then with the policy on the latent of what it has collected, updated every step
  (``eval.explore_episodes`` episodes). Our reading of the paper's strategy; offline context
  and zero-shot are selectable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from omrl_algos.context_baseline import TransitionEncoder
from omrl_algos.context_losses import club_log_likelihood, club_upper_bound, focal_metric_loss
from omrl_algos.focal import Focal, FocalConfig
from omrl_data.batch import TaskBatch


@dataclass
class CsroConfig(FocalConfig):
    """CSRO's settings (FOCAL's, plus the CLUB term)."""

    club_weight: float = 1.0  # weight of the CLUB bound on I(z; s, a) in the encoder loss
    club_width: int = 128  # hidden units of CLUB's variational network q(z | s, a) (2 layers)


class Csro(Focal):
    name = "csro"
    Config: ClassVar[type] = CsroConfig
    default_eval_mode = "online_context"
    non_prior_exploration = True

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"club": TransitionEncoder(self.obs_dim + self.act_dim, 2 * self.config.latent_dim, self.config.club_width, 2)}

    def representation_loss(self, x: torch.Tensor, context: TaskBatch) -> dict[str, dict[str, torch.Tensor]]:
        c = self.config
        t = x.shape[0]
        per = self.encoder(x)  # [T, 2C, d]
        sets = per.view(t, 2, c.context_size, -1).mean(2).flatten(0, 1)  # [2T, d]
        tasks = context.task_index.to(x.device).repeat_interleave(2)
        metric = focal_metric_loss(sets, tasks, c.metric_power)
        z = per[:, : c.context_size].flatten(0, 1)  # one embedding per transition
        sa = x[:, : c.context_size, : self.obs_dim + self.act_dim].flatten(0, 1)
        mean, logvar = self.club(sa).chunk(2, dim=-1)
        logvar = logvar.clamp(-10.0, 5.0)
        bound = club_upper_bound(z, mean.detach(), logvar.detach())
        fit = club_log_likelihood(z.detach(), mean, logvar)
        loss = c.metric_weight * metric["loss"] + c.club_weight * bound["loss"]
        encoder = {"loss": loss, "metric_loss": metric["loss"].detach(), "same_distance": metric["same_distance"], "other_distance": metric["other_distance"],
                   "mi_upper_bound": bound["mi_upper_bound"]}
        return {"encoder": encoder, "club": fit}
