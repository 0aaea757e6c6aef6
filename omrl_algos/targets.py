"""Value targets: the one component every algorithm uses to turn stored returns into targets.

A row of a task batch carries its Monte Carlo return-to-go ``R_t`` inside the stored episode and,
where that episode was cut by the time limit (or the stream ended mid-episode), the discount
``gamma^(T-t)`` to its last next-observation ``s_T`` (``omrl_data.returns``). The target of a
value function trained in reward units scaled by ``reward_scale`` is

    y_t = reward_scale * R_t + gamma^(T-t) * V(s_T)        (bootstrap on, a value V given)
    y_t = reward_scale * R_t                               (bootstrap off, or no V)

with ``V`` a *stated* value function, always detached (targets are constants):

- MACAW / MACEGA: the outer (query) targets and the advantages bootstrap with the task's
  *adapted* value, as the MACAW reference code does; the inner (support) value step regresses on
  plain MC returns unless ``inner_bootstrap`` is set (the reference's standard config has
  ``no_bootstrap: true`` for it). Measured here on cheetah_dir (README, "Value targets"): see the
  README for which variant the defaults use and why.
- Offline MT+FT: its current value.
- Online fine-tuning: the value being fine-tuned, with the bootstrap fields of the online episode
  computed by :func:`episode_targets` (the same ``omrl_data.returns.mc_returns`` the collector uses).

Without the bootstrap, returns shrink towards the end of every time-limited episode for a reason
the state cannot show, so V regresses on time, and AWR weights transitions by their time step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from omrl_data.returns import mc_returns

ValueFn = Callable[[torch.Tensor], torch.Tensor]


def value_targets(
    returns: torch.Tensor,
    reward_scale: float,
    bootstrap_discount: torch.Tensor | None = None,
    end_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """``reward_scale * R + gamma^(T-t) * V(s_T)`` (the second term only when both are given). Pure; ``[B]``."""
    targets = returns * reward_scale
    if bootstrap_discount is not None and end_values is not None:
        targets = targets + bootstrap_discount * end_values
    return targets


@dataclass(frozen=True)
class ValueTargets:
    """Targets of one algorithm's value function.

    reward_scale: returns are multiplied by this (the value works in scaled units; AWR weights
    are normalised per task, so they do not depend on it). bootstrap: add the time-limit
    bootstrap term where the batch carries the bootstrap fields and a value is given.
    """

    reward_scale: float = 1.0
    bootstrap: bool = True

    def __call__(self, rows: dict[str, torch.Tensor], value: ValueFn | None = None) -> torch.Tensor:
        """Targets ``[B]`` of rows ``{field: [B, ...]}`` (a constant: no gradient flows)."""
        discount = end_values = None
        if self.bootstrap and value is not None and "bootstrap_observations" in rows:
            discount = rows["mc_bootstrap_discount"]
            end_values = value(rows["bootstrap_observations"])
        return value_targets(rows["mc_returns"], self.reward_scale, discount, end_values).detach()


def episode_targets(rewards: np.ndarray, terminated: bool, final_observation: np.ndarray, gamma: float) -> dict[str, np.ndarray]:
    """The target fields of one freshly rolled-out episode (online fine-tuning).

    rewards ``[L]``; terminated: whether the episode ended in a terminal state (else it was
    truncated and is bootstrapped from ``final_observation``). Returns ``mc_returns [L]``,
    ``mc_bootstrap_discount [L]`` and ``bootstrap_observations [L, obs_dim]``, as the sampler's.
    """
    n = len(rewards)
    terminal = np.zeros(n, dtype=bool)
    terminal[-1] = bool(terminated)
    returns, discount = mc_returns(rewards, np.zeros(n, dtype=np.int64), terminal, gamma)
    final = np.broadcast_to(np.asarray(final_observation, dtype=np.float32), (n, np.size(final_observation)))
    return {"mc_returns": returns, "mc_bootstrap_discount": discount, "bootstrap_observations": np.ascontiguousarray(final)}
