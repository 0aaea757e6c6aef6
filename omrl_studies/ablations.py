"""The component ablations each algorithm declares (``omrl-study ablations ALGO FAMILY``).

One table, :data:`ABLATIONS`: algorithm -> its settings, the full method first. A setting is a
name (run folder), the label of the papers' tables and the ``--set`` overrides that switch the
component off. ``match_params`` widens the network after the overrides until it has as many
parameters as the full method's (MACAW's "no weight transform, equal parameters"). To add an
algorithm's ablations add its list here; the study checks every override against the
algorithm's config before anything runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omrl_data.errors import BadInput


@dataclass(frozen=True)
class Ablation:
    key: str  # folder-safe name of the setting (runs/<key>/...)
    label: str  # as the papers' tables say it
    overrides: tuple[str, ...] = ()  # --set settings on top of the budget's (empty = the full method)
    match_params: bool = False  # then set algo.width so the networks have the full method's parameter count


FULL = Ablation("full", "full method")

ABLATIONS: dict[str, tuple[Ablation, ...]] = {
    # paper 001 (MACAW), Fig. 4: the advantage head and the weight transform
    "macaw": (
        FULL,
        Ablation("no-adv-head", "no advantage head (MAML+AWR)", ("algo.advantage_head=false",)),
        Ablation("no-wt-equal-width", "no weight transform, equal width", ("algo.weight_transform=false",)),
        Ablation("no-wt-equal-params", "no weight transform, equal parameters", ("algo.weight_transform=false",),
                 match_params=True),
    ),
    # paper 000 (MACEGA), Table V: the evolving gradient and the gradient agreement
    "macega": (
        FULL,
        Ablation("no-eg", "No EG", ("algo.no_evolving_gradient=true",)),
        Ablation("no-ga", "No GA", ("algo.no_gradient_agreement=true",)),
    ),
    # paper 004 (R2PGO), Fig. 3: the similarity-weighted negatives (RCTR) and the hypernetwork (APG)
    "r2pgo": (
        FULL,
        Ablation("no-rctr", "no RCTR (uniform negatives)", ("algo.negatives=uniform",)),
        Ablation("no-apg", "no APG (z concatenated to the state)", ("algo.conditioning=concat",)),
        Ablation("neither", "no RCTR, no APG", ("algo.negatives=uniform", "algo.conditioning=concat")),
    ),
}


def ablations_of(algorithm: str) -> tuple[Ablation, ...]:
    """The declared settings of ``algorithm``; BadInput naming the algorithms that declare some."""
    if algorithm not in ABLATIONS:
        raise BadInput(f"{algorithm} declares no ablations; algorithms with ablations: {', '.join(ABLATIONS)}")
    return ABLATIONS[algorithm]


def parameter_count(algorithm: str, overrides: list[str], family: str) -> int:
    """Trainable parameters of ``algorithm``'s networks with these settings on ``family``."""
    import torch

    from omrl_algos.train import build_algorithm, resolve_config
    from omrl_data.tasks import get_family

    cfg = resolve_config(algorithm, list(overrides))
    fam = get_family(family)
    algo = build_algorithm(cfg, int(fam.obs_dim), int(fam.act_dim), torch.device("cpu"))
    return int(sum(p.numel() for p in algo.parameters() if p.requires_grad))


def equal_params_width(algorithm: str, base: list[str], ablated: list[str], family: str, max_width: int = 8192) -> int:
    """The ``algo.width`` at which the ablated networks come closest to the parameter count of the
    full method (``base`` settings); the count grows with the width, so a bisection finds it."""
    target = parameter_count(algorithm, base, family)

    def count(w: int) -> int:
        return parameter_count(algorithm, [*ablated, f"algo.width={w}"], family)

    lo, hi = 1, max_width
    if count(hi) < target:
        raise BadInput(f"{algorithm}: no width up to {max_width} matches the full method's {target} parameters")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(mid) < target:
            lo = mid
        else:
            hi = mid
    return lo if abs(count(lo) - target) <= abs(count(hi) - target) else hi


def ablation_settings(algorithm: str, ablation: Ablation, base: list[str], family: str) -> list[str]:
    """The extra ``--set`` settings of one ablation on top of ``base`` (the budget's)."""
    extra = list(ablation.overrides)
    if ablation.match_params:
        extra.append(f"algo.width={equal_params_width(algorithm, base, [*base, *extra], family)}")
    return extra


def describe(algorithm: str) -> list[dict[str, Any]]:
    return [{"key": a.key, "label": a.label, "overrides": list(a.overrides), "match_params": a.match_params}
            for a in ablations_of(algorithm)]
