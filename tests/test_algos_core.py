"""The pure parts of the algorithms: networks, losses, inner steps, meta-gradients, config."""
from __future__ import annotations

import math

import pytest
import torch

from omrl_algos import losses
from omrl_algos.config import RunConfig, apply_overrides, default_config
from omrl_algos.macaw import Macaw, MacawConfig
from omrl_algos.meta import task_tensors, effective_lrs, inner_step, lrs_for, make_inner_lrs, map_tasks, params_of, raw_lr, sgd_step
from omrl_algos.networks import GaussianPolicy, ValueNetwork, WeightTransformLinear, gaussian_log_prob
from omrl_data.batch import TaskBatch
from omrl_data.errors import BadInput

SMALL = dict(width=16, depth=2, latent_dim=8, adv_width=8, support_size=16, query_size=16, meta_batch=3, inner_lr_init=0.05)


def make_batch(t: int, b: int, obs_dim: int, act_dim: int, seed: int) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    return TaskBatch(
        observations=torch.randn(t, b, obs_dim, generator=g),
        actions=torch.rand(t, b, act_dim, generator=g) * 2 - 1,
        rewards=torch.randn(t, b, generator=g),
        next_observations=torch.randn(t, b, obs_dim, generator=g),
        terminated=torch.zeros(t, b, dtype=torch.bool),
        truncated=torch.zeros(t, b, dtype=torch.bool),
        mc_returns=torch.randn(t, b, generator=g) * 3,
        task_index=torch.arange(t),
        task_features=torch.zeros(t, 1),
        mask=torch.ones(t, b, dtype=torch.bool),
        mc_bootstrap_discount=torch.rand(t, b, generator=g),
        bootstrap_observations=torch.randn(t, b, obs_dim, generator=g),
    )


def meta_grads(**overrides) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    algo = Macaw(MacawConfig(**{**SMALL, **overrides}), obs_dim=3, act_dim=2)
    support, query = make_batch(3, 16, 3, 2, 1), make_batch(3, 16, 3, 2, 2)
    out = algo.meta_losses(support, query)
    (out["value_loss"].mean() + out["policy_loss"].mean()).backward()
    return {k: p.grad.clone() for k, p in algo.named_parameters() if p.grad is not None}


# ------------------------------------------------------------------------------- networks
def test_weight_transform_layer_is_a_linear_map_of_its_latent():
    layer = WeightTransformLinear(3, 4, latent_dim=5)
    x = torch.randn(7, 3)
    flat = layer.map(layer.latent)
    expected = x @ flat[:12].view(4, 3).T + flat[12:]
    torch.testing.assert_close(layer(x), expected)
    # Init N(0, 1/out) of the latent, and the map's output has the weight+bias size.
    assert layer.map.out_features == 4 * 3 + 4


def test_policy_mean_in_range_and_advantage_head_reads_the_action():
    torch.manual_seed(0)
    pi = GaussianPolicy(3, 2, width=8, depth=2, latent_dim=4, adv_width=8)
    obs = torch.randn(5, 3) * 10
    mean, adv1 = pi.mean_and_advantage(obs, torch.zeros(5, 2))
    _, adv2 = pi.mean_and_advantage(obs, torch.ones(5, 2))
    assert mean.abs().max() <= 1 and adv1.shape == (5,)
    assert not torch.allclose(adv1, adv2)
    plain = ValueNetwork(3, width=8, depth=2, weight_transform=False)
    assert all(isinstance(m, torch.nn.Linear) for m in plain.body.hidden)


def test_gaussian_log_prob_by_hand():
    mean, a = torch.tensor([[0.0, 0.5]]), torch.tensor([[0.2, 0.5]])
    expected = -0.5 * (0.2 / 0.2) ** 2 - 2 * math.log(0.2) - math.log(2 * math.pi)
    assert float(gaussian_log_prob(mean, 0.2, a)[0]) == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------------- losses
def test_awr_weights_by_hand():
    adv = torch.tensor([0.0, 1.0, 2.0, 3.0])
    std = math.sqrt(5 / 3)  # unbiased std of 0..3
    z = [(a - 1.5) / std for a in (0, 1, 2, 3)]
    torch.testing.assert_close(losses.awr_weights(adv), torch.tensor([math.exp(v) for v in z]))
    # Temperature 0.25 pushes the top weight past the clip: exp(log 20) = 20.
    w = losses.awr_weights(adv, temperature=0.25)
    assert float(w[3]) == pytest.approx(20.0)
    assert float(w[2]) == pytest.approx(math.exp(z[2] / 0.25))
    assert float(losses.awr_weights(adv, temperature=0.25, max_weight=5.0)[3]) == pytest.approx(5.0)
    # Shift and scale of the advantages do not change the weights (normalised).
    torch.testing.assert_close(losses.awr_weights(adv * 100 - 7), losses.awr_weights(adv))


def test_awr_and_enriched_loss_by_hand():
    mean = torch.zeros(2, 1, requires_grad=True)
    actions = torch.tensor([[0.2], [-0.2]])
    adv = torch.tensor([1.0, -1.0])
    w = losses.awr_weights(adv)
    logp = gaussian_log_prob(torch.zeros(2, 1), 0.2, actions)
    out = losses.awr_loss(mean, 0.2, actions, adv)
    assert float(out["loss"]) == pytest.approx(float(-(logp * w).mean()))
    pred = torch.tensor([0.5, 0.0])
    enriched = losses.enriched_policy_loss(mean, pred, 0.2, actions, adv, 0.1)
    adv_mse = ((0.5 - 1.0) ** 2 + (0.0 + 1.0) ** 2) / 2
    assert float(enriched["adv_mse"]) == pytest.approx(adv_mse)
    assert float(enriched["loss"]) == pytest.approx(float(out["loss"]) + 0.1 * adv_mse)
    # The weights are constants: the gradient moves the mean towards the high-advantage action.
    out["loss"].backward()
    assert float(mean.grad[0]) < 0 < float(mean.grad[1])


def test_value_loss_by_hand():
    out = losses.value_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))
    assert float(out["loss"]) == pytest.approx((1 + 4) / 2)


# ------------------------------------------------------------------------- learned inner lrs
def test_learned_lrs_are_softplus_of_log_init():
    value = ValueNetwork(2, width=4, depth=1, weight_transform=False)
    raw = make_inner_lrs(value, 1e-3, "cpu")
    assert float(next(iter(raw.values()))) == pytest.approx(math.log(1e-3))
    lrs = lrs_for(params_of(value), raw)
    assert set(lrs) == set(params_of(value))
    for lr in lrs.values():
        assert float(lr) == pytest.approx(math.log(1 + 1e-3), rel=1e-6)  # softplus(log x) = log(1 + x)
    assert float(effective_lrs({"a": torch.tensor(raw_lr(0.5))})["a"]) == pytest.approx(math.log(1.5))


def test_inner_step_is_sgd_with_per_tensor_lrs():
    params = {"a": torch.tensor([1.0, -2.0]), "b": torch.tensor(3.0)}
    lrs = {"a": torch.tensor(0.1), "b": torch.tensor(0.5)}
    # L = 0.5 * (|a|^2 + b^2): grad = params.
    new, terms = inner_step(lambda p: {"loss": 0.5 * (p["a"].pow(2).sum() + p["b"] ** 2)}, params, lrs)
    torch.testing.assert_close(new["a"], torch.tensor([0.9, -1.8]))
    torch.testing.assert_close(new["b"], torch.tensor(1.5))
    assert float(terms["loss"]) == pytest.approx(7.0)
    same = sgd_step(params, {"a": torch.ones(2), "b": torch.tensor(1.0)}, lrs)
    torch.testing.assert_close(same["b"], torch.tensor(2.5))


def test_inner_lrs_and_adv_coef_get_meta_gradients():
    grads = meta_grads()
    assert any(k.startswith("value_lrs.") and float(g.abs()) > 0 for k, g in grads.items())
    assert any(k.startswith("policy_lrs.") and float(g.abs()) > 0 for k, g in grads.items())
    assert float(grads["adv_coef"].abs()) > 0  # c acts only through the inner policy step


# --------------------------------------------------------------------------- meta-gradients
def test_vmap_and_loop_give_the_same_meta_gradients():
    a, b = meta_grads(vmap=True), meta_grads(vmap=False)
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)


def test_second_order_term_is_present():
    second, first = meta_grads(first_order=False), meta_grads(first_order=True)
    diff = max(float((second[k] - first[k]).abs().max()) for k in second if k.startswith("value."))
    scale = max(float(second[k].abs().max()) for k in second if k.startswith("value."))
    assert diff > 1e-4 * scale  # the Hessian-vector term through the inner step
    # ... and first order still trains the inner lrs (through lr * g).
    assert any(k.startswith("value_lrs.") and float(first[k].abs()) > 0 for k in first)


def test_map_tasks_loop_matches_vmap_on_a_pytree():
    def fn(shared, task):
        return {"s": (task["x"] * shared["w"]).sum(), "v": task["x"] + shared["w"]}

    shared, per_task = {"w": torch.arange(3.0)}, {"x": torch.randn(4, 3)}
    a, b = map_tasks(fn, shared, per_task, True), map_tasks(fn, shared, per_task, False)
    torch.testing.assert_close(a["s"], b["s"])
    torch.testing.assert_close(a["v"], b["v"])


def test_adapt_changes_the_policy_and_keeps_the_meta_parameters():
    torch.manual_seed(0)
    algo = Macaw(MacawConfig(**SMALL), obs_dim=3, act_dim=2)
    before = {k: v.clone() for k, v in algo.state_dict().items()}
    agent = algo.adapt(make_batch(1, 16, 3, 2, 5))
    obs = torch.randn(4, 3)
    assert not torch.allclose(agent.act(obs), algo.meta_agent().act(obs))
    for k, v in algo.state_dict().items():
        assert torch.equal(v, before[k])


# --------------------------------------------------------------------------------- config
def test_config_overrides_types_and_errors():
    cfg = default_config("macaw")
    apply_overrides(cfg, ["train.steps=12", "algo.value_lr=1e-4", "algo.vmap=false", "eval.online_steps=[0, 500]", "dataset=omrl/x/y"])
    assert cfg.train.steps == 12 and cfg.algo.value_lr == 1e-4 and cfg.algo.vmap is False
    assert cfg.eval.online_steps == (0, 500) and cfg.dataset == "omrl/x/y"
    again = RunConfig.from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict() and isinstance(again.algo, MacawConfig)
    with pytest.raises(BadInput, match="unknown setting 'algo.widht'"):
        apply_overrides(cfg, ["algo.widht=3"])
    with pytest.raises(BadInput, match="must be an integer"):
        apply_overrides(cfg, ["train.steps=many"])
    with pytest.raises(BadInput, match="key=value"):
        apply_overrides(cfg, ["train.steps"])
    with pytest.raises(BadInput, match="unknown algorithm"):
        default_config("nope")
