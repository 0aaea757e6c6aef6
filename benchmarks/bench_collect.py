"""Collection speed and data quality of the learners (omrl_data.collection.learners).

Prints:
1. `shared` vs `per-task` SAC on the same tasks: transitions/s and the return of the last 10% of
   each task's stream, (a) at the same gradient-steps-per-transition budget (1/N: the shared
   default with N tasks; per-task then takes one gradient step every N env steps), and (b) with
   per-task at its usual recipe (one gradient step per env step).
2. `random` collection and checkpoint rollouts (a saved 256x256 actor run in numpy) against raw
   stepping of the same env with uniform random actions (the practical limit).

    .venv/bin/python benchmarks/bench_collect.py --family cheetah_vel --tasks 8 --steps 2000
    .venv/bin/python benchmarks/bench_collect.py --part speed --family ant_dir
    .venv/bin/python benchmarks/bench_collect.py --part shard --family ant_dir --tasks 25 --steps 600 --learning-starts 100
    .venv/bin/python benchmarks/bench_collect.py --part tiers --family point_robot_sparse --tasks 10 --steps 10000
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from omrl_data.collection.config import CollectConfig, SacConfig
from omrl_data.collection.learners import collect_shard, rollout_episodes
from omrl_data.collection.policies import SavedPolicy, actor_arrays, actor_spec
from omrl_data.collection.recorder import TransitionRecorder
from omrl_data.tasks import get_family


def run_sac(family: str, tasks: int, steps: int, mode: str, sac: SacConfig, seed: int) -> tuple[float, float, float]:
    """(transitions/s, mean last-10% return, mean first-10% return) of one collection."""
    shard = list(enumerate(get_family(family).sample_tasks(tasks, seed=seed).params))
    cfg = CollectConfig(family=family, tasks=tasks, mode=mode, steps_per_task=steps, seed=seed, sac=sac)
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        stats = collect_shard(cfg, shard, Path(d))
        seconds = time.perf_counter() - start
    last = float(np.mean([s["return_last_10pct"] for s in stats.values()]))
    first = float(np.mean([s["return_first_10pct"] for s in stats.values()]))
    return tasks * steps / seconds, last, first


def bench_learners(args) -> None:
    net = tuple(int(x) for x in args.net.split("x"))
    base = SacConfig(learning_starts=args.learning_starts, net_arch=net, learning_rate=args.lr, batch_size=args.batch)
    n, u = args.tasks, args.ups
    print(f"== shared vs per-task: {args.family}, {n} tasks x {args.steps} env steps, SAC {args.net} lr {args.lr} batch {args.batch}, learning starts {args.learning_starts}")
    rows = [
        (f"shared, {u:g} grad steps per vector step ({u:g}/N per transition)", "shared", replace(base, updates_per_step=u)),
        (f"per-task, {u:g} grad steps per N env steps ({u:g}/N per transition)", "per-task", replace(base, updates_per_step=u / n)),
    ]
    if not args.skip_full:
        rows.append((f"per-task, {u:g} grad steps per env step (the MACAW/CORRO recipe)", "per-task", replace(base, updates_per_step=u)))
    results = {}
    for label, mode, sac in rows:
        tps, last, first = run_sac(args.family, n, args.steps, mode, sac, args.seed)
        results[label] = tps
        print(f"{label:66s} {tps:8.0f} transitions/s   return first 10% {first:9.2f}   last 10% {last:9.2f}", flush=True)
    labels = list(results)
    print(f"shared / per-task at equal budget: {results[labels[0]] / results[labels[1]]:.2f}x")
    if len(labels) > 2:
        print(f"shared / per-task recipe:          {results[labels[0]] / results[labels[2]]:.2f}x")


def raw_steps_per_s(env, steps: int, rng) -> float:
    space = env.action_space
    actions = rng.uniform(space.low, space.high, size=(steps, *space.shape)).astype(np.float32)
    env.reset(seed=0)
    start = time.perf_counter()
    for k in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[k])
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def bench_speed(args) -> None:
    from stable_baselines3 import SAC

    family = get_family(args.family)
    params = family.sample_tasks(1, seed=args.seed).params[0]
    rng = np.random.default_rng(args.seed)
    steps = args.speed_steps
    env = family.make_env(params)
    model = SAC("MlpPolicy", env, seed=args.seed, device="cpu")  # untrained 256x256 actor: same cost as a trained one
    spec = actor_spec(model.actor, family.obs_dim, np.zeros(0), env.action_space.low, env.action_space.high, 0, "per-task")
    policy = SavedPolicy(actor_arrays(model.actor), spec)
    episodes = max(1, steps // family.horizon)
    raw, random_tps, rollout_tps = [], [], []
    # Interleaved blocks, medians: the machine is shared, so load drifts during a run.
    for block in range(args.blocks):
        raw.append(raw_steps_per_s(family.make_env(params), steps, rng))
        cfg = CollectConfig(family=args.family, tasks=1, mode="random", steps_per_task=steps, seed=args.seed + block)
        with tempfile.TemporaryDirectory() as d:
            start = time.perf_counter()
            collect_shard(cfg, [(0, params)], Path(d))
            random_tps.append(steps / (time.perf_counter() - start))
        recorder = TransitionRecorder(family.make_env(params), seed=args.seed + block)
        start = time.perf_counter()
        rows = rollout_episodes(recorder, policy, episodes, rng, step=0)
        rollout_tps.append(len(rows["rewards"]) / (time.perf_counter() - start))
    raw, random_tps, rollout_tps = (float(np.median(x)) for x in (raw, random_tps, rollout_tps))
    print(f"== {args.family}: {steps} steps x {args.blocks} interleaved blocks (medians), one process")
    print(f"raw env.step, uniform actions             {raw:8.0f} steps/s")
    print(f"random mode (record + mc_returns + zarr)  {random_tps:8.0f} transitions/s   raw / random     {raw / random_tps:.2f}x")
    print(f"checkpoint rollouts (numpy 256x256 actor) {rollout_tps:8.0f} transitions/s   raw / rollouts   {raw / rollout_tps:.2f}x")


def bench_shard(args) -> None:
    """Cost of one shared-learner vector step (learning phase only), in wall and CPU seconds."""
    n, steps, ls = args.tasks, args.steps, args.learning_starts
    marks = []

    def report(task: int, done: int) -> None:
        if task == 0:
            marks.append((time.perf_counter(), time.process_time(), done))

    cfg = CollectConfig(family=args.family, tasks=n, mode="shared", steps_per_task=steps, seed=args.seed, sac=SacConfig(learning_starts=ls))
    shard = list(enumerate(get_family(args.family).sample_tasks(n, seed=args.seed).params))
    with tempfile.TemporaryDirectory() as d:
        collect_shard(cfg, shard, Path(d), report=report)
    m = [x for x in marks if x[2] > ls + 20]
    (wa, ca, ka), (wb, cb, kb) = m[0], m[-2]
    cpu_rate, wall_rate = (kb - ka) / (cb - ca), (kb - ka) / (wb - wa)
    print(f"== shared shard: {args.family}, {n} tasks x {steps} steps, SAC 256x256 batch 256, learning phase")
    print(f"per CPU second: {cpu_rate:.1f} vector steps = {n * cpu_rate:.0f} transitions ({1000 / cpu_rate:.1f} ms per vector step)")
    print(f"per wall second: {wall_rate:.1f} vector steps = {n * wall_rate:.0f} transitions")


def bench_tiers(args) -> None:
    """What a budget buys: a shared collection with default SAC, returns by third of collect_step."""
    from omrl_data.collection.recorder import episode_returns
    from omrl_data.store import zarr_io

    n, steps = args.tasks, args.steps
    cfg = CollectConfig(family=args.family, tasks=n, mode="shared", steps_per_task=steps, seed=args.seed)
    shard = list(enumerate(get_family(args.family).sample_tasks(n, seed=args.seed).params))
    returns, lengths = [[], [], []], [[], [], []]
    with tempfile.TemporaryDirectory() as d:
        wall, cpu = time.perf_counter(), time.process_time()
        collect_shard(cfg, shard, Path(d))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        for i in range(n):
            a = zarr_io.read_task_group(d, i)
            r, starts = episode_returns(a["rewards"], a["episode_index"])
            length = np.diff(np.r_[starts, len(a["rewards"])])
            third = np.minimum(3 * a["collect_step"][starts] // steps, 2)
            for k in range(3):
                returns[k].append(r[third == k].mean())
                lengths[k].append(length[third == k].mean())
    print(f"== {args.family} shared, {n} tasks x {steps} steps, default SAC: wall {wall:.0f} s, CPU {cpu:.0f} s")
    print("mean episode return by third of collect_step (poor / medium / expert tier):", [round(float(np.mean(x)), 2) for x in returns])
    print("mean episode length by third:", [round(float(np.mean(x)), 1) for x in lengths])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["all", "learners", "speed", "shard", "tiers"], default="all",
                   help="shard: cost of a shared learner's vector step; tiers: returns by third of a shared collection (neither part of all)")
    p.add_argument("--family", default="cheetah_vel")
    p.add_argument("--tasks", type=int, default=8)
    p.add_argument("--steps", type=int, default=2000, help="env steps per task of the learner comparison")
    p.add_argument("--learning-starts", type=int, default=500)
    p.add_argument("--net", default="256x256", help="hidden sizes of the learners, e.g. 256x256")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--ups", type=float, default=1.0, help="shared learner's gradient steps per vector step")
    p.add_argument("--speed-steps", type=int, default=10000, help="env steps per block of the speed comparison")
    p.add_argument("--blocks", type=int, default=3, help="interleaved blocks of the speed comparison")
    p.add_argument("--skip-full", action="store_true", help="leave out the per-task 1-step-per-step row (the slowest)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.part == "shard":
        bench_shard(args)
    if args.part == "tiers":
        bench_tiers(args)
    if args.part in ("all", "speed"):
        bench_speed(args)
    if args.part in ("all", "learners"):
        bench_learners(args)


if __name__ == "__main__":
    main()
