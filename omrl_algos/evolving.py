"""The evolving update of MACEGA (paper 000, eqs. 4 and 6), after EvoGrad (Bohdal et al. 2021).

From adapted parameters ``p'`` (one task), ``P`` perturbed copies ``p_k = p' + eps_k`` are
scored on the task's support loss, and combined with softmax weights:

    w = softmax(-[L(p_1), ..., L(p_P)] / tau),      p* = sum_k w_k p_k

``eps_k`` is ``sigma * sign(n_k)`` with ``n_k ~ N(0, I)`` (EvoGrad's default, ``noise="sign"``)
or ``sigma * n_k`` (``noise="gaussian"``, the paper's wording). The noise is drawn outside
(:func:`draw_noise`, from the algorithm's own generator) and passed in, so this function is pure
and runs unchanged under ``torch.func.vmap``.

Which paths a gradient of ``f(p*)`` takes back to ``p'`` (``paths``):

- ``"both"``: through the copies' values (``d p* / d p' = sum_k w_k I = I``) and through the
  softmax weights (``w_k`` -> ``L(p_k)`` -> ``p_k`` -> ``p'``). Only first derivatives of
  ``L`` appear, so this needs no second derivatives either.
- ``"weights"``: EvoGrad's strict form: the copies in the combination are detached, the
  gradient flows only through the softmax weights (each ``L(p_k)`` is still a function of ``p'``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch.func import vmap

from omrl_data.errors import BadInput

if TYPE_CHECKING:
    from omrl_algos.networks import FactoredMap

Params = dict[str, torch.Tensor]

NOISE_TYPES = ("sign", "gaussian")
PATHS = ("both", "weights")


def projected_rank(latent_dim: int, n_copies: int) -> int:
    """Columns of a factored map's projected noise (:func:`evolve`): the rank of ``[z', e_1..e_P]``."""
    return min(latent_dim, n_copies + 1)


def draw_noise(
    shapes: dict[str, torch.Size],
    n_tasks: int,
    n_copies: int,
    sigma: float,
    noise: str,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    gaussian: frozenset[str] = frozenset(),
) -> Params:
    """Perturbations ``{name: [n_tasks, n_copies, *shape]}`` for every parameter tensor.
    gaussian: names drawn ``sigma * N(0, 1)`` whatever ``noise`` says (projected maps)."""
    if noise not in NOISE_TYPES:
        raise BadInput(f"noise type {noise!r} is not known; use one of {', '.join(NOISE_TYPES)}")
    out = {}
    for name, shape in shapes.items():
        numel = n_tasks * n_copies * shape.numel()
        if noise == "sign" and name not in gaussian:
            eps = _random_signs(numel, generator, sigma)
        else:
            eps = sigma * torch.randn(numel, generator=generator, device=generator.device)
        out[name] = eps.view(n_tasks, n_copies, *shape).to(device)
    return out


# Byte -> its 8 bits as signs (bit i of byte b is element 8 b + i): one gather per byte.
_SIGNS = (((torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1) * 2 - 1).to(torch.float32)


def _random_signs(n: int, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """``n`` independent fair signs times ``scale`` (``+-scale``): 8 per random byte.
    ``sign(N(0, 1))`` has the same distribution but draws a normal per element, about twice the
    time for a large model. The bytes expand through a 256 x 8 table of ``+-scale`` (one
    ``index_select``; shifting, masking, converting and scaling took five passes: at paper size
    that was most of a MACEGA step)."""
    random_bytes = torch.randint(0, 256, ((n + 7) // 8,), generator=generator, dtype=torch.uint8, device=generator.device)
    table = _SIGNS.to(random_bytes.device) * scale
    return table.index_select(0, random_bytes.int()).view(-1)[:n]


def evolve(
    params: Params,
    loss_fn: Callable[[Params], torch.Tensor],
    noise: Params,
    tau: float,
    paths: str = "both",
    relative: bool = False,
    factored: "dict[str, FactoredMap] | None" = None,
    projected: bool = False,
) -> tuple[Params, torch.Tensor, torch.Tensor]:
    """The evolving update of one task's parameters.

    params: adapted parameters ``p'`` ``{name: [*shape]}``; noise: ``{name: [P, *shape]}``;
    loss_fn: ``params -> scalar`` support loss. Returns ``(p*, weights [P], losses [P])``.
    relative: the temperature is ``tau * |mean_k L(p_k)|`` (a constant), so the weights depend on
    the copies' *relative* loss differences, not on the loss's units. With an absolute tau the
    weights are one-hot as soon as the copies' losses differ by more than ~tau (measured: value
    copies [4e-44, 1] at tau 0.05), and the update is "keep the better copy".
    factored: weight-transform maps (:func:`omrl_algos.networks.factored_maps`) whose noise is
    handed to the layer as its product with the latent (``flat_offset``) instead of added into
    a copy of the map. Same numbers.
    projected: a factored map's noise is given as its projection ``G`` (``[P, D, r]``, i.i.d.
    ``N(0, sigma^2)``, ``r = min(L, P + 1)``) onto the span of ``X = [z', e_1, ..., e_P]``
    (:func:`projected_rank`) instead of the full ``[P, D, L]`` Gaussian ``E``: the map's noise
    enters only through ``E X``, and ``E X = (E Q) Q^T X`` with ``Q`` an orthonormal basis of that
    span, where ``E Q`` is again i.i.d. ``N(0, sigma^2)``. So ``G Q^T X`` has exactly the
    distribution of ``E X`` (every copy's loss and ``p*`` are distributed as with the full noise),
    and with ``Q`` held constant its gradient with respect to ``X`` is ``Q G^T dY``, the
    conditional expectation of the full noise's ``E^T dY`` given ``G`` (the part of ``E``
    orthogonal to the span never reaches a loss): an unbiased, lower-variance meta-gradient
    from ``D r`` numbers per copy instead of ``D L`` (3 instead of 100 at paper size).
    """
    if paths not in PATHS:
        raise BadInput(f"evolving paths {paths!r} is not known; use one of {', '.join(PATHS)}")
    plan = {k: f for k, f in (factored or {}).items() if k in noise and f.latent in noise}
    # A factored map's noise enters only through products with its layer's latent:
    # (M' + E_k)(z' + e_k) = M' z_k + E_k z' + E_k e_k per copy, and for p*
    # (M' + sum_k w_k E_k)(z' + sum_j w_j e_j) = M' z* + sum_k w_k (E_k z' + sum_j w_j E_k e_j).
    # Y_k = E_k [z', e_1, ..., e_P] ([P, D, P + 1]) holds every product both need: one pass over
    # the noise forward and one backward, and no perturbed copy of M.
    products = {}
    for k, f in plan.items():
        z, e_z = params[f.latent], noise[f.latent]
        x = torch.cat([z.unsqueeze(-1), e_z.transpose(-1, -2)], dim=-1)  # [L, P + 1]
        if projected:
            basis = torch.linalg.qr(x.detach()).Q  # [L, r], a constant (docstring)
            x = basis.transpose(-1, -2) @ x  # [r, P + 1]
        products[k] = noise[k] @ x
    # The P copies: perturbed tensors and the maps' products vary by copy, the rest (the maps
    # themselves, their rank-one updates) is shared.
    batched, shared = {}, {}
    for k, p in params.items():
        if k in plan:
            shared[k] = p
            y = products[k]  # [P, D, P + 1]; copy k: E_k z' + E_k e_k
            batched[plan[k].flat_offset] = y[..., 0] + torch.diagonal(y[..., 1:], dim1=0, dim2=-1).transpose(0, 1)
        elif k in noise:
            batched[k] = p.unsqueeze(0) + noise[k]
        else:
            shared[k] = p
    # The P copies' losses in one vectorised call (fewer, larger ops than a loop over copies).
    losses = vmap(lambda b, c: loss_fn({**b, **c}), in_dims=(0, None), randomness="error")(batched, shared)
    temperature = tau * losses.detach().mean().abs().clamp_min(1e-8) if relative else tau
    weights = torch.softmax(-losses / temperature, dim=0)
    # sum_k w_k (p + eps_k) = p + sum_k w_k eps_k because the weights sum to 1; the gradient
    # is the same (its part along p through the weights, (dL/dp* . p) * sum_k dw_k, is 0),
    # and no copy of the parameters is kept for the backward pass.
    base = params if paths == "both" else {k: p.detach() for k, p in params.items()}
    combined = dict(base)
    for k in noise:
        if k in plan:
            y = products[k]
            along_z = y[..., 0] if paths == "both" else y[..., 0].detach()  # E_k z' (z' detached in "weights")
            combined[plan[k].flat_offset] = weights @ (along_z + y[..., 1:] @ weights)
        else:
            combined[k] = base[k] + torch.tensordot(weights, noise[k], dims=1)
    return combined, weights, losses


def weight_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Entropy of the evolving weights ``[P]`` in nats (log P when uniform, 0 when one-hot)."""
    return -(weights * torch.log(weights.clamp_min(1e-30))).sum()
