"""Offline MT+FT: multi-task AWR, then fine-tuning on the test task (paper 001's baseline).

Training: one policy and one value network (MACAW's networks, no task input) on the pooled
data of all training tasks: each step draws ``meta_batch`` tasks x ``batch_size`` rows and
takes an Adam step on the value regression to MC returns (eq. 2) and one on AWR (eq. 1) with
advantages ``R - V(s)`` from the current value (a constant for the policy).

Adaptation (meta-test): from the trained parameters, ``adapt_steps`` Adam steps (lr
``adapt_lr``) on the test task's adaptation batch: the value first, then the policy's AWR
with the fine-tuned value (reference.md section 6: 20 steps).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from omrl_algos import losses
from omrl_algos.base import Agent, MetaAlgorithm
from omrl_algos.meta import Params, call, grad_norm, params_of
from omrl_algos.networks import GaussianPolicy, ValueNetwork
from omrl_data.batch import TaskBatch
from omrl_data.errors import BadInput


@dataclass
class MtftConfig:
    """Offline MT+FT hyperparameters (networks as MACAW's, reference.md sections 3 and 6)."""

    width: int = 100  # hidden units per layer of policy and value
    depth: int = 3  # hidden layers of policy and value
    weight_transform: bool = True  # weight-transform layers (as MACAW); False = plain linear layers
    latent_dim: int = 100  # size of each layer's latent code (weight transform only)
    policy_sigma: float = 0.2  # fixed standard deviation of the Gaussian policy
    meta_batch: int = 5  # training tasks drawn per step (rows pooled over them)
    batch_size: int = 256  # rows per drawn task and step
    temperature: float = 1.0  # AWR temperature T
    max_weight: float = 20.0  # AWR weights are clipped at this value
    value_lr: float = 1e-4  # Adam lr of the value network during multi-task training
    policy_lr: float = 1e-4  # Adam lr of the policy during multi-task training
    adapt_steps: int = 20  # Adam steps on the test task's adaptation batch, per network (reference: 20)
    adapt_lr: float = 1e-3  # Adam lr of those fine-tuning steps
    grad_clip: float = 0.0  # clip the gradient norm per network; 0 = off


class MultiTaskFineTune(MetaAlgorithm):
    name = "mtft"
    Config = MtftConfig

    def __init__(self, config: MtftConfig, obs_dim: int, act_dim: int, device: str | torch.device = "cpu"):
        super().__init__(config, obs_dim, act_dim, device)
        c = config
        if c.adapt_steps < 0:
            raise BadInput(f"algo.adapt_steps={c.adapt_steps} must be >= 0")
        net = dict(width=c.width, depth=c.depth, weight_transform=c.weight_transform, latent_dim=c.latent_dim)
        self.value = ValueNetwork(obs_dim, **net).to(self.device)
        self.policy = GaussianPolicy(obs_dim, act_dim, sigma=c.policy_sigma, advantage_head=False, **net).to(self.device)
        self.optimizer = torch.optim.Adam(
            [{"params": list(self.value.parameters()), "lr": c.value_lr}, {"params": list(self.policy.parameters()), "lr": c.policy_lr}]
        )

    # ------------------------------------------------------------------------- pure pieces
    def value_loss(self, value_params: Params, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return losses.value_loss(call(self.value, value_params, rows["observations"]), rows["mc_returns"])

    def policy_loss(self, policy_params: Params, value_params: Params, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """AWR with advantages ``R - V(s)`` (a constant for the policy). rows: ``{field: [N, ...]}``."""
        c = self.config
        with torch.no_grad():
            adv = rows["mc_returns"] - call(self.value, value_params, rows["observations"])
        mean = call(self.policy, policy_params, rows["observations"])
        return losses.awr_loss(mean, c.policy_sigma, rows["actions"], adv, c.temperature, c.max_weight)

    # ------------------------------------------------------------------------------ training
    def train_step(self, sampler: Any) -> dict[str, float]:
        c = self.config
        batch = sampler.sample()
        rows = _pooled(batch)
        value_terms = self.value_loss(params_of(self.value), rows)
        policy_terms = self.policy_loss(params_of(self.policy), params_of(self.value), rows)
        self.optimizer.zero_grad(set_to_none=True)
        (value_terms["loss"] + policy_terms["loss"]).backward()  # disjoint parameters
        metrics = {
            "train/value_loss": float(value_terms["loss"].detach()),
            "train/policy_loss": float(policy_terms["loss"].detach()),
            "train/awr_weight_max": float(policy_terms["awr_weight_max"]),
            "train/grad_norm/value": grad_norm(self.value.parameters()),
            "train/grad_norm/policy": grad_norm(self.policy.parameters()),
        }
        if c.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.value.parameters(), c.grad_clip)
            nn.utils.clip_grad_norm_(self.policy.parameters(), c.grad_clip)
        self.optimizer.step()
        return metrics

    # ---------------------------------------------------------------------------- meta-test
    def adapt(self, batch: TaskBatch) -> Agent:
        """``adapt_steps`` Adam steps on the value, then on the policy, over the whole batch ``[1, B]``."""
        c = self.config
        rows = _pooled(batch.to(self.device))
        value = _trainable(params_of(self.value))
        policy = _trainable(params_of(self.policy))
        with torch.enable_grad():
            for params, loss_fn in ((value, lambda: self.value_loss(value, rows)), (policy, lambda: self.policy_loss(policy, value, rows))):
                opt = torch.optim.Adam(list(params.values()), lr=c.adapt_lr)
                for _ in range(c.adapt_steps):
                    opt.zero_grad(set_to_none=True)
                    loss_fn()["loss"].backward()
                    opt.step()
        return Agent(self.policy, policy, self.value, value)


def _pooled(batch: TaskBatch) -> dict[str, torch.Tensor]:
    """The batch's rows of all its tasks as flat ``{field: [T * B, ...]}`` (no task input)."""
    return {k: getattr(batch, k).flatten(0, 1) for k in ("observations", "actions", "mc_returns")}


def _trainable(params: Params) -> Params:
    """Fresh leaf copies to fine-tune (the meta-parameters stay untouched)."""
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
