"""The meta-learning core: pure functions over parameter dicts (``torch.func``).

Parameters travel as ``dict[str, Tensor]`` (names as in ``module.named_parameters()``); a module
is evaluated on any such dict with :func:`torch.func.functional_call`, so nothing is patched in
place. An inner step is ``p' = p - lr_p * grad_p L(p)`` with ``grad`` from :func:`torch.func.grad`;
called inside the outer autograd graph it is differentiable, which gives the full second-order
meta-gradient, and ``first_order=True`` detaches the inner gradient instead.

Tasks of a meta-batch go through :func:`map_tasks`: one per-task function, run under
:func:`torch.func.vmap` or in a plain Python loop (a setting; same numbers). reference.md
section 8: on this CPU vmap wins for small networks and many tasks, and ties at width 256.
"""
from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.utils._pytree import tree_flatten, tree_unflatten

from omrl_data.batch import TaskBatch
from omrl_data.errors import BadInput

if TYPE_CHECKING:
    from omrl_algos.networks import FactoredMap

Params = dict[str, torch.Tensor]

# TaskBatch fields the per-task functions read (vmap maps over their leading task dimension).
TASK_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated", "truncated", "mc_returns", "mask")


def params_of(module: nn.Module) -> Params:
    """The module's parameters as a name -> tensor dict (the live ``nn.Parameter`` s)."""
    return dict(module.named_parameters())


def detached(params: Params) -> Params:
    return {k: v.detach() for k, v in params.items()}


def call(module: nn.Module, params: Params, *args: Any, method: str | None = None) -> Any:
    """``module(*args)`` (or ``module.<method>(*args)``) with ``params`` in place of its own."""
    if method is None:
        return functional_call(module, params, args)
    return _call_method(module, params, method, args)


_SHIMS: "weakref.WeakKeyDictionary[nn.Module, dict[str, nn.Module]]" = weakref.WeakKeyDictionary()


def _call_method(module: nn.Module, params: Params, method: str, args: tuple) -> Any:
    # functional_call only runs forward; route a named method through a tiny forward shim
    # (one per module and method, built once).
    shim = _SHIMS.setdefault(module, {}).get(method)
    if shim is None:
        shim = _SHIMS[module][method] = _MethodShim(module, method)
    return functional_call(shim, {f"m.{k}": v for k, v in params.items()}, args)


class _MethodShim(nn.Module):
    def __init__(self, module: nn.Module, method: str):
        super().__init__()
        self.m = module
        self.method = method

    def forward(self, *args: Any) -> Any:
        return getattr(self.m, self.method)(*args)


OPTIONAL_TASK_FIELDS = ("mc_bootstrap_discount", "bootstrap_observations")


def task_tensors(batch: TaskBatch) -> dict[str, torch.Tensor]:
    """The per-task fields of a batch as a dict ``{name: [T, B, ...]}`` (a vmap-able pytree).

    The bootstrap fields are included when the sampler provides them (``bootstrap=True``).
    """
    out = {name: getattr(batch, name) for name in TASK_FIELDS}
    for name in OPTIONAL_TASK_FIELDS:
        value = getattr(batch, name, None)
        if value is not None:
            out[name] = value
    return out


# --------------------------------------------------------------------------- learned inner lrs
def raw_lr(init: float) -> float:
    """The stored value of a learned inner lr: ``log(init)`` (applied through softplus).

    As in the MACAW reference, the effective initial lr is ``softplus(log init)``
    = ``log(1 + init)``, which is ``init`` to first order (1e-3 -> 9.995e-4).
    """
    if not init > 0:
        raise BadInput(f"initial learned rates must be > 0 (algo.inner_lr_init, algo.policy_inner_lr_init, algo.adv_coef_init); got {init}")
    return math.log(init)


def effective_lrs(raw: Params) -> Params:
    """``softplus`` of each stored inner lr: always positive, smooth to learn."""
    return {k: F.softplus(v) for k, v in raw.items()}


def lr_key(param_name: str) -> str:
    """``nn.ParameterDict`` keys cannot hold dots."""
    return param_name.replace(".", "__")


def make_inner_lrs(module: nn.Module, init: float, device: torch.device | str) -> nn.ParameterDict:
    """One learned inner lr per parameter tensor of ``module`` (stored raw, see :func:`raw_lr`)."""
    return nn.ParameterDict(
        {lr_key(k): nn.Parameter(torch.tensor(raw_lr(init), device=device)) for k, _ in module.named_parameters()}
    )


def lrs_for(params: Params, raw: Params | nn.ParameterDict) -> Params:
    """Effective lr per parameter name, from a dict keyed by :func:`lr_key` names."""
    eff = effective_lrs(dict(raw.items()))
    return {k: eff[lr_key(k)] for k in params}


# ------------------------------------------------------------------------------- inner steps
def sgd_step(params: Params, grads: Params, lrs: Params, first_order: bool = False) -> Params:
    """``p - lr * g`` per tensor; ``first_order`` stops the meta-gradient through ``g``."""
    return {k: p - lrs[k] * (grads[k].detach() if first_order else grads[k]) for k, p in params.items()}


def inner_step(
    loss_fn: Callable[..., dict[str, torch.Tensor]],
    params: Params,
    lrs: Params,
    *args: Any,
    first_order: bool = False,
    factored: "dict[str, FactoredMap] | None" = None,
    latent_taps: Params | None = None,
    record: dict | None = None,
) -> tuple[Params, dict[str, torch.Tensor]]:
    """One SGD step on ``loss_fn(params, *args)["loss"]``.

    Returns the adapted parameters and the loss terms at the parameters before the step.

    factored: the weight-transform maps to update as rank-one terms
    (:func:`omrl_algos.networks.factored_maps`). Their gradient ``outer(grad c, z)`` is never
    formed: the map is not differentiated, and ``-lr_M * grad c`` and ``z`` are appended to the
    layer's ``update_u`` / ``update_v``, which the layer applies without forming the adapted
    map. The same numbers as the dense step (up to float rounding), in both orders: the second
    derivative flows through ``grad c`` and ``z`` as it would through the dense gradient.

    latent_taps: ``{map name: [L]}`` zeros added to the latent's gradient ``g @ M`` (their
    gradient is that of ``g @ M``; see ``Macaw.meta_losses``). record: filled with
    ``{map name: g}`` (the gradient of the generated ``[W, b]`` at this step, detached).
    """
    plan = factored or {}
    # A cached generated [W, b] would hide the parameters from this step's gradient.
    params = {k: v for k, v in params.items() if not any(k == f.flat_cache for f in plan.values())}
    fixed = set()
    for f in plan.values():
        fixed |= {f.weight, f.latent, f.u, f.v, f.flat_offset}
    diff = {k: v for k, v in params.items() if k not in fixed}
    const = {k: v for k, v in params.items() if k in fixed}

    def objective(p: Params, c: Params, *a: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = loss_fn({**p, **c}, *a)
        return terms["loss"], {k: v.detach() for k, v in terms.items()}

    grads, terms = grad(objective, has_aux=True)(diff, const, *args)
    out = {**const, **sgd_step(diff, grads, lrs, first_order)}
    for key, f in plan.items():
        # g: gradient of the generated [W, b] (= of the bias); the latent's gradient is
        # (M + U^T V)^T g, formed here as g @ M so that its second derivative with respect to M
        # is a product in M's own layout (autograd's would be transposed).
        g, z = grads[f.bias], const[f.latent]
        g_z = (g.unsqueeze(-2) @ const[key]).squeeze(-2)
        if f.u in const:
            g_z = g_z + (const[f.u] @ g) @ const[f.v]
        if latent_taps is not None:
            g_z = g_z + latent_taps[key]
        if record is not None:
            record[key] = g.detach()
        if first_order:  # the gradients (g z^T for M, g_z for z) are constants
            g, g_z = g.detach(), g_z.detach()
        out[f.latent] = z - lrs[f.latent] * g_z
        u, v = (-lrs[key] * g).unsqueeze(-2), (z.detach() if first_order else z).unsqueeze(-2)
        out[f.u] = torch.cat([const[f.u], u], dim=-2) if f.u in const else u
        out[f.v] = torch.cat([const[f.v], v], dim=-2) if f.v in const else v
    return out, terms


# ----------------------------------------------------------------------------- task mapping
def map_tasks(fn: Callable[[Any, Any], Any], shared: Any, per_task: Any, use_vmap: bool = True) -> Any:
    """``fn(shared, task_t)`` for every task t, outputs stacked on a new leading dim.

    shared: a pytree used by every task (meta-parameters); per_task: a pytree of tensors whose
    leading dimension is the task (e.g. :func:`task_tensors` of a batch). ``use_vmap`` runs one
    vectorised call; otherwise a Python loop over tasks. Both give the same numbers.
    """
    if use_vmap:
        return vmap(fn, in_dims=(None, 0), randomness="error")(shared, per_task)
    leaves, spec = tree_flatten(per_task)
    n = leaves[0].shape[0]
    outs = [fn(shared, tree_unflatten([x[t] for x in leaves], spec)) for t in range(n)]
    out_leaves = [tree_flatten(o)[0] for o in outs]
    out_spec = tree_flatten(outs[0])[1]
    return tree_unflatten([torch.stack(xs) for xs in zip(*out_leaves)], out_spec)


def grad_norm(parameters: Any) -> float:
    """L2 norm of the ``.grad`` of the given parameters (0 where a grad is missing); one
    ``foreach`` pass (a per-tensor ``pow(2).sum()`` cost 10 ms a step at paper size)."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))


def clip_and_norm(parameters: Any, max_norm: float) -> float:
    """The gradient norm of ``parameters`` (as :func:`grad_norm`, before clipping); the
    gradients are clipped to ``max_norm`` when it is positive. One pass when no clipping is
    needed (metric and clip used to take three)."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))) if grads else 0.0
    # As clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1. It scales by
    # min(that, 1) unconditionally, a pass over every gradient even when the factor is 1.
    coef = max_norm / (norm + 1e-6)
    if max_norm > 0 and coef < 1.0:
        torch._foreach_mul_(grads, coef)
    return norm


def outer_adam(groups: list[dict], device: torch.device | str) -> torch.optim.Optimizer:
    """The outer Adam, fused where torch has the fused kernel (CPU and CUDA): one pass per
    tensor instead of six; measured 8 ms against 31 ms a step over MACAW's paper-size maps
    (benchmarks/bench_speed.py). Same update as the plain loop up to float rounding."""
    fused = torch.device(device).type in ("cpu", "cuda")
    return torch.optim.Adam(groups, fused=fused or None)
