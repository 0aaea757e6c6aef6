"""Policy and value networks of MACAW (paper 001, section 4.3 and appendix B).

Every layer is a *weight-transform* layer by default: a per-layer latent code ``z`` and a linear
map from ``z`` to the layer's weight matrix and bias. The layer computes the same function class
as a plain linear layer, but a gradient step on ``z`` and on the map changes the weight matrix by
more than rank 1, which is what makes one inner step expressive. ``weight_transform=False``
gives plain linear layers of the same width (the paper's "No WT, equal width" ablation).

The modules are ordinary ``nn.Module`` s; the meta-learning core never mutates them, it calls
them with :func:`torch.func.functional_call` on dicts of (adapted) parameters.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class WeightTransformLinear(nn.Module):
    """``y = x @ W.T + b`` with ``[W, b] = map(z)``.

    z: ``[latent_dim]`` latent, initialised with standard deviation ``1 / out_features`` (the
    reference's ``normal_(0, 1/out)``; an earlier version used ``sqrt(1/out)``, 10x larger at
    width 100, which made one inner step overshoot, README "Weight transforms").
    map: ``nn.Linear(latent_dim, out_features * in_features + out_features)`` (default init, as
    the reference: at init ``[W, b]`` is mostly the map's bias).
    """

    def __init__(self, in_features: int, out_features: int, latent_dim: int = 100):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.latent = nn.Parameter(torch.randn(latent_dim) / out_features)
        self.map = nn.Linear(latent_dim, out_features * in_features + out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = self.map(self.latent)
        n_w = self.out_features * self.in_features
        weight = flat[:n_w].view(self.out_features, self.in_features)
        bias = flat[n_w:]
        return F.linear(x, weight, bias)


def make_linear(in_features: int, out_features: int, weight_transform: bool, latent_dim: int) -> nn.Module:
    """One layer: a weight-transform layer or a plain ``nn.Linear`` of the same shape."""
    if weight_transform:
        return WeightTransformLinear(in_features, out_features, latent_dim)
    return nn.Linear(in_features, out_features)


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` with ReLU, then a linear output layer.

    ``forward`` returns ``(output, last_pre_activation)``: the last hidden layer's output before
    its ReLU, which MACAW's advantage head reads.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int, weight_transform: bool = True, latent_dim: int = 100):
        super().__init__()
        dims = [in_dim] + [width] * depth
        self.hidden = nn.ModuleList(make_linear(a, b, weight_transform, latent_dim) for a, b in zip(dims[:-1], dims[1:]))
        self.out = make_linear(dims[-1], out_dim, weight_transform, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = x
        for layer in self.hidden:
            pre = layer(x)
            x = F.relu(pre)
        return self.out(x), pre


class ValueNetwork(nn.Module):
    """``V(s)``: observations ``[..., obs_dim]`` -> values ``[...]``."""

    def __init__(self, obs_dim: int, width: int = 100, depth: int = 3, weight_transform: bool = True, latent_dim: int = 100):
        super().__init__()
        self.body = MLP(obs_dim, 1, width, depth, weight_transform, latent_dim)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.body(observations)[0].squeeze(-1)


class GaussianPolicy(nn.Module):
    """Gaussian policy with tanh mean and fixed standard deviation, plus an advantage head.

    ``forward(obs) -> mean [..., act_dim]`` (in [-1, 1]; the deterministic action).
    ``mean_and_advantage(obs, actions) -> (mean [..., act_dim], advantage [...])``: the
    advantage head reads the last hidden pre-activation concatenated with the action, through
    a ReLU (as the reference's ``head_seq``), then ``adv_width`` hidden units, then 1 (MACAW's
    Figure 2). Means and actions are in [-1, 1]; agents map them to the env's action box.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        width: int = 100,
        depth: int = 3,
        weight_transform: bool = True,
        latent_dim: int = 100,
        sigma: float = 0.2,
        adv_width: int = 32,
        advantage_head: bool = True,
    ):
        super().__init__()
        self.act_dim = act_dim
        self.sigma = float(sigma)
        self.body = MLP(obs_dim, act_dim, width, depth, weight_transform, latent_dim)
        self.has_advantage_head = advantage_head
        if advantage_head:
            self.adv_hidden = make_linear(width + act_dim, adv_width, weight_transform, latent_dim)
            self.adv_out = make_linear(adv_width, 1, weight_transform, latent_dim)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body(observations)[0])

    def mean_and_advantage(self, observations: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, pre = self.body(observations)
        if not self.has_advantage_head:
            raise RuntimeError("this policy was built without an advantage head")
        h = F.relu(self.adv_hidden(F.relu(torch.cat([pre, actions], dim=-1))))
        return torch.tanh(out), self.adv_out(h).squeeze(-1)


def gaussian_log_prob(mean: torch.Tensor, sigma: float, actions: torch.Tensor) -> torch.Tensor:
    """``log N(actions; mean, sigma^2 I)`` summed over the action dimension: ``[...]``."""
    z = (actions - mean) / sigma
    return (-0.5 * z.pow(2) - math.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)
