"""MACEGA: Meta-Actor-Critic with Evolving Gradient Agreement (paper 000, Algorithm 1).

MACEGA keeps MACAW's networks, losses, learned inner lrs and meta-test adaptation (the paper
adopts MACAW's Alg. 2), and changes the meta-gradient. Per task of a meta-batch (support D_tr,
disjoint query D_ts):

1. ``phi'  = phi - eta * sg(grad L_V(phi, D_tr))``                           (Alg. 1 line 5)
2. ``phi*  = sum_k w_k (phi' + eps_k)``, ``w = softmax(-L_V(phi' + eps_k, D_tr) / tau)`` (line 6)
3. ``theta' = theta - alpha * sg(grad L_P(theta, phi', D_tr))``, L_P = L_AWR + c L_ADV  (line 7)
4. ``theta* = sum_k w_k (theta' + eps_k)``, ``w = softmax(-L_P(theta' + eps_k, phi', D_tr) / tau)``
   (line 8; the policy copies are scored with phi', not phi*, as the paper says)
5. per-task meta-gradients ``g^V_i = grad_phi L_V(phi*_i, D_ts)`` and
   ``g^P_i = grad_theta L_AWR(theta*_i, phi*_i, D_ts)`` (advantages from phi*, a constant)

Outer update (Adam): the value gets the mean of ``g^V_i`` (line 10); the policy gets
``sum_i w_i g^P_i`` with gradient-agreement weights (line 11-12, :mod:`omrl_algos.agreement`).

Where the meta-gradient flows (no second derivatives anywhere). ``sg`` is stop-gradient:

- Inner steps are first order: the inner gradient is a constant, so ``d phi'/d phi = I`` and
  ``d phi'/d eta = -sg(grad)`` (the inner lrs are still meta-learned, first order).
- Evolving update (:mod:`omrl_algos.evolving`, ``evolving_paths``): with ``"both"`` (default)
  ``phi*`` reaches ``phi'`` through the copies' values (Jacobian ``sum_k w_k I = I``) and through
  the softmax weights (``w_k -> L_V(phi' + eps_k, D_tr) -> phi'``, first derivatives of the
  support loss at the perturbed points). The noise ``eps_k`` is a constant. ``"weights"`` is
  EvoGrad's strict form: copies detached in the combination, gradient only through the weights.
  Because the inner gradient is a constant, the path through the weights is first order too.
- Value and policy meta-gradients are disjoint: the value enters the policy losses only through
  detached advantages; c (the advantage-loss coefficient) is reached only through the policy's
  evolving weights (the inner step holds its gradient constant).
- Agreement weights are constants computed from per-task vectors ``g_i``: by default each task's
  inner policy update ``theta'_i - theta`` (``agreement_vectors="inner"``, Eshratifar et al.'s
  definition), or the policy-network parts of the meta-gradients ``g^P_i`` (``"outer"``). Paper
  000 writes the weights with "the gradient of task i" and does not say which; measured on the
  fidelity bandit (README), the outer vectors gave negative weights to disagreeing tasks often
  enough that the policy stopped adapting. The same weights scale the task's policy inner-lr and
  c gradients.

Ablations (paper 000 s. IV-C-4): ``no_evolving_gradient`` sets ``phi* = phi'``, ``theta* =
theta'`` (the plain first-order SGD meta-gradient); ``no_gradient_agreement`` averages the
policy meta-gradients like the value's.

Each task's gradients come from one ``torch.func.grad`` of its outer losses (the tasks through
``map_tasks``: vmap or loop); the perturbations are drawn per meta-step from the algorithm's own
generator, whose state is part of ``state_dict`` so a resumed run draws the same noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import grad
from torch.utils._pytree import tree_flatten

from omrl_algos import losses
from omrl_algos.agreement import agreement_weights, weighted_sum
from omrl_algos.evolving import NOISE_TYPES, PATHS, draw_noise, evolve, projected_rank, weight_entropy
from omrl_algos.macaw import Macaw, MacawConfig
from omrl_algos.meta import call, clip_and_norm, detached, grad_norm, map_tasks, task_tensors
from omrl_data.errors import BadInput

# Parts of meta_params() that the policy's outer loss reaches (the rest belongs to the value).
POLICY_SIDE = ("policy", "policy_lrs", "adv_coef")


@dataclass
class MacegaConfig(MacawConfig):
    """MACEGA hyperparameters: MACAW's (networks, batches, inner loop, outer lrs) plus these."""

    first_order: bool = True  # MACEGA's inner steps are always first order (must stay True)
    perturbations: int = 2  # P, perturbed copies per task and network (EvoGrad: K = 2)
    sigma: float = 1e-3  # perturbation scale (EvoGrad: 1e-3)
    noise: str = "sign"  # sign: sigma * sign(N(0, 1)) (EvoGrad); gaussian: sigma * N(0, 1)
    map_noise: str = "dense"  # a weight-transform map's noise: dense (a [D, L] draw per copy, of type noise) | projected (Gaussian, drawn only where it reaches a loss: its projection on the latents' span, D x (P + 1) numbers; same distribution of every loss, Rao-Blackwellised meta-gradient; evolving.py). Needs wt_factored
    tau: float = 0.05  # softmax temperature of the evolving weights (EvoGrad: 0.05); relative to the copies' mean loss when tau_relative
    tau_relative: bool = True  # temperature tau * |mean_k L(p_k)|: weights follow relative loss differences, so they are not one-hot at any loss scale (absolute tau 0.05 gave weights [4e-44, 1])
    evolving_paths: str = "both"  # meta-gradient through copies' values and weights (both) or only the weights (weights; EvoGrad's strict form)
    no_evolving_gradient: bool = False  # ablation "No EG": phi* = phi', theta* = theta' (plain first-order SGD meta-gradient)
    no_gradient_agreement: bool = False  # ablation "No GA": average the policy meta-gradients instead of agreement weights
    inner_lr_init: float = 3e-4  # initial inner lr of the value (and of the policy when policy_inner_lr_init = 0). MACAW's 1e-3 lets the first-order meta value drift off the data (docs/algorithms.md, "MACEGA's value drift"): on cheetah_dir its query MSE grew 1.8 -> 1,100 in 900 meta-steps and a third of the runs diverged
    policy_inner_lr_init: float = 1e-3  # initial inner lr of the policy (and advantage head); 0 = inner_lr_init. First-order inner steps need a larger policy step to adapt
    value_anchor: float = 0.0  # weight of the meta value's own support loss L_V(phi, D_tr), added to the outer value loss; not in paper 000, 0 = off. A first-order meta-gradient never asks the meta value itself to fit the data, and it drifts off it (docs/algorithms.md, "MACEGA's value drift")
    agreement_normalise: bool = False  # agreement from the cosines of the task vectors instead of their dot products (a task's weight no longer grows with its vector's norm)
    weighted_backward: bool = True  # one backward of mean_i L_V,i + sum_i w_i L_P,i with the agreement weights computed first (they come from the inner updates); False = per-task meta-gradients, then their weighted sum (the straightforward version, same numbers; always so with agreement_vectors=outer)
    agreement_vectors: str = "inner"  # the g_i of the agreement weights: inner (each task's inner policy update theta' - theta, as Eshratifar et al.) | outer (the per-task policy meta-gradients); paper 000 does not say which


class Macega(Macaw):
    name = "macega"
    Config = MacegaConfig

    def __init__(self, config: MacegaConfig, obs_dim: int, act_dim: int, device: str | torch.device = "cpu"):
        if not config.first_order:
            raise BadInput("MACEGA never forms second derivatives: algo.first_order must stay true (use macaw for second order)")
        if config.noise not in NOISE_TYPES:
            raise BadInput(f"algo.noise={config.noise!r} is not known; use one of {', '.join(NOISE_TYPES)}")
        if config.evolving_paths not in PATHS:
            raise BadInput(f"algo.evolving_paths={config.evolving_paths!r} is not known; use one of {', '.join(PATHS)}")
        if config.agreement_vectors not in ("inner", "outer"):
            raise BadInput(f"algo.agreement_vectors={config.agreement_vectors!r} is not known; use inner or outer")
        if config.map_noise not in ("dense", "projected"):
            raise BadInput(f"algo.map_noise={config.map_noise!r} is not known; use dense or projected")
        if config.map_noise == "projected" and not (config.wt_factored and config.weight_transform):
            raise BadInput("algo.map_noise=projected needs weight-transform layers with factored maps (algo.weight_transform=true, algo.wt_factored=true)")
        if config.value_anchor < 0:
            raise BadInput(f"algo.value_anchor={config.value_anchor} must be >= 0 (0 = off)")
        if config.perturbations < 1 or config.tau <= 0 or config.sigma < 0:
            raise BadInput(f"need algo.perturbations >= 1, algo.tau > 0 and algo.sigma >= 0; got {config.perturbations}, {config.tau}, {config.sigma}")
        super().__init__(config, obs_dim, act_dim, device)
        # Own generator for the perturbations (never the global RNG); seeded from the global
        # RNG, which the training loop seeds, and saved in state_dict (get_extra_state).
        self.noise_generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))

    def get_extra_state(self) -> dict[str, Any]:
        return {"noise_generator": self.noise_generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.noise_generator.set_state(state["noise_generator"])

    # ------------------------------------------------------------------------- pure pieces
    def outer_terms(self, meta: dict, task: dict) -> dict[str, Any]:
        """Outer losses of one task, ``L_V(phi*, D_ts)`` and ``L_AWR(theta*, phi*, D_ts)`` (with
        their graph), and logged terms (detached).

        task: ``{"support", "query": {field: [B, ...]}, "noise": {"value"|"policy": {name: [P, ...]}}}``.
        """
        c = self.config
        # Value targets once per batch (MC returns, bootstrapped at truncations as MACAW's).
        support = self._support_targets(meta["value"], task["support"])
        value, policy, terms = self._adapt_params(meta, support, first_order=True)
        # The task's inner policy update theta' - theta (Eshratifar et al.'s agreement vectors);
        # a factored map's update is its rank-one terms (u, v), never formed.
        inner_update = {k: (policy[k] - meta["policy"][k]).detach() for k in meta["policy"] if k not in self.policy_plan}
        inner_factors = {k: (policy[f.u].detach(), policy[f.v].detach()) for k, f in self.policy_plan.items()}
        if not c.no_evolving_gradient:
            adv_coef = F.softplus(meta["adv_coef"])
            value_prime = value
            projected = c.map_noise == "projected"
            value, v_w, _ = evolve(value, lambda p: self._value_loss(p, support)["loss"], task["noise"]["value"], c.tau, c.evolving_paths, c.tau_relative, self.value_plan, projected)
            advantages = self._advantages(value_prime, support)  # once for all copies (a constant for the policy)
            policy, p_w, _ = evolve(policy, lambda p: self._copy_policy_loss(p, advantages, adv_coef, support), task["noise"]["policy"], c.tau, c.evolving_paths, c.tau_relative, self.policy_plan, projected)
            terms = {
                **terms,
                "evolving_weight_max/value": v_w.max().detach(),
                "evolving_weight_max/policy": p_w.max().detach(),
                "evolving_weight_entropy/value": weight_entropy(v_w).detach(),
                "evolving_weight_entropy/policy": weight_entropy(p_w).detach(),
            }
        query = task["query"]
        outer_value, advantages = self._outer_value(value, query)  # targets bootstrapped with phi* (detached)
        value_loss = outer_value["loss"]
        if c.value_anchor > 0:  # L_V(phi*, D_ts) + lambda L_V(phi, D_tr): the meta value's own fit
            anchor = self._value_loss(meta["value"], support)["loss"]
            value_loss = value_loss + c.value_anchor * anchor
            terms = {**terms, "value_anchor_mse": anchor.detach()}
        mean = call(self.policy, policy, query["observations"])
        outer_policy = losses.awr_loss(mean, c.policy_sigma, query["actions"], advantages, c.temperature, c.max_weight)
        out = {"value_loss": value_loss, "policy_loss": outer_policy["loss"], "awr_weight_max": outer_policy["awr_weight_max"], **terms}
        if c.agreement_vectors == "inner":
            out["inner_update"], out["inner_factors"] = inner_update, inner_factors
        return out

    def outer_objective(self, meta: dict, task: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``L_V(phi*, D_ts) + L_AWR(theta*, phi*, D_ts)`` of one task and its logged terms.
        The two terms touch disjoint meta-parameters, so one gradient of the sum gives both."""
        out = self.outer_terms(meta, task)
        value_loss, policy_loss = out["value_loss"], out["policy_loss"]
        aux = {**out, "value_loss": value_loss.detach(), "policy_loss": policy_loss.detach()}
        return value_loss + policy_loss, aux

    def _copy_policy_loss(self, policy_params: dict, advantages: torch.Tensor, adv_coef: torch.Tensor, support: dict) -> torch.Tensor:
        """The inner policy loss L_P (as MACAW's ``_policy_inner_loss``) with given advantages."""
        c = self.config
        if not c.advantage_head:
            mean = call(self.policy, policy_params, support["observations"])
            return losses.awr_loss(mean, c.policy_sigma, support["actions"], advantages, c.temperature, c.max_weight)["loss"]
        mean, predicted = call(self.policy, policy_params, support["observations"], support["actions"], method="mean_and_advantage")
        return losses.enriched_policy_loss(mean, predicted, c.policy_sigma, support["actions"], advantages, adv_coef, c.temperature, c.max_weight)["loss"]

    def task_gradients(self, meta: dict, task: dict) -> tuple[dict, dict[str, torch.Tensor]]:
        """Meta-gradients of one task (a pytree like ``meta``) and its logged terms."""
        return grad(self.outer_objective, has_aux=True)(meta, task)

    def _noise(self, n_tasks: int) -> dict[str, dict[str, torch.Tensor]]:
        c = self.config
        out = {}
        for part, module in (("value", self.value), ("policy", self.policy)):
            shapes = {k: p.shape for k, p in module.named_parameters()}
            maps = frozenset(self._plan(part)) if c.map_noise == "projected" else frozenset()
            for k in maps:  # only the projection of the map's noise is drawn (evolving.evolve)
                shapes[k] = torch.Size([shapes[k][0], projected_rank(shapes[k][1], c.perturbations)])
            dtype = next(module.parameters()).dtype
            drawn = draw_noise(shapes, n_tasks, c.perturbations, c.sigma, c.noise, self.noise_generator, self.device, gaussian=maps)
            out[part] = {k: v.to(dtype) for k, v in drawn.items()}
        return out

    def _per_task(self, support: Any, query: Any) -> dict[str, Any]:
        per_task = {"support": task_tensors(support), "query": task_tensors(query)}
        if not self.config.no_evolving_gradient:
            per_task["noise"] = self._noise(support.num_tasks)
        return per_task

    def per_task_gradients(self, support: Any, query: Any) -> tuple[dict, dict[str, torch.Tensor]]:
        """Per-task meta-gradients ``{...: [T, ...]}`` and terms ``{name: [T]}`` of a meta-batch."""
        meta = {k: (detached(v) if isinstance(v, dict) else v.detach()) for k, v in self.meta_params().items()}
        return map_tasks(self.task_gradients, meta, self._per_task(support, query), use_vmap=self.config.vmap)

    def _agreement(self, out: dict, grads: dict | None, n_tasks: int) -> torch.Tensor:
        """The tasks' policy weights (agreement weights, or 1/T without agreement)."""
        c = self.config
        factors = out.pop("inner_factors", {})
        if c.no_gradient_agreement:
            out.pop("inner_update", None)
            return torch.full((n_tasks,), 1.0 / n_tasks, device=self.device)
        if c.agreement_vectors == "inner":
            return agreement_weights(list(out.pop("inner_update").values()), factors=list(factors.values()), normalise=self.config.agreement_normalise)
        return agreement_weights(list(grads["policy"].values()), normalise=self.config.agreement_normalise)

    def _weighted_backward(self, support: Any, query: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One backward of ``mean_i L_V,i + sum_i w_i L_P,i``: the gradient the per-task path
        forms as ``mean_i g^V_i`` and ``sum_i w_i g^P_i`` (the weights are constants, and the
        value and policy losses touch disjoint meta-parameters), without per-task gradients."""
        out = map_tasks(self.outer_terms, self.meta_params(), self._per_task(support, query), use_vmap=self.config.vmap)
        weights = self._agreement(out, None, support.num_tasks)
        self.optimizer.zero_grad(set_to_none=True)
        (out["value_loss"].mean() + (weights.to(out["policy_loss"].dtype) * out["policy_loss"]).sum()).backward()
        out["value_loss"], out["policy_loss"] = out["value_loss"].detach(), out["policy_loss"].detach()
        return out, weights

    # ------------------------------------------------------------------------------ training
    def train_step(self, sampler: Any) -> dict[str, float]:
        c = self.config
        support, query = sampler.sample_support_query(c.support_size, c.query_size, contiguous=c.contiguous_support, stride=c.support_stride)
        if c.weighted_backward and (c.agreement_vectors == "inner" or c.no_gradient_agreement):
            out, weights = self._weighted_backward(support, query)
        else:
            grads, out = self.per_task_gradients(support, query)
            weights = self._agreement(out, grads, support.num_tasks)
            live = self.meta_params()
            self.optimizer.zero_grad(set_to_none=True)
            for part in live:
                params, _ = tree_flatten(live[part])
                task_grads, _ = tree_flatten(grads[part])
                for p, g in zip(params, task_grads):
                    if p.requires_grad:
                        p.grad = weighted_sum(g, weights) if part in POLICY_SIDE else g.mean(0)
        metrics = {
            "train/value_loss": float(out["value_loss"].mean()),
            "train/policy_loss": float(out["policy_loss"].mean()),
            "train/meta_grad_norm/value": clip_and_norm(self.value.parameters(), c.grad_clip),
            "train/meta_grad_norm/policy": clip_and_norm(self.policy.parameters(), c.grad_clip),
            "train/meta_grad_norm/inner_lrs": grad_norm(self._learned_scalars()),
            "train/agreement_weight_min": float(weights.min()),
            "train/agreement_weight_max": float(weights.max()),
        }
        self.optimizer.step()
        self.update_value_target()
        for key, value in out.items():
            if key not in ("value_loss", "policy_loss"):
                metrics[f"train/{key}"] = float(value.mean())
        metrics.update(self.learned_rates())
        return metrics

