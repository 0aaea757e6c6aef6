"""How much MACEGA's evolving update changes each task's meta-gradient (docs/algorithms.md).

    python benchmarks/evolving_probe.py DATASET_ID [CHECKPOINT]

Draws one meta-batch of the dataset's training tasks (small-budget sizes: width 64, latent 16,
128/128 rows) and prints, per task, the relative difference and the cosine between the per-task
meta-gradient with the evolving update and without it (``no_evolving_gradient``), for EvoGrad's
sigma 1e-3, for sigma 1e-2, and for the strict form (gradient only through the weights).
"""
from __future__ import annotations

import sys

import numpy as np
import torch
from torch.utils._pytree import tree_flatten

from omrl_algos.macega import Macega, MacegaConfig
from omrl_data.dataset import load


def flat(grads: dict) -> torch.Tensor:
    return torch.cat([t.reshape(t.shape[0], -1) for t in tree_flatten(grads)[0]], 1)


def main() -> None:
    torch.set_num_threads(1)
    ds = load(sys.argv[1])
    checkpoint = sys.argv[2] if len(sys.argv) > 2 else None
    # algo.reward_scale=0 (auto) as omrl-train resolves it: 1 / std of the training MC returns.
    offsets = np.asarray(ds.offsets)
    returns = np.concatenate([np.asarray(ds.fields["mc_returns"][offsets[t] : offsets[t + 1]]) for t in ds.tasks.indices("train")])
    scale = float(f"{1.0 / float(np.std(returns)):.3g}")

    def make(**overrides) -> Macega:
        torch.manual_seed(0)
        config = MacegaConfig(width=64, latent_dim=16, support_size=128, query_size=128, reward_scale=scale, **overrides)
        algo = Macega(config, ds.obs_dim, ds.act_dim)
        if checkpoint:
            state = torch.load(checkpoint, weights_only=True)
            algo.load_state_dict(state.get("algorithm", state.get("model", state)), strict=False)
        return algo

    sampler = make().make_sampler(ds, seed=0, device="cpu")
    support, query = sampler.sample_support_query(128, 128, contiguous=True, stride=7)
    without, _ = make(no_evolving_gradient=True).per_task_gradients(support, query)
    for overrides in ({}, {"sigma": 1e-2}, {"evolving_paths": "weights"}):
        with_eg, _ = make(**overrides).per_task_gradients(support, query)
        for part in ("value", "policy"):
            x, y = flat(with_eg[part]), flat(without[part])
            rel = ((x - y).norm(dim=1) / y.norm(dim=1)).numpy().round(3)
            cos = torch.nn.functional.cosine_similarity(x, y, dim=1).numpy().round(3)
            print(f"{overrides or 'EvoGrad sigma 1e-3'} {part}: relative difference {rel}, cosine {cos}")


if __name__ == "__main__":
    main()
