"""CORRO: contrastive robust task representation for offline meta-RL (Yuan and Lu, ICML 2022;
reference.md section 6).

- Context encoder: deterministic, one encoding per single transition ``[s, a, r, s']``; the task
  latent is the mean over the context's transitions.
- Representation loss (the encoder is trained by it alone): InfoNCE with temperature 0.1 and 16
  negatives per positive (:func:`omrl_algos.context_losses.corro_info_nce`). The anchor is a
  transition of task i, the positive another transition of task i, the negatives copies of the
  anchor with the same ``(s, a)`` and a generated outcome: reward randomisation, the cheaper of
  the paper's two generators (``r + reward_noise * std(r) * eps``; ``state_noise > 0`` also moves
  ``s'``, for dynamics-changing families), so the encoder cannot tell tasks apart by the
  behaviour policy's ``(s, a)``. The CVAE generator is not implemented.
- Policy: the offline actor-critic on ``[s, z]`` with z detached; SAC by default (paper 004 ran
  every baseline without an offline regulariser), ``beta > 0`` adds BRAC's.
- Test time: offline context by default (CORRO's test contexts are transitions of the test
  task's offline data); the other protocols are selectable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from omrl_algos.context import SIMILARITIES
from omrl_algos.context_baseline import ContextBaseline, ContextBaselineConfig
from omrl_algos.context_losses import corro_info_nce, reward_noise_negatives
from omrl_data.batch import TaskBatch
from omrl_data.errors import BadInput


@dataclass
class CorroConfig(ContextBaselineConfig):
    """CORRO's settings (the shared ones in ContextBaselineConfig)."""

    n_negatives: int = 16  # generated negatives per anchor (CORRO: 16)
    anchors: int = 32  # anchor transitions per task and meta-step (each with one positive and n_negatives negatives)
    contra_temperature: float = 0.1  # InfoNCE temperature (CORRO: 0.1)
    contra_similarity: str = "cosine"  # s(x, y): cosine | centred_cosine | dot
    contra_weight: float = 1.0  # weight of the InfoNCE loss
    reward_noise: float = 1.0  # std of the negatives' reward noise, in units of the std of the batch's rewards
    state_noise: float = 0.0  # std of the negatives' next-state noise, in units of the batch's next-state std per dimension; 0 = rewards only


class Corro(ContextBaseline):
    name = "corro"
    Config: ClassVar[type] = CorroConfig
    default_eval_mode = "offline"

    def check_config(self) -> None:
        super().check_config()
        c = self.config
        if c.contra_similarity not in SIMILARITIES:
            raise BadInput(f"algo.contra_similarity={c.contra_similarity!r} is not one of {', '.join(SIMILARITIES)}")
        for key in ("n_negatives", "anchors"):
            if getattr(c, key) < 1:
                raise BadInput(f"algo.{key}={getattr(c, key)} must be at least 1")
        if c.anchors > c.context_size:
            raise BadInput(f"algo.anchors={c.anchors} must be at most algo.context_size={c.context_size}")
        if c.reward_noise < 0 or c.state_noise < 0 or c.reward_noise + c.state_noise == 0:
            raise BadInput("algo.reward_noise and algo.state_noise must be >= 0 and not both 0 (the negatives would equal the anchor)")

    def representation_loss(self, x: torch.Tensor, context: TaskBatch) -> dict[str, dict[str, torch.Tensor]]:
        c = self.config
        k = c.anchors
        anchor_rows = x[:, :k].flatten(0, 1)  # [T*k, D] from the first set
        positive_rows = x[:, c.context_size : c.context_size + k].flatten(0, 1)  # other transitions of the same task
        r = self.obs_dim + self.act_dim
        reward_std = float(x[..., r].std()) or 1.0
        state_std = (x[..., r + 1 :].flatten(0, -2).std(0) * c.state_noise) if c.state_noise > 0 else None
        noise = torch.randn(len(anchor_rows), c.n_negatives, device=x.device)
        state_noise = None
        if state_std is not None:
            state_noise = torch.randn(len(anchor_rows), c.n_negatives, self.obs_dim, device=x.device) * state_std
        negatives = reward_noise_negatives(anchor_rows, self.obs_dim, self.act_dim, noise, c.reward_noise * reward_std,
                                           1.0 if state_noise is not None else 0.0, state_noise)
        terms = corro_info_nce(self.encoder(anchor_rows), self.encoder(positive_rows), self.encoder(negatives), c.contra_temperature, c.contra_similarity)
        return {"encoder": {**terms, "loss": c.contra_weight * terms["loss"], "contra_loss": terms["loss"].detach()}}
