"""Offline MT+FT: multi-task AWR, then fine-tuning on the test task (paper 001's baseline).

Training: one policy and one value network (MACAW's networks, no task input: a held-out task has
no id) on the data of all training tasks: each step draws ``meta_batch`` tasks x ``batch_size``
rows and takes an Adam step on the value regression (eq. 2) to the shared targets
(:mod:`omrl_algos.targets`: scaled MC returns, bootstrapped at truncations with the current
value) and one on AWR (eq. 1) with advantages ``y - V(s)``. The AWR weights are normalised *per
task* (the reference computes its losses per task): pooled over tasks, the between-task offsets
of the returns would dominate the advantages and the policy would imitate the best-paid task.

Adaptation (meta-test): from the trained parameters, ``adapt_steps`` rounds on the test task's
adaptation batch, each one Adam step on the value (lr ``adapt_value_lr``) and then one on the
policy's AWR with the current value (lr ``adapt_policy_lr``), interleaved as the reference's
``eval_multitask`` (value 1e-4, policy 1e-3; reference.md sections 6 and 9: 20 steps).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from omrl_algos import losses
from omrl_algos.base import Agent, MetaAlgorithm
from omrl_algos.meta import Params, call, clip_and_norm, outer_adam, params_of
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
    wt_init: str = "scaled"  # weight-transform map init: scaled (M ~ N(0, 1/D), plain-layer bias; one inner step no larger than a plain layer's) | reference (nn.Linear default, as the reference code)
    policy_sigma: float = 0.2  # fixed standard deviation of the Gaussian policy
    meta_batch: int = 5  # training tasks drawn per step (rows pooled over them)
    batch_size: int = 256  # rows per drawn task and step
    temperature: float = 1.0  # AWR temperature T
    max_weight: float = 20.0  # AWR weights are clipped at this value
    value_lr: float = 1e-4  # Adam lr of the value network during multi-task training
    policy_lr: float = 1e-4  # Adam lr of the policy during multi-task training
    adapt_steps: int = 20  # fine-tuning rounds on the test task's adaptation batch, one value and one policy step each (reference: 20)
    adapt_value_lr: float = 1e-4  # Adam lr of the value's fine-tuning steps (reference: 1e-4)
    adapt_policy_lr: float = 1e-3  # Adam lr of the policy's fine-tuning steps (reference: 1e-3)
    grad_clip: float = 0.0  # clip the gradient norm per network; 0 = off
    bootstrap: bool = True  # value targets bootstrapped at time-limit truncations with the current value; False = plain MC returns
    reward_scale: float = 0.0  # returns are multiplied by this for the value; 0 = auto: 1 / std of the training tasks' MC returns, resolved at the start of training and saved in config.yaml


class MultiTaskFineTune(MetaAlgorithm):
    name = "mtft"
    Config = MtftConfig

    def __init__(self, config: MtftConfig, obs_dim: int, act_dim: int, device: str | torch.device = "cpu"):
        super().__init__(config, obs_dim, act_dim, device)
        c = config
        if c.adapt_steps < 0:
            raise BadInput(f"algo.adapt_steps={c.adapt_steps} must be >= 0")
        net = dict(width=c.width, depth=c.depth, weight_transform=c.weight_transform, latent_dim=c.latent_dim, wt_init=c.wt_init)
        self.value = ValueNetwork(obs_dim, **net).to(self.device)
        self.policy = GaussianPolicy(obs_dim, act_dim, sigma=c.policy_sigma, advantage_head=False, **net).to(self.device)
        self.optimizer = outer_adam(
            [{"params": list(self.value.parameters()), "lr": c.value_lr}, {"params": list(self.policy.parameters()), "lr": c.policy_lr}], self.device
        )

    # ------------------------------------------------------------------------- pure pieces
    def targets(self, value_params: Params, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        """Shared value targets ``[T, B]`` of rows ``{field: [T, B, ...]}`` (bootstrapped with the
        detached current value)."""
        frozen = {k: v.detach() for k, v in value_params.items()}
        return self.value_targets()(rows, lambda obs: call(self.value, frozen, obs))

    def value_loss(self, value_params: Params, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return losses.value_loss(call(self.value, value_params, rows["observations"]), self.targets(value_params, rows))

    def policy_loss(self, policy_params: Params, value_params: Params, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """AWR with advantages ``y - V(s)`` (constants), weights normalised per task. rows: ``[T, B, ...]``."""
        c = self.config
        with torch.no_grad():
            adv = self.targets(value_params, rows) - call(self.value, value_params, rows["observations"])
        mean = call(self.policy, policy_params, rows["observations"])
        return losses.awr_loss(mean, c.policy_sigma, rows["actions"], adv, c.temperature, c.max_weight)

    # ------------------------------------------------------------------------------ training
    def train_step(self, sampler: Any) -> dict[str, float]:
        c = self.config
        batch = sampler.sample()
        rows = _rows(batch)
        value_terms = self.value_loss(params_of(self.value), rows)
        policy_terms = self.policy_loss(params_of(self.policy), params_of(self.value), rows)
        self.optimizer.zero_grad(set_to_none=True)
        (value_terms["loss"] + policy_terms["loss"]).backward()  # disjoint parameters
        metrics = {
            "train/value_loss": float(value_terms["loss"].detach()),
            "train/policy_loss": float(policy_terms["loss"].detach()),
            "train/awr_weight_max": float(policy_terms["awr_weight_max"]),
            # Norms before clipping (clip_and_norm clips to grad_clip when it is positive).
            "train/grad_norm/value": clip_and_norm(self.value.parameters(), c.grad_clip),
            "train/grad_norm/policy": clip_and_norm(self.policy.parameters(), c.grad_clip),
        }
        self.optimizer.step()
        return metrics

    # ---------------------------------------------------------------------------- meta-test
    def adapt(self, batch: TaskBatch) -> Agent:
        """``adapt_steps`` interleaved Adam steps (value, then policy) on the whole batch ``[1, B]``."""
        c = self.config
        rows = _rows(batch.to(self.device))
        value = _trainable(params_of(self.value))
        policy = _trainable(params_of(self.policy))
        opt_v = torch.optim.Adam(list(value.values()), lr=c.adapt_value_lr)
        opt_p = torch.optim.Adam(list(policy.values()), lr=c.adapt_policy_lr)
        with torch.enable_grad():
            for _ in range(c.adapt_steps):
                for opt, loss_fn in ((opt_v, lambda: self.value_loss(value, rows)), (opt_p, lambda: self.policy_loss(policy, value, rows))):
                    opt.zero_grad(set_to_none=True)
                    loss_fn()["loss"].backward()
                    opt.step()
        return self.make_agent(policy, value)


def _rows(batch: TaskBatch) -> dict[str, torch.Tensor]:
    """The fields the losses read, ``{field: [T, B, ...]}`` (tasks kept apart: per-task AWR weights)."""
    names = ("observations", "actions", "mc_returns", "mc_bootstrap_discount", "bootstrap_observations")
    return {k: getattr(batch, k) for k in names if getattr(batch, k) is not None}


def _trainable(params: Params) -> Params:
    """Fresh leaf copies to fine-tune (the meta-parameters stay untouched)."""
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
