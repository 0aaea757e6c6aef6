"""Offline MT+FT and meta-BC: losses, adaptation, learning on the tiny bandit family."""
from __future__ import annotations

import json

import pytest
import torch

from omrl_algos.config import EvalConfig, default_config
from omrl_algos.evaluation import Evaluator
from omrl_algos.meta import params_of
from omrl_algos.metabc import MetaBC, MetaBCConfig
from omrl_algos.mtft import MtftConfig, MultiTaskFineTune
from omrl_algos.registry import algorithm_names, get_algorithm
from omrl_data.errors import BadInput
from tests.tiny_bandit import bandit_dataset

NET = dict(width=32, depth=2, weight_transform=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bandit():
    return bandit_dataset()


def train(algo, dataset, steps: int, seed: int = 0) -> list[dict[str, float]]:
    sampler = algo.make_sampler(dataset, seed=seed, device="cpu")
    return [algo.train_step(sampler) for _ in range(steps)]


def test_registered_with_their_configs():
    assert {"macaw", "macega", "mtft", "metabc"} <= set(algorithm_names())
    assert get_algorithm("mtft") is MultiTaskFineTune and get_algorithm("metabc") is MetaBC
    assert default_config("mtft").algo.adapt_steps == 20  # reference: 20 Adam steps
    assert isinstance(default_config("metabc").algo, MetaBCConfig)


# ----------------------------------------------------------------------------------- MT+FT
def test_mtft_adaptation_takes_the_configured_adam_steps_and_leaves_the_model(bandit):
    torch.manual_seed(0)
    algo = MultiTaskFineTune(MtftConfig(**NET, adapt_steps=3), 1, 5)
    before = {k: v.detach().clone() for k, v in params_of(algo.policy).items()}
    batch = Evaluator(bandit, EvalConfig(adapt_batch=64), seed=0).adaptation_batch(12)
    agent = algo.adapt(batch)
    changed = [k for k in before if not torch.equal(agent.policy_params[k], before[k])]
    assert changed, "fine-tuning did not move the policy"
    for k, v in params_of(algo.policy).items():
        assert torch.equal(v, before[k]), "adaptation must not change the trained model"
    # Zero steps: the agent is the trained model itself.
    algo.config.adapt_steps = 0
    agent0 = algo.adapt(batch)
    assert all(torch.equal(agent0.policy_params[k], before[k]) for k in before)
    with pytest.raises(BadInput, match="adapt_steps"):
        MultiTaskFineTune(MtftConfig(**NET, adapt_steps=-1), 1, 5)


def test_mtft_learns_on_the_bandit(bandit):
    torch.manual_seed(0)
    algo = MultiTaskFineTune(MtftConfig(**NET, batch_size=64, policy_lr=1e-3, value_lr=1e-3), 1, 5)
    metrics = train(algo, bandit, 300)
    assert metrics[-1]["train/value_loss"] < 0.5 * metrics[0]["train/value_loss"]
    result = Evaluator(bandit, EvalConfig(episodes=10, adapt_batch=256), seed=0).evaluate(algo)["mean"]
    # A random policy earns about 4 per 10 pulls here, the best arm 9; the multi-task policy
    # (no task input) cannot know the arm, so the fine-tuning is what finds it.
    assert result["after"] > result["random"] + 2.5
    assert result["after"] > result["before"] + 2.0


# ---------------------------------------------------------------------------------- meta-BC
def test_metabc_vmap_and_loop_agree_and_second_order_differs(bandit):
    grads = {}
    for name, flags in (("vmap", {}), ("loop", {"vmap": False}), ("first", {"first_order": True})):
        torch.manual_seed(0)
        algo = MetaBC(MetaBCConfig(**NET, meta_batch=3, support_size=32, query_size=32, inner_lr_init=0.1, **flags), 1, 5)
        train(algo, bandit, 1, seed=1)
        grads[name] = torch.cat([p.grad.flatten() for p in algo.policy.parameters()])
    torch.testing.assert_close(grads["vmap"], grads["loop"], atol=1e-5, rtol=1e-4)
    assert (grads["vmap"] - grads["first"]).abs().max() > 1e-4


def test_metabc_has_no_critic_and_learns_on_the_bandit(bandit):
    torch.manual_seed(0)
    algo = MetaBC(MetaBCConfig(**NET, support_size=64, query_size=64, policy_lr=1e-3), 1, 5)
    assert algo.value is None
    evaluator = Evaluator(bandit, EvalConfig(episodes=10, adapt_batch=256), seed=0)
    untrained = evaluator.evaluate(algo)["mean"]
    train(algo, bandit, 300)
    result = evaluator.evaluate(algo)["mean"]
    # The behaviour policy aims at the best arm 40% of the time, so cloning the adaptation
    # batch after meta-training points at it.
    assert result["after"] > result["random"] + 2.5
    assert result["after"] > untrained["after"] + 2.0
    agent = algo.adapt(evaluator.adaptation_batch(evaluator.tasks[0]))
    with pytest.raises(BadInput, match="no value function"):
        evaluator.finetune_online(algo, agent, evaluator.tasks[0], [0, 10], 0.0)


# ------------------------------------------------------------- the shared loop, CLI, resume
# MACEGA (the one with extra state: its noise generator) in the default run, the others under -m slow.
@pytest.mark.parametrize("name", ["macega", pytest.param("mtft", marks=pytest.mark.slow), pytest.param("metabc", marks=pytest.mark.slow)])
def test_train_resume_and_eval_through_the_cli(tmp_path, name):
    """``omrl-train NAME`` trains, resumes to the same state as an uninterrupted run, ``omrl-eval`` re-evaluates."""
    from typer.testing import CliRunner

    from cli.train import app, eval_app
    from tests.algos_data import write_bandit_dataset

    ds = write_bandit_dataset(n_rows=300)
    batch = ["--set", "algo.batch_size=16"] if name == "mtft" else ["--set", "algo.support_size=16", "--set", "algo.query_size=16"]
    common = ["--dataset", ds, "--eval-every", "0", "--eval-episodes", "1", "--quiet", "--set", "algo.width=16", "--set", "algo.depth=1",
              "--set", "algo.weight_transform=false", "--set", "train.threads=1", "--set", "train.log_every=1", *batch]
    runner = CliRunner()
    full = runner.invoke(app, [name, "--steps", "6", "--out", str(tmp_path / "full"), *common])
    assert full.exit_code == 0, full.output
    part = runner.invoke(app, [name, "--steps", "4", "--out", str(tmp_path / "part"), *common])
    assert part.exit_code == 0, part.output
    resumed = runner.invoke(app, [name, "--steps", "6", "--out", str(tmp_path / "part"), "--resume", *common])
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(tmp_path / "full" / "checkpoints" / "latest.pt", weights_only=False)["algo"]
    b = torch.load(tmp_path / "part" / "checkpoints" / "latest.pt", weights_only=False)["algo"]
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:  # MACEGA's noise generator state
            assert all(torch.equal(a[k][s], b[k][s]) for s in a[k]), k
    again = runner.invoke(eval_app, [str(tmp_path / "full"), "--episodes", "1"])
    assert again.exit_code == 0, again.output
    saved = json.loads((tmp_path / "full" / "eval_latest.json").read_text())
    assert {"before", "after", "random"} <= set(saved["tasks"][0])
