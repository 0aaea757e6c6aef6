"""Collecting the data of one shard of tasks: SAC learners (per-task or shared) or random actions.

`collect_shard` is what a collection worker runs. Per task it stores, in this row order:

1. the stream of the learner on that task, in chronological order (``source`` replay, or random
   in ``random`` mode), ``collect_step`` = env steps of the learner on that task before the row;
   an episode still running when the budget ends is cut there (its last row gets ``truncated``);
2. then, with checkpoint rollouts, the rollouts of each checkpoint by increasing step, R episodes
   each (``source`` checkpoint, ``checkpoint_step`` = ``collect_step`` = the checkpoint's step).

Episode indices increase from 0 over the whole task, so every episode is a contiguous run of rows.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from omrl_data.collection import policies as policy_files
from omrl_data.collection.config import MODES, CollectConfig
from omrl_data.collection.recorder import LearnerReward, TaskFeatures, TransitionRecorder, finish_task_arrays, window_return
from omrl_data.errors import BadInput
from omrl_data.schema import SOURCE_CHECKPOINT, SOURCE_RANDOM, SOURCE_REPLAY
from omrl_data.store import zarr_io

Report = Callable[[int, int], None]

# Env steps per task when --steps-per-task is not given, sized for shared mode on a 2-core machine:
# a shared learner's vector step costs one gradient step (~15 ms, 256x256, batch 256, one core)
# plus N env steps, so `omrl-data collect ant_dir --tasks 50 --workers 2` (2 shards of 25 tasks)
# takes about 100k x 18.7 ms = 31 min; with one worker (50 tasks in one shard) about 45 min.
# The measurements are in README.md ("Default budgets").
DEFAULT_STEPS_PER_TASK = {
    "point_robot_sparse": 10_000,  # 500 episodes of 20 steps
    "bandit": 2_000,  # 200 episodes of 10 pulls
    "cheetah_dir": 100_000,
    "cheetah_vel": 100_000,
    "ant_dir": 100_000,
    "walker_params": 100_000,
    "hopper_params": 100_000,
}
FALLBACK_STEPS_PER_TASK = 20_000
REPORT_EVERY_S = 0.25  # progress callbacks at most this often (per shard)
_SEED_SALT_ENV = 1  # seed streams derived from (config.seed, task index, salt)
_SEED_SALT_ROLLOUT = 2
_SEED_SALT_LEARNER = 3


def default_steps_per_task(family_name: str) -> int:
    """Env steps per task a collection of ``family_name`` uses when none are given."""
    return DEFAULT_STEPS_PER_TASK.get(family_name, FALLBACK_STEPS_PER_TASK)


def derived_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed that depends only on ``seed`` and ``keys`` (e.g. the task index)."""
    return int(np.random.SeedSequence([int(seed), *[int(k) for k in keys]]).generate_state(1)[0])


def collect_shard(
    config: CollectConfig,
    shard: list[tuple[int, dict]],
    out_dir: Path,
    report: Report | None = None,
) -> dict[int, dict]:
    """Collect every task ``(task index, params)`` of the shard with ``config.mode``.

    Each task's group is written with ``zarr_io.write_task_group(out_dir, index, arrays)`` as
    soon as that task is complete, after its checkpoint policies (``out_dir/policies/task_XXXX/``).
    Tasks whose group already exists in ``out_dir`` are skipped (resume); in ``shared`` mode the
    remaining tasks of the shard are learned together. ``report(task_index, env_steps_done)``
    is called every ``REPORT_EVERY_S`` seconds and when a task completes.

    Returns per task ``{"transitions", "episodes", "return_first_10pct", "return_last_10pct",
    "seconds", "skipped"}``; returns are the mean undiscounted return of the episodes of the
    learner's own stream that start in its first / last 10% of rows. In ``shared`` mode
    ``seconds`` is the shard's wall time divided by its number of tasks.
    """
    from omrl_data.tasks import get_family

    if config.mode not in MODES:
        raise BadInput(f"unknown collection mode {config.mode!r}; accepted: {', '.join(MODES)}")
    family = get_family(config.family)
    steps = int(config.steps_per_task or default_steps_per_task(config.family))
    if steps <= 0:
        raise BadInput(f"steps per task must be positive, got {steps}")
    if (config.checkpoint_every < 0) or (config.checkpoint_rollouts < 0):
        raise BadInput("checkpoint every / rollouts must be >= 0")
    out_dir = Path(out_dir)
    summaries: dict[int, dict] = {}
    todo = []
    for index, params in shard:
        if zarr_io.task_group_exists(out_dir, index):
            summaries[index] = _summary(zarr_io.read_task_group(out_dir, index, ("rewards", "episode_index", "source", "truncated", "terminated", "step_in_episode")), family.horizon, 0.0, skipped=True)
            if report:
                report(index, steps)
        else:
            todo.append((int(index), family.validate_params(params)))
    if not todo:
        return summaries
    policy_files.remove_stale(out_dir, [i for i, _ in todo])
    if config.mode == "random":
        for index, params in todo:
            summaries.update(_collect_random(config, family, index, params, steps, out_dir, report))
    elif config.mode == "per-task":
        for task in todo:
            summaries.update(_collect_sac(config, family, [task], steps, out_dir, report, shared=False))
    else:
        summaries.update(_collect_sac(config, family, todo, steps, out_dir, report, shared=True))
    return summaries


def _collect_random(config, family, index, params, steps, out_dir, report) -> dict[int, dict]:
    start = time.perf_counter()
    seed = derived_seed(config.seed, index, _SEED_SALT_ENV)
    env = TransitionRecorder(family.make_env(params), seed=seed, capacity=steps)
    space = env.action_space
    rng = np.random.default_rng(seed)
    # Drawing all actions at once keeps the loop at the env's own speed.
    actions = rng.uniform(space.low, space.high, size=(steps, *space.shape)).astype(space.dtype)
    env.reset()
    last = time.perf_counter()
    for k in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[k])
        if terminated or truncated:
            env.reset()
        if report and (k & 255) == 0 and time.perf_counter() - last > REPORT_EVERY_S:
            report(index, k + 1)
            last = time.perf_counter()
    env.close()
    arrays = finish_task_arrays([(env.take(), SOURCE_RANDOM, -1)], config.gamma)
    zarr_io.write_task_group(out_dir, index, arrays)
    if report:
        report(index, steps)
    return {index: _summary(arrays, family.horizon, time.perf_counter() - start)}


def _sb3_schedule(updates_per_step: float) -> tuple[int, int]:
    """``(train_freq, gradient_steps)`` in vector steps for a gradient-steps-per-vector-step ratio."""
    if updates_per_step <= 0:
        raise BadInput(f"updates per step must be positive, got {updates_per_step}")
    if updates_per_step >= 1:
        return 1, int(round(updates_per_step))
    return max(1, int(round(1.0 / updates_per_step))), 1


def _ent_coef(value):
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value  # "auto" or "auto_0.1"
    return float(value)


def _collect_sac(config, family, tasks, steps, out_dir, report, shared: bool) -> dict[int, dict]:
    """One SB3 SAC over a vector of the given tasks' envs (one task when not ``shared``)."""
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    start = time.perf_counter()
    n = len(tasks)
    indices = [i for i, _ in tasks]
    recorders, rollout_envs, features = [], [], []
    for index, params in tasks:
        env = family.make_env(params)
        if not isinstance(env.action_space, gym.spaces.Box):
            raise BadInput(f"family {family.name} has a {type(env.action_space).__name__} action space; SAC modes need a continuous one (use --mode random)")
        recorders.append(TransitionRecorder(env, seed=derived_seed(config.seed, index, _SEED_SALT_ENV), capacity=steps))
        features.append(np.asarray(family.features(params), dtype=np.float32) if shared else np.zeros(0, np.float32))
    learner_envs = [LearnerReward(TaskFeatures(r, f) if shared else r) for r, f in zip(recorders, features)]
    env_fns = [(lambda e=e: e) for e in learner_envs]
    vec = DummyVecEnv(env_fns)
    train_freq, gradient_steps = _sb3_schedule(config.sac.updates_per_step)
    learner_seed = derived_seed(config.seed, _SEED_SALT_LEARNER, *indices)
    model = SAC(
        "MlpPolicy",
        vec,
        learning_rate=config.sac.learning_rate,
        buffer_size=max(1, min(config.sac.buffer_size, steps * n)),
        learning_starts=config.sac.learning_starts * n,  # SB3 counts steps summed over the vector
        batch_size=config.sac.batch_size,
        tau=config.sac.tau,
        gamma=config.gamma,
        train_freq=(train_freq, "step"),
        gradient_steps=gradient_steps,
        ent_coef=_ent_coef(config.sac.ent_coef),
        policy_kwargs={"net_arch": list(config.sac.net_arch)},
        seed=learner_seed,
        device=config.device,
        verbose=0,
    )
    checkpoints = config.checkpoint_every > 0  # policies are saved even without rollouts
    staging = {i: policy_files.staging_dir(out_dir, i) for i in indices} if checkpoints else {}
    segments: dict[int, list] = {i: [] for i in indices}
    mode = "shared" if shared else "per-task"

    def checkpoint(step: int) -> None:
        arrays = policy_files.actor_arrays(model.actor)
        for j, (index, params) in enumerate(tasks):
            space = recorders[j].action_space
            spec = policy_files.actor_spec(model.actor, recorders[j].observation_space.shape[0], features[j], space.low, space.high, step, mode)
            policy_files.write_checkpoint(staging[index], step, arrays, spec)
            if config.checkpoint_rollouts <= 0:
                continue
            policy = policy_files.SavedPolicy(arrays, spec)
            if len(rollout_envs) <= j:
                seed = derived_seed(config.seed, index, _SEED_SALT_ROLLOUT)
                rollout_envs.append((TransitionRecorder(family.make_env(params), seed=seed), np.random.default_rng(seed)))
            env, rng = rollout_envs[j]
            segments[index].append((rollout_episodes(env, policy, config.checkpoint_rollouts, rng, step), SOURCE_CHECKPOINT, step))

    class Driver(BaseCallback):
        """Stops the learner after ``steps`` vector steps; checkpoints; reports progress."""

        def __init__(self):
            super().__init__()
            self.done = 0
            self.last_report = time.perf_counter()

        def _on_step(self) -> bool:
            self.done += 1
            if checkpoints and self.done % config.checkpoint_every == 0:
                checkpoint(self.done)
            if report and time.perf_counter() - self.last_report > REPORT_EVERY_S:
                for index in indices:
                    report(index, self.done)
                self.last_report = time.perf_counter()
            return self.done < steps

    # Torch threads are the caller's choice (collection workers set one per core they own).
    model.learn(total_timesteps=steps * n, callback=Driver())
    seconds = (time.perf_counter() - start) / n
    out = {}
    for j, index in enumerate(indices):
        replay = recorders[j].take()
        if len(replay["rewards"]) != steps:
            raise RuntimeError(f"task {index}: recorded {len(replay['rewards'])} steps, expected {steps}")
        arrays = finish_task_arrays([(replay, SOURCE_REPLAY, -1), *segments[index]], config.gamma)
        if checkpoints:
            policy_files.publish(staging[index], out_dir, index)
        zarr_io.write_task_group(out_dir, index, arrays)
        if report:
            report(index, steps)
        out[index] = _summary(arrays, family.horizon, seconds)
    vec.close()
    for env, _ in rollout_envs:
        env.close()
    return out


def rollout_episodes(env: TransitionRecorder, policy: policy_files.SavedPolicy, episodes: int, rng: np.random.Generator, step: int) -> dict[str, np.ndarray]:
    """``episodes`` stochastic episodes of ``policy`` in ``env``; the recorded rows (collect step = ``step``)."""
    env.collect_step_override = step
    for _ in range(episodes):
        obs, _ = env.reset()
        while True:
            action = policy.act(np.asarray(obs)[None], rng)[0]
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    return env.take()


def _summary(arrays: dict[str, np.ndarray], horizon: int, seconds: float, skipped: bool = False) -> dict:
    """Per-task statistics over the learner's own stream (checkpoint rollouts excluded from returns)."""
    own = arrays["source"] != SOURCE_CHECKPOINT
    rewards, episodes = arrays["rewards"][own], arrays["episode_index"][own]
    # The last episode was cut by the budget if it ended before the horizon without terminating.
    cut = bool(own.any()) and not arrays["terminated"][own][-1] and arrays["step_in_episode"][own][-1] + 1 < horizon
    return {
        "transitions": int(len(arrays["rewards"])),
        "episodes": int(len(np.unique(arrays["episode_index"]))),
        "return_first_10pct": window_return(rewards, episodes, 0.0, 0.1, drop_last=cut),
        "return_last_10pct": window_return(rewards, episodes, 0.9, 1.0, drop_last=cut),
        "seconds": float(seconds),
        "skipped": skipped,
    }
