"""Pure representation losses of the context-based baselines (FOCAL, CORRO, CSRO, offline PEARL).

Every function returns a dict of named terms with the objective under ``"loss"`` (as
:mod:`omrl_algos.losses` and :mod:`omrl_algos.context`); none holds state.

- :func:`focal_metric_loss`: FOCAL's negative-power distance metric loss (Li et al. 2021): same
  task ``sqrt(mean |z_a - z_b|^2 + 1e-3)``, different tasks ``1 / (mean |z_a - z_b|^2 + 0.1)``.
- :func:`reward_noise_negatives` and :func:`corro_info_nce`: CORRO's InfoNCE (Yuan and Lu 2022)
  over single-transition encodings, with negatives that keep the anchor's ``(s, a)`` and change
  its outcome (reward randomisation; next-state noise for dynamics-changing tasks).
- :func:`club_upper_bound` and :func:`gaussian_log_likelihood`: the CLUB mutual-information upper
  bound (Cheng et al. 2020) CSRO minimises between the task encoding and the behaviour
  policy's ``(s, a)``.
- :func:`product_of_gaussians` and :func:`kl_to_unit_prior`: PEARL's posterior over a context
  (Rakelly et al. 2019) and its KL to ``N(0, I)``.
"""
from __future__ import annotations

import math

import torch

from omrl_algos.context import gaussian_kl, info_nce

FOCAL_POSITIVE_EPS = 1e-3  # inside the square root of the same-task branch
FOCAL_NEGATIVE_EPS = 0.1  # added to the distance of the different-task branch (1e-3 * 100 in FOCAL's code)


# ---------------------------------------------------------------------------------- FOCAL
def focal_metric_loss(z: torch.Tensor, tasks: torch.Tensor, power: float = 1.0, positive_eps: float = FOCAL_POSITIVE_EPS, negative_eps: float = FOCAL_NEGATIVE_EPS) -> dict[str, torch.Tensor]:
    """FOCAL's distance metric loss over every pair of context sets.

    z: ``[G, C, d]`` embeddings of G sets of C transitions (or ``[G, d]``, one embedding per set);
    tasks: ``[G]`` the task of each set. For each pair ``a < b`` with
    ``D_ab = mean over C and d of (z_a - z_b)^2``: same task ``sqrt(D_ab + positive_eps)``,
    different tasks ``1 / (D_ab^power + negative_eps)``; loss = mean of the same-task terms +
    mean of the different-task terms (a branch with no pair contributes 0).
    """
    if z.dim() == 2:
        z = z[:, None]
    g = z.shape[0]
    a, b = torch.triu_indices(g, g, offset=1, device=z.device)
    d = (z[a] - z[b]).pow(2).flatten(1).mean(1)  # [pairs]
    same = tasks.to(z.device)[a] == tasks.to(z.device)[b]
    zero = z.sum() * 0.0
    pos = torch.sqrt(d[same] + positive_eps).mean() if bool(same.any()) else zero
    neg = (1.0 / (d[~same].pow(power) + negative_eps)).mean() if bool((~same).any()) else zero
    return {"loss": pos + neg, "same_task": pos.detach(), "other_task": neg.detach(),
            "same_distance": d[same].mean().detach() if bool(same.any()) else zero.detach(),
            "other_distance": d[~same].mean().detach() if bool((~same).any()) else zero.detach()}


# ---------------------------------------------------------------------------------- CORRO
def reward_noise_negatives(transitions: torch.Tensor, obs_dim: int, act_dim: int, noise: torch.Tensor, reward_std: float, state_std: float = 0.0, state_noise: torch.Tensor | None = None) -> torch.Tensor:
    """CORRO's cheap negative generator: copies of each anchor transition with the same ``(s, a)``
    and a perturbed outcome.

    transitions: ``[A, D]`` rows ``[s, a, r, s']`` (:func:`omrl_algos.context.transition_features`);
    noise: ``[A, N]`` standard normal draws; the negative's reward is ``r + reward_std * noise``.
    ``state_std > 0`` (dynamics-changing families) also moves ``s'`` by ``state_std * state_noise``
    (``[A, N, obs_dim]``). Returns ``[A, N, D]``.
    """
    a, n = noise.shape
    out = transitions[:, None, :].expand(a, n, -1).clone()
    r = obs_dim + act_dim
    out[..., r] = out[..., r] + reward_std * noise
    if state_std > 0:
        if state_noise is None:
            raise ValueError("state_std > 0 needs state_noise [A, N, obs_dim]")
        out[..., r + 1:] = out[..., r + 1:] + state_std * state_noise
    return out


def corro_info_nce(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.1, similarity: str = "cosine") -> dict[str, torch.Tensor]:
    """CORRO's InfoNCE on single-transition encodings: anchor ``[A, d]``, positive ``[A, d]`` (an
    encoding of another transition of the anchor's task), negatives ``[A, N, d]`` (encodings of
    the generated negatives of the anchor); ``-mean log exp(s+ / t) / (exp(s+ / t) + sum exp(s- / t))``."""
    return info_nce(anchor, positive, negatives, temperature, positive_in_denominator=True, similarity=similarity)


# ----------------------------------------------------------------------------------- CLUB
def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(x; mean, e^logvar)`` of diagonal Gaussians, summed over the last dimension."""
    return (-0.5 * ((x - mean).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi))).sum(-1)


def club_upper_bound(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> dict[str, torch.Tensor]:
    """CLUB's estimate of the mutual information ``I(x; z)`` (an upper bound when the variational
    ``q(z | x)`` is good):

    ``mean_i log q(z_i | x_i) - mean_i mean_j log q(z_j | x_i)``

    z: ``[N, d]`` samples paired with ``x_i``; mean, logvar: ``[N, d]``, ``q(. | x_i)`` for each
    row. Minimised by the encoder producing z (gradients reach z; train ``q`` on
    :func:`club_log_likelihood` with z detached).
    """
    positive = gaussian_log_likelihood(z, mean, logvar)  # [N]
    pairwise = gaussian_log_likelihood(z[None, :, :], mean[:, None, :], logvar[:, None, :])  # [i, j]: log q(z_j | x_i)
    bound = positive.mean() - pairwise.mean()
    return {"loss": bound, "mi_upper_bound": bound.detach()}


def club_log_likelihood(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> dict[str, torch.Tensor]:
    """The variational network's own objective: ``-mean log q(z_i | x_i)`` (z detached by the caller)."""
    nll = -gaussian_log_likelihood(z, mean, logvar).mean()
    return {"loss": nll, "q_nll": nll.detach()}


# ---------------------------------------------------------------------------------- PEARL
def product_of_gaussians(mean: torch.Tensor, var: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PEARL's posterior from per-transition factors ``N(mean_n, var_n)`` over dim -2.

    mean, var: ``[..., C, d]``; mask ``[..., C]`` (False rows are left out). Returns the product's
    ``(mean, var) [..., d]``: ``var = 1 / sum_n 1 / var_n``, ``mean = var * sum_n mean_n / var_n``.
    """
    precision = 1.0 / var
    if mask is not None:
        precision = precision * mask[..., None].to(precision.dtype)
    total = precision.sum(-2)
    out_var = 1.0 / total
    return out_var * (precision * mean).sum(-2), out_var


def kl_to_unit_prior(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, var) || N(0, I))`` summed over the last dimension: ``0.5 sum(var + mean^2 - 1 - log var)``."""
    logvar = var.log()
    return gaussian_kl(mean, logvar, torch.zeros_like(mean), torch.zeros_like(logvar))
