"""R2PGO (paper 004): hypernetwork, KL and InfoNCE against hand computations, the zero-shot
agent's context, the CLI run with resume and evaluation, and learning on a tiny bandit family."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from omrl_algos.actor_critic import ConditionalMLP, HyperLinear, SoftActorCritic, tanh_gaussian, tanh_gaussian_log_prob
from omrl_algos.config import EvalConfig
from omrl_algos.context import RecurrentEncoder, elbo_terms, gaussian_kl, info_nce
from omrl_algos.evaluation import Evaluator
from omrl_algos.r2pgo import R2pgo, R2pgoConfig
from tests.tiny_bandit import bandit_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(latent_dim=4, encoder_hidden=16, encoder_embed=16, decoder_width=16, context_length=6, meta_batch=3, batch_size=16,
            width=16, depth=1, hyper_hidden=8, n_negatives=4, reward_scale=1.0, encoder_steps=2)


# ------------------------------------------------------------------------------ hypernetwork
def test_hyper_linear_generates_a_layer_per_latent_with_gradients():
    torch.manual_seed(0)
    layer = HyperLinear(6, 3, latent_dim=4, hidden=8)
    x, z = torch.randn(7, 6), torch.randn(7, 4, requires_grad=True)
    y = layer(x, z)
    assert y.shape == (7, 3)
    w, b = layer.params(z)
    assert w.shape == (7, 3, 6) and b.shape == (7, 3)
    for i in range(7):  # row i uses its own generated layer W(z_i) x_i + b(z_i)
        torch.testing.assert_close(y[i], w[i] @ x[i] + b[i])
    assert not torch.allclose(w[0], w[1])  # different latents, different layers
    y.sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert float(z.grad.abs().sum()) > 0  # the task latent gets a gradient through the generated weights
    # at init the generated layer is of a plain layer's scale (bias ~ U(+-1/sqrt(in)))
    assert float(b.detach().abs().max()) < 1.0 / math.sqrt(6) + 0.5 and float(w.detach().std()) < 1.0


@pytest.mark.parametrize("conditioning", ["hyper", "concat", "none"])
def test_conditional_mlp_shapes_and_dependence_on_z(conditioning):
    torch.manual_seed(0)
    net = ConditionalMLP(5, 2, latent_dim=3, width=8, depth=2, conditioning=conditioning)
    x = torch.randn(4, 10, 5)
    z1, z2 = torch.zeros(4, 10, 3), torch.ones(4, 10, 3)
    out = net(x, z1)
    assert out.shape == (4, 10, 2)
    assert torch.allclose(out, net(x, z2)) == (conditioning == "none")
    if conditioning == "hyper":  # shared lower layers read the state only; z enters the last layer
        assert net.hidden[0].in_features == 5 and isinstance(net.out, HyperLinear)
    if conditioning == "concat":
        assert net.hidden[0].in_features == 8


def test_tanh_gaussian_log_prob_matches_sampling():
    torch.manual_seed(0)
    mean, log_std = torch.randn(6, 2), torch.randn(6, 2) * 0.3
    noise = torch.randn(6, 2)
    a, logp = tanh_gaussian(mean, log_std, noise)
    torch.testing.assert_close(tanh_gaussian_log_prob(mean, log_std, a), logp, atol=1e-3, rtol=1e-4)


def test_sac_gradients_reach_only_their_own_groups():
    torch.manual_seed(0)
    sac = SoftActorCritic(3, 2, 4, width=8, depth=1)
    rows = {"observations": torch.randn(5, 3), "actions": torch.rand(5, 2) * 2 - 1, "rewards": torch.randn(5),
            "next_observations": torch.randn(5, 3), "terminated": torch.zeros(5, dtype=torch.bool)}
    z = torch.randn(5, 4)
    terms = sac.losses(rows, z, z, 0.9, -2.0)
    grads = sac.gradients(terms)
    critic_only = torch.autograd.grad(terms["critic"]["loss"], sac.parameter_groups()["critic"], retain_graph=True)
    for p, g in zip(sac.parameter_groups()["critic"], critic_only):
        torch.testing.assert_close(grads[p], g)  # the actor loss does not train the critics
    assert all(not p.requires_grad for p in sac.target1.parameters())


# ------------------------------------------------------------------------------------ KL, ELBO
def test_gaussian_kl_against_a_hand_computation():
    # KL(N(1, 0.5^2) || N(0, 1)) = 0.5 (0.25 + 1 - 1 - ln 0.25) = 0.8181472
    # KL(N(0, 1) || N(2, 2^2)) = 0.5 (ln 4 + (1 + 4) / 4 - 1) = 0.8181472 (by coincidence, the same)
    mq = torch.tensor([1.0, 0.0])
    lq = torch.log(torch.tensor([0.25, 1.0]))
    mp = torch.tensor([0.0, 2.0])
    lp = torch.log(torch.tensor([1.0, 4.0]))
    hand = 0.5 * (0.25 + 1 - 1 - math.log(0.25)) + 0.5 * (math.log(4) + 5 / 4 - 1)
    assert float(gaussian_kl(mq, lq, mp, lp)) == pytest.approx(hand, rel=1e-6)
    assert float(gaussian_kl(mq, lq, mq, lq)) == pytest.approx(0.0, abs=1e-7)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mq, lq.mul(0.5).exp()), torch.distributions.Normal(mp, lp.mul(0.5).exp())).sum()
    assert float(gaussian_kl(mq, lq, mp, lp)) == pytest.approx(float(ref), rel=1e-6)


def test_elbo_kl_is_to_the_previous_posterior_and_skips_padding():
    # one window of 2 transitions (the second padded); posteriors: prior N(0,1), q_1 = N(1, 0.5^2), q_2 = q_1
    mean = torch.tensor([[[0.0], [1.0], [1.0]]])
    logvar = torch.log(torch.tensor([[[1.0], [0.25], [0.25]]]))
    samples = torch.zeros(1, 2, 1)
    pred_next = torch.zeros(1, 2, 2, 1)
    pred_r = torch.zeros(1, 2, 2)
    next_obs = torch.tensor([[[2.0], [100.0]]])  # the padded row must not count
    rewards = torch.tensor([[1.0, 100.0]])
    mask = torch.tensor([[True, False]])
    out = elbo_terms(mean, logvar, samples, pred_next, pred_r, next_obs, rewards, mask, kl_weight=0.5, state_weight=1.0)
    kl1 = 0.5 * (0.25 + 1 - 1 - math.log(0.25))  # KL(q_1 || prior); step 2 is padding
    assert float(out["kl"]) == pytest.approx(kl1, rel=1e-6)
    assert float(out["recon"]) == pytest.approx(4.0 + 1.0)  # (2 - 0)^2 + (1 - 0)^2 of the real transition
    assert float(out["loss"]) == pytest.approx(5.0 + 0.5 * kl1, rel=1e-6)


def test_recurrent_encoder_starts_at_the_prior_and_holds_through_padding():
    torch.manual_seed(0)
    enc = RecurrentEncoder(4, 3, hidden=8, embed=8)
    x = torch.randn(2, 5, 4)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    mean, logvar = enc(x, mask)
    assert mean.shape == (2, 6, 3)
    assert float(mean[:, 0].abs().sum()) == 0 and float(logvar[:, 0].abs().sum()) == 0  # N(0, I)
    torch.testing.assert_close(mean[1, 2], mean[1, 5])  # padded steps keep the last real posterior
    assert not torch.allclose(mean[0, 2], mean[0, 5])


# ------------------------------------------------------------------------------------- InfoNCE
def test_info_nce_against_a_hand_computation():
    anchor = torch.tensor([[1.0, 0.0]])
    positive = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])
    # tau 0.5: logits positive 2, negatives 0 and -2
    full = info_nce(anchor, positive, negatives, temperature=0.5, positive_in_denominator=True, similarity="dot")
    assert float(full["loss"]) == pytest.approx(math.log(1 + math.exp(-2) + math.exp(-4)), rel=1e-6)
    printed = info_nce(anchor, positive, negatives, temperature=0.5, positive_in_denominator=False, similarity="dot")
    assert float(printed["loss"]) == pytest.approx(math.log(1 + math.exp(-2)) - 2, rel=1e-6)  # eq. 5 as printed
    # cosine: scaled vectors give the same loss
    scaled = info_nce(3 * anchor, positive, 5 * negatives, temperature=0.5, similarity="cosine")
    assert float(scaled["loss"]) == pytest.approx(float(full["loss"]), rel=1e-6)
    # centred cosine: the mean of the 4 vectors is (0.25, 0.25); after removing it the anchor and
    # positive are (0.75, -0.25), the negatives (-0.25, 0.75) and (-1.25, -0.25)
    a_c, n1, n2 = np.array([0.75, -0.25]), np.array([-0.25, 0.75]), np.array([-1.25, -0.25])
    cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
    logits = np.array([cos(a_c, a_c), cos(a_c, n1), cos(a_c, n2)]) / 0.5
    hand = float(np.log(np.exp(logits).sum()) - logits[0])
    centred = info_nce(anchor, positive, negatives, temperature=0.5, similarity="centred_cosine")
    assert float(centred["loss"]) == pytest.approx(hand, rel=1e-6)
    # ... and an offset common to every embedding (cheetah_vel's encoder had one of norm 16) changes nothing,
    # while plain cosine goes flat (every similarity ~1, the loss ~log 3)
    offset = torch.tensor([40.0, -30.0])
    shifted = info_nce(anchor + offset, positive + offset, negatives + offset, temperature=0.5, similarity="centred_cosine")
    assert float(shifted["loss"]) == pytest.approx(hand, rel=1e-5)
    flat = info_nce(anchor + offset, positive + offset, negatives + offset, temperature=0.5, similarity="cosine")
    assert float(flat["loss"]) == pytest.approx(math.log(3), abs=0.02)
    assert float(full["accuracy"]) == 1.0
    # two anchors average
    two = info_nce(torch.cat([anchor, -anchor]), torch.cat([positive, positive]), torch.cat([negatives, negatives]), temperature=0.5, similarity="dot")
    second = math.log(math.exp(-2) + 1 + math.exp(2)) + 2  # anchor -x: positive -2, negatives 0, 2
    assert float(two["loss"]) == pytest.approx((float(full["loss"]) + second) / 2, rel=1e-6)


# ------------------------------------------------------------------------------ agent, zero-shot
def _tiny_r2pgo(ds, steps: int = 4, **overrides):
    torch.manual_seed(0)
    algo = R2pgo(R2pgoConfig(**{**TINY, **overrides}), 1, 5)
    algo.set_action_bounds(*ds.action_bounds)
    sampler = algo.make_sampler(ds, 0, "cpu")
    metrics = [algo.train_step(sampler) for _ in range(steps)]
    return algo, metrics


def test_training_runs_both_phases_and_ablations():
    ds = bandit_dataset(n_train=6, n_test=2, rows=200)
    algo, metrics = _tiny_r2pgo(ds)
    assert metrics[0]["train/phase"] == 1.0 and "train/contra_loss" in metrics[0] and "train/critic_loss" not in metrics[0]
    assert metrics[-1]["train/phase"] == 2.0 and "train/critic_loss" in metrics[-1] and "train/recon" not in metrics[-1]
    assert algo.config.discount == pytest.approx(0.9)  # resolved from the dataset's gamma
    _, none = _tiny_r2pgo(ds, steps=1, negatives="none")
    assert "train/contra_loss" not in none[0] and "train/recon" in none[0]
    concat, _ = _tiny_r2pgo(ds, steps=3, conditioning="concat")
    assert isinstance(concat.sac.actor.out, torch.nn.Linear)
    no_ctx, m = _tiny_r2pgo(ds, steps=1, context=False)
    assert m[0]["train/phase"] == 2.0 and float(no_ctx.initial_agent().latent().abs().sum()) == 0


def test_zero_shot_context_grows_inside_a_trial_and_reset_clears_it():
    ds = bandit_dataset(n_train=6, n_test=2, rows=200)
    algo, _ = _tiny_r2pgo(ds)
    agent = algo.initial_agent()
    prior = agent.latent().clone()
    assert agent.context_size == 0 and float(prior.abs().sum()) == 0
    obs = torch.ones(1)
    latents = []
    for t in range(9):
        action = agent.act(obs[None])[0]
        agent.observe({"observations": obs, "actions": action, "rewards": torch.tensor(float(t % 2)), "next_observations": obs,
                       "terminated": torch.tensor(False), "truncated": torch.tensor(False)})
        assert agent.context_size == t + 1
        latents.append(agent.latent().clone())
    assert not torch.allclose(latents[0], prior) and not torch.allclose(latents[3], latents[0])
    # beyond context_length (6) the latent is the posterior after the last 6 transitions
    rows = torch.stack(agent.history)[-6:]
    mean, _ = algo.encode(rows[None], None)
    torch.testing.assert_close(latents[-1], mean[0, -1])
    agent.reset()
    assert agent.context_size == 0 and torch.equal(agent.latent(), prior)

    # through the evaluator: reset once per trial, the context grows by one per env step across
    # the trial's episodes (bandit: 10 pulls each)
    made = []
    original = algo.initial_agent

    def spy():
        agent = original()
        sizes, seen = [], []
        inner_reset, inner_observe = agent.reset, agent.observe
        agent.reset = lambda: (sizes.append(agent.context_size), inner_reset())[-1]
        agent.observe = lambda tr: (inner_observe(tr), seen.append(agent.context_size))[-1]
        made.append((agent, sizes, seen))
        return agent

    algo.initial_agent = spy
    ev = Evaluator(ds, EvalConfig(adapt_batch=16, episodes=2, trial_episodes=3, mode="zero_shot", random_policy=False), seed=0)
    try:
        result = ev.evaluate(algo)
    finally:
        ev.close()
    assert result["mode"] == "zero_shot"
    assert len(result["tasks"][0]["episodes"]) == 3 and len(result["mean"]["episodes"]) == 3
    assert result["tasks"][0]["after"] == result["tasks"][0]["episodes"][0]
    trial_agents = [m for m in made if m[2]]  # the agents that observed (not the prior-only "before" agent)
    assert len(trial_agents) == 2  # one per test task
    for agent, sizes, seen in trial_agents:
        assert sizes == [0, 30]  # reset at the start of each trial; the first trial had grown to 3 x 10
        assert seen == list(range(1, 31)) * 2


def test_offline_and_online_context_modes():
    ds = bandit_dataset(n_train=6, n_test=2, rows=200)
    algo, _ = _tiny_r2pgo(ds)
    ev = Evaluator(ds, EvalConfig(adapt_batch=16, episodes=1, mode="offline", explore_episodes=2), seed=0)
    try:
        task = ev.tasks[0]
        adapted = algo.adapt(ev.adaptation_batch(task, algo.adaptation_kind()))
        assert adapted.context_size == 16 and not torch.equal(adapted.latent(), algo.meta_agent().latent())
        adapted.reset()
        assert adapted.context_size == 16  # the offline context stays; only observed transitions go
        offline = ev.evaluate(algo)
        ev.config.mode = "online_context"
        online = ev.evaluate(algo)
    finally:
        ev.close()
    assert offline["mode"] == "offline" and online["mode"] == "online_context"
    assert "episodes" not in offline["mean"]


# --------------------------------------------------------------------------- CLI, resume, eval
def test_omrl_train_r2pgo_resumes_exactly_and_omrl_eval_reevaluates(tmp_path):
    from typer.testing import CliRunner

    from cli.train import app, eval_app
    from tests.algos_data import write_bandit_dataset

    ds = write_bandit_dataset(n_rows=300)
    sets = [f"algo.{k}={v}" for k, v in {**TINY, "encoder_steps": 3}.items()] + ["train.threads=1", "train.log_every=1", "eval.trial_episodes=2"]
    common = ["--dataset", ds, "--eval-every", "0", "--eval-episodes", "1", "--quiet", *[x for kv in sets for x in ("--set", kv)]]
    runner = CliRunner()
    full = runner.invoke(app, ["r2pgo", "--steps", "6", "--out", str(tmp_path / "full"), *common])
    assert full.exit_code == 0, full.output
    part = runner.invoke(app, ["r2pgo", "--steps", "2", "--out", str(tmp_path / "part"), *common])
    assert part.exit_code == 0, part.output
    resumed = runner.invoke(app, ["r2pgo", "--steps", "6", "--out", str(tmp_path / "part"), "--resume", *common])
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(tmp_path / "full" / "checkpoints" / "latest.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "checkpoints" / "latest.pt", weights_only=False)
    assert a["algo"].keys() == b["algo"].keys() and int(a["algo"]["meta_step"]) == 6
    for k in a["algo"]:
        assert torch.equal(a["algo"][k], b["algo"][k]), k
    saved = json.loads((tmp_path / "full" / "eval.json").read_text())
    assert saved["mode"] == "zero_shot" and len(saved["mean"]["episodes"]) == 2
    assert saved["tasks"][0]["after"] == saved["tasks"][0]["episodes"][0]
    assert json.loads((tmp_path / "full" / "config.json").read_text())["algo"]["discount"] == 0.0  # the bandit dataset's gamma
    assert (tmp_path / "full" / "embedding.png").stat().st_size > 0
    points = json.loads((tmp_path / "full" / "embedding.json").read_text())["points"]
    assert {p["task"] for p in points if p["test"]} == {10, 11, 12, 13, 14}
    again = runner.invoke(eval_app, [str(tmp_path / "full"), "--episodes", "1"])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "full" / "eval_latest.json").read_text())["mode"] == "zero_shot"
    bad = runner.invoke(app, ["r2pgo", "--steps", "2", "--out", str(tmp_path / "bad"), *common, "--set", "algo.negatives=some"])
    assert bad.exit_code == 2 and "algo.negatives" in bad.output and "Traceback" not in bad.output
    online = runner.invoke(eval_app, [str(tmp_path / "full"), "--online-steps", "0,10", "--set", "eval.mode=offline"])
    assert online.exit_code == 2 and "no online fine-tuning" in online.output, online.output


# ------------------------------------------------------------------------------------ learning
@pytest.mark.slow
def test_r2pgo_learns_on_a_tiny_bandit_family_beating_random_and_no_context():
    """12 training bandits whose best arms cover all 5 arms, 5 held-out ones; each pays 0.9 on its
    best arm. The test agent's context is 16 of the held-out task's offline pulls (offline-context
    protocol): with task inference it must find the best arm (about 9 per 10 pulls); without it
    (``context=false``, the same SAC) it can only pull the arm that is best on average."""
    ds = bandit_dataset(n_train=12, n_test=5, rows=400, gamma=0.0, seed=4)
    cfg = dict(latent_dim=4, encoder_hidden=32, encoder_embed=32, decoder_width=32, context_length=16, meta_batch=5, batch_size=64, width=64,
               depth=2, hyper_hidden=64, n_negatives=8, reward_scale=1.0, encoder_lr=3e-3, actor_lr=1e-3, critic_lr=1e-3, kl_weight=0.1,
               init_temperature=0.01, contra_similarity="cosine")  # at this budget centred_cosine reached 5.4 only (docs/algorithms.md)
    scores = {}
    for context, steps in ((True, (300, 600)), (False, (0, 600))):
        algo, _ = _tiny_r2pgo(ds, steps=sum(steps), **cfg, context=context, encoder_steps=steps[0])
        ev = Evaluator(ds, EvalConfig(adapt_batch=16, episodes=2, mode="offline"), seed=0)
        try:
            scores[context] = ev.evaluate(algo)["mean"]
        finally:
            ev.close()
    with_context, without = scores[True], scores[False]
    assert with_context["after"] > with_context["random"] + 3.0, scores
    assert with_context["after"] > without["after"] + 2.5, scores
    assert with_context["after"] > with_context["before"] + 2.5, scores  # the context, not the prior, does it
