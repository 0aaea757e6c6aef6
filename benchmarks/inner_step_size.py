"""How far one MACAW inner step moves the value and the policy at initialisation.

    .venv/bin/python benchmarks/inner_step_size.py omrl/cheetah_dir/replay-v1 [--root R]

For weight-transform layers with the scaled and the reference init, and plain layers, at inner
lr 1e-3 and 1e-2 (width 64, latent 16, support 128, a strided support window per train task):
the support value MSE before -> after one inner value step, and the mean absolute change of the
tanh policy mean. The plain-layer rows are the baseline (docs/algorithms.md, "Weight transforms").
"""
from __future__ import annotations

import argparse

import torch

from omrl_algos.meta import call, task_tensors
from omrl_algos.train import build_algorithm, load_dataset, resolve_config, resolve_dataset_settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--root", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    variants = [("weight transform, scaled init", ["algo.weight_transform=true", "algo.wt_init=scaled"]),
                ("weight transform, reference init", ["algo.weight_transform=true", "algo.wt_init=reference"]),
                ("plain layers (baseline)", ["algo.weight_transform=false"])]
    for name, sets in variants:
        for lr in (1e-3, 1e-2):
            settings = [f"dataset={args.dataset}", "algo.width=64", "algo.latent_dim=16", "algo.support_size=128", "algo.query_size=128", f"algo.inner_lr_init={lr}", *sets]
            if args.root:
                settings.append(f"root={args.root}")
            cfg = resolve_config("macaw", settings)
            ds = load_dataset(cfg)
            resolve_dataset_settings(cfg, ds)
            torch.manual_seed(0)
            algo = build_algorithm(cfg, ds.obs_dim, ds.act_dim, "cpu")
            algo.set_action_bounds(*ds.action_bounds)
            support, _ = algo.make_sampler(ds, 0, "cpu").sample_support_query(128, 128, contiguous=True, stride=7)
            meta = algo.meta_params()
            cells = []
            for t in range(support.num_tasks):
                s = algo._support_targets(meta["value"], {k: v[t] for k, v in task_tensors(support).items()})
                before = float(((call(algo.value, meta["value"], s["observations"]) - s["targets"]) ** 2).mean())
                value, policy, _ = algo._adapt_params(meta, s, first_order=True)
                after = float(((call(algo.value, value, s["observations"]) - s["targets"]) ** 2).mean())
                moved = float((call(algo.policy, policy, s["observations"]) - call(algo.policy, meta["policy"], s["observations"])).abs().mean())
                cells.append(f"task {t}: MSE {before:.3g} -> {after:.3g} (x{after / before:.2g}), |d mean| {moved:.2f}")
            print(f"{name}, inner lr {lr:g}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
