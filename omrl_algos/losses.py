"""Pure loss functions of MACAW (paper 001, equations 1-4) and of the baselines built on it.

Every function takes tensors of one task (``[B, ...]``) and returns a dict of named terms with
the objective under ``"loss"``; the other terms are scalars for logging. They hold no state, so
they work unchanged under :func:`torch.func.grad` and :func:`torch.func.vmap`.
"""
from __future__ import annotations

import math

import torch

from omrl_algos.networks import gaussian_log_prob


def value_loss(values: torch.Tensor, mc_returns: torch.Tensor) -> dict[str, torch.Tensor]:
    """Equation 2: ``mean (V(s) - R)^2``. values, mc_returns: ``[B]``."""
    loss = (values - mc_returns).pow(2).mean()
    return {"loss": loss, "value_mse": loss.detach()}


def awr_weights(advantages: torch.Tensor, temperature: float = 1.0, max_weight: float = 20.0) -> torch.Tensor:
    """``exp(clamp(((A - mean A) / std A) / T, max=log max_weight))``, detached. ``[..., B] -> [..., B]``.

    Normalising A (over the last dimension: per task when given ``[T, B]``) makes the weights
    independent of the reward scale and of between-task return offsets; the clamp bounds the
    weight of any one transition by ``max_weight`` (reference: 20).
    """
    a = advantages.detach()
    z = (a - a.mean(-1, keepdim=True)) / (a.std(-1, keepdim=True) + 1e-8)
    return torch.exp(torch.clamp(z / temperature, max=math.log(max_weight)))


def awr_loss(
    mean: torch.Tensor,
    sigma: float,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    temperature: float = 1.0,
    max_weight: float = 20.0,
) -> dict[str, torch.Tensor]:
    """Equation 1: ``mean -log pi(a|s) * w(A)``. mean, actions: ``[B, act_dim]``; advantages ``[B]``."""
    w = awr_weights(advantages, temperature, max_weight)
    log_prob = gaussian_log_prob(mean, sigma, actions)
    loss = -(log_prob * w).mean()
    return {"loss": loss, "awr": loss.detach(), "awr_weight_max": w.max(), "log_prob": log_prob.detach().mean()}


def advantage_regression_loss(predicted: torch.Tensor, advantages: torch.Tensor) -> dict[str, torch.Tensor]:
    """Equation 4: ``mean (A_theta(s, a) - (R - V(s)))^2``; the target is a constant. ``[B]``."""
    loss = (predicted - advantages.detach()).pow(2).mean()
    return {"loss": loss, "adv_mse": loss.detach()}


def enriched_policy_loss(
    mean: torch.Tensor,
    predicted_advantage: torch.Tensor,
    sigma: float,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    adv_coef: torch.Tensor | float,
    temperature: float = 1.0,
    max_weight: float = 20.0,
) -> dict[str, torch.Tensor]:
    """Equation 3: ``L_AWR + c * L_ADV`` (MACAW's inner policy loss)."""
    awr = awr_loss(mean, sigma, actions, advantages, temperature, max_weight)
    adv = advantage_regression_loss(predicted_advantage, advantages)
    return {**awr, **adv, "loss": awr["loss"] + adv_coef * adv["loss"]}


def behaviour_cloning_loss(mean: torch.Tensor, sigma: float, actions: torch.Tensor) -> dict[str, torch.Tensor]:
    """``mean -log pi(a|s)`` (meta-BC's loss in both loops)."""
    loss = -gaussian_log_prob(mean, sigma, actions).mean()
    return {"loss": loss, "bc": loss.detach()}
