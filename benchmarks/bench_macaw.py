"""Meta-step time of our MACAW (torch.func, vmap and loop) against the reference structure.

The reference structure is the per-task Python loop of the MACAW reference code: for each task,
``torch.autograd.grad(..., create_graph=True)`` on the value loss, an SGD step on a list of
tensors, the same for the policy with the adapted value, then the outer losses; the networks
are evaluated by a hand-written forward over the parameter list. It computes the same math as
``omrl_algos.macaw`` (checked here: the meta-gradients agree) so the timings compare like with
like. A meta-step = sampling-free forward + inner steps + outer losses + backward + Adam step.

    .venv/bin/python benchmarks/bench_macaw.py [--repeats 5] [--threads 0]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from omrl_algos import losses
from omrl_algos.macaw import Macaw, MacawConfig
from omrl_algos.meta import lr_key
from omrl_data.batch import TaskBatch

SETTINGS = {
    "paper size (width 100, depth 3, latent 100, 5 tasks, 256/256)": dict(width=100, depth=3, latent_dim=100, meta_batch=5, support_size=256, query_size=256),
    "small net, many tasks (width 32, depth 3, latent 32, 40 tasks, 32/32)": dict(width=32, depth=3, latent_dim=32, meta_batch=40, support_size=32, query_size=32),
}
OBS_DIM, ACT_DIM = 17, 6  # cheetah_vel


def make_batch(t: int, b: int, seed: int) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    return TaskBatch(
        observations=torch.randn(t, b, OBS_DIM, generator=g),
        actions=torch.rand(t, b, ACT_DIM, generator=g) * 2 - 1,
        rewards=torch.randn(t, b, generator=g),
        next_observations=torch.randn(t, b, OBS_DIM, generator=g),
        terminated=torch.zeros(t, b, dtype=torch.bool),
        truncated=torch.zeros(t, b, dtype=torch.bool),
        mc_returns=torch.randn(t, b, generator=g) * 3,
        task_index=torch.arange(t),
        task_features=torch.zeros(t, 1),
        mask=torch.ones(t, b, dtype=torch.bool),
    )


# ---------------------------------------------------------------------- reference structure
def _wt_linear(x: torch.Tensor, p: dict, name: str, in_f: int, out_f: int) -> torch.Tensor:
    flat = F.linear(p[f"{name}.latent"], p[f"{name}.map.weight"], p[f"{name}.map.bias"])
    return F.linear(x, flat[: in_f * out_f].view(out_f, in_f), flat[in_f * out_f :])


def _body(x: torch.Tensor, p: dict, prefix: str, in_dim: int, out_dim: int, width: int, depth: int):
    dims = [in_dim] + [width] * depth
    pre = x
    for i in range(depth):
        pre = _wt_linear(x, p, f"{prefix}.hidden.{i}", dims[i], dims[i + 1])
        x = F.relu(pre)
    return _wt_linear(x, p, f"{prefix}.out", width, out_dim), pre


class ReferenceMacaw:
    """The reference's loop over tasks with autograd.grad(create_graph=True), same math."""

    def __init__(self, ours: Macaw):
        c = ours.config
        self.c = c
        self.value = {k: v.detach().clone().requires_grad_() for k, v in ours.value.named_parameters()}
        self.policy = {k: v.detach().clone().requires_grad_() for k, v in ours.policy.named_parameters()}
        self.value_lrs = {k: ours.value_lrs[lr_key(k)].detach().clone().requires_grad_() for k in self.value}
        self.policy_lrs = {k: ours.policy_lrs[lr_key(k)].detach().clone().requires_grad_() for k in self.policy}
        self.adv_coef = ours.adv_coef.detach().clone().requires_grad_()
        self.opt = torch.optim.Adam([
            {"params": list(self.value.values()), "lr": c.value_lr},
            {"params": list(self.policy.values()), "lr": c.policy_lr},
            {"params": list(self.value_lrs.values()) + list(self.policy_lrs.values()) + [self.adv_coef], "lr": c.lr_lr},
        ])

    def v(self, p, obs):
        return _body(obs, p, "body", OBS_DIM, 1, self.c.width, self.c.depth)[0].squeeze(-1)

    def pi(self, p, obs, actions=None):
        out, pre = _body(obs, p, "body", OBS_DIM, ACT_DIM, self.c.width, self.c.depth)
        if actions is None:
            return torch.tanh(out)
        h = F.relu(_wt_linear(F.relu(torch.cat([pre, actions], -1)), p, "adv_hidden", self.c.width + ACT_DIM, self.c.adv_width))
        return torch.tanh(out), _wt_linear(h, p, "adv_out", self.c.adv_width, 1).squeeze(-1)

    def meta_step(self, support: TaskBatch, query: TaskBatch, step: bool = True) -> None:
        c = self.c
        v_total, p_total = 0.0, 0.0
        for t in range(support.num_tasks):
            s_obs, s_act, s_ret = support.observations[t], support.actions[t], support.mc_returns[t]
            q_obs, q_act, q_ret = query.observations[t], query.actions[t], query.mc_returns[t]
            v_loss = (self.v(self.value, s_obs) - s_ret).pow(2).mean()
            g = torch.autograd.grad(v_loss, list(self.value.values()), create_graph=True)
            value = {k: p - F.softplus(self.value_lrs[k]) * gk for (k, p), gk in zip(self.value.items(), g)}
            adv = (s_ret - self.v(value, s_obs)).detach()
            mean, pred = self.pi(self.policy, s_obs, s_act)
            p_loss = losses.enriched_policy_loss(mean, pred, c.policy_sigma, s_act, adv, F.softplus(self.adv_coef))["loss"]
            g = torch.autograd.grad(p_loss, list(self.policy.values()), create_graph=True)
            policy = {k: p - F.softplus(self.policy_lrs[k]) * gk for (k, p), gk in zip(self.policy.items(), g)}
            v_total = v_total + (self.v(value, q_obs) - q_ret).pow(2).mean()
            q_adv = (q_ret - self.v(value, q_obs)).detach()
            p_total = p_total + losses.awr_loss(self.pi(policy, q_obs), c.policy_sigma, q_act, q_adv)["loss"]
        self.opt.zero_grad(set_to_none=True)
        ((v_total + p_total) / support.num_tasks).backward()
        if step:
            self.opt.step()


def ours_step(algo: Macaw, support: TaskBatch, query: TaskBatch, step: bool = True) -> None:
    out = algo.meta_losses(support, query)
    algo.optimizer.zero_grad(set_to_none=True)
    (out["value_loss"].mean() + out["policy_loss"].mean()).backward()
    if step:
        algo.optimizer.step()


def check_same_math(cfg: dict) -> float:
    """Largest relative difference between our and the reference meta-gradients."""
    small = {**cfg, "meta_batch": 2}
    torch.manual_seed(0)
    ours = Macaw(MacawConfig(**small, bootstrap=False), OBS_DIM, ACT_DIM)
    ref = ReferenceMacaw(ours)
    s, q = make_batch(2, cfg["support_size"], 1), make_batch(2, cfg["query_size"], 2)
    ours_step(ours, s, q, step=False)
    ref.meta_step(s, q, step=False)
    worst = 0.0
    for k, p in ours.value.named_parameters():
        worst = max(worst, float((p.grad - ref.value[k].grad).abs().max() / (p.grad.abs().max() + 1e-12)))
    for k, p in ours.policy.named_parameters():
        worst = max(worst, float((p.grad - ref.policy[k].grad).abs().max() / (p.grad.abs().max() + 1e-12)))
    return worst


def time_it(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} meta-steps\n")
    for label, cfg in SETTINGS.items():
        print(label)
        print(f"  meta-gradients ours vs reference: max relative difference {check_same_math(cfg):.1e}")
        s, q = make_batch(cfg["meta_batch"], cfg["support_size"], 1), make_batch(cfg["meta_batch"], cfg["query_size"], 2)
        results = {}
        for name, vmap in (("ours, vmap", True), ("ours, loop", False)):
            torch.manual_seed(0)
            algo = Macaw(MacawConfig(**cfg, vmap=vmap, bootstrap=False), OBS_DIM, ACT_DIM)
            results[name] = time_it(lambda: ours_step(algo, s, q), args.repeats)
        torch.manual_seed(0)
        ref = ReferenceMacaw(Macaw(MacawConfig(**cfg, bootstrap=False), OBS_DIM, ACT_DIM))
        results["reference loop"] = time_it(lambda: ref.meta_step(s, q), args.repeats)
        base = results["reference loop"]
        for name, sec in results.items():
            print(f"  {name:16s} {sec * 1e3:9.1f} ms/meta-step   speed-up vs reference {base / sec:5.2f}x")
        print()


if __name__ == "__main__":
    main()
