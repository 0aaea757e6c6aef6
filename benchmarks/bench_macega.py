"""Meta-step time of MACEGA against MACAW, in one process, at the same sizes.

Both algorithms run ``train_step`` on the same synthetic dataset (random transitions with the
real field layout, cheetah-sized: 20-D observations, 6-D actions) through the same sampler.
Variants timed per size: MACAW second order (the paper), MACAW first order, MACEGA (P = 2
copies), MACEGA ``no_evolving_gradient``, MACEGA ``no_gradient_agreement``. Each variant does
``--warmup`` steps, then the variants take turns for ``--rounds`` rounds of ``--steps`` steps
(so load from other processes hits them alike); the median time per step is reported, with the
ratio to MACAW (second order).

Sizes:
- ``paper``: width 100, depth 3, weight-transform layers, 5 tasks x 256 support / 256 query.
- ``small``: the comparison's size (benchmarks/compare_algorithms.py): width 64, latent 32,
  4 tasks x 128 / 128.
- ``many-tasks``: width 32, depth 2, plain layers, 20 tasks x 64 / 64.

Run: ``.venv/bin/python benchmarks/bench_macega.py`` (``--help`` for options).
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

from bench_sampler import build_dataset  # noqa: E402

from omrl_algos.macaw import Macaw, MacawConfig  # noqa: E402
from omrl_algos.macega import Macega, MacegaConfig  # noqa: E402

SIZES = {
    "paper": dict(width=100, depth=3, weight_transform=True, meta_batch=5, support_size=256, query_size=256),
    "small": dict(width=64, depth=3, weight_transform=True, latent_dim=32, meta_batch=4, support_size=128, query_size=128),
    "many-tasks": dict(width=32, depth=2, weight_transform=False, meta_batch=20, support_size=64, query_size=64),
}

VARIANTS = {
    "MACAW (second order)": (Macaw, MacawConfig, {}),
    "MACAW (first order)": (Macaw, MacawConfig, {"first_order": True}),
    "MACEGA": (Macega, MacegaConfig, {}),
    "MACEGA no_evolving_gradient": (Macega, MacegaConfig, {"no_evolving_gradient": True}),
    "MACEGA no_gradient_agreement": (Macega, MacegaConfig, {"no_gradient_agreement": True}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--steps", type=int, default=5, help="meta-steps per timed round")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--loop", action="store_true", help="tasks in a Python loop instead of vmap")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), tasks via {'loop' if args.loop else 'vmap'}; seconds per meta-step (median of {args.rounds} rounds x {args.steps} steps)")
    for size in args.sizes:
        sizes = SIZES[size]
        n_tasks = max(sizes["meta_batch"], 5)
        dataset = build_dataset(n_tasks, 5000, 20, 6, 200)
        runs = {}
        for name, (cls, config_cls, extra) in VARIANTS.items():
            torch.manual_seed(0)
            algo = cls(config_cls(**sizes, **extra, vmap=not args.loop), 20, 6)
            sampler = algo.make_sampler(dataset, seed=0, device="cpu")
            for _ in range(args.warmup):
                algo.train_step(sampler)
            runs[name] = (algo, sampler, [])
        for _ in range(args.rounds):
            for name, (algo, sampler, times) in runs.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    algo.train_step(sampler)
                times.append((time.perf_counter() - start) / args.steps)
        base = statistics.median(runs["MACAW (second order)"][2])
        print(f"\n{size}: {sizes}")
        print(f"{'variant':32s} {'s/step':>9s} {'/ MACAW':>8s}")
        for name, (_, _, times) in runs.items():
            t = statistics.median(times)
            print(f"{name:32s} {t:9.4f} {t / base:8.2f}")


if __name__ == "__main__":
    main()
