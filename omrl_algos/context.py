"""Task encoders and their losses, shared by the context-based methods.

- :class:`RecurrentEncoder`: a GRU over transitions ``(s, a, r, s')`` with a Gaussian posterior
  head, ``q(m | tau_{:t})`` for every prefix t of a window, the prior ``N(0, I)`` at t = 0
  (VariBAD / R2PGO's task inference, paper 004 section 4.1).
- :class:`TransitionDecoder`: ``p(s', r | s, a, m)``, the reconstruction term of the ELBO.
- Pure losses: :func:`gaussian_kl` (diagonal Gaussians), :func:`elbo_terms` (eq. 3: the
  reconstruction of the window's transitions from every posterior sample, and the KL of each
  posterior to the previous one), :func:`info_nce` (eq. 5).

Transitions are fed as one vector per step, ``[s, a, r, s']`` (:func:`transition_features`),
actions in [-1, 1] and rewards times the algorithm's reward scale, both in training and in the
agent at test time.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def transition_features(observations: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_observations: torch.Tensor) -> torch.Tensor:
    """``[..., 2 obs + act + 1]``: one encoder input per transition."""
    return torch.cat([observations, actions, rewards.unsqueeze(-1), next_observations], dim=-1)


class RecurrentEncoder(nn.Module):
    """``q(m | tau_{:t})``: embed each transition (ReLU MLP), a GRU over the sequence, and a
    linear head to the posterior's mean and log-variance ``[latent]``.

    ``forward(x [B, L, D], mask [B, L]) -> (mean, logvar) [B, L + 1, latent]``: index 0 is the
    prior N(0, I) (no transition seen), index t the posterior after the first t transitions.
    Where ``mask`` is False (padding) the hidden state is carried over unchanged, so the
    posterior of a padded step equals that of the last real one.
    """

    def __init__(self, input_dim: int, latent_dim: int, hidden: int = 64, embed: int = 64):
        super().__init__()
        self.latent_dim, self.hidden = latent_dim, hidden
        self.embed = nn.Sequential(nn.Linear(input_dim, embed), nn.ReLU())
        self.cell = nn.GRUCell(embed, hidden)
        self.head = nn.Linear(hidden, 2 * latent_dim)

    def initial_state(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch, self.hidden, device=device)

    def step(self, h: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One transition ``x [B, D]`` into the hidden state ``h [B, H]``."""
        new = self.cell(self.embed(x), h)
        return new if mask is None else torch.where(mask[:, None], new, h)

    def posterior(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.head(h).chunk(2, dim=-1)
        return mean, logvar.clamp(-10.0, 5.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, length, _ = x.shape
        h = self.initial_state(b, x.device)
        means = [torch.zeros(b, self.latent_dim, device=x.device)]
        logvars = [torch.zeros(b, self.latent_dim, device=x.device)]
        emb = self.embed(x)
        for t in range(length):
            new = self.cell(emb[:, t], h)
            h = new if mask is None else torch.where(mask[:, t, None], new, h)
            m, lv = self.posterior(h)
            means.append(m)
            logvars.append(lv)
        return torch.stack(means, 1), torch.stack(logvars, 1)


class TransitionDecoder(nn.Module):
    """``(s, a, m) -> (s' prediction [..., obs], r prediction [...])``: ReLU MLP, two heads."""

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, width: int = 64, depth: int = 2):
        super().__init__()
        dims = [obs_dim + act_dim + latent_dim] + [width] * depth
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.next_state = nn.Linear(dims[-1], obs_dim)
        self.reward = nn.Linear(dims[-1], 1)

    def forward(self, observations: torch.Tensor, actions: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(torch.cat([observations, actions, m], dim=-1))
        return self.next_state(h), self.reward(h).squeeze(-1)


# ------------------------------------------------------------------------------------ pure losses
def gaussian_kl(mean_q: torch.Tensor, logvar_q: torch.Tensor, mean_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean_q, e^logvar_q) || N(mean_p, e^logvar_p))`` of diagonal Gaussians, summed over
    the last dimension: ``0.5 sum(logvar_p - logvar_q + (var_q + (mean_q - mean_p)^2) / var_p - 1)``."""
    var_q, var_p = logvar_q.exp(), logvar_p.exp()
    return 0.5 * (logvar_p - logvar_q + (var_q + (mean_q - mean_p).pow(2)) / var_p - 1.0).sum(-1)


def elbo_terms(
    mean: torch.Tensor,
    logvar: torch.Tensor,
    samples: torch.Tensor,
    pred_next: torch.Tensor,
    pred_reward: torch.Tensor,
    next_observations: torch.Tensor,
    rewards: torch.Tensor,
    mask: torch.Tensor,
    kl_weight: float = 1.0,
    state_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The negative ELBO of paper 004 eq. 3 on windows, averaged over windows and posteriors.

    mean, logvar: ``[B, L + 1, latent]`` (index 0 the prior); samples ``[B, L, latent]`` drawn
    from posteriors 1..L. pred_next ``[B, L, L, obs]``, pred_reward ``[B, L, L]``: at ``[b, t, j]``
    the decoder's prediction of transition j from sample t.
    next_observations ``[B, L, obs]``, rewards ``[B, L]``, mask ``[B, L]`` (real transitions).

    ``recon_t = mean_j (state_weight |s'_j - pred|^2 + (r_j - pred)^2)`` over the real
    transitions j of the window (the whole window, past and future, as VariBAD decodes the
    trajectory); ``kl_t = KL(q_t || q_{t-1})``; loss = mean over real t of ``recon_t + kl_weight kl_t``.
    """
    m = mask.to(mean.dtype)  # [B, L]
    state_err = (pred_next - next_observations[:, None]).pow(2).sum(-1)  # [B, L(t), L(j)]
    reward_err = (pred_reward - rewards[:, None]).pow(2)
    per_j = state_weight * state_err + reward_err
    recon = (per_j * m[:, None, :]).sum(-1) / m.sum(-1, keepdim=True).clamp(min=1.0)  # [B, L(t)]
    kl = gaussian_kl(mean[:, 1:], logvar[:, 1:], mean[:, :-1], logvar[:, :-1])  # [B, L]
    n = m.sum().clamp(min=1.0)
    recon_mean, kl_mean = (recon * m).sum() / n, (kl * m).sum() / n
    return {
        "loss": recon_mean + kl_weight * kl_mean,
        "recon": recon_mean.detach(),
        "reward_mse": ((reward_err * m[:, None, :]).sum(-1) / m.sum(-1, keepdim=True).clamp(min=1.0) * m).sum().detach() / n,
        "kl": kl_mean.detach(),
    }


SIMILARITIES = ("centred_cosine", "cosine", "dot")


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.1, positive_in_denominator: bool = True, similarity: str = "centred_cosine") -> dict[str, torch.Tensor]:
    """InfoNCE of paper 004 eq. 5: ``-mean_i log exp(s(x_i, x_i+) / tau) / D_i``.

    anchor, positive: ``[A, d]``; negatives ``[A, N, d]`` (anchor i's N_ij negatives of every
    task j, already in the counts of eq. 4). ``D_i = sum_k exp(s(x_i, x_ik-) / tau)`` as eq. 5 is
    printed, plus the positive's own term when ``positive_in_denominator`` (Oord et al.'s
    InfoNCE, a categorical cross-entropy, bounded below by 0).

    similarity: ``dot`` (``x . y``, as printed), ``cosine`` (of L2-normalised embeddings) or
    ``centred_cosine`` (cosine after subtracting the mean of all the call's embeddings: an offset
    common to every task's embedding, which a recurrent encoder readily has, would otherwise
    make every cosine ~1 and the loss flat; measured on cheetah_vel, docs/algorithms.md).
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity {similarity!r} is not one of {SIMILARITIES}")
    if similarity == "centred_cosine":
        centre = torch.cat([anchor, positive, negatives.flatten(0, 1)]).mean(0)
        anchor, positive, negatives = anchor - centre, positive - centre, negatives - centre
    if similarity != "dot":
        anchor, positive, negatives = F.normalize(anchor, dim=-1), F.normalize(positive, dim=-1), F.normalize(negatives, dim=-1)
    pos = (anchor * positive).sum(-1) / temperature  # [A]
    neg = torch.einsum("ad,and->an", anchor, negatives) / temperature  # [A, N]
    logits = torch.cat([pos[:, None], neg], dim=1) if positive_in_denominator else neg
    loss = (torch.logsumexp(logits, dim=1) - pos).mean()
    accuracy = (pos > neg.max(dim=1).values).float().mean()
    return {"loss": loss, "accuracy": accuracy.detach()}


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``mean + exp(logvar / 2) * noise``."""
    return mean + (0.5 * logvar).exp() * noise


def observed_features(algo: Any, transition: dict[str, Any]) -> torch.Tensor:
    """One env transition as the encoders read it: the action mapped from the env's box to
    [-1, 1] and the reward scaled as in training (``algo.action_center/half``, ``reward_scale()``)."""
    action = (transition["actions"].to(algo.device).float() - algo.action_center) / algo.action_half
    reward = torch.as_tensor(transition["rewards"], dtype=torch.float32, device=algo.device) * algo.reward_scale()
    return transition_features(transition["observations"].to(algo.device).float(), action, reward, transition["next_observations"].to(algo.device).float())
