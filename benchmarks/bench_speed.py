"""Issue 12's speed figures, every ratio measured in one process (docs/speed.md).

P6: MACAW meta-step with weight transforms over plain layers of the same width, and ours over
the reference code's per-task loop (``bench_macaw.ReferenceMacaw``: autograd.grad with
create_graph per task, the adapted maps formed), at paper size and in the small-net many-task
setting. P7: MACEGA's meta-step over MACAW's at paper size (its default dense map noise and
``map_noise=projected``). Meta-BC's and MT+FT's steps before / after. "before" is the straightforward
version kept in the tree: ``wt_factored=false`` (adapted maps formed), the unfused Adam, and for
MACEGA ``weighted_backward=false`` (per-task gradients); "after" the defaults.
Peak RSS: two paper-size meta-steps per variant, each in a fresh subprocess (VmHWM).
``--profile``: where the time of a default paper-size MACAW / MACEGA train_step goes (cProfile),
for the "> 5% of a step" hot spots (sampling, targets, Adam, norms, logging).

Variants take turns (round-robin) so load from other processes hits them alike; the median per
variant is reported. One torch thread.

    python benchmarks/bench_speed.py [--rounds 5] [--steps 2] [--skip-rss] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_macaw import ReferenceMacaw, check_same_math, make_batch, ours_step  # noqa: E402
from bench_sampler import build_dataset  # noqa: E402

from omrl_algos.macaw import Macaw, MacawConfig  # noqa: E402
from omrl_algos.macega import Macega, MacegaConfig  # noqa: E402

OBS, ACT = 17, 6  # cheetah_vel (bench_macaw's synthetic batches use the same)
PAPER = dict(width=100, depth=3, latent_dim=100, meta_batch=5, support_size=256, query_size=256)
MANY = dict(width=32, depth=3, latent_dim=32, meta_batch=40, support_size=32, query_size=32)
BEFORE = dict(wt_factored=False)


def build(cls, config_cls, settings: dict, before: bool = False):
    """An algorithm; ``before`` = the straightforward version (dense maps, unfused Adam)."""
    torch.manual_seed(0)
    algo = cls(config_cls(**settings, **(BEFORE if before else {})), OBS, ACT)
    if before:
        algo.optimizer = torch.optim.Adam([{k: v for k, v in g.items() if k != "fused"} for g in algo.optimizer.param_groups])
    return algo


def race(fns: dict, rounds: int, steps: int, warmup: int = 1) -> dict[str, tuple[float, float]]:
    """Median (CPU seconds, wall seconds) per call of each function, variants interleaved round
    by round. CPU time (this process's) is the figure to read on a loaded machine: wall time
    also counts the time other processes held the cores."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    cpu, wall = {k: [] for k in fns}, {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            c, t = time.process_time(), time.perf_counter()
            for _ in range(steps):
                fn()
            cpu[name].append((time.process_time() - c) / steps)
            wall[name].append((time.perf_counter() - t) / steps)
    return {k: (statistics.median(cpu[k]), statistics.median(wall[k])) for k in fns}


def show(t: dict, width: int = 36) -> None:
    for k, (c, w) in t.items():
        print(f"  {k:{width}s} {c * 1e3:9.1f} ms CPU {w * 1e3:9.1f} ms wall")


def ratio(t: dict, a: str, b: str) -> str:
    return f"{t[a][0] / t[b][0]:.2f}x CPU ({t[a][1] / t[b][1]:.2f}x wall)"


def train_fn(algo, dataset):
    sampler = algo.make_sampler(dataset, seed=0, device="cpu")
    return lambda: algo.train_step(sampler)


def p6(label: str, settings: dict, args) -> None:
    dataset = build_dataset(max(settings["meta_batch"], 5), 5000, OBS, ACT, 200)
    s, q = make_batch(settings["meta_batch"], settings["support_size"], 1), make_batch(settings["meta_batch"], settings["query_size"], 2)
    wt = dict(settings, weight_transform=True, bootstrap=False)
    algos = {
        "WT after": build(Macaw, MacawConfig, wt),
        "WT before": build(Macaw, MacawConfig, wt, before=True),
        "plain": build(Macaw, MacawConfig, dict(settings, weight_transform=False, bootstrap=False)),
    }
    ref = ReferenceMacaw(build(Macaw, MacawConfig, wt))
    fns = {f"{k}, train_step": train_fn(a, dataset) for k, a in algos.items()}
    fns.update({f"{k}, fixed batch": (lambda a=a: ours_step(a, s, q)) for k, a in algos.items() if k != "plain"})
    fns["reference loop, fixed batch"] = lambda: ref.meta_step(s, q)
    t = race(fns, args.rounds, args.steps)
    print(f"\nP6 {label}: {settings}")
    print(f"  meta-gradients ours vs reference loop: max relative difference {check_same_math(dict(settings)):.1e}")
    show(t)
    print(f"  WT / plain (train_step):       after {ratio(t, 'WT after, train_step', 'plain, train_step')}, before {ratio(t, 'WT before, train_step', 'plain, train_step')}   (target <= 2)")
    print(f"  reference loop / ours (fixed): after {ratio(t, 'reference loop, fixed batch', 'WT after, fixed batch')}, before {ratio(t, 'reference loop, fixed batch', 'WT before, fixed batch')}   (target >= 4)")


def p7(args) -> None:
    dataset = build_dataset(5, 5000, OBS, ACT, 200)
    wt = dict(PAPER, weight_transform=True)
    fns = {
        "MACAW after": train_fn(build(Macaw, MacawConfig, wt), dataset),
        "MACEGA after": train_fn(build(Macega, MacegaConfig, wt), dataset),
        "MACEGA after, map_noise=projected": train_fn(build(Macega, MacegaConfig, dict(wt, map_noise="projected")), dataset),
        "MACEGA after, no_evolving_gradient": train_fn(build(Macega, MacegaConfig, dict(wt, no_evolving_gradient=True)), dataset),
        "MACAW before": train_fn(build(Macaw, MacawConfig, wt, before=True), dataset),
        "MACEGA before": train_fn(build(Macega, MacegaConfig, dict(wt, weighted_backward=False), before=True), dataset),
    }
    t = race(fns, args.rounds, args.steps)
    print(f"\nP7 paper size: {wt}")
    show(t)
    print(f"  MACEGA / MACAW: after {ratio(t, 'MACEGA after', 'MACAW after')}, before {ratio(t, 'MACEGA before', 'MACAW before')}   (target <= 0.6)")
    print(f"  MACEGA map_noise=projected / MACAW (after): {ratio(t, 'MACEGA after, map_noise=projected', 'MACAW after')}   (target <= 0.6)")
    print(f"  MACEGA no_evolving_gradient / MACAW (after): {ratio(t, 'MACEGA after, no_evolving_gradient', 'MACAW after')}")
    print(f"  MACAW after / before: {ratio(t, 'MACAW after', 'MACAW before')};  MACEGA after / before: {ratio(t, 'MACEGA after', 'MACEGA before')}")


def baselines(args) -> None:
    """Meta-BC (MACAW's policy network, MAML with BC losses) and MT+FT at paper size, before /
    after. MT+FT has no inner step: its "before" differs by the unfused Adam only (its one-pass
    norms and clipping are not a setting)."""
    from omrl_algos.metabc import MetaBC, MetaBCConfig
    from omrl_algos.mtft import MtftConfig, MultiTaskFineTune

    dataset = build_dataset(5, 5000, OBS, ACT, 200)
    mtft = dict(width=100, depth=3, latent_dim=100, meta_batch=5, batch_size=256)
    before_mtft = build(MultiTaskFineTune, MtftConfig, mtft)
    before_mtft.optimizer = torch.optim.Adam([{k: v for k, v in g.items() if k != "fused"} for g in before_mtft.optimizer.param_groups])
    t = race({
        "meta-BC after": train_fn(build(MetaBC, MetaBCConfig, dict(PAPER)), dataset),
        "meta-BC before": train_fn(build(MetaBC, MetaBCConfig, dict(PAPER), before=True), dataset),
        "MT+FT after": train_fn(build(MultiTaskFineTune, MtftConfig, mtft), dataset),
        "MT+FT before (unfused Adam)": train_fn(before_mtft, dataset),
    }, args.rounds, args.steps)
    print(f"\nbaselines, paper size: meta-BC {PAPER}; MT+FT {mtft}")
    show(t)
    print(f"  meta-BC after / before: {ratio(t, 'meta-BC after', 'meta-BC before')};  MT+FT after / before: {ratio(t, 'MT+FT after', 'MT+FT before (unfused Adam)')}")


def rss_child(variant: str) -> None:
    """One paper-size train_step (after a warm-up step) of ``variant``; prints peak RSS in MB."""
    torch.set_num_threads(1)
    algo_name, when = variant.split(":")
    cls, config_cls = (Macaw, MacawConfig) if algo_name == "macaw" else (Macega, MacegaConfig)
    extra = {} if algo_name == "macaw" or when == "after" else {"weighted_backward": False}
    if when == "projected":
        extra, when = {"map_noise": "projected"}, "after"
    dataset = build_dataset(5, 5000, OBS, ACT, 200)
    algo = build(cls, config_cls, dict(PAPER, weight_transform=True, **extra), before=when == "before")
    fn = train_fn(algo, dataset)
    fn()
    fn()
    # VmHWM of this process's own memory map (ru_maxrss would carry the parent's peak over exec).
    with open("/proc/self/status") as f:
        hwm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(hwm_kb / 1024)


def rss() -> None:
    print("\nPeak RSS, paper-size meta-step (fresh process each, dataset included):")
    for variant in ("macaw:before", "macaw:after", "macega:before", "macega:after", "macega:projected"):
        out = subprocess.run([sys.executable, __file__, "--rss-child", variant], capture_output=True, text=True, check=True)
        print(f"  {variant:14s} {float(out.stdout.strip().splitlines()[-1]):8.0f} MB")


def profile() -> None:
    """Share of a default train_step spent in sampling, targets, Adam, norms and logging."""
    dataset = build_dataset(5, 5000, OBS, ACT, 200)
    parts = {
        "sampling": ["sample_support_query"],
        "value targets": ["__call__ of targets.py"],
        "MACEGA noise draw": ["draw_noise of evolving.py"],
        "Adam step": ["step of adam.py"],
        "grad norms + clip": ["clip_and_norm of meta.py", "grad_norm of meta.py"],
        "learned-rate metrics": ["learned_rates"],
    }
    variants = {"MACAW": (Macaw, MacawConfig, {}), "MACEGA": (Macega, MacegaConfig, {}), "MACEGA map_noise=projected": (Macega, MacegaConfig, {"map_noise": "projected"})}
    for name, (cls, config_cls, extra) in variants.items():
        fn = train_fn(build(cls, config_cls, dict(PAPER, weight_transform=True, **extra)), dataset)
        fn()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(3):
            fn()
        prof.disable()
        stats = pstats.Stats(prof).stats
        total = max(v[3] for k, v in stats.items() if k[2] == "train_step")
        print(f"\nprofile, {name} paper-size train_step (cProfile, 3 steps, {total / 3 * 1e3:.0f} ms a step):")
        for label, patterns in parts.items():
            cum = 0.0
            for pattern in patterns:
                func, _, file = pattern.partition(" of ")
                cum += sum(v[3] for k, v in stats.items() if k[2] == func and (not file or k[0].endswith(file)))
            print(f"  {label:26s} {100 * cum / total:5.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--only", choices=("p6", "p7", "baselines", "rss", "profile"), default=None)
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    torch.set_num_threads(1)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, {os.cpu_count()} CPUs, load {' '.join(load)}; median of {args.rounds} rounds x {args.steps} steps")
    if args.only in (None, "p6"):
        p6("paper size", PAPER, args)
        p6("small net, many tasks", MANY, args)
    if args.only in (None, "p7"):
        p7(args)
    if args.only in (None, "baselines"):
        baselines(args)
    if args.only in (None, "rss") and not args.skip_rss:
        rss()
    if args.only == "profile" or args.profile:
        profile()
    with open("/proc/loadavg") as f:
        print(f"\nload at the end: {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
