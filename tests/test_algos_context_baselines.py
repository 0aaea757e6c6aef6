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
    assert online.exit_code == 2 and "no online fine-tuning" in online.output and "Traceback" not in online.output


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


@pytest.mark.slow
@pytest.mark.parametrize("name", ["focal", "corro", "csro", "pearl", "borel"])
def test_learns_on_a_tiny_bandit_family_beating_random(name):
    """12 training bandits whose best arms cover all 5 arms, 5 held-out ones; each pays 0.9 on its
    best arm (a 10-pull episode: about 9 for the best arm, about 4 for a uniform random policy).
    The agent must find a held-out task's best arm from its context, in the method's default
    protocol (16 offline pulls; CSRO: one exploration episode; BOReL: zero-shot, episode 1)."""
    ds = bandit_dataset(n_train=12, n_test=5, rows=400, gamma=0.0, seed=4)
    if name == "borel":
        cfg = dict(latent_dim=4, encoder_hidden=32, encoder_embed=32, decoder_width=32, context_length=16, meta_batch=5, batch_size=64, width=64,
                   depth=2, encoder_lr=3e-3, actor_lr=1e-3, critic_lr=1e-3, kl_weight=0.1, init_temperature=0.01, encoder_steps=300)
        steps = 900
    else:
        cfg = dict(LEARN, **({"anchors": 16} if name == "corro" else {}))
        steps = 600
    algo, _ = _tiny(name, ds, steps=steps, **cfg)
    ev = Evaluator(ds, EvalConfig(adapt_batch=16, episodes=2, trial_episodes=2), seed=0)
    try:
        result = ev.evaluate(algo)["mean"]
    finally:
        ev.close()
    assert result["after"] > result["random"] + 2.5, result
