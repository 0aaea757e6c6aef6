"""FOCAL, CORRO, CSRO, BOReL and offline PEARL: the CLI run with exact resume and omrl-eval, the
default protocol of each paper, bad settings as one line, the context agents, and (slow) learning
on a tiny bandit family against a random policy."""
from __future__ import annotations

import json

import pytest
import torch

from omrl_algos.config import EvalConfig
from omrl_algos.context_losses import product_of_gaussians
from omrl_algos.evaluation import Evaluator
from omrl_algos.registry import get_algorithm
from tests.tiny_bandit import bandit_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(latent_dim=4, encoder_width=16, context_size=8, meta_batch=3, batch_size=16, width=16, depth=1)
TINY = {
    "focal": SMALL,
    "corro": {**SMALL, "anchors": 4, "n_negatives": 4},
    "csro": {**SMALL, "club_width": 16},
    "pearl": SMALL,
    "borel": dict(latent_dim=4, encoder_hidden=16, encoder_embed=16, decoder_width=16, context_length=6, meta_batch=3, batch_size=16,
                  width=16, depth=1, encoder_steps=2),
}
DEFAULT_MODE = {"focal": "offline", "corro": "offline", "csro": "online_context", "borel": "zero_shot", "pearl": "offline"}


def _tiny(name: str, ds, steps: int = 3, **overrides):
    cls = get_algorithm(name)
    torch.manual_seed(0)
    algo = cls(cls.Config(**{**TINY[name], **overrides}), ds.obs_dim, ds.act_dim)
    algo.set_action_bounds(*ds.action_bounds)
    sampler = algo.make_sampler(ds, 0, "cpu")
    metrics = [algo.train_step(sampler) for _ in range(steps)]
    return algo, metrics


# --------------------------------------------------------------------------- CLI, resume, eval
@pytest.mark.parametrize("name", sorted(TINY))
def test_omrl_train_resumes_exactly_and_omrl_eval_reevaluates(tmp_path, name):
    from typer.testing import CliRunner

    from cli.train import app, eval_app
    from tests.algos_data import write_bandit_dataset

    ds = write_bandit_dataset(n_rows=300)
    sets = [f"algo.{k}={v}" for k, v in TINY[name].items()] + ["train.threads=1", "train.log_every=1", "eval.trial_episodes=2", "eval.max_tasks=2"]
    common = ["--dataset", ds, "--eval-every", "0", "--eval-episodes", "1", "--quiet", *[x for kv in sets for x in ("--set", kv)]]
    runner = CliRunner()
    full = runner.invoke(app, [name, "--steps", "4", "--out", str(tmp_path / "full"), *common])
    assert full.exit_code == 0, full.output
    part = runner.invoke(app, [name, "--steps", "2", "--out", str(tmp_path / "part"), *common])
    assert part.exit_code == 0, part.output
    resumed = runner.invoke(app, [name, "--steps", "4", "--out", str(tmp_path / "part"), "--resume", *common])
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(tmp_path / "full" / "checkpoints" / "latest.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "checkpoints" / "latest.pt", weights_only=False)
    assert a["algo"].keys() == b["algo"].keys() and int(a["algo"]["meta_step"]) == 4
    for k in a["algo"]:
        assert torch.equal(a["algo"][k], b["algo"][k]), k
    saved = json.loads((tmp_path / "full" / "eval.json").read_text())
    assert saved["algorithm"] == name and saved["mode"] == DEFAULT_MODE[name]
    assert json.loads((tmp_path / "full" / "config.json").read_text())["algo"]["discount"] == 0.0  # the bandit dataset's gamma
    for mode in ("offline", "online_context", "zero_shot"):  # every protocol is selectable
        again = runner.invoke(eval_app, [str(tmp_path / "full"), "--episodes", "1", "--set", f"eval.mode={mode}"])
        assert again.exit_code == 0, again.output
        assert json.loads((tmp_path / "full" / "eval_latest.json").read_text())["mode"] == mode
    online = runner.invoke(eval_app, [str(tmp_path / "full"), "--online-steps", "0,10", "--set", "eval.mode=offline"])
    assert online.exit_code == 2 and f"{name} adapts by inference" in online.output and "Traceback" not in online.output


@pytest.mark.parametrize("name, setting", [("focal", "algo.beta=-1"), ("corro", "algo.contra_similarity=l2"), ("corro", "algo.anchors=99"),
                                           ("borel", "algo.belief=full"), ("pearl", "algo.tau=0"), ("csro", "algo.context_size=0")])
def test_bad_settings_are_one_line_and_exit_2(tmp_path, name, setting):
    from typer.testing import CliRunner

    from cli.train import app
    from tests.algos_data import write_bandit_dataset

    ds = write_bandit_dataset(n_rows=100)
    out = CliRunner().invoke(app, [name, "--dataset", ds, "--steps", "1", "--out", str(tmp_path / "r"), "--quiet", "--set", setting])
    key = setting.split("=")[0]
    assert out.exit_code == 2 and key in out.output and "Traceback" not in out.output, out.output


# ----------------------------------------------------------------------------------- agents
def _transition(obs, action, reward):
    return {"observations": obs, "actions": action, "rewards": torch.tensor(float(reward)), "next_observations": obs,
            "terminated": torch.tensor(False), "truncated": torch.tensor(False)}


@pytest.mark.parametrize("name", ["focal", "corro", "pearl"])
def test_context_agent_grows_and_reset_clears(name):
    ds = bandit_dataset(n_train=6, n_test=2, rows=200)
    algo, _ = _tiny(name, ds)
    agent = algo.initial_agent()
    assert agent.context_size == 0 and float(agent.latent().abs().sum()) == 0  # the prior
    obs = torch.ones(1)
    for t in range(5):
        agent.observe(_transition(obs, agent.act(obs[None])[0], t % 2))
        assert agent.context_size == t + 1
    z = agent.latent()
    rows = torch.stack(agent.history)
    torch.testing.assert_close(z, algo.task_latent(rows))  # the posterior mean over the whole context
    if name == "pearl":  # the product of the per-transition Gaussian factors
        torch.testing.assert_close(z, product_of_gaussians(*algo.factors(rows))[0])
    else:  # the mean of the transition embeddings
        torch.testing.assert_close(z, algo.encoder(rows).mean(0))
    agent.reset()
    assert agent.context_size == 0 and float(agent.latent().abs().sum()) == 0
    # offline context: the batch's rows stay through reset, observations are ignored
    ev = Evaluator(ds, EvalConfig(adapt_batch=16, episodes=1), seed=0)
    try:
        adapted = algo.adapt(ev.adaptation_batch(ev.tasks[0], algo.adaptation_kind()))
    finally:
        ev.close()
    adapted.observe(_transition(obs, torch.zeros(5), 1))
    adapted.reset()
    assert adapted.context_size == 16 and not torch.equal(adapted.latent(), algo.meta_agent().latent())


def test_csro_explores_uniformly_while_its_context_is_empty():
    ds = bandit_dataset(n_train=6, n_test=2, rows=200)
    algo, _ = _tiny("csro", ds)
    agent = algo.initial_agent()
    agent.generator = torch.Generator().manual_seed(3)
    obs = torch.ones(1)
    first = agent.act(obs[None], explore=True)[0]
    u = torch.rand(1, 5, generator=torch.Generator().manual_seed(3))[0]
    torch.testing.assert_close(first, algo.action_center + algo.action_half * (2 * u - 1))  # uniform, not the prior policy
    agent.observe(_transition(obs, first, 1))
    gen = agent.generator.get_state()
    second = agent.act(obs[None], explore=True)[0]  # now the policy on the collected context's latent
    agent.generator.set_state(gen)
    z = agent.latent()[None]
    policy = algo.action_center + algo.action_half * algo.ac.act(obs[None], z, generator=agent.generator, deterministic=False)[0]
    torch.testing.assert_close(second, policy)
    focal, _ = _tiny("focal", ds)  # FOCAL explores with its policy on the prior
    fa = focal.initial_agent()
    fa.generator = torch.Generator().manual_seed(3)
    assert not torch.allclose(fa.act(obs[None], explore=True)[0], first)


def test_borel_policy_reads_the_belief_mean_and_log_variance():
    ds = bandit_dataset(n_train=6, n_test=2, rows=200)
    algo, metrics = _tiny("borel", ds, steps=4)
    assert metrics[0]["train/phase"] == 1.0 and "train/contra_loss" not in metrics[0]  # the ELBO alone
    assert metrics[-1]["train/phase"] == 2.0
    assert algo.sac.actor.hidden[0].in_features == 1 + 2 * 4  # [s, mean, logvar]
    agent = algo.initial_agent()
    assert torch.equal(agent.latent(), torch.zeros(8))  # prior N(0, I): mean 0, log-variance 0
    obs = torch.ones(1)
    for t in range(3):
        agent.observe(_transition(obs, agent.act(obs[None])[0], 1))
    mean, logvar = algo.encode(torch.stack(agent.history)[None], None)
    torch.testing.assert_close(agent.latent(), torch.cat([mean[0, -1], logvar[0, -1]]))
    agent.reset()
    assert agent.context_size == 0
    only_mean, _ = _tiny("borel", ds, steps=1, belief="mean")
    assert only_mean.sac.actor.hidden[0].in_features == 1 + 4


# ------------------------------------------------------------------------------------ learning
LEARN = dict(latent_dim=4, encoder_width=32, context_size=16, meta_batch=6, batch_size=64, width=64, depth=2, encoder_lr=1e-3,
             actor_lr=1e-3, critic_lr=1e-3, init_temperature=0.01)
BOREL_LEARN = dict(latent_dim=4, encoder_hidden=32, encoder_embed=32, decoder_width=32, context_length=16, meta_batch=5, batch_size=64,
                   width=64, depth=2, encoder_lr=3e-3, actor_lr=1e-3, critic_lr=1e-3, kl_weight=0.01, encoder_steps=600,
                   bc_weight=0.3, init_temperature=0.1)


def _learning_bandits():
    """12 training bandits whose best arms cover all 5 arms, 5 held-out ones; each pays 0.9 on its
    best arm (a 10-pull episode: about 9 for the best arm, about 3.4 here for a uniform random
    policy). The agent must find a held-out task's best arm from its context."""
    return bandit_dataset(n_train=12, n_test=5, rows=400, gamma=0.0, seed=4)


def _evaluate(algo, ds, mode: str) -> dict:
    ev = Evaluator(ds, EvalConfig(adapt_batch=16, episodes=2, trial_episodes=2, mode=mode), seed=0)
    try:
        return ev.evaluate(algo)["mean"]
    finally:
        ev.close()


@pytest.mark.slow
def test_focal_learns_from_an_offline_context_on_tiny_bandits():
    ds = _learning_bandits()
    algo, _ = _tiny("focal", ds, steps=600, **LEARN)  # FOCAL's defaults otherwise (BRAC beta 1)
    m = _evaluate(algo, ds, "offline")  # its paper's protocol: 16 offline pulls of the test task
    assert m["after"] > m["random"] + 3.0, m  # measured 9.2 against 3.4
    assert m["after"] > m["before"] + 3.0, m  # the context, not the prior, does it


@pytest.mark.slow
def test_csro_non_prior_collection_beats_random_and_focals_prior_collection():
    """Online context collection (CSRO's protocol, one 10-pull exploration episode): CSRO's
    non-prior collection against FOCAL's (the policy on the prior latent). On a bandit the task
    is in (a, r), so the CLUB term (which removes what z says about a) is kept small here; with
    club_weight 1 CSRO did not beat random (measured)."""
    ds = _learning_bandits()
    csro, _ = _tiny("csro", ds, steps=600, **LEARN, club_weight=0.001)
    focal, _ = _tiny("focal", ds, steps=600, **LEARN)
    mine, theirs = _evaluate(csro, ds, "online_context"), _evaluate(focal, ds, "online_context")
    assert mine["after"] > mine["random"] + 2.0, mine  # measured 6.4 against 3.4
    assert mine["after"] > theirs["after"] + 2.0, (mine, theirs)  # FOCAL's prior collection: 1.8


@pytest.mark.slow
def test_offline_pearl_learns_from_an_offline_context_on_tiny_bandits():
    ds = _learning_bandits()
    algo, _ = _tiny("pearl", ds, steps=1000, **LEARN, kl_weight=0.01)  # with PEARL's 0.1 the posterior stayed the prior (KL 0.003)
    m = _evaluate(algo, ds, "offline")
    assert m["after"] > m["random"] + 1.5, m  # measured 5.4 against 3.4


@pytest.mark.slow
def test_borel_learns_on_tiny_bandits():
    ds = _learning_bandits()
    algo, _ = _tiny("borel", ds, steps=1500, **BOREL_LEARN)
    m = _evaluate(algo, ds, "offline")
    assert m["after"] > m["random"] + 2.0, m  # measured 6.2 against 3.4
    zero = _evaluate(algo, ds, "zero_shot")  # its paper's protocol; episode 1 starts from the prior
    assert zero["episodes"][0] > zero["random"], zero  # measured 4.2 against 3.4


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured: CORRO's encoder does not separate the bandit tasks (test latents within 0.08 of each other); "
                   "with 0/1 rewards every reward-noise negative is recognisable by its non-integer reward, so InfoNCE reaches "
                   "accuracy 0.97 without task information; after = before = random 3.4 with beta 1, 1.8 with SAC")
def test_corro_learns_from_an_offline_context_on_tiny_bandits():
    ds = _learning_bandits()
    algo, _ = _tiny("corro", ds, steps=600, **LEARN, anchors=16, beta=1.0)
    m = _evaluate(algo, ds, "offline")
    assert m["after"] > m["random"] + 1.5, m
