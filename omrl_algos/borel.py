"""BOReL: offline VariBAD (Dorfman, Shenfeld and Tamar, NeurIPS 2021), in the variant paper 004
compares against: without the oracle reward relabelling.

- Belief: VariBAD's recurrent VAE (the shared :class:`~omrl_algos.context.RecurrentEncoder` and
  :class:`~omrl_algos.context.TransitionDecoder`): a GRU over the trial's transitions gives the
  posterior ``q(m | tau_{:t})`` after every step; the decoder reconstructs the window's rewards
  and next states from posterior samples; ELBO with the KL of each posterior to the previous one
  (:func:`omrl_algos.context.elbo_terms`). No contrastive term.
- Policy: SAC on ``[s, belief]`` with the belief the posterior's mean and log-variance
  (VariBAD's policy input), concatenated to the state.
- Training in two phases as BOReL's offline pipeline: the VAE on the offline data first
  (``encoder_steps`` meta-steps), then the policy on the frozen belief.
- Test time: zero-shot (the agent's belief starts at the prior and reads the trial's history
  from its first step; episodes 1..K reported, paper 004 Table 1).

The training and agent machinery is R2PGO's (:mod:`omrl_algos.r2pgo`) with its contrastive term
off and without the hypernetwork; BOReL's config extends R2PGO's, so R2PGO's settings remain
available. VariBAD decoded only rewards on reward-changing families; ``state_weight=0`` does the
same here (the default 1 also decodes next states, which dynamics-changing families need).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from omrl_algos.actor_critic import SoftActorCritic
from omrl_algos.base import Agent
from omrl_algos.r2pgo import ContextAgent, R2pgo, R2pgoConfig
from omrl_data.batch import TaskBatch
from omrl_data.errors import BadInput

BELIEFS = ("mean_logvar", "mean")


@dataclass
class BorelConfig(R2pgoConfig):
    """BOReL's settings: R2PGO's with BOReL's defaults."""

    negatives: str = "none"  # no contrastive term (BOReL trains the VAE by its ELBO alone)
    conditioning: str = "concat"  # [s, belief] into plain MLPs (no hypernetwork)
    belief: str = "mean_logvar"  # what the policy reads: mean_logvar (VariBAD: posterior mean and log-variance) | mean


class Borel(R2pgo):
    name = "borel"
    Config = BorelConfig
    default_eval_mode = "zero_shot"

    def __init__(self, config: BorelConfig, obs_dim: int, act_dim: int, device: str | torch.device = "cpu"):
        if config.belief not in BELIEFS:
            raise BadInput(f"algo.belief={config.belief!r} is not one of {', '.join(BELIEFS)}")
        super().__init__(config, obs_dim, act_dim, device)
        c = config
        if c.belief == "mean_logvar":  # the policy's input is twice the latent: rebuild it and the optimizer
            self.sac = SoftActorCritic(obs_dim, act_dim, 2 * c.latent_dim, c.width, c.depth, c.conditioning, c.hyper_hidden, c.init_temperature).to(self.device)
            self._groups = {"encoder": list(self.encoder.parameters()) + list(self.decoder.parameters()), **self.sac.parameter_groups()}
            lrs = {"encoder": c.encoder_lr, "actor": c.actor_lr, "critic": c.critic_lr, "temperature": c.temperature_lr}
            self.optimizer = torch.optim.Adam([{"params": self._groups[g], "lr": lrs[g]} for g in self._groups])

    def belief_of(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """The policy's belief input ``[..., latent]`` or ``[..., 2 latent]``."""
        return torch.cat([mean, logvar], dim=-1) if self.config.belief == "mean_logvar" else mean

    @torch.no_grad()
    def row_latents(self, context: TaskBatch, rows: int) -> torch.Tensor:
        """``[T, rows, belief]``: per row, the belief after a uniform number (0..L) of the first
        context window's transitions (R2PGO's scheme, with the log-variance)."""
        t, _, length = context.mask.shape
        mean, logvar = self.encode(self.features(context)[:, 0], context.mask[:, 0])
        belief = self.belief_of(mean, logvar)  # [T, L + 1, .]
        k = torch.randint(0, length + 1, (t, rows)).to(self.device)
        return torch.gather(belief, 1, k[..., None].expand(-1, -1, belief.shape[-1]))


class BeliefAgent(ContextAgent):
    """R2PGO's context agent acting on BOReL's belief (posterior mean and log-variance)."""

    @torch.no_grad()
    def latent(self) -> torch.Tensor:
        a: Any = self.algo
        if self._z is not None:
            return self._z
        n, length = self.context_size, a.config.context_length
        if n == 0:
            zero = torch.zeros(a.config.latent_dim, device=a.device)
            self._z = a.belief_of(zero, zero)  # the prior N(0, I)
            return self._z
        rows = torch.cat([self.base, torch.stack(self.history)]) if self.history else self.base
        mean, logvar = a.encode(rows[-length:][None], None)
        self._z = a.belief_of(mean[0, -1], logvar[0, -1])
        return self._z


Borel.agent_class = BeliefAgent
