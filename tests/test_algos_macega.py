"""MACEGA: gradient agreement, the evolving update, first-order meta-gradients, learning."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._pytree import tree_flatten

from omrl_algos.agreement import agreement_weights, gram, weighted_sum
from omrl_algos.config import EvalConfig
from omrl_algos.evaluation import Evaluator
from omrl_algos.evolving import draw_noise, evolve
from omrl_algos.macega import Macega, MacegaConfig
from omrl_algos.meta import call, task_tensors
from omrl_algos.registry import get_algorithm
from omrl_data.errors import BadInput
from tests.tiny_bandit import bandit_dataset

TINY = dict(width=16, depth=2, weight_transform=False, meta_batch=3, support_size=32, query_size=32, inner_lr_init=0.05, policy_inner_lr_init=0.05)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bandit():
    return bandit_dataset()


def make(seed: int = 0, **overrides) -> Macega:
    torch.manual_seed(seed)
    return Macega(MacegaConfig(**{**TINY, **overrides}), obs_dim=1, act_dim=5)


# ------------------------------------------------------------------------- gradient agreement
def test_agreement_weights_follow_the_formula():
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.5]])
    # sum_j g_i . g_j = g_i . (1, 1.5): 1, 2.5, -0.25; sum_k |.| = 3.75
    expected = torch.tensor([1.0, 2.5, -0.25]) / 3.75
    torch.testing.assert_close(agreement_weights(g), expected)
    # The gradient that agrees most with the batch gets the largest weight, the opposing one a negative weight.
    w = agreement_weights(g)
    assert w[1] > w[0] > 0 > w[2]
    # Split into per-tensor parts [T, ...] the weights are the same.
    torch.testing.assert_close(agreement_weights([g[:, :1], g[:, 1:].reshape(3, 1, 1)]), expected)
    torch.testing.assert_close(gram(g), g @ g.T)


def test_agreement_weights_of_equal_gradients_are_the_average():
    g = torch.tensor([[0.3, -2.0, 1.0]]).repeat(4, 1)
    torch.testing.assert_close(agreement_weights(g), torch.full((4,), 0.25))
    torch.testing.assert_close(weighted_sum(g, agreement_weights(g)), g[0])
    # All-zero gradients: the plain average instead of 0 / 0.
    torch.testing.assert_close(agreement_weights(torch.zeros(2, 3)), torch.full((2,), 0.5))


def test_normalised_agreement_uses_cosines_not_norms():
    # Two opposing tasks, one with a 3x larger update: dot products give the small one a
    # negative weight (its meta-gradient is pushed the wrong way), cosines give each 1/2.
    g = torch.tensor([[3.0, 0.0], [-1.0, 0.5]])
    raw = agreement_weights(g)
    assert raw[1] < 0 < raw[0]
    torch.testing.assert_close(agreement_weights(g, normalise=True), torch.tensor([0.5, 0.5]))
    # By hand for three tasks: unit vectors u_i, w_i = sum_j u_i . u_j / sum_k |sum_j u_k . u_j|.
    g = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, -1.0]])
    u = g / g.norm(dim=1, keepdim=True)
    a = (u @ u.T).sum(1)
    torch.testing.assert_close(agreement_weights(g, normalise=True), a / a.abs().sum())
    # Scaling one task's vector changes nothing.
    torch.testing.assert_close(agreement_weights(g * torch.tensor([[10.0], [1.0], [0.1]]), normalise=True), a / a.abs().sum())


# ---------------------------------------------------------------------------- evolving update
def test_evolve_weights_are_a_softmax_of_negative_losses():
    params = {"w": torch.tensor([1.0, -1.0])}
    noise = {"w": torch.tensor([[0.1, 0.0], [0.0, 0.2]])}
    loss_fn = lambda p: p["w"].pow(2).sum()  # noqa: E731
    combined, weights, losses = evolve(params, loss_fn, noise, tau=0.5)
    torch.testing.assert_close(losses, torch.tensor([2.21, 1.64]))
    torch.testing.assert_close(weights, torch.softmax(-losses / 0.5, 0))
    torch.testing.assert_close(combined["w"], weights[0] * (params["w"] + noise["w"][0]) + weights[1] * (params["w"] + noise["w"][1]))
    assert weights[1] > weights[0]  # the copy with the lower support loss counts more


def test_sign_noise_is_plus_minus_sigma():
    g = torch.Generator().manual_seed(0)
    eps = draw_noise({"a": torch.Size([3, 7]), "b": torch.Size([5])}, 2, 4, 1e-3, "sign", g)
    assert eps["a"].shape == (2, 4, 3, 7) and eps["b"].shape == (2, 4, 5)
    values = torch.cat([eps["a"].flatten(), eps["b"].flatten()])
    torch.testing.assert_close(values.abs(), torch.full_like(values, 1e-3))
    assert 0.3 < float((values > 0).float().mean()) < 0.7
    gauss = draw_noise({"a": torch.Size([1000])}, 1, 1, 2.0, "gaussian", g)["a"]
    assert 1.5 < float(gauss.std()) < 2.5
    with pytest.raises(BadInput, match="noise type"):
        draw_noise({"a": torch.Size([1])}, 1, 1, 1.0, "uniform", g)


def test_evolving_update_reduces_to_the_inner_step_as_sigma_goes_to_zero(bandit):
    sampler = make().make_sampler(bandit, seed=1, device="cpu")
    support, query = sampler.sample_support_query(32, 32)
    plain_grads, _ = make(no_evolving_gradient=True).per_task_gradients(support, query)
    for sigma, tol in ((0.0, 1e-6), (1e-7, 1e-3)):
        grads, _ = make(sigma=sigma).per_task_gradients(support, query)
        for a, b in zip(tree_flatten(grads)[0], tree_flatten(plain_grads)[0]):
            torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    # ... and with the default sigma the meta-gradient is a different one (the check can fail).
    grads, _ = make().per_task_gradients(support, query)
    diff = max(float((a - b).abs().max()) for a, b in zip(tree_flatten(grads)[0], tree_flatten(plain_grads)[0]))
    assert diff > 1e-3


# ----------------------------------------------------------------- first order, paths, vmap
def reference_task_gradients(algo: Macega, support: dict, query: dict, noise: dict, create_graph: bool) -> list[torch.Tensor]:
    """MACEGA's meta-gradient of one task by plain autograd, in the order of ``tree_flatten(meta)``.

    The inner gradients come from ``torch.autograd.grad``; with ``create_graph=False`` they
    are constants (no second-order term can exist), with True the full second-order gradient.
    """
    c = algo.config
    meta = {k: ({n: p.detach().clone().requires_grad_(True) for n, p in v.items()} if isinstance(v, dict) else v.detach().clone().requires_grad_(True))
            for k, v in algo.meta_params().items()}
    sp = torch.nn.functional.softplus

    def step(params, lrs, loss):
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        return {k: p - sp(lrs[k.replace(".", "__")]) * g for (k, p), g in zip(params.items(), grads)}

    support = algo._support_targets(meta["value"], support)  # MC targets (inner_bootstrap off)
    value1 = step(meta["value"], meta["value_lrs"], algo._value_loss(meta["value"], support)["loss"])
    adv_coef = sp(meta["adv_coef"])
    policy1 = step(meta["policy"], meta["policy_lrs"], algo._policy_inner_loss(meta["policy"], value1, adv_coef, support)["loss"])

    def combine(params, loss_fn, eps):
        losses = torch.stack([loss_fn({k: p + eps[k][i] for k, p in params.items()}) for i in range(c.perturbations)])
        temperature = c.tau * losses.detach().mean().abs() if c.tau_relative else c.tau
        w = torch.softmax(-losses / temperature, 0)
        return {k: sum(w[i] * (p + eps[k][i]) for i in range(c.perturbations)) for k, p in params.items()}

    value_star = combine(value1, lambda p: algo._value_loss(p, support)["loss"], noise["value"])
    policy_star = combine(policy1, lambda p: algo._policy_inner_loss(p, value1, adv_coef, support)["loss"], noise["policy"])
    query = algo._query_targets(value_star, query)  # bootstrapped with phi* (a constant)
    outer = algo._value_loss(value_star, query)["loss"]
    adv = algo._advantages(value_star, query)
    from omrl_algos import losses

    outer = outer + losses.awr_loss(call(algo.policy, policy_star, query["observations"]), c.policy_sigma, query["actions"], adv, c.temperature, c.max_weight)["loss"]
    leaves = tree_flatten(meta)[0]
    return list(torch.autograd.grad(outer, leaves, allow_unused=True))


def test_meta_gradient_is_first_order_and_takes_the_documented_paths(bandit):
    algo = make(sigma=1e-2)
    sampler = algo.make_sampler(bandit, seed=2, device="cpu")
    support, query = sampler.sample_support_query(32, 32)
    state = algo.noise_generator.get_state()
    noise = algo._noise(support.num_tasks)
    algo.noise_generator.set_state(state)  # per_task_gradients draws the same noise again
    grads, _ = algo.per_task_gradients(support, query)
    ours = tree_flatten(grads)[0]
    for t in range(support.num_tasks):
        task_s = {k: v[t] for k, v in task_tensors(support).items()}
        task_q = {k: v[t] for k, v in task_tensors(query).items()}
        task_noise = {part: {k: v[t] for k, v in d.items()} for part, d in noise.items()}
        first = reference_task_gradients(algo, task_s, task_q, task_noise, create_graph=False)
        second = reference_task_gradients(algo, task_s, task_q, task_noise, create_graph=True)
        scale = max(float(a[t].abs().max()) for a in ours)
        gap_first = max(float((a[t] - (b if b is not None else 0)).abs().max()) for a, b in zip(ours, first)) / scale
        gap_second = max(float((a[t] - (b if b is not None else 0)).abs().max()) for a, b in zip(ours, second)) / scale
        assert gap_first < 1e-4, "MACEGA's meta-gradient differs from the first-order reference"
        assert gap_second > 1e-3, "the second-order reference should differ (else this test could not fail)"
    # The per-task gradients are plain tensors: no autograd graph was kept for a backward.
    assert all(g.grad_fn is None and not g.requires_grad for g in ours)


def test_weights_only_paths_drop_the_direct_path(bandit):
    sampler = make().make_sampler(bandit, seed=3, device="cpu")
    support, query = sampler.sample_support_query(32, 32)
    both, _ = make().per_task_gradients(support, query)
    weights_only, _ = make(evolving_paths="weights").per_task_gradients(support, query)
    # Through the weights alone the value gradient is O(sigma / tau) of the direct one.
    n_both = torch.cat([g.flatten() for g in both["value"].values()]).norm()
    n_weights = torch.cat([g.flatten() for g in weights_only["value"].values()]).norm()
    assert 0 < n_weights < 0.5 * n_both


def test_vmap_and_loop_give_the_same_step(bandit):
    results = []
    for use_vmap in (True, False):
        algo = make(seed=4, vmap=use_vmap)
        sampler = algo.make_sampler(bandit, seed=4, device="cpu")
        metrics = algo.train_step(sampler)
        results.append((metrics, [p.detach().clone() for p in algo.parameters()]))
    (m_vmap, p_vmap), (m_loop, p_loop) = results
    assert m_vmap["train/policy_loss"] == pytest.approx(m_loop["train/policy_loss"], rel=1e-5)
    for a, b in zip(p_vmap, p_loop):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_state_dict_restores_the_noise_stream(bandit):
    algo = make(seed=5)
    sampler = algo.make_sampler(bandit, seed=5, device="cpu")
    algo.train_step(sampler)
    state = copy.deepcopy(algo.state_dict())
    opt_state = copy.deepcopy(algo.optimizer.state_dict())
    sampler_state = copy.deepcopy(sampler.state_dict())
    algo.train_step(sampler)
    expected = [p.detach().clone() for p in algo.parameters()]
    other = make(seed=99)  # another init and noise seed
    other.load_state_dict(state)
    other.optimizer.load_state_dict(opt_state)
    sampler.load_state_dict(sampler_state)
    other.train_step(sampler)
    for a, b in zip(expected, other.parameters()):
        torch.testing.assert_close(a, b.detach())


def test_ablations_and_bad_settings(bandit):
    assert get_algorithm("macega") is Macega
    for flags in ({"no_evolving_gradient": True}, {"no_gradient_agreement": True}, {"noise": "gaussian", "perturbations": 3}):
        algo = make(**flags)
        metrics = algo.train_step(algo.make_sampler(bandit, seed=0, device="cpu"))
        assert torch.isfinite(torch.tensor(metrics["train/policy_loss"]))
    no_ga = make(no_gradient_agreement=True).train_step(make().make_sampler(bandit, seed=0, device="cpu"))
    assert no_ga["train/agreement_weight_min"] == no_ga["train/agreement_weight_max"] == pytest.approx(1 / 3)
    with pytest.raises(BadInput, match="first_order"):
        make(first_order=False)
    with pytest.raises(BadInput, match="noise"):
        make(noise="uniform")
    with pytest.raises(BadInput, match="evolving_paths"):
        make(evolving_paths="all")
    with pytest.raises(BadInput, match="value_anchor"):
        make(value_anchor=-1.0)
    anchored = make(value_anchor=1.0).train_step(make().make_sampler(bandit, seed=0, device="cpu"))
    assert anchored["train/value_anchor_mse"] > 0 and "train/value_anchor_mse" not in no_ga


# ---------------------------------------------------------------------------------- learning
def test_macega_learns_on_the_bandit(bandit):
    """After 300 meta-steps, adapting on 256 rows of a held-out task finds its best arm."""
    algo = make(seed=0, width=32, meta_batch=5, support_size=64, query_size=64, inner_lr_init=1e-3, policy_inner_lr_init=1e-3, policy_lr=1e-3, value_lr=1e-3)
    evaluator = Evaluator(bandit, EvalConfig(episodes=10, adapt_batch=256), seed=0)
    untrained = evaluator.evaluate(algo)["mean"]
    sampler = algo.make_sampler(bandit, seed=0, device="cpu")
    for _ in range(300):
        algo.train_step(sampler)
    result = evaluator.evaluate(algo)["mean"]
    # A random policy earns about 4 per 10 pulls here, the best arm 9.
    assert result["after"] > result["random"] + 2.5
    assert result["after"] > result["before"] + 2.0  # the adaptation, not the meta-policy, finds the arm
    assert result["after"] > untrained["after"] + 1.0  # meta-training made the adaptation better
