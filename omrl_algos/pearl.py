"""Offline PEARL (Rakelly et al. 2019, run on fixed data as MACAW's baseline, paper 001 section 6).

- Context encoder: probabilistic; each transition ``[s, a, r, s']`` gives a Gaussian factor
  ``N(mu_n, sigma_n^2)`` (variance through a softplus), the posterior over z their product
  (:func:`omrl_algos.context_losses.product_of_gaussians`).
- Encoder loss: ``kl_weight * KL(q(z | c) || N(0, I))`` plus the critic's TD loss through a
  reparameterised sample of z (PEARL trains the encoder with the critic; the actor sees z
  detached).
- Policy: SAC on ``[s, z]`` (no offline regulariser, as the MACAW paper ran it; ``beta > 0``
  adds BRAC's as a setting).
- Test time: offline context by default (MACAW's protocol: 256 transitions of the test task's
  offline data, ``eval.adapt_batch``); the agent acts on the posterior mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from omrl_algos.context_baseline import ContextBaseline, ContextBaselineConfig
from omrl_algos.context_losses import kl_to_unit_prior
from omrl_data.batch import TaskBatch


@dataclass
class PearlConfig(ContextBaselineConfig):
    """Offline PEARL's settings (the shared ones in ContextBaselineConfig)."""

    latent_dim: int = 5  # size of the task latent z (PEARL: 5)
    context_size: int = 100  # transitions in one context set (PEARL's embedding batch: 100)
    kl_weight: float = 0.1  # weight of KL(q(z|c) || N(0, I)) (PEARL's kl_lambda: 0.1)


class Pearl(ContextBaseline):
    name = "pearl"
    Config: ClassVar[type] = PearlConfig
    default_eval_mode = "offline"
    probabilistic = True
    critic_trains_encoder = True

    def representation_loss(self, x: torch.Tensor, context: TaskBatch) -> dict[str, dict[str, torch.Tensor]]:
        mean, var = self.posterior(x[:, : self.config.context_size])
        kl = kl_to_unit_prior(mean, var).mean()
        return {"encoder": {"loss": self.config.kl_weight * kl, "kl": kl.detach(), "posterior_var": var.mean().detach()}}
