"""What does an omrl task env cost over the plain Gymnasium env it extends?

Per MuJoCo family, one process builds both envs with ``gymnasium.make`` (so both carry the same
TimeLimit / OrderEnforcing / PassiveEnvChecker wrappers) and steps them with the same
pre-drawn uniform random actions, resetting with the same seeds at termination or truncation:

| family        | omrl env             | plain env                                                   |
| ------------- | -------------------- | ----------------------------------------------------------- |
| cheetah_dir   | omrl/CheetahDir-v0   | HalfCheetah-v5                                              |
| cheetah_vel   | omrl/CheetahVel-v0   | HalfCheetah-v5                                              |
| ant_dir       | omrl/AntDir-v0       | Ant-v5 (include_cfrc_ext_in_observation=False, contact_cost_weight=0) |
| walker_params | omrl/WalkerParams-v0 | Walker2d-v5 (frame_skip=8, the dt omrl uses)                |
| hopper_params | omrl/HopperParams-v0 | Hopper-v5 (frame_skip=8)                                    |

Time is the process's CPU time (``time.process_time``; both envs are single-threaded), so that
other processes on a shared machine do not decide the ratio. The two envs are timed in
alternating blocks (omrl, plain, omrl, plain, ...) so that load from
other processes hits both alike; the reported ratio is the median over blocks of
steps/s(omrl) / steps/s(plain). point_robot_sparse and bandit extend nothing (they are plain
Gymnasium envs), so only their steps/s is printed.

Run: ``.venv/bin/python benchmarks/bench_envs.py`` (``--steps`` per block, ``--blocks``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omrl_data.tasks import family_names, get_family  # noqa: E402

# family -> (plain Gymnasium id, kwargs that make it simulate exactly what the omrl env simulates)
PLAIN = {
    "cheetah_dir": ("HalfCheetah-v5", {}),
    "cheetah_vel": ("HalfCheetah-v5", {}),
    "ant_dir": ("Ant-v5", {"include_cfrc_ext_in_observation": False, "contact_cost_weight": 0.0}),
    "walker_params": ("Walker2d-v5", {"frame_skip": 8}),
    "hopper_params": ("Hopper-v5", {"frame_skip": 8}),
}


def steps_per_second(env: gym.Env, actions: np.ndarray, seed: int) -> float:
    """Step ``env`` through ``actions`` (resetting with seeds seed, seed+1, ... when an episode ends)."""
    env.reset(seed=seed)
    episode = 0
    # CPU time of this process, not wall time: on a shared machine other processes' load would
    # otherwise dominate the difference between two envs that simulate the same physics.
    start = time.process_time()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            episode += 1
            env.reset(seed=seed + episode)
    return len(actions) / (time.process_time() - start)


def bench_family(name: str, steps: int, blocks: int) -> dict:
    fam = get_family(name)
    task = fam.sample_tasks(min(2, fam.max_tasks or 2), seed=0).params[-1]
    omrl_env = fam.make_env(task)
    rng = np.random.default_rng(0)
    space = omrl_env.action_space
    actions = rng.uniform(space.low, space.high, size=(steps, *space.shape)).astype(space.dtype)
    steps_per_second(omrl_env, actions[: min(200, steps)], seed=0)  # warm-up (first-call costs)
    row = {"family": name, "omrl": [], "plain": [], "ratio": []}
    if name not in PLAIN:
        for b in range(blocks):
            row["omrl"].append(steps_per_second(omrl_env, actions, seed=b))
        return row
    env_id, kwargs = PLAIN[name]
    plain_env = gym.make(env_id, **kwargs)
    steps_per_second(plain_env, actions[: min(200, steps)], seed=0)
    for b in range(blocks):
        first, second = (omrl_env, plain_env) if b % 2 == 0 else (plain_env, omrl_env)
        sps = {id(first): steps_per_second(first, actions, seed=b), id(second): steps_per_second(second, actions, seed=b)}
        row["omrl"].append(sps[id(omrl_env)])
        row["plain"].append(sps[id(plain_env)])
        row["ratio"].append(sps[id(omrl_env)] / sps[id(plain_env)])
    row["plain_id"] = env_id + (f" ({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else "")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="env steps per timed block")
    parser.add_argument("--blocks", type=int, default=20, help="timed blocks per env (alternating)")
    parser.add_argument("--families", default=",".join(family_names()), help="comma-separated family names")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # Box(-inf, inf) observation warnings of the env checker

    from rich.console import Console
    from rich.progress import track

    names = args.families.split(",")
    rows = [bench_family(n, args.steps, args.blocks) for n in track(names, description="families", console=Console(stderr=True))]
    print(f"\n{args.steps} random-action steps per block, {args.blocks} blocks per env, one process, CPU time\n")
    print("| family | omrl env steps/s | plain Gymnasium env | plain steps/s | omrl / plain (median) | wrapper cost |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        omrl_sps = statistics.median(r["omrl"])
        if r["plain"]:
            ratio = statistics.median(r["ratio"])
            plain = f"{statistics.median(r['plain']):,.0f}"
            print(f"| {r['family']} | {omrl_sps:,.0f} | {r['plain_id']} | {plain} | {ratio:.3f} | {100 * (1 - ratio):+.1f}% |")
        else:
            print(f"| {r['family']} | {omrl_sps:,.0f} | (is a plain Gymnasium env) | - | - | - |")
    Console(stderr=True).print("[dim]wrapper cost = 1 - median ratio (negative: the omrl env was faster)[/]")


if __name__ == "__main__":
    main()
