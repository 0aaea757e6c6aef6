"""The fast paths give the numbers of the straightforward ones (issue 12).

Weight-transform inner steps as rank-one terms (``wt_factored``) against forming the adapted map;
MACEGA's packed noise and single weighted backward against its per-task gradients; the fused
outer Adam against the plain one. Meta-gradients are compared in float64, so a real difference
(a missing term, a wrong factor) shows as O(1) and rounding as ~1e-12; the issue asks 1e-5.
"""
from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from omrl_algos.macaw import Macaw, MacawConfig
from omrl_algos.meta import inner_step, lrs_for, params_of
from omrl_algos.networks import ValueNetwork, factored_maps, materialise
from omrl_algos import losses
from tests.test_algos_core import make_batch

SMALL = dict(width=16, depth=2, latent_dim=8, adv_width=8, support_size=16, query_size=16, meta_batch=3, inner_lr_init=0.05)


def _meta_grads(dtype=torch.float64, **overrides) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    algo = Macaw(MacawConfig(**{**SMALL, **overrides}), obs_dim=3, act_dim=2).to(dtype)
    support, query = (_cast(make_batch(3, 16, 3, 2, seed), dtype) for seed in (1, 2))
    out = algo.meta_losses(support, query)
    (out["value_loss"].mean() + out["policy_loss"].mean()).backward()
    return {k: p.grad.clone() for k, p in algo.named_parameters() if p.grad is not None}


def _cast(batch, dtype):
    values = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    return dataclasses.replace(batch, **{k: v.to(dtype) for k, v in values.items() if v is not None and v.is_floating_point()})


def _worst_relative(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-300)) for k in a)


@pytest.mark.parametrize("inner_steps,first_order,vmap", list(itertools.product((1, 3), (False, True), (True, False))))
def test_factored_weight_transform_meta_gradients_equal_the_dense_ones(inner_steps, first_order, vmap):
    settings = dict(inner_steps=inner_steps, first_order=first_order, vmap=vmap, inner_bootstrap=inner_steps == 3)
    fast = _meta_grads(wt_factored=True, **settings)
    dense = _meta_grads(wt_factored=False, **settings)
    # Every meta-parameter the dense path reaches gets a gradient, maps and latents included.
    assert any(k.endswith("map.weight") for k in fast) and any(k.endswith("latent") for k in fast)
    assert _worst_relative(fast, dense) < 1e-9


def test_factored_meta_step_frees_its_graph():
    """The taps' gradient hook must not outlive its backward: a hook left registered kept every
    meta-step's graph alive (the main job grew to 6.7 GB in 4,000 meta-steps)."""
    import gc
    import weakref

    torch.manual_seed(0)
    algo = Macaw(MacawConfig(**SMALL), obs_dim=3, act_dim=2)
    seen: list = []
    with_taps = algo._with_taps

    def recording(*args):
        meta, per_task, (live, leaves) = with_taps(*args)
        seen.append([weakref.ref(t) for t in leaves])
        return meta, per_task, (live, leaves)

    algo._with_taps = recording
    for seed in range(3):
        support, query = make_batch(3, 16, 3, 2, seed), make_batch(3, 16, 3, 2, seed + 10)
        out = algo.meta_losses(support, query)
        (out["value_loss"].mean() + out["policy_loss"].mean()).backward()
        del out
    algo.meta_losses(*(make_batch(3, 16, 3, 2, s) for s in (7, 8)))  # its backward never comes
    algo.meta_losses(*(make_batch(3, 16, 3, 2, s) for s in (5, 6)))
    gc.collect()
    assert seen[0] and all(r() is None for step in seen[:4] for r in step)


def test_factored_step_never_forms_the_adapted_map_and_materialises_to_the_dense_one():
    torch.manual_seed(0)
    net = ValueNetwork(3, width=8, depth=2, latent_dim=4).double()
    plan = factored_maps(net)
    params = params_of(net)
    lrs = lrs_for(params, {k.replace(".", "__"): torch.tensor(-2.0, dtype=torch.float64) for k in params})
    rows = {"observations": torch.randn(10, 3, dtype=torch.float64), "targets": torch.randn(10, dtype=torch.float64)}
    loss = lambda p, r: losses.value_loss(torch.func.functional_call(net, p, (r["observations"],)), r["targets"])  # noqa: E731
    fast, dense = params, params
    for _ in range(2):
        fast, _ = inner_step(loss, fast, lrs, rows, factored=plan)
        dense, _ = inner_step(loss, dense, lrs, rows)
    for key, f in plan.items():
        assert fast[key] is params[key]  # the map itself is untouched
        assert fast[f.u].shape == (2, params[f.bias].numel()) and fast[f.v].shape == (2, params[f.latent].numel())
    plain = materialise(fast, plan)
    assert plain.keys() == dense.keys()
    for k in dense:
        torch.testing.assert_close(plain[k], dense[k], rtol=1e-10, atol=1e-12)
    obs = torch.randn(5, 3, dtype=torch.float64)
    call = lambda p: torch.func.functional_call(net, p, (obs,))  # noqa: E731
    torch.testing.assert_close(call(fast), call(dense), rtol=1e-10, atol=1e-12)


def test_fused_outer_adam_takes_the_plain_adam_step():
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(50, 7)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    from omrl_algos.meta import outer_adam

    fused, plain = outer_adam([{"params": a, "lr": 1e-2}], "cpu"), torch.optim.Adam([{"params": b, "lr": 1e-2}])
    assert fused.defaults["fused"]
    for step in range(5):
        grads = [torch.randn(50, 7) for _ in a]
        for p, q, g in zip(a, b, grads):
            p.grad, q.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        assert not torch.equal(p, torch.zeros_like(p))


# --------------------------------------------------------------------------------- MACEGA
MACEGA_WT = dict(width=16, depth=2, weight_transform=True, latent_dim=8, adv_width=8, meta_batch=3, support_size=32, query_size=32, inner_lr_init=0.05, grad_clip=0.0)


def _macega_step_grads(dataset, **overrides) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    from omrl_algos.macega import Macega, MacegaConfig

    torch.manual_seed(3)
    algo = Macega(MacegaConfig(**{**MACEGA_WT, **overrides}), obs_dim=1, act_dim=5).to(torch.float64)
    sampler = algo.make_sampler(dataset, seed=3, device="cpu")
    draw = sampler.sample_support_query
    sampler.sample_support_query = lambda *a, **k: tuple(_cast(b, torch.float64) for b in draw(*a, **k))
    metrics = algo.train_step(sampler)
    return {k: p.grad.clone() for k, p in algo.named_parameters() if p.grad is not None}, metrics


@pytest.mark.parametrize(
    "settings",
    [dict(), dict(inner_steps=2), dict(vmap=False), dict(evolving_paths="weights"), dict(no_gradient_agreement=True), dict(noise="gaussian")],
    ids=["default", "two-inner-steps", "loop", "weights-path", "no-agreement", "gaussian"],
)
def test_fast_macega_takes_the_straightforward_step_on_a_fixed_seed(settings):
    """Factored maps with the noise handed to the layer, and one agreement-weighted backward,
    against dense maps, noise added into copies, per-task gradients and their weighted sum."""
    from tests.tiny_bandit import bandit_dataset

    ds = bandit_dataset()
    fast, m_fast = _macega_step_grads(ds, **settings)
    slow, m_slow = _macega_step_grads(ds, wt_factored=False, weighted_backward=False, **settings)
    assert {k for k in slow if slow[k].abs().max() > 0} <= fast.keys()
    fast = {k: fast.get(k, torch.zeros_like(slow[k])) for k in slow}
    assert _worst_relative(fast, slow) < 1e-9
    for key in ("train/agreement_weight_min", "train/evolving_weight_max/policy", "train/policy_loss"):
        if key in m_slow:
            assert m_fast[key] == pytest.approx(m_slow[key], rel=1e-9)


def test_sign_noise_stream_is_the_bit_expansion_of_the_generator_bytes():
    from omrl_algos.evolving import _random_signs

    bytes_ = torch.randint(0, 256, (4,), generator=torch.Generator().manual_seed(7), dtype=torch.uint8)
    expected = torch.tensor([1.0 if (int(b) >> i) & 1 else -1.0 for b in bytes_ for i in range(8)])[:29]
    torch.testing.assert_close(_random_signs(29, torch.Generator().manual_seed(7)), expected)


@pytest.mark.parametrize("max_norm", [0.5, 1e6, 0.0])
def test_clip_and_norm_is_clip_grad_norm(max_norm):
    from omrl_algos.meta import clip_and_norm

    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(30, 4)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a, b):
        p.grad = torch.randn(30, 4)
        q.grad = p.grad.clone()
    norm = clip_and_norm(iter(a), max_norm)
    expected = float(torch.nn.utils.clip_grad_norm_(b, max_norm)) if max_norm > 0 else float(torch.cat([q.grad.flatten() for q in b]).norm())
    assert norm == pytest.approx(expected, rel=1e-6)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad)
    if max_norm == 0.5:
        assert float(torch.cat([p.grad.flatten() for p in a]).norm()) == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize("inner_steps,first_order", [(1, False), (2, False), (2, True)])
def test_factored_meta_bc_meta_gradients_equal_the_dense_ones(inner_steps, first_order):
    from omrl_algos.metabc import MetaBC, MetaBCConfig

    grads = {}
    for factored in (True, False):
        torch.manual_seed(0)
        algo = MetaBC(MetaBCConfig(width=16, depth=2, latent_dim=8, meta_batch=3, inner_lr_init=0.05, inner_steps=inner_steps, first_order=first_order, wt_factored=factored), 3, 2).to(torch.float64)
        support, query = (_cast(make_batch(3, 16, 3, 2, seed), torch.float64) for seed in (1, 2))
        meta = {"policy": params_of(algo.policy), "policy_lrs": dict(algo.policy_lrs.items())}
        from omrl_algos.meta import map_tasks, task_tensors

        out = map_tasks(algo.task_objective, meta, {"support": task_tensors(support), "query": task_tensors(query)})
        out["policy_loss"].mean().backward()
        grads[factored] = {k: p.grad.clone() for k, p in algo.named_parameters() if p.grad is not None}
    assert any(k.endswith("map.weight") for k in grads[True])
    assert _worst_relative(grads[True], grads[False]) < 1e-9


# ------------------------------------------------------------- MACEGA's projected map noise
def _evolve_case():
    """A weight-transform value network as adapted params (one rank-one inner update), its
    factored plan, support / query losses and noise for the non-map tensors (float64)."""
    from omrl_algos.meta import call

    torch.manual_seed(5)
    net = ValueNetwork(3, width=6, depth=2, weight_transform=True, latent_dim=5).to(torch.float64)
    plan = factored_maps(net)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params_of(net).items()}
    for f in plan.values():  # an adapted map: one rank-one term
        params[f.u] = 0.1 * torch.randn(1, params[f.weight].shape[0], dtype=torch.float64)
        params[f.v] = torch.randn(1, params[f.weight].shape[1], dtype=torch.float64)
    obs, ret = torch.randn(2, 12, 3, dtype=torch.float64), torch.randn(2, 12, dtype=torch.float64)
    support = lambda p: (call(net, p, obs[0]) - ret[0]).pow(2).mean()  # noqa: E731
    query = lambda p: (call(net, p, obs[1]) - ret[1]).pow(2).mean()  # noqa: E731
    n_copies, sigma = 3, 0.05
    g = torch.Generator().manual_seed(11)
    noise = {k: sigma * torch.randn(n_copies, *v.shape, generator=g, dtype=torch.float64) for k, v in params.items() if k not in plan and v.requires_grad}
    return plan, params, support, query, noise, n_copies, sigma, g


@pytest.mark.parametrize("paths", ["both", "weights"])
def test_projected_map_noise_is_the_dense_noise_averaged_over_what_no_loss_sees(paths):
    """``map_noise=projected`` draws a map's noise only on the span of ``X = [z', e_1..e_P]``.
    Couple it with a full Gaussian draw: ``E = G Q^T +- N (I - Q Q^T)`` (``N`` i.i.d. like ``G``,
    so ``E`` is an ordinary i.i.d. Gaussian draw). Every copy's loss, the weights and ``p*`` are
    the dense ones, and the projected meta-gradient is exactly the mean of the two dense ones:
    the Rao-Blackwellised estimate (evolving.evolve), not an approximation of a different one."""
    from omrl_algos.evolving import evolve

    plan, params, support, query, noise, n_copies, sigma, g = _evolve_case()
    projected, dense = dict(noise), [dict(noise), dict(noise)]
    for key, f in plan.items():
        x = torch.cat([params[f.latent].detach().unsqueeze(-1), noise[f.latent].T], dim=-1)
        q = torch.linalg.qr(x).Q
        d, latent = params[key].shape
        gauss = sigma * torch.randn(n_copies, d, q.shape[1], generator=g, dtype=torch.float64)
        rest = sigma * torch.randn(n_copies, d, latent, generator=g, dtype=torch.float64) @ (torch.eye(latent, dtype=torch.float64) - q @ q.T)
        projected[key] = gauss
        dense[0][key], dense[1][key] = gauss @ q.T + rest, gauss @ q.T - rest
    results = []
    for kind, eps in (("projected", projected), ("plus", dense[0]), ("minus", dense[1])):
        combined, weights, losses = evolve(params, support, eps, 0.5, paths, relative=True, factored=plan, projected=kind == "projected")
        grads = torch.autograd.grad(query(combined), [params[k] for k in sorted(params) if params[k].requires_grad])
        results.append((weights, losses, grads))
    (w_p, l_p, g_p), (w_1, l_1, g_1), (w_2, l_2, g_2) = results
    for w, l in ((w_1, l_1), (w_2, l_2)):
        torch.testing.assert_close(l, l_p, rtol=1e-12, atol=0)
        torch.testing.assert_close(w, w_p, rtol=1e-12, atol=0)
    worst = max(float(((a + b) / 2 - p).norm() / p.norm()) for a, b, p in zip(g_1, g_2, g_p))
    assert worst < 1e-9
    # ... and the two dense draws do differ (the part the projection averages out is not 0).
    assert max(float((a - b).norm() / p.norm()) for a, b, p in zip(g_1, g_2, g_p)) > 1e-3


def test_projected_macega_draws_a_few_numbers_per_map_and_takes_the_same_step_in_vmap_and_loop():
    from omrl_algos.macega import Macega, MacegaConfig
    from omrl_data.errors import BadInput
    from tests.tiny_bandit import bandit_dataset

    ds = bandit_dataset()
    torch.manual_seed(3)
    algo = Macega(MacegaConfig(**MACEGA_WT, map_noise="projected"), obs_dim=1, act_dim=5)
    noise = algo._noise(3)
    for net in ("value", "policy"):
        for key in algo._plan(net):
            d = dict(getattr(algo, net).named_parameters())[key].shape[0]
            assert noise[net][key].shape == (3, algo.config.perturbations, d, algo.config.perturbations + 1)
    vmapped, m_vmapped = _macega_step_grads(ds, map_noise="projected")
    looped, m_looped = _macega_step_grads(ds, map_noise="projected", vmap=False)
    assert _worst_relative(vmapped, looped) < 1e-9
    assert m_vmapped["train/evolving_weight_max/value"] == pytest.approx(m_looped["train/evolving_weight_max/value"], rel=1e-9)
    dense, _ = _macega_step_grads(ds)
    assert _worst_relative(vmapped, dense) > 1e-3  # another draw of the noise, not the same numbers
    with pytest.raises(BadInput, match="map_noise"):
        Macega(MacegaConfig(**MACEGA_WT, map_noise="projected", wt_factored=False), obs_dim=1, act_dim=5)
    with pytest.raises(BadInput, match="map_noise"):
        Macega(MacegaConfig(**MACEGA_WT, map_noise="low-rank"), obs_dim=1, act_dim=5)
