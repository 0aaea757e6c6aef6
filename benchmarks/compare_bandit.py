"""Learning speed of every algorithm on the tiny bandit family (a family where all of them learn).

Same data, network and scoring as ``sweep_macega.py`` (``tests/tiny_bandit.py``; width 32,
depth 2, plain layers, 5 tasks x 64 transitions, outer lrs 1e-3): each run's score is the mean
held-out return after adaptation over evaluations every ``--every`` of ``--steps`` meta-steps
(about 4 for a random policy, 9 for the best arm); mean and standard deviation over seeds.

Run: ``.venv/bin/python benchmarks/compare_bandit.py``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep_macega import score  # noqa: E402

from omrl_algos.config import EvalConfig  # noqa: E402
from omrl_algos.evaluation import Evaluator  # noqa: E402
from tests.tiny_bandit import bandit_dataset  # noqa: E402

NET = dict(width=32, depth=2, weight_transform=False, meta_batch=5)
META = dict(NET, support_size=64, query_size=64)
VARIANTS = {
    "MACAW": ("macaw", dict(META, policy_lr=1e-3, value_lr=1e-3), {}),
    "MACEGA": ("macega", dict(META, policy_lr=1e-3, value_lr=1e-3), {}),
    "MACEGA no_evolving_gradient": ("macega", dict(META, policy_lr=1e-3, value_lr=1e-3), {"no_evolving_gradient": True}),
    "MACEGA no_gradient_agreement": ("macega", dict(META, policy_lr=1e-3, value_lr=1e-3), {"no_gradient_agreement": True}),
    "Offline MT+FT": ("mtft", dict(NET, batch_size=64, policy_lr=1e-3, value_lr=1e-3), {}),
    "meta-BC": ("metabc", dict(META, policy_lr=1e-3), {}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=25)
    args = ap.parse_args()
    torch.set_num_threads(1)
    dataset = bandit_dataset()
    evaluator = Evaluator(dataset, EvalConfig(episodes=10, adapt_batch=256), seed=0)
    print(f"tiny bandit: mean held-out return after adaptation over evaluations every {args.every} of {args.steps} meta-steps; seeds {args.seeds}")
    print(f"{'algorithm':32s} {'score':>6s} {'std':>5s} {'s':>5s}")
    for label, (algorithm, base, settings) in VARIANTS.items():
        start = time.time()
        scores = [score(settings, seed, args.steps, args.every, dataset, evaluator, algorithm, base) for seed in args.seeds]
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        print(f"{label:32s} {statistics.mean(scores):6.2f} {std:5.2f} {time.time() - start:5.0f}", flush=True)


if __name__ == "__main__":
    main()
