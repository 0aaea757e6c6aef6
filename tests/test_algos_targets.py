"""The value-target component (omrl_algos.targets) against hand-computed targets, and its users."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from omrl_algos.macaw import Macaw, MacawConfig
from omrl_algos.meta import call, task_tensors
from omrl_algos.mtft import MtftConfig, MultiTaskFineTune
from omrl_algos.targets import ValueTargets, episode_targets, value_targets
from omrl_data.returns import mc_returns
from tests.test_algos_core import SMALL, make_batch

GAMMA = 0.9


def test_targets_by_hand_termination_truncation_and_scale():
    # Two stored episodes: [1, 2, 3] ends terminal, [4, 5] is cut by the time limit.
    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    returns, discount = mc_returns(rewards, np.array([0, 0, 0, 1, 1]), np.array([0, 0, 1, 0, 0], bool), GAMMA)
    np.testing.assert_allclose(returns, [1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 3, 4 + 0.9 * 5, 5], rtol=1e-6)
    np.testing.assert_allclose(discount, [0, 0, 0, 0.81, 0.9], rtol=1e-6)  # gamma^(T-t) only where truncated
    v_end = 10.0  # V(s_T) of the truncated episode's final next observation
    rows = {
        "mc_returns": torch.tensor(returns),
        "mc_bootstrap_discount": torch.tensor(discount),
        "bootstrap_observations": torch.zeros(5, 1),
    }
    scale = 0.5
    got = ValueTargets(reward_scale=scale, bootstrap=True)(rows, lambda obs: torch.full((obs.shape[0],), v_end))
    expected = [scale * returns[0], scale * returns[1], scale * 3, scale * (4 + 0.9 * 5) + 0.81 * v_end, scale * 5 + 0.9 * v_end]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    # Bootstrap off, or no value given: scaled MC returns only.
    off = ValueTargets(scale, bootstrap=False)(rows, lambda obs: torch.full((obs.shape[0],), v_end))
    np.testing.assert_allclose(off.numpy(), scale * returns, rtol=1e-6)
    np.testing.assert_allclose(ValueTargets(scale)(rows).numpy(), scale * returns, rtol=1e-6)
    # The pure function agrees.
    torch.testing.assert_close(value_targets(rows["mc_returns"], scale, rows["mc_bootstrap_discount"], torch.full((5,), v_end)), got)


def test_targets_are_constants():
    w = torch.tensor(2.0, requires_grad=True)
    rows = {"mc_returns": torch.ones(3), "mc_bootstrap_discount": torch.ones(3), "bootstrap_observations": torch.ones(3, 1)}
    y = ValueTargets()(rows, lambda obs: w * obs[:, 0])
    assert not y.requires_grad


def test_episode_targets_of_an_online_episode():
    rewards = np.array([1.0, 1.0, 1.0], np.float32)
    cut = episode_targets(rewards, terminated=False, final_observation=np.array([7.0, 8.0]), gamma=GAMMA)
    np.testing.assert_allclose(cut["mc_bootstrap_discount"], [0.729, 0.81, 0.9], rtol=1e-6)
    assert cut["bootstrap_observations"].shape == (3, 2) and (cut["bootstrap_observations"] == [7.0, 8.0]).all()
    done = episode_targets(rewards, terminated=True, final_observation=np.zeros(2), gamma=GAMMA)
    np.testing.assert_allclose(done["mc_bootstrap_discount"], 0.0)
    np.testing.assert_allclose(done["mc_returns"], [1 + 0.9 + 0.81, 1.9, 1.0], rtol=1e-6)


def test_macaw_inner_targets_are_mc_and_outer_targets_bootstrap_with_the_adapted_value():
    torch.manual_seed(0)
    algo = Macaw(MacawConfig(**SMALL, reward_scale=0.1), obs_dim=3, act_dim=2)
    task = {k: v[0] for k, v in task_tensors(make_batch(1, 16, 3, 2, 3)).items()}
    meta = algo.meta_params()
    support = algo._support_targets(meta["value"], task)
    torch.testing.assert_close(support["targets"], 0.1 * task["mc_returns"])
    algo.config.inner_bootstrap = True
    v_meta = call(algo.value, meta["value"], task["bootstrap_observations"]).detach()
    torch.testing.assert_close(algo._support_targets(meta["value"], task)["targets"], 0.1 * task["mc_returns"] + task["mc_bootstrap_discount"] * v_meta)
    value, _, _ = algo._adapt_params(meta, task, first_order=True)
    v_adapted = call(algo.value, value, task["bootstrap_observations"]).detach()
    assert not torch.allclose(v_adapted, v_meta)
    query = algo._query_targets(value, task)
    torch.testing.assert_close(query["targets"], 0.1 * task["mc_returns"] + task["mc_bootstrap_discount"] * v_adapted)


def test_macaw_target_copy_bootstraps_and_follows_the_meta_value_by_tau():
    torch.manual_seed(0)
    algo = Macaw(MacawConfig(**SMALL, reward_scale=0.1, bootstrap_target_tau=0.25), obs_dim=3, act_dim=2)
    task = {k: v[0] for k, v in task_tensors(make_batch(1, 16, 3, 2, 3)).items()}
    meta = algo.meta_params()
    value, _, _ = algo._adapt_params(meta, task, first_order=True)
    # The outer targets bootstrap with the target copy, not the adapted value.
    with torch.no_grad():
        for p in algo.value_target.parameters():
            p.add_(0.3)
    v_target = algo.value_target(task["bootstrap_observations"]).detach()
    assert not torch.allclose(v_target, call(algo.value, value, task["bootstrap_observations"]).detach())
    expected = 0.1 * task["mc_returns"] + task["mc_bootstrap_discount"] * v_target
    torch.testing.assert_close(algo._query_targets(value, task)["targets"], expected)
    loss, _ = algo._outer_value(value, task)
    torch.testing.assert_close(loss["loss"], ((call(algo.value, value, task["observations"]) - expected) ** 2).mean())
    # and with inner_bootstrap the support targets too.
    algo.config.inner_bootstrap = True
    torch.testing.assert_close(algo._support_targets(meta["value"], task)["targets"], expected)
    # After an outer step the copy moves tau of the way to the meta value; it is saved with the model.
    before = [p.clone() for p in algo.value_target.parameters()]
    live = [p.detach().clone() for p in algo.value.parameters()]
    algo.update_value_target()
    for b, v, t in zip(before, live, algo.value_target.parameters()):
        torch.testing.assert_close(t, b + 0.25 * (v - b))
    assert any(k.startswith("value_target.") for k in algo.state_dict())
    assert not any(p.requires_grad for p in algo.value_target.parameters())


def test_mtft_awr_weights_are_normalised_per_task():
    torch.manual_seed(0)
    algo = MultiTaskFineTune(MtftConfig(width=8, depth=1, weight_transform=False, bootstrap=False), obs_dim=3, act_dim=2)
    batch = make_batch(2, 32, 3, 2, 0)
    rows = {k: getattr(batch, k) for k in ("observations", "actions", "mc_returns")}
    shifted = {**rows, "mc_returns": rows["mc_returns"] + torch.tensor([[0.0], [1000.0]])}  # task 1 pays 1000 more
    params = dict(algo.policy.named_parameters()), dict(algo.value.named_parameters())
    a = algo.policy_loss(*params, rows)["loss"]
    b = algo.policy_loss(*params, shifted)["loss"]
    assert float(a) == pytest.approx(float(b), rel=1e-5), "a between-task return offset must not change the AWR weights"
