"""The agent protocol: the refactor to agents with reset/act/observe and online fine-tuning as an
algorithm hook must leave the evaluation of the parameter-adapting algorithms bit-identical.

The golden numbers below were computed with main's code at commit 16e5375 (before the refactor)
by this same procedure: every action any policy sent to the env (before, after, random, online
exploration, fine-tuned) enters the fingerprint, so a change in one bit of one action shows.
"""
from __future__ import annotations

import gymnasium
import numpy as np
import torch
import pytest

from omrl_algos.config import EvalConfig
from omrl_algos.evaluation import Evaluator
from omrl_algos.macaw import Macaw, MacawConfig
from omrl_algos.mtft import MtftConfig, MultiTaskFineTune
from omrl_data.errors import BadInput
from omrl_data.tasks import get_family
from tests.tiny_bandit import bandit_dataset

# Main after the speed merge (99eb895: low-rank weight transforms, fused Adam) moves MACAW's last
# bits: the same procedure on main 99eb895 *without* the refactor gives macaw's fingerprint
# [260, -644.919540612842, 856.9883144547325, -85490.97659077414] (returns and MT+FT unchanged),
# and a trial merge of this branch into 99eb895 reproduces it exactly; use it on merging.
GOLDEN = {
    "macaw": [[8.5, 8.5, 4.0, {"0": 8.5, "10": 8.5, "30": 8.5}], [4.0, 10.0, 4.5, {"0": 10.0, "10": 10.0, "30": 10.0}],
              [260, -644.919540612842, 856.9883144547325, -85490.97659077414]],
    "mtft": [[8.5, 8.5, 4.0, {"0": 8.5, "10": 8.5, "30": 8.5}], [4.0, 4.0, 4.5, {"0": 4.0, "10": 10.0, "30": 10.0}],
             [260, -41.847539280424826, 135.1741981832837, -4491.781592457672]],
}


def _fingerprint(name: str) -> list:
    ds = bandit_dataset(n_train=6, n_test=2, rows=300, gamma=0.9)
    log: list[np.ndarray] = []

    def logging_env(params):
        env = get_family("bandit").make_env(params)

        class Log(gymnasium.Wrapper):
            def step(self, a):
                log.append(np.asarray(a, np.float64).copy())
                return self.env.step(a)

        return Log(env)

    if name == "macaw":
        cls, cfg = Macaw, MacawConfig(width=16, depth=2, latent_dim=8, adv_width=8, support_size=32, query_size=32, meta_batch=3, inner_lr_init=0.1, reward_scale=1.0)
    else:
        cls, cfg = MultiTaskFineTune, MtftConfig(width=16, depth=2, latent_dim=8, meta_batch=3, batch_size=32, reward_scale=1.0, adapt_steps=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the golden numbers were computed on one thread (reductions differ in the last bits otherwise)
    try:
        return _run(cls, cfg, ds, logging_env, log)
    finally:
        torch.set_num_threads(threads)


def _run(cls, cfg, ds, logging_env, log) -> list:
    torch.manual_seed(0)
    algo = cls(cfg, 1, 5)
    algo.set_action_bounds(*ds.action_bounds)
    sampler = algo.make_sampler(ds, seed=0, device="cpu")
    for _ in range(5):
        algo.train_step(sampler)
    ev = Evaluator(ds, EvalConfig(adapt_batch=32, episodes=2, online_steps=(0, 10, 30), online_value_updates=3, online_policy_updates=3,
                                  online_lr=1e-3, online_batch=16), seed=0, make_env=logging_env)
    try:
        result = ev.evaluate(algo)
    finally:
        ev.close()
    out = [[row["before"], row["after"], row["random"], row["online"]] for row in result["tasks"]]
    acts = np.stack(log)
    out.append([len(log), float(acts.sum()), float((acts**2).sum()), float((acts * np.arange(1, len(acts) + 1)[:, None]).sum())])
    return out


def _assert_matches_golden(name: str) -> None:
    """Returns (before, after, random, online) exactly; the action statistics to 1e-5 relative:
    on another CPU (the golden numbers came from an earlier machine; this AMD EPYC differs by
    ~1e-7 relative) float32 kernels round differently, while a changed procedure moves them by
    far more (a different action anywhere changes the first digits)."""
    *returns, actions = _fingerprint(name)
    *golden_returns, golden_actions = GOLDEN[name]
    assert returns == golden_returns
    assert actions[0] == golden_actions[0]  # the number of env steps
    assert actions[1:] == pytest.approx(golden_actions[1:], rel=1e-5)


def test_macaw_offline_adaptation_and_online_finetuning_are_bit_identical_to_before_the_refactor():
    _assert_matches_golden("macaw")


def test_mtft_offline_adaptation_and_online_finetuning_are_bit_identical_to_before_the_refactor():
    _assert_matches_golden("mtft")


def test_adapt_draws_average_agents_adapted_on_independent_batches():
    """eval.adapt_draws=2: "after" is the mean of the agent adapted on batch 0 (episodes 0..n-1,
    as with one draw) and of the agent adapted on batch 1 (episodes n..2n-1)."""
    ds = bandit_dataset(n_train=6, n_test=2, rows=300, gamma=0.9)
    torch.manual_seed(0)
    algo = Macaw(MacawConfig(width=16, depth=2, latent_dim=8, adv_width=8, support_size=32, query_size=32, meta_batch=3, inner_lr_init=0.5, reward_scale=1.0), 1, 5)
    algo.set_action_bounds(*ds.action_bounds)
    sampler = algo.make_sampler(ds, seed=0, device="cpu")
    for _ in range(3):
        algo.train_step(sampler)
    one = Evaluator(ds, EvalConfig(adapt_batch=32, episodes=2, random_policy=False), seed=0)
    two = Evaluator(ds, EvalConfig(adapt_batch=32, episodes=2, random_policy=False, adapt_draws=2), seed=0)
    r1, r2 = one.evaluate(algo), two.evaluate(algo)
    task = one.tasks[0]
    kind = algo.adaptation_kind()
    b0, b1 = (two.adaptation_batch(task, kind, draw=d) for d in (0, 1))
    assert not torch.equal(b0.observations, b1.observations) or not torch.equal(b0.actions, b1.actions)
    a1 = algo.adapt(b1)
    expected = 0.5 * (r1["tasks"][0]["after"] + two.agent_return(task, a1, first_episode=2))
    assert r2["tasks"][0]["after"] == pytest.approx(expected, rel=1e-12)
    assert r2["tasks"][0]["before"] == r1["tasks"][0]["before"]
    one.close(), two.close()
    with pytest.raises(BadInput, match="adapt_draws"):
        Evaluator(ds, EvalConfig(adapt_draws=0), seed=0)
