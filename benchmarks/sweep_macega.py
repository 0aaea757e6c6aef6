"""A small sweep of MACEGA's evolving-update settings (sigma, tau, paths) on the tiny bandit family.

The family and data are the tests' (``tests/tiny_bandit.py``: 12 training and 4 held-out
5-armed bandits, one good arm per task, 1000 pulls per task from a medium behaviour policy).
Every setting trains a small MACEGA (width 32, depth 2, plain layers, 5 tasks x 64 / 64) for
``--steps`` meta-steps per seed, evaluating the held-out return after adaptation every
``--every`` steps (10 deterministic 10-pull episodes per task); the score of a run is the mean of
those evaluations (an area under the learning curve: it rewards learning early, since every
setting ends near the best arm's 9). Reported: mean and standard deviation over seeds.

Run: ``.venv/bin/python benchmarks/sweep_macega.py`` (``--help`` for options).
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omrl_algos.config import EvalConfig  # noqa: E402
from omrl_algos.evaluation import Evaluator  # noqa: E402
from omrl_algos.registry import get_algorithm  # noqa: E402
from tests.tiny_bandit import bandit_dataset  # noqa: E402

SMALL = dict(width=32, depth=2, weight_transform=False, meta_batch=5, support_size=64, query_size=64, policy_lr=1e-3, value_lr=1e-3)


def score(settings: dict, seed: int, steps: int, every: int, dataset, evaluator: Evaluator, algorithm: str = "macega", base: dict = SMALL) -> float:
    """Mean held-out return after adaptation over evaluations every ``every`` meta-steps."""
    cls = get_algorithm(algorithm)
    torch.manual_seed(seed)
    algo = cls(cls.Config(**base, **settings), 1, 5)
    sampler = algo.make_sampler(dataset, seed=seed, device="cpu")
    returns = []
    for step in range(1, steps + 1):
        algo.train_step(sampler)
        if step % every == 0:
            returns.append(evaluator.evaluate(algo)["mean"]["after"])
    return statistics.mean(returns)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sigmas", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2])
    ap.add_argument("--taus", type=float, nargs="+", default=[0.01, 0.05, 0.5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=25)
    args = ap.parse_args()
    torch.set_num_threads(1)
    dataset = bandit_dataset()
    evaluator = Evaluator(dataset, EvalConfig(episodes=10, adapt_batch=256), seed=0)
    settings = [{"no_evolving_gradient": True}]
    settings += [{"sigma": s, "tau": t} for s, t in itertools.product(args.sigmas, args.taus)]
    settings += [{"evolving_paths": "weights"}]
    print(f"MACEGA on the tiny bandit: mean held-out return after adaptation over evaluations every {args.every} of {args.steps} meta-steps; seeds {args.seeds}")
    print(f"{'setting':44s} {'score':>6s} {'std':>5s} {'s':>5s}")
    for s in settings:
        start = time.time()
        scores = [score(s, seed, args.steps, args.every, dataset, evaluator) for seed in args.seeds]
        label = ", ".join(f"{k}={v}" for k, v in s.items())
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        print(f"{label:44s} {statistics.mean(scores):6.2f} {std:5.2f} {time.time() - start:5.0f}", flush=True)


if __name__ == "__main__":
    main()
