"""Policy and value networks of MACAW (paper 001, section 4.3 and appendix B).

Every layer is a *weight-transform* layer by default: a per-layer latent code ``z`` and a linear
map from ``z`` to the layer's weight matrix and bias. The layer computes the same function class
as a plain linear layer, but a gradient step on ``z`` and on the map changes the weight matrix by
more than rank 1, which is what makes one inner step expressive. ``weight_transform=False``
gives plain linear layers of the same width (the paper's "No WT, equal width" ablation).

The modules are ordinary ``nn.Module`` s; the meta-learning core never mutates them, it calls
them with :func:`torch.func.functional_call` on dicts of (adapted) parameters.

**Adapted maps are never formed** (``factored_maps``). The gradient of a loss with respect to a
layer's map ``M`` is ``g z^T`` with ``g`` the gradient with respect to the generated
``[W, b]`` (which is the gradient with respect to the map's bias ``c``): rank one per inner
step. An adapted layer is therefore ``M + sum_k u_k v_k^T`` with ``u_k = -lr g_k`` and
``v_k = z_k``, held in the layer's two non-persistent buffers ``update_u [K, D]`` and
``update_v [K, L]`` (empty for the meta-parameters) and applied as ``M z + U^T (V z) + c``:
``O(K (D + L))`` extra work instead of a ``D x L`` copy per task and step (1M entries per
100-unit layer at latent 100). :func:`materialise` turns such a dict back into plain parameters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


WT_INITS = ("scaled", "reference")


class WeightTransformLinear(nn.Module):
    """``y = x @ W.T + b`` with ``[W, b] = map(z) = M z + c``.

    z: ``[latent_dim]`` latent, initialised with standard deviation ``1 / out_features`` (the
    reference's ``normal_(0, 1/out)``).
    map: ``nn.Linear(latent_dim, D)``, ``D = out_features * in_features + out_features``, with
    ``M ~ N(0, 1/D)`` and ``c`` initialised as a plain ``nn.Linear``'s weight and bias
    (uniform ``+-1/sqrt(in)``) (``init="scaled"``); ``init="reference"`` keeps ``nn.Linear``'s
    default init of the map, as the reference code.

    Why this init (README, "Weight transforms", measured on cheetah_dir): an inner SGD step on
    ``z`` moves ``W`` by ``-lr M M^T g``, and the nonzero eigenvalues of ``M M^T`` are about
    ``D var(M)``. Under ``nn.Linear``'s default init of the map (the reference's), that is
    ``D / (3 latent)``: 87 at width 64 / latent 16, ~34 at paper size, so one inner value step at
    the default inner lr made the support loss 30-100x worse and one policy step moved the tanh
    mean by ~0.6. With ``var(M) = 1/D`` the step through ``z`` is no larger than a plain
    layer's, the step through ``c`` *is* a plain layer's, and at init the layer computes what a
    plain layer would; the outer loop then learns ``M`` (the directions one inner step on ``z``
    can move ``W`` in) and the inner lrs.
    """

    def __init__(self, in_features: int, out_features: int, latent_dim: int = 100, init: str = "scaled"):
        super().__init__()
        if init not in WT_INITS:
            raise ValueError(f"weight-transform init {init!r} is not one of {WT_INITS}")
        self.in_features, self.out_features = in_features, out_features
        self.latent = nn.Parameter(torch.randn(latent_dim) / out_features)
        self.map = nn.Linear(latent_dim, out_features * in_features + out_features)
        self._register_updates()
        if init == "reference":  # nn.Linear's default init of the map (the reference code's)
            return
        with torch.no_grad():
            self.map.weight.normal_(0.0, 1.0 / math.sqrt(self.map.out_features))
            bound = 1.0 / math.sqrt(in_features)
            self.map.bias.uniform_(-bound, bound)

    def _register_updates(self) -> None:
        # The adapted map's rank-one terms (module docstring); empty = the map itself. Not
        # persistent: a state_dict holds meta-parameters only.
        d, latent_dim = self.map.out_features, self.map.in_features
        self.register_buffer("update_u", torch.zeros(0, d, device=self.map.weight.device), persistent=False)
        self.register_buffer("update_v", torch.zeros(0, latent_dim, device=self.map.weight.device), persistent=False)
        # An additive term of the generated [W, b] ([D]; empty = none): MACEGA's perturbation
        # of the map as its product E z with the latent (omrl_algos.evolving; the noise is never
        # added into a copy of M), or MACAW's gradient tap (a zero whose gradient is that of the
        # generated weights; Macaw.meta_losses forms the map's meta-gradient from them).
        self.register_buffer("flat_offset", torch.zeros(0, device=self.map.weight.device), persistent=False)
        # The generated [W, b] itself, computed once for parameters that several calls use
        # without differentiating them again (MACAW's adapted value); empty = compute it.
        self.register_buffer("flat_cache", torch.zeros(0, device=self.map.weight.device), persistent=False)

    def generated(self) -> torch.Tensor:
        """The flat ``[W, b]`` of the layer: ``M z + c + U^T (V z)`` (``[D]``)."""
        if self.flat_cache.shape[-1] > 0:
            return self.flat_cache
        if self.map.weight.requires_grad:
            # M z as (M @ z[:, None]) when autograd differentiates M: its gradient comes out in
            # M's own layout (F.linear's is transposed, and summing a transposed [D, L] into M's
            # gradient cost ~20 ms per map and step at paper size).
            flat = (self.map.weight @ self.latent.unsqueeze(-1)).squeeze(-1) + self.map.bias
        else:
            # M detached (MACAW's tapped meta-step, evaluation): under vmap one [T, L] x [L, D]
            # product that reads M once (the form above reads it once per task).
            flat = F.linear(self.latent, self.map.weight, self.map.bias)
        if self.update_u.shape[-2] > 0:
            flat = flat + (self.update_v @ self.latent) @ self.update_u
        if self.flat_offset.shape[-1] > 0:
            flat = flat + self.flat_offset
        return flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = self.generated()
        n_w = self.out_features * self.in_features
        weight = flat[:n_w].view(self.out_features, self.in_features)
        bias = flat[n_w:]
        return F.linear(x, weight, bias)


@dataclass(frozen=True)
class FactoredMap:
    """Where an inner step puts the update of one weight-transform map (parameter names).

    The gradient of the map ``weight`` is ``outer(grad of bias, latent)``; the step appends
    ``-lr * grad of bias`` to ``u`` and the latent to ``v`` instead of changing ``weight``.
    """

    weight: str  # the map M, [D, L] (never changed by an inner step)
    bias: str  # the map's bias c, [D]: its gradient is the gradient of the generated [W, b]
    latent: str  # the layer's latent z, [L]
    u: str  # buffer of left factors, [K, D]
    v: str  # buffer of right factors, [K, L]
    flat_offset: str  # buffer of an additive term of the generated [W, b], [D] (MACEGA's E z; MACAW's gradient tap)
    flat_cache: str  # buffer of the generated [W, b] itself, [D] (computed once, see WeightTransformLinear)


def factored_maps(module: nn.Module) -> dict[str, FactoredMap]:
    """The rank-one update plan of every weight-transform layer of ``module``, by map name."""
    plan = {}
    for name, layer in module.named_modules():
        if isinstance(layer, WeightTransformLinear):
            pre = f"{name}." if name else ""
            plan[f"{pre}map.weight"] = FactoredMap(
                f"{pre}map.weight", f"{pre}map.bias", f"{pre}latent", f"{pre}update_u", f"{pre}update_v", f"{pre}flat_offset", f"{pre}flat_cache"
            )
    return plan


def materialise(params: dict[str, torch.Tensor], plan: dict[str, FactoredMap]) -> dict[str, torch.Tensor]:
    """Plain parameters (the adapted maps formed, ``M + U^T V``) from a factored dict."""
    out = dict(params)
    for key, f in plan.items():
        u, v = out.pop(f.u, None), out.pop(f.v, None)
        out.pop(f.flat_cache, None)
        if out.pop(f.flat_offset, None) is not None:
            raise ValueError(f"{key}: a map with an offset (a perturbed copy, a gradient tap) has no plain form here")
        if u is not None and u.shape[-2] > 0:
            out[key] = out[key] + u.transpose(-1, -2) @ v
    return out


def make_linear(in_features: int, out_features: int, weight_transform: bool, latent_dim: int, wt_init: str = "scaled") -> nn.Module:
    """One layer: a weight-transform layer or a plain ``nn.Linear`` of the same shape."""
    if weight_transform:
        return WeightTransformLinear(in_features, out_features, latent_dim, wt_init)
    return nn.Linear(in_features, out_features)


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` with ReLU, then a linear output layer.

    ``forward`` returns ``(output, last_pre_activation)``: the last hidden layer's output before
    its ReLU, which MACAW's advantage head reads.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int, weight_transform: bool = True, latent_dim: int = 100, wt_init: str = "scaled"):
        super().__init__()
        dims = [in_dim] + [width] * depth
        self.hidden = nn.ModuleList(make_linear(a, b, weight_transform, latent_dim, wt_init) for a, b in zip(dims[:-1], dims[1:]))
        self.out = make_linear(dims[-1], out_dim, weight_transform, latent_dim, wt_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = x
        for layer in self.hidden:
            pre = layer(x)
            x = F.relu(pre)
        return self.out(x), pre


class ValueNetwork(nn.Module):
    """``V(s)``: observations ``[..., obs_dim]`` -> values ``[...]``."""

    def __init__(self, obs_dim: int, width: int = 100, depth: int = 3, weight_transform: bool = True, latent_dim: int = 100, wt_init: str = "scaled"):
        super().__init__()
        self.body = MLP(obs_dim, 1, width, depth, weight_transform, latent_dim, wt_init)

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
        wt_init: str = "scaled",
    ):
        super().__init__()
        self.act_dim = act_dim
        self.sigma = float(sigma)
        self.body = MLP(obs_dim, act_dim, width, depth, weight_transform, latent_dim, wt_init)
        self.has_advantage_head = advantage_head
        if advantage_head:
            self.adv_hidden = make_linear(width + act_dim, adv_width, weight_transform, latent_dim, wt_init)
            self.adv_out = make_linear(adv_width, 1, weight_transform, latent_dim, wt_init)

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
