"""The context baselines' pure losses against hand computations on tiny embeddings, and the
offline actor-critic core: the behaviour-regularised term's sign and a critic update against a
hand-computed target."""
from __future__ import annotations

import math

import pytest
import torch

from omrl_algos.actor_critic import tanh_gaussian, tanh_gaussian_log_prob
from omrl_algos.context_losses import (
    club_log_likelihood,
    club_upper_bound,
    corro_info_nce,
    focal_metric_loss,
    kl_to_unit_prior,
    product_of_gaussians,
    reward_noise_negatives,
)
from omrl_algos.offline_ac import OfflineActorCritic, brac_actor_loss, brac_td_target

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------- FOCAL
def test_focal_metric_loss_both_branches_by_hand():
    # three sets of one 2-D embedding; sets 0 and 1 are of task 0, set 2 of task 1
    z = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 2.0]]])
    tasks = torch.tensor([0, 0, 1])
    out = focal_metric_loss(z, tasks)
    same = math.sqrt(0.5 + 1e-3)  # D_01 = mean(1, 0) = 0.5
    other = (1 / (2.0 + 0.1) + 1 / (2.5 + 0.1)) / 2  # D_02 = mean(0, 4) = 2; D_12 = mean(1, 4) = 2.5
    assert float(out["same_task"]) == pytest.approx(same, rel=1e-6)
    assert float(out["other_task"]) == pytest.approx(other, rel=1e-6)
    assert float(out["loss"]) == pytest.approx(same + other, rel=1e-6)
    # the distance is a mean over the set's transitions and the dimensions
    z2 = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[2.0, 0.0], [0.0, 0.0]]])
    assert float(focal_metric_loss(z2, torch.tensor([3, 3]))["loss"]) == pytest.approx(math.sqrt(1.0 + 1e-3), rel=1e-6)
    assert float(focal_metric_loss(z2, torch.tensor([3, 4]))["loss"]) == pytest.approx(1 / 1.1, rel=1e-6)
    # gradients pull same-task sets together and push other tasks apart
    zg = z.clone().requires_grad_(True)
    focal_metric_loss(zg, tasks)["loss"].backward()
    assert float(zg.grad[1, 0, 0]) > 0  # set 1 sits at +x from its same-task partner: descent moves it back
    assert float(zg.grad[2, 0, 1]) < 0  # set 2 (other task, at +y) is pushed further up


# ---------------------------------------------------------------------------------- CORRO
def test_reward_noise_negatives_keep_state_and_action():
    x = torch.tensor([[0.5, -0.2, 1.0, 0.7]])  # [s, a, r, s'], obs 1, act 1
    noise = torch.tensor([[1.0, -2.0]])
    neg = reward_noise_negatives(x, 1, 1, noise, reward_std=0.5)
    assert neg.shape == (1, 2, 4)
    torch.testing.assert_close(neg[0, :, 2], torch.tensor([1.5, 0.0]))
    torch.testing.assert_close(neg[0, :, [0, 1, 3]], x[0, [0, 1, 3]].expand(2, 3))
    moved = reward_noise_negatives(x, 1, 1, noise, 0.5, state_std=0.1, state_noise=torch.tensor([[[1.0], [2.0]]]))
    torch.testing.assert_close(moved[0, :, 3], torch.tensor([0.8, 0.9]))
    with pytest.raises(ValueError):
        reward_noise_negatives(x, 1, 1, noise, 0.5, state_std=0.1)


def test_corro_info_nce_by_hand():
    anchor = torch.tensor([[1.0, 0.0]])
    positive = torch.tensor([[0.8, 0.6]])  # cosine 0.8
    negatives = torch.tensor([[[0.0, 2.0], [-3.0, 0.0]]])  # cosines 0 and -1
    out = corro_info_nce(anchor, positive, negatives, temperature=0.5)
    hand = math.log(math.exp(1.6) + math.exp(0) + math.exp(-2)) - 1.6
    assert float(out["loss"]) == pytest.approx(hand, rel=1e-5)
    # CORRO's temperature 0.1: logits 8, 0, -10 (float32: compare to 1e-6 absolute)
    sharp = corro_info_nce(anchor, positive, negatives)
    assert float(sharp["loss"]) == pytest.approx(math.log(math.exp(8) + 1 + math.exp(-10)) - 8, abs=1e-6)
    assert float(out["accuracy"]) == 1.0
    # the negative most like the anchor costs most
    worse = corro_info_nce(anchor, positive, torch.tensor([[[1.0, 0.1], [-3.0, 0.0]]]), temperature=0.5)
    assert float(worse["loss"]) > float(out["loss"]) + 0.5


# ----------------------------------------------------------------------------------- CLUB
def test_club_upper_bound_by_hand():
    # q(z | x_i) = N(mu_i, 1) with mu = (0, 1) and z = (0, 1): z follows x
    z = torch.tensor([[0.0], [1.0]])
    mean = torch.tensor([[0.0], [1.0]])
    logvar = torch.zeros(2, 1)
    c = 0.5 * math.log(2 * math.pi)
    positive = -c  # both pairs at their mean
    pairwise = (4 * -c - 0.5 * (0 + 1 + 1 + 0)) / 4  # log q(z_j | x_i) over the 4 (i, j)
    assert float(club_upper_bound(z, mean, logvar)["loss"]) == pytest.approx(positive - pairwise, rel=1e-6)  # = 0.25
    # q that ignores x (z independent of x): the bound is 0
    assert float(club_upper_bound(z, torch.zeros(2, 1), logvar)["loss"]) == pytest.approx(0.0, abs=1e-6)
    # variance 4: the squared errors are divided by 4 (log-variance terms cancel)
    assert float(club_upper_bound(z, mean, torch.full((2, 1), math.log(4.0)))["loss"]) == pytest.approx(0.25 / 4, rel=1e-6)
    nll = club_log_likelihood(z, mean, logvar)["loss"]
    assert float(nll) == pytest.approx(c, rel=1e-6)


# ---------------------------------------------------------------------------------- PEARL
def test_product_of_gaussians_and_kl_by_hand():
    mean = torch.tensor([[1.0], [3.0]])
    var = torch.tensor([[1.0], [3.0]])
    m, v = product_of_gaussians(mean, var)
    assert float(v) == pytest.approx(0.75)  # 1 / (1 + 1/3)
    assert float(m) == pytest.approx(0.75 * (1 / 1 + 3 / 3))  # 1.5
    m1, v1 = product_of_gaussians(mean, var, mask=torch.tensor([True, False]))
    assert (float(m1), float(v1)) == pytest.approx((1.0, 1.0))
    kl = kl_to_unit_prior(m, v)
    assert float(kl) == pytest.approx(0.5 * (0.75 + 2.25 - 1 - math.log(0.75)), rel=1e-6)
    assert float(kl_to_unit_prior(torch.zeros(3), torch.ones(3))) == pytest.approx(0.0, abs=1e-7)
    # batched over tasks: [T, C, d]
    mb, vb = product_of_gaussians(torch.stack([mean, mean]), torch.stack([var, 2 * var]))
    assert vb.shape == (2, 1) and float(vb[1]) == pytest.approx(1.5)


# -------------------------------------------------------------------------- actor-critic core
def test_brac_term_pulls_the_policy_towards_the_behaviour_policy():
    """pi = tanh N(m, 1), pi_b = tanh N(0, 1), a = tanh(m + eps): the divergence estimate
    log pi(a) - log pi_b(a) = (u^2 - eps^2) / 2 with u = m + eps (the tanh terms cancel), so its
    gradient in m is mean(u) ~ m: descent moves m towards the behaviour's mean 0."""
    gen = torch.Generator().manual_seed(0)
    eps = torch.randn(4000, 1, generator=gen)
    zero_alpha = torch.tensor(0.0)
    for m0 in (1.0, -0.7):
        m = torch.tensor([[m0]], requires_grad=True)
        a, logp = tanh_gaussian(m.expand(4000, 1), torch.zeros(4000, 1), eps)
        blogp = tanh_gaussian_log_prob(torch.zeros(4000, 1), torch.zeros(4000, 1), a)
        out = brac_actor_loss(logp, blogp, torch.zeros(4000), zero_alpha, beta=1.0)
        (g,) = torch.autograd.grad(out["loss"], m)
        hand = float((m0 + eps).mean())
        assert float(g) == pytest.approx(hand, abs=2e-3)
        assert math.copysign(1, float(g)) == math.copysign(1, m0)
    # beta 0: SAC's loss, no pull
    m = torch.tensor([[1.0]], requires_grad=True)
    a, logp = tanh_gaussian(m.expand(4000, 1), torch.zeros(4000, 1), eps)
    blogp = tanh_gaussian_log_prob(torch.zeros(4000, 1), torch.zeros(4000, 1), a)
    assert "divergence" not in brac_actor_loss(logp, blogp, torch.zeros(4000), zero_alpha, beta=0.0)


def test_brac_td_target_by_hand():
    r = torch.tensor([1.0, 2.0])
    done = torch.tensor([False, True])
    nq, nlogp, nblogp = torch.full((2,), 10.0), torch.full((2,), -1.0), torch.full((2,), -3.0)
    alpha = torch.tensor(0.5)
    # soft value 10 + 0.5 = 10.5; value penalty 2 * (-1 + 3) = 4
    torch.testing.assert_close(brac_td_target(r, done, nq, nlogp, nblogp, alpha, 2.0, 0.9), torch.tensor([1 + 0.9 * 6.5, 2.0]))
    torch.testing.assert_close(brac_td_target(r, done, nq, nlogp, None, alpha, 2.0, 0.9), torch.tensor([1 + 0.9 * 10.5, 2.0]))


def test_critic_update_against_a_hand_computed_target():
    torch.manual_seed(0)
    ac = OfflineActorCritic(3, 2, 2, width=8, depth=1, init_temperature=0.2, beta=0.5, value_penalty=True)
    n = 6
    rows = {"observations": torch.randn(n, 3), "actions": torch.rand(n, 2) * 2 - 1, "rewards": torch.randn(n),
            "next_observations": torch.randn(n, 3), "terminated": torch.tensor([False, True] * 3)}
    z = torch.randn(n, 2)
    terms = ac.losses(rows, z, z, 0.9, -2.0, generator=torch.Generator().manual_seed(5))
    # by hand: the first draw of the generator is the next action's noise
    with torch.no_grad():
        mean, log_std = ac.sac.distribution(rows["next_observations"], z)
        noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(5))
        a_next, logp_next = tanh_gaussian(mean, log_std, noise)
        t1, t2 = ac.sac.q(rows["next_observations"], a_next, z, target=True)
        blogp = ac.behaviour.log_prob(rows["next_observations"], z, a_next)
        soft = torch.min(t1, t2) - 0.2 * logp_next - 0.5 * (logp_next - blogp)
        y = rows["rewards"] + 0.9 * (~rows["terminated"]).float() * soft
        q1, q2 = ac.sac.q(rows["observations"], rows["actions"], z)
    assert float(terms["critic"]["target_mean"]) == pytest.approx(float(y.mean()), rel=1e-5)
    hand = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
    assert float(terms["critic"]["loss"].detach()) == pytest.approx(float(hand), rel=1e-5)
    # one SGD step on the critics alone moves both towards y; the actor and targets stay put
    grads = ac.gradients(terms)
    actor_before = [p.clone() for p in ac.sac.actor.parameters()]
    target_before = [p.clone() for p in ac.sac.target1.parameters()]
    with torch.no_grad():
        for p in ac.parameter_groups()["critic"]:
            p -= 0.05 * grads[p]
        n1, n2 = ac.sac.q(rows["observations"], rows["actions"], z)
    assert float(((n1 - y) ** 2).mean() + ((n2 - y) ** 2).mean()) < float(hand)
    assert all(torch.equal(a, b) for a, b in zip(actor_before, ac.sac.actor.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(target_before, ac.sac.target1.parameters()))
    assert set(ac.parameter_groups()) == {"actor", "critic", "temperature", "behaviour"}
    assert "divergence" in terms["actor"] and "behaviour" in terms
    assert OfflineActorCritic(3, 2, 2, width=8, depth=1).behaviour is None  # beta 0: plain SAC
