"""MACAW: Meta Actor-Critic with Advantage Weighting (paper 001, Algorithms 1 and 2).

Per task of a meta-batch (support batch D_tr, disjoint query batch D_ts):

1. value inner step on the MC-return regression (eq. 2):  phi' = phi - eta * grad L_V(phi, D_tr)
2. policy inner step on the enriched loss (eq. 3) with the *adapted* value:
   theta' = theta - alpha * grad [L_AWR + c * L_ADV](theta, phi', D_tr)
3. outer losses on D_ts: L_V(phi') (eq. 5) and plain L_AWR(theta', phi') (eq. 6).

The outer update is Adam on the mean over tasks, differentiated through the inner steps
(second order; ``first_order=True`` stops that). Inner lrs (one per parameter tensor) and the
advantage coefficient c are learned, stored as log values and applied through softplus.
Steps 1-2 repeat ``inner_steps`` times (interleaved, as in Alg. 2); meta-test runs the same
adaptation on the test task's adaptation batch.

Value targets come from the shared component (:mod:`omrl_algos.targets`): scaled Monte Carlo
returns, bootstrapped where the episode was cut by the time limit. As in the reference, the
outer (query) targets and the outer advantages bootstrap with the task's *adapted* value
``R_t + gamma^(T-t) V_phi'(s_T)``, and the inner value step regresses on plain MC returns
(``inner_bootstrap`` adds the bootstrap there too, with the meta value).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from omrl_algos import losses
from omrl_algos.base import Agent, MetaAlgorithm
from omrl_algos.meta import (
    call,
    clip_and_norm,
    detached,
    grad_norm,
    inner_step,
    lrs_for,
    make_inner_lrs,
    map_tasks,
    outer_adam,
    params_of,
    raw_lr,
    task_tensors,
)
from omrl_algos.networks import GaussianPolicy, ValueNetwork, factored_maps, materialise
from omrl_data.batch import TaskBatch


@dataclass
class MacawConfig:
    """MACAW hyperparameters; defaults from paper 001 and its reference code (reference.md s. 3)."""

    width: int = 100  # hidden units per layer of policy and value
    depth: int = 3  # hidden layers of policy and value
    weight_transform: bool = True  # weight-transform layers everywhere; False = plain linear layers of equal width
    latent_dim: int = 100  # size of each layer's latent code (weight transform only)
    wt_factored: bool = True  # inner steps keep a weight-transform map's update as rank-one terms and never form the adapted map (networks.py); False = form it (the straightforward version: same numbers, ~5x the time at paper size)
    wt_init: str = "scaled"  # weight-transform map init: scaled (M ~ N(0, 1/D), plain-layer bias; one inner step no larger than a plain layer's) | reference (nn.Linear default, as the reference code)
    adv_width: int = 32  # hidden units of the advantage head
    advantage_head: bool = True  # enriched inner loss L_AWR + c L_ADV; False = MAML+AWR ablation
    policy_sigma: float = 0.2  # fixed standard deviation of the Gaussian policy
    meta_batch: int = 5  # tasks per meta-batch
    support_size: int = 256  # support (inner-loop) transitions per task
    query_size: int = 256  # query (outer-loop) transitions per task, disjoint from the support
    contiguous_support: bool = True  # support = one window of rows in collect order (the reference's trajectory batches); meta-test adapts on the same kind of window
    support_stride: int = 7  # the window takes every k-th row (reference: its buffers were read every 7th transition, so 256 rows span ~9 episodes)
    inner_steps: int = 1  # inner SGD steps (value then policy per step)
    inner_lr_init: float = 1e-3  # initial inner lr (value, and policy unless policy_inner_lr_init); stored as log(lr), applied through softplus
    policy_inner_lr_init: float = 0.0  # initial inner lr of the policy (and advantage head); 0 = inner_lr_init
    learn_inner_lrs: bool = True  # meta-learn the per-tensor inner lrs and c
    lr_lr: float = 1e-3  # Adam lr of the inner lrs and c
    adv_coef_init: float = 0.01  # initial advantage-loss coefficient c; stored as log(c), applied through softplus
    temperature: float = 1.0  # AWR temperature T
    max_weight: float = 20.0  # AWR weights are clipped at this value (clamp at log(max_weight))
    value_lr: float = 1e-5  # outer Adam lr of the value network
    policy_lr: float = 1e-4  # outer Adam lr of the policy (with its advantage head)
    first_order: bool = False  # drop second-order terms of the meta-gradient
    vmap: bool = True  # tasks of a meta-batch through torch.func.vmap; False = Python loop (same numbers)
    grad_clip: float = 10.0  # clip the meta-gradient norm per network (0 = off); measured on cheetah_vel (README): 3 runs with 10 reached 0.43-0.52 normalised, 1 without 0.18, at outer lr 1e-3
    bootstrap: bool = True  # outer value targets R_t + gamma^(T-t) V_phi'(s_T) at time-limit truncations, phi' the adapted value (reference); False = plain MC returns
    bootstrap_target_tau: float = 0.0  # 0: bootstrap the outer targets with the task's adapted value (detached); > 0: with a slow Polyak copy of the meta value, moved this fraction towards it after every outer step (a target network; measured: the adapted value's self-bootstrap diverged on point_robot_sparse's 20-step episodes)
    inner_bootstrap: bool = False  # bootstrap the inner (support) value targets too, with the meta value (reference: off, no_bootstrap)
    reward_scale: float = 0.0  # returns are multiplied by this for the value; 0 = auto: 1 / std of the training tasks' MC returns, resolved at the start of training and saved in config.yaml


def _latent_taps(taps: dict | None, net: str, step: int) -> dict | None:
    """The taps on the latents' gradients ``g @ M`` of inner step ``step`` (None without taps)."""
    if taps is None:
        return None
    return {key: t[step] for key, t in taps["task"][net]["latent"].items()}


class Macaw(MetaAlgorithm):
    name = "macaw"
    Config = MacawConfig

    def __init__(self, config: MacawConfig, obs_dim: int, act_dim: int, device: str | torch.device = "cpu"):
        super().__init__(config, obs_dim, act_dim, device)
        c = config
        net = dict(width=c.width, depth=c.depth, weight_transform=c.weight_transform, latent_dim=c.latent_dim, wt_init=c.wt_init)
        self.value = ValueNetwork(obs_dim, **net).to(self.device)
        self.policy = GaussianPolicy(
            obs_dim, act_dim, sigma=c.policy_sigma, adv_width=c.adv_width, advantage_head=c.advantage_head, **net
        ).to(self.device)
        self.value_lrs = make_inner_lrs(self.value, c.inner_lr_init, self.device)
        self.policy_lrs = make_inner_lrs(self.policy, c.policy_inner_lr_init or c.inner_lr_init, self.device)
        # Which maps the inner steps update as rank-one terms (none: the dense step).
        self.value_plan = factored_maps(self.value) if c.wt_factored else {}
        self.policy_plan = factored_maps(self.policy) if c.wt_factored else {}
        self._map_grad_buffers: dict[tuple[str, str], torch.Tensor] = {}  # the maps' .grad storage (meta_losses)
        # The slow target copy of the meta value (bootstrap_target_tau > 0): buffers, not parameters.
        self.value_target: ValueNetwork | None = None
        if c.bootstrap_target_tau > 0:
            self.value_target = copy.deepcopy(self.value).requires_grad_(False)
        self.adv_coef = nn.Parameter(torch.tensor(raw_lr(c.adv_coef_init), device=self.device))
        for p in self._learned_scalars():
            p.requires_grad_(c.learn_inner_lrs)
        groups = [
            {"params": list(self.value.parameters()), "lr": c.value_lr},
            {"params": list(self.policy.parameters()), "lr": c.policy_lr},
        ]
        if c.learn_inner_lrs:
            groups.append({"params": self._learned_scalars(), "lr": c.lr_lr})
        self.optimizer = outer_adam(groups, self.device)

    def _learned_scalars(self) -> list[nn.Parameter]:
        return list(self.value_lrs.parameters()) + list(self.policy_lrs.parameters()) + [self.adv_coef]

    # ------------------------------------------------------------------------- pure pieces
    def meta_params(self) -> dict[str, Any]:
        """Everything the per-task function reads, as a pytree of tensors."""
        return {
            "value": params_of(self.value),
            "policy": params_of(self.policy),
            "value_lrs": dict(self.value_lrs.items()),
            "policy_lrs": dict(self.policy_lrs.items()),
            "adv_coef": self.adv_coef,
        }

    def _targets(self, task: dict) -> torch.Tensor:
        """The rows' value targets ``[B]`` (set by :meth:`_support_targets` / :meth:`_query_targets`)."""
        return task["targets"]

    def _support_targets(self, meta_value: dict, support: dict) -> dict:
        """Support rows with inner targets: MC returns (scaled), bootstrapped only if
        ``inner_bootstrap``, with the meta value (or its target copy when there is one)."""
        value = None
        if self.config.inner_bootstrap:
            frozen = detached(params_of(self.value_target) if self.value_target is not None else meta_value)
            value = lambda obs: call(self.value, frozen, obs)  # noqa: E731
        return {**support, "targets": self.value_targets()(support, value)}

    def _query_targets(self, value_params: dict, query: dict) -> dict:
        """Query rows with outer targets, bootstrapped with the (detached) adapted value."""
        frozen = detached(params_of(self.value_target) if self.value_target is not None else value_params)
        return {**query, "targets": self.value_targets()(query, lambda obs: call(self.value, frozen, obs))}

    @torch.no_grad()
    def update_value_target(self) -> None:
        """Move the target copy of the meta value towards it (after every outer step)."""
        if self.value_target is None:
            return
        tau = self.config.bootstrap_target_tau
        for target, live in zip(self.value_target.parameters(), self.value.parameters()):
            target.lerp_(live, tau)

    def _outer_value(self, value_params: dict, query: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The outer value loss on the query rows and their advantages ``R - V_phi(s)`` (a
        constant), targets bootstrapped with the (detached) adapted value: the same numbers as
        :meth:`_query_targets` + :meth:`_value_loss` + :meth:`_advantages`, with one forward of
        the value over the query and bootstrap observations together instead of three."""
        targets_of = self.value_targets()
        obs = query["observations"]
        if targets_of.bootstrap and "bootstrap_observations" in query and self.value_target is not None:
            values = call(self.value, value_params, obs)
            frozen = detached(params_of(self.value_target))
            end_values = call(self.value, frozen, query["bootstrap_observations"]).detach()
            targets = targets_of({**query, "bootstrap_observations": end_values}, lambda end: end)
        elif targets_of.bootstrap and "bootstrap_observations" in query:
            both = call(self.value, value_params, torch.cat([obs, query["bootstrap_observations"]], dim=-2))
            values, end_values = both[..., : obs.shape[-2]], both[..., obs.shape[-2] :].detach()
            targets = targets_of({**query, "bootstrap_observations": end_values}, lambda end: end)
        else:
            values = call(self.value, value_params, obs)
            targets = targets_of(query)
        return losses.value_loss(values, targets), (targets - values).detach()

    def _value_loss(self, value_params: dict, task: dict) -> dict[str, torch.Tensor]:
        return losses.value_loss(call(self.value, value_params, task["observations"]), self._targets(task))

    def _advantages(self, value_params: dict, task: dict) -> torch.Tensor:
        """``R - V_phi(s)``, a constant for the policy losses (phi is trained only by L_V)."""
        return (self._targets(task) - call(self.value, value_params, task["observations"])).detach()

    def _policy_inner_loss(self, policy_params: dict, value_params: dict, adv_coef: torch.Tensor, task: dict) -> dict[str, torch.Tensor]:
        c = self.config
        adv = self._advantages(value_params, task)
        if not c.advantage_head:
            mean = call(self.policy, policy_params, task["observations"])
            return losses.awr_loss(mean, c.policy_sigma, task["actions"], adv, c.temperature, c.max_weight)
        mean, predicted = call(self.policy, policy_params, task["observations"], task["actions"], method="mean_and_advantage")
        return losses.enriched_policy_loss(mean, predicted, c.policy_sigma, task["actions"], adv, adv_coef, c.temperature, c.max_weight)

    def _adapt_params(self, meta: dict, support: dict, first_order: bool, taps: dict | None = None) -> tuple[dict, dict, dict]:
        """Inner loop on one task: returns adapted (value, policy) params and inner loss terms.

        taps: the gradient taps of :meth:`meta_losses` (``None``: autograd reaches the maps);
        then the terms also hold ``map_factors`` (the vectors the maps' gradients pair with).
        """
        value, policy = meta["value"], meta["policy"]
        if "targets" not in support:
            support = self._support_targets(value, support)
        value_lrs = lrs_for(value, meta["value_lrs"])
        policy_lrs = lrs_for(policy, meta["policy_lrs"])
        adv_coef = F.softplus(meta["adv_coef"])
        terms: dict[str, torch.Tensor] = {}
        nets = {"value": self.value_plan, "policy": self.policy_plan}
        grads: dict = {net: [] for net in nets}
        latents: dict = {net: [] for net in nets}
        for k in range(self.config.inner_steps):
            v_record, p_record = ({}, {}) if taps is not None else (None, None)
            if taps is not None:
                value = self._tapped(value, "value", taps, k, latents)
            value, v_terms = inner_step(
                self._value_loss, value, value_lrs, support, first_order=first_order, factored=self.value_plan,
                latent_taps=_latent_taps(taps, "value", k), record=v_record,
            )
            if taps is not None and k == self.config.inner_steps - 1:
                # The adapted value is now used twice without a further inner step (the policy
                # step's advantages, the outer loss): its generated weights once, with the
                # outer use's tap.
                value = self._generated_once(self._tapped(value, "value", taps, k + 1, latents), "value")
            if taps is not None:
                policy = self._tapped(policy, "policy", taps, k, latents)
            policy, p_terms = inner_step(
                self._policy_inner_loss, policy, policy_lrs, value, adv_coef, support, first_order=first_order,
                factored=self.policy_plan, latent_taps=_latent_taps(taps, "policy", k), record=p_record,
            )
            if taps is not None:
                grads["value"].append(v_record)
                grads["policy"].append(p_record)
            if k == 0:
                terms = {"inner_value_mse": v_terms["value_mse"], "inner_awr": p_terms["awr"]}
                if "adv_mse" in p_terms:
                    terms["inner_adv_mse"] = p_terms["adv_mse"]
        if taps is not None:
            policy = self._tapped(policy, "policy", taps, self.config.inner_steps, latents)
            terms["map_factors"] = {
                net: {key: {"g": torch.stack([g[key] for g in grads[net]]), "z": torch.stack([z[key] for z in latents[net]])} for key in plan}
                for net, plan in nets.items()
            }
        return value, policy, terms

    def _tapped(self, params: dict, net: str, taps: dict, use: int, latents: dict) -> dict:
        """``params`` with the gradient tap of the maps' ``use``-th product with a latent (0:
        the meta latent, shared by the tasks; k: after k inner steps), and that latent recorded."""
        plan = self.value_plan if net == "value" else self.policy_plan
        out = dict(params)
        record = {}
        for key, f in plan.items():
            out[f.flat_offset] = taps["shared"][net][key] if use == 0 else taps["task"][net]["flat"][key][use - 1]
            if use > 0:
                record[key] = params[f.latent].detach()
        if use > 0:
            latents[net].append(record)
        return out

    def _generated_once(self, params: dict, net: str) -> dict:
        """``params`` with every map layer's generated ``[W, b]`` computed and cached
        (``flat_cache``), for calls that do not differentiate an inner step through them."""
        module = self.value if net == "value" else self.policy
        out = dict(params)
        for key, f in self._plan(net).items():
            prefix = key[: -len("map.weight")]
            layer = module.get_submodule(prefix.rstrip("."))
            own = {name[len(prefix):]: v for name, v in params.items() if name.startswith(prefix)}
            out[f.flat_cache] = call(layer, own, method="generated")
        return out

    def task_objective(self, meta: dict, task: dict) -> dict[str, torch.Tensor]:
        """Outer losses of one task (``task = {"support": {...}, "query": {...}}``, ``[B, ...]``)."""
        c = self.config
        taps = {"shared": meta["taps"], "task": task["taps"]} if "taps" in meta else None
        value, policy, terms = self._adapt_params(meta, task["support"], c.first_order, taps)
        query = task["query"]
        outer_value, advantages = self._outer_value(value, query)
        mean = call(self.policy, policy, query["observations"])
        outer_policy = losses.awr_loss(mean, c.policy_sigma, query["actions"], advantages, c.temperature, c.max_weight)
        return {
            "value_loss": outer_value["loss"],
            "policy_loss": outer_policy["loss"],
            "awr_weight_max": outer_policy["awr_weight_max"],
            **terms,
        }

    # ------------------------------------------------------------------------------ training
    def meta_losses(self, support: TaskBatch, query: TaskBatch) -> dict[str, torch.Tensor]:
        """Per-task outer losses ``{name: [T]}`` of a meta-batch (graph kept for backward).

        With factored maps, autograd never reaches a map ``M`` (it is used detached): each of
        its products with a latent (``M z``, and ``g @ M`` in the inner steps) gets a zero
        *tap* added, whose gradient is that product's output gradient, and a hook on the taps
        sets ``M.grad`` to the sum of the outer products ``tap_grad z^T`` and ``g tap_grad^T``
        in one matrix product when backward has reached them all. Without taps each use added
        its own dense ``[D, L]`` gradient (3 per map and step at paper size, and their sums).
        """
        per_task = {"support": task_tensors(support), "query": task_tensors(query)}
        meta = self.meta_params()
        hook_parts = None
        if self.config.wt_factored and (self.value_plan or self.policy_plan) and torch.is_grad_enabled():
            meta, per_task, hook_parts = self._with_taps(meta, per_task, support.num_tasks)
        out = map_tasks(self.task_objective, meta, per_task, use_vmap=self.config.vmap)
        if hook_parts is not None:
            self._register_map_grads(out.pop("map_factors"), meta, *hook_parts)
        return out

    def _with_taps(self, meta: dict, per_task: dict, n_tasks: int) -> tuple[dict, dict, tuple]:
        k = self.config.inner_steps
        meta = {**meta, "value": dict(meta["value"]), "policy": dict(meta["policy"]), "taps": {}}
        per_task = {**per_task, "taps": {}}
        live, leaves = {}, []
        for net, plan in (("value", self.value_plan), ("policy", self.policy_plan)):
            meta["taps"][net], per_task["taps"][net] = {}, {"flat": {}, "latent": {}}
            for key, f in plan.items():
                weight = meta[net][key]
                live[(net, key)] = weight
                meta[net][key] = weight.detach()
                d, latent_dim = weight.shape
                new = lambda *shape: torch.zeros(*shape, dtype=weight.dtype, device=weight.device, requires_grad=True)  # noqa: E731
                taps = (new(d), new(n_tasks, k, d), new(n_tasks, k, latent_dim))
                meta["taps"][net][key], per_task["taps"][net]["flat"][key], per_task["taps"][net]["latent"][key] = taps
                leaves.extend(taps)
        return meta, per_task, (live, leaves)

    def _register_map_grads(self, factors: dict, meta: dict, live: dict, leaves: list) -> None:
        order = list(live)

        def assemble(tap_grads):
            for i, (net, key) in enumerate(order):
                shared, flat, latent = tap_grads[3 * i : 3 * i + 3]
                weight = live[(net, key)]
                if not weight.requires_grad:
                    continue
                z, g = factors[net][key]["z"], factors[net][key]["g"]  # [T, K, L], [T, K, D]
                z0 = meta[net][self._plan(net)[key].latent].detach()
                lefts, rights = [], []
                if shared is not None:
                    lefts.append(shared.unsqueeze(0))
                    rights.append(z0.unsqueeze(0))
                if flat is not None:
                    lefts.append(flat.reshape(-1, flat.shape[-1]))
                    rights.append(z.reshape(-1, z.shape[-1]))
                if latent is not None:
                    lefts.append(g.reshape(-1, g.shape[-1]))
                    rights.append(latent.reshape(-1, latent.shape[-1]))
                if not lefts:
                    continue
                left, right = torch.cat(lefts).T, torch.cat(rights)
                buffer = self._map_grad_buffers.get((net, key))
                if buffer is None or buffer.shape != weight.shape or buffer.dtype != weight.dtype or buffer.device != weight.device:
                    buffer = self._map_grad_buffers[(net, key)] = torch.empty_like(weight)
                if weight.grad is None:
                    # Into a buffer kept across steps: a fresh [D, L] every step paid its page
                    # faults (measured 5-8 ms per map and step against 0.5 ms for the product).
                    weight.grad = torch.mm(left, right, out=buffer)
                else:
                    weight.grad = weight.grad + left @ right

        # The hook's closure holds the taps it is registered on; a hook left registered keeps
        # that cycle (and every step's graph) alive through autograd's C++ side, where Python's
        # collector cannot free it (measured: +1.9 MB per meta-step, 6.7 GB after the main job's
        # 4,000). So it removes itself once it has run, and a hook whose backward never came is
        # removed before the next one is registered.
        self._release_map_hook()

        def assemble_once(tap_grads):
            try:
                assemble(tap_grads)
            finally:
                self._release_map_hook()

        self._map_hook = torch.autograd.graph.register_multi_grad_hook(leaves, assemble_once, mode="all")

    def _release_map_hook(self) -> None:
        handle, self._map_hook = getattr(self, "_map_hook", None), None
        if handle is not None:
            handle.remove()

    def _plan(self, net: str) -> dict:
        return self.value_plan if net == "value" else self.policy_plan

    def train_step(self, sampler: Any) -> dict[str, float]:
        c = self.config
        support, query = sampler.sample_support_query(c.support_size, c.query_size, contiguous=c.contiguous_support, stride=c.support_stride)
        out = self.meta_losses(support, query)
        value_loss, policy_loss = out["value_loss"].mean(), out["policy_loss"].mean()
        self.optimizer.zero_grad(set_to_none=True)
        # The two outer losses touch disjoint meta-parameters (the value enters the policy
        # losses only as a constant), so one backward of the sum gives both meta-gradients.
        (value_loss + policy_loss).backward()
        metrics = {
            "train/value_loss": float(value_loss.detach()),
            "train/policy_loss": float(policy_loss.detach()),
            # Norms before clipping (clip_and_norm clips to grad_clip when it is positive).
            "train/meta_grad_norm/value": clip_and_norm(self.value.parameters(), c.grad_clip),
            "train/meta_grad_norm/policy": clip_and_norm(self.policy.parameters(), c.grad_clip),
            "train/meta_grad_norm/inner_lrs": grad_norm(self._learned_scalars()),
        }
        self.optimizer.step()
        self.update_value_target()
        for key in ("awr_weight_max", "inner_value_mse", "inner_awr", "inner_adv_mse"):
            if key in out:
                metrics[f"train/{key}"] = float(out[key].mean())
        metrics.update(self.learned_rates())
        return metrics

    @torch.no_grad()
    def learned_rates(self) -> dict[str, float]:
        """Effective inner lrs per parameter tensor and c, as ``train/inner_lr/...`` metrics."""
        out = {}
        for group, raw in (("value", self.value_lrs), ("policy", self.policy_lrs)):
            for k, v in raw.items():
                out[f"train/inner_lr/{group}/{k.replace('__', '.')}"] = float(F.softplus(v))
        out["train/adv_coef"] = float(F.softplus(self.adv_coef))
        return out

    # ---------------------------------------------------------------------------- meta-test
    def adapt(self, batch: TaskBatch) -> Agent:
        """Algorithm 2 on one task's batch ``[1, B, ...]``: the same inner steps, no graph kept."""
        meta = {k: (detached(v) if isinstance(v, dict) else v.detach()) for k, v in self.meta_params().items()}
        support = {k: v[0] for k, v in task_tensors(batch.to(self.device)).items()}
        value, policy, _ = self._adapt_params(meta, support, first_order=True)
        # Agents (and online fine-tuning) get plain parameters: the adapted maps formed once.
        return self.make_agent(materialise(policy, self.policy_plan), materialise(value, self.value_plan))
