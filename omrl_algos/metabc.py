"""Meta-BC: MAML with behaviour cloning in both loops (paper 001's baseline).

Per task of a meta-batch (support D_tr, disjoint query D_ts), with ``L_BC = mean -log pi(a|s)``:

    theta' = theta - alpha * grad L_BC(theta, D_tr)            (inner, learned per-tensor alpha)
    outer loss = mean over tasks of L_BC(theta', D_ts)          (Adam; second order by default)

The same policy network as MACAW (no advantage head), no value function: online fine-tuning,
which needs a critic, is not available for this algorithm. Meta-test runs the same inner
step(s) on the test task's adaptation batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from omrl_algos import losses
from omrl_algos.base import Agent, MetaAlgorithm
from omrl_algos.meta import call, detached, grad_norm, inner_step, lrs_for, make_inner_lrs, map_tasks, outer_adam, params_of, task_tensors
from omrl_algos.networks import GaussianPolicy, factored_maps, materialise
from omrl_data.batch import TaskBatch


@dataclass
class MetaBCConfig:
    """Meta-BC hyperparameters (networks, batches and inner loop as MACAW's, reference.md s. 3)."""

    width: int = 100  # hidden units per layer of the policy
    depth: int = 3  # hidden layers of the policy
    weight_transform: bool = True  # weight-transform layers (as MACAW); False = plain linear layers
    latent_dim: int = 100  # size of each layer's latent code (weight transform only)
    wt_factored: bool = True  # inner steps keep a map's update as rank-one terms, never forming the adapted map (as MACAW's; False = form it, same numbers)
    wt_init: str = "scaled"  # weight-transform map init: scaled (M ~ N(0, 1/D), plain-layer bias; one inner step no larger than a plain layer's) | reference (nn.Linear default, as the reference code)
    policy_sigma: float = 0.2  # fixed standard deviation of the Gaussian policy
    meta_batch: int = 5  # tasks per meta-batch
    support_size: int = 256  # support (inner-loop) transitions per task
    query_size: int = 256  # query (outer-loop) transitions per task, disjoint from the support
    contiguous_support: bool = True  # support = one window of rows in collect order (as MACAW); meta-test adapts on the same kind of window
    support_stride: int = 7  # the window takes every k-th row (as MACAW)
    inner_steps: int = 1  # inner SGD steps
    inner_lr_init: float = 1e-3  # initial inner lr; stored as log(lr), applied through softplus
    learn_inner_lrs: bool = True  # meta-learn the per-tensor inner lrs
    lr_lr: float = 1e-3  # Adam lr of the inner lrs
    policy_lr: float = 1e-4  # outer Adam lr of the policy
    first_order: bool = False  # drop second-order terms of the meta-gradient
    vmap: bool = True  # tasks through torch.func.vmap; False = Python loop (same numbers)
    grad_clip: float = 0.0  # clip the meta-gradient norm; 0 = off


class MetaBC(MetaAlgorithm):
    name = "metabc"
    Config = MetaBCConfig

    def __init__(self, config: MetaBCConfig, obs_dim: int, act_dim: int, device: str | torch.device = "cpu"):
        super().__init__(config, obs_dim, act_dim, device)
        c = config
        net = dict(width=c.width, depth=c.depth, weight_transform=c.weight_transform, latent_dim=c.latent_dim, wt_init=c.wt_init)
        self.policy = GaussianPolicy(obs_dim, act_dim, sigma=c.policy_sigma, advantage_head=False, **net).to(self.device)
        self.policy_lrs = make_inner_lrs(self.policy, c.inner_lr_init, self.device)
        self.policy_plan = factored_maps(self.policy) if c.wt_factored else {}
        for p in self.policy_lrs.parameters():
            p.requires_grad_(c.learn_inner_lrs)
        groups = [{"params": list(self.policy.parameters()), "lr": c.policy_lr}]
        if c.learn_inner_lrs:
            groups.append({"params": list(self.policy_lrs.parameters()), "lr": c.lr_lr})
        self.optimizer = outer_adam(groups, self.device)

    # ------------------------------------------------------------------------- pure pieces
    def _bc_loss(self, policy_params: dict, rows: dict) -> dict[str, torch.Tensor]:
        return losses.behaviour_cloning_loss(call(self.policy, policy_params, rows["observations"]), self.config.policy_sigma, rows["actions"])

    def _adapt_params(self, meta: dict, support: dict, first_order: bool) -> tuple[dict, dict]:
        policy = meta["policy"]
        lrs = lrs_for(policy, meta["policy_lrs"])
        terms: dict[str, torch.Tensor] = {}
        for k in range(self.config.inner_steps):
            policy, step_terms = inner_step(self._bc_loss, policy, lrs, support, first_order=first_order, factored=self.policy_plan)
            if k == 0:
                terms = {"inner_bc": step_terms["bc"]}
        return policy, terms

    def task_objective(self, meta: dict, task: dict) -> dict[str, torch.Tensor]:
        """Outer BC loss of one task (``task = {"support": {...}, "query": {...}}``, ``[B, ...]``)."""
        policy, terms = self._adapt_params(meta, task["support"], self.config.first_order)
        return {"policy_loss": self._bc_loss(policy, task["query"])["loss"], **terms}

    # ------------------------------------------------------------------------------ training
    def train_step(self, sampler: Any) -> dict[str, float]:
        c = self.config
        support, query = sampler.sample_support_query(c.support_size, c.query_size, contiguous=c.contiguous_support, stride=c.support_stride)
        meta = {"policy": params_of(self.policy), "policy_lrs": dict(self.policy_lrs.items())}
        out = map_tasks(self.task_objective, meta, {"support": task_tensors(support), "query": task_tensors(query)}, use_vmap=c.vmap)
        loss = out["policy_loss"].mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics = {
            "train/policy_loss": float(loss.detach()),
            "train/inner_bc": float(out["inner_bc"].mean()),
            "train/meta_grad_norm/policy": grad_norm(self.policy.parameters()),
            "train/meta_grad_norm/inner_lrs": grad_norm(self.policy_lrs.parameters()),
        }
        if c.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.policy.parameters(), c.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            for k, v in self.policy_lrs.items():
                metrics[f"train/inner_lr/policy/{k.replace('__', '.')}"] = float(F.softplus(v))
        return metrics

    # ---------------------------------------------------------------------------- meta-test
    def adapt(self, batch: TaskBatch) -> Agent:
        """The inner step(s) on one task's batch ``[1, B, ...]``, no graph kept."""
        meta = {"policy": detached(params_of(self.policy)), "policy_lrs": {k: v.detach() for k, v in self.policy_lrs.items()}}
        support = {k: v[0] for k, v in task_tensors(batch.to(self.device)).items()}
        policy, _ = self._adapt_params(meta, support, first_order=True)
        return self.make_agent(materialise(policy, self.policy_plan))
