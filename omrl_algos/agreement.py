"""Gradient agreement (Eshratifar et al. 2018; MACEGA's outer policy update, paper 000 s. III-C).

With ``g_i`` the meta-gradient of task ``i`` in a meta-batch of ``T`` tasks,

    w_i = sum_j g_i . g_j  /  sum_k | sum_j g_k . g_j |

so ``w_i = g_i . G / sum_k |g_k . G|`` with ``G = sum_j g_j``: a task whose gradient points along
the batch's summed gradient gets a larger weight, one that points against it a negative weight.
When all tasks agree (every ``g_i . G > 0``) the weights sum to 1, and equal gradients give the
plain average ``1 / T``; the update is ``sum_i w_i g_i``. Pure functions, no state.
"""
from __future__ import annotations

from typing import Sequence

import torch


def agreement_weights(
    grads: torch.Tensor | Sequence[torch.Tensor],
    eps: float = 1e-12,
    factors: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
    normalise: bool = False,
) -> torch.Tensor:
    """Task weights from per-task gradients: ``[T, D]`` (or a list of ``[T, ...]``) ``-> [T]``.

    factors: more parts of the vectors, each given as low-rank factors ``(u [T, K, D],
    v [T, K, L])`` of a ``[D, L]`` matrix ``sum_k u_k v_k^T`` per task (a factored
    weight-transform map's inner update), never formed (:func:`factored_gram`).
    normalise: use the cosines ``g_i . g_j / (|g_i| |g_j|)`` instead of the dot products, so a
    task's weight depends on how its direction agrees with the others', not on its norm (with
    two tasks the weights are then always 1/2 each, whatever their agreement).
    If every product is zero (all gradients zero, or orthogonal with a zero sum) the
    denominator vanishes; then the plain average ``1 / T`` is returned.
    """
    g = gram(grads).to(torch.float64)
    for u, v in factors:
        g = g + factored_gram(u, v).to(torch.float64)
    if normalise:
        norms = g.diagonal().clamp_min(0).sqrt()
        g = g / (norms[:, None] * norms[None, :]).clamp_min(eps)
    agreement = g.sum(1)  # [T]: sum_j g_i . g_j
    total = agreement.abs().sum()
    n_tasks = g.shape[0]
    if float(total) <= eps:
        return torch.full((n_tasks,), 1.0 / n_tasks, dtype=torch.float32, device=g.device)
    return (agreement / total).to(torch.float32)


def gram(grads: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """``[T, T]`` dot products ``g_i . g_j`` of per-task gradients, summed over the parameter
    tensors (no concatenated copy of the gradients is made)."""
    parts = [grads] if isinstance(grads, torch.Tensor) else list(grads)
    out = 0
    for g in parts:
        flat = g.detach().reshape(g.shape[0], -1)
        out = out + flat @ flat.T
    return out


def factored_gram(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[T, T]`` Frobenius products of per-task matrices ``A_i = sum_k u_ik v_ik^T``:
    ``<A_i, A_j> = sum_kl (u_ik . u_jl)(v_ik . v_jl)``. u: ``[T, K, D]``, v: ``[T, K, L]``."""
    n_tasks, rank = u.shape[0], u.shape[1]
    uf, vf = u.detach().reshape(n_tasks * rank, -1), v.detach().reshape(n_tasks * rank, -1)
    return ((uf @ uf.T) * (vf @ vf.T)).view(n_tasks, rank, n_tasks, rank).sum((1, 3))


def weighted_sum(grads: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i g_i`` over the leading task dimension: ``[T, ...], [T] -> [...]``."""
    return torch.tensordot(weights.to(grads.dtype), grads, dims=1)
