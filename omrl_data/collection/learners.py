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

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from omrl_data.collection import chunks as chunk_store
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
    work_dir: Path | None = None,
) -> dict[int, dict]:
    """Collect every task ``(task index, params)`` of the shard with ``config.mode``.

    Each task's group is written with ``zarr_io.write_task_group(out_dir, index, arrays)`` as
    soon as that task is complete, after its checkpoint policies (``out_dir/policies/task_XXXX/``).
    Tasks whose group already exists in ``out_dir`` are skipped (resume). ``report(task_index,
    env_steps_done)`` is called every ``REPORT_EVERY_S`` seconds and when a task completes.

    ``work_dir`` (the staging folder's scratch space): SAC learners commit their progress there
    every ``config.chunk_seconds`` (:mod:`omrl_data.collection.chunks`) and a learner started
    again on the same tasks continues from its last chunk, to the rows an uninterrupted run
    records. Without it (or in ``random`` mode, whose tasks take seconds) a task's progress is
    kept only until its group is written. In ``shared`` mode a shard whose learner had not
    finished but some of whose groups exist (staging of an older version) learns its remaining
    tasks together again.

    Returns per task ``{"transitions", "episodes", "return_first_10pct", "return_last_10pct",
    "seconds", "skipped"}`` (learnt tasks also ``resumed_from_step``: the env steps per task the
    learner continued from, 0 for a fresh start); returns are the mean undiscounted return of the episodes of the
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
        if work_dir is not None and config.mode == "shared":  # written, the clean-up was cut short
            shutil.rmtree(chunk_store.learner_folder(work_dir, [i for i, _ in shard]), ignore_errors=True)
        return summaries
    policy_files.remove_stale(out_dir, [i for i, _ in todo])
    if config.mode == "random":
        for index, params in todo:
            summaries.update(_collect_random(config, family, index, params, steps, out_dir, report))
    elif config.mode == "per-task":
        for task in todo:
            summaries.update(_collect_sac(config, family, [task], steps, out_dir, report, shared=False, work_dir=work_dir))
    else:
        shard_tasks = [int(i) for i, _ in shard]
        summaries.update(_collect_sac(config, family, todo, steps, out_dir, report, shared=True, work_dir=work_dir, shard_tasks=shard_tasks))
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


_REPLAY_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _say(message: str) -> None:
    """One line on stderr from a worker (the driver's terminal)."""
    print(f"omrl: {message}", file=sys.stderr, flush=True)


def _learner_settings(config: CollectConfig, steps: int) -> dict:
    """The data settings a learner's chunks belong to (execution settings may change on resume)."""
    from omrl_data.collection.plan import EXECUTION_FIELDS

    d = {k: v for k, v in config.to_dict().items() if k not in EXECUTION_FIELDS}
    d["steps_per_task"] = int(steps)
    return json.loads(json.dumps(d))


def _open_chunks(config, work_dir, learner_tasks, steps, label):
    """The learner's chunk store (in memory without ``work_dir``); a damaged one is started over."""
    folder = None if work_dir is None else chunk_store.learner_folder(work_dir, learner_tasks)
    try:
        return chunk_store.Chunks(folder, learner_tasks, _learner_settings(config, steps))
    except (chunk_store.ChunkError, OSError, ValueError) as e:
        _say(f"{label}: the saved learner progress cannot continue ({e}); starting it over")
        shutil.rmtree(folder, ignore_errors=True)
        return chunk_store.Chunks(folder, learner_tasks, _learner_settings(config, steps))


def _collect_sac(config, family, tasks, steps, out_dir, report, shared: bool, work_dir=None, shard_tasks=None) -> dict[int, dict]:
    """One SB3 SAC over a vector of the given tasks' envs (one task when not ``shared``).

    With ``work_dir`` the learner commits a chunk every ``config.chunk_seconds`` (see
    :mod:`omrl_data.collection.chunks`) and continues from the last one when started again.
    ``shard_tasks``: the whole shard ``tasks`` belongs to (its chunks, if it had finished, give
    the rows of ``tasks`` without learning again).
    """
    start = time.perf_counter()
    indices = [i for i, _ in tasks]
    label = f"task{'s' if len(indices) > 1 else ''} {', '.join(map(str, indices))}"
    shard_tasks = list(indices if shard_tasks is None else shard_tasks)
    store = _open_chunks(config, work_dir, shard_tasks, steps, label)
    last = _last_chunk(store, label)
    if last is not None and last["final"]:  # it had finished; only writing its tasks was cut short
        try:
            return _write_tasks(config, family, store, indices, steps, out_dir, report, start, int(last["done"]), {})
        except chunk_store.ChunkError as e:
            _say(f"{label}: the saved learner progress cannot continue ({e}); starting it over")
            store.reset()
            last = None
    if shard_tasks != indices:  # part of the shard is written but its learner had not finished
        store.remove()
        store = _open_chunks(config, work_dir, indices, steps, label)
        last = _last_chunk(store, label)
    # Checkpoint policies wait in the chunks' folder, else in a hidden folder of the dataset.
    policy_dirs = {i: store.policy_dir(i) or policy_files.staging_dir(out_dir, i) for i in indices} if config.checkpoint_every > 0 else {}
    learner = None
    if last is not None:
        try:
            learner = _Learner(config, family, tasks, steps, shared, store, policy_dirs)
            learner.restore()
        except (chunk_store.ChunkError, ValueError, KeyError, TypeError, RuntimeError, IndexError) as e:
            _say(f"{label}: the saved learner state cannot continue ({e}); starting it over from step 0")
            if learner is not None:
                learner.close()
            store.reset()
            learner = None
    if learner is None:
        learner = _Learner(config, family, tasks, steps, shared, store, policy_dirs)
    resumed_from = learner.done
    try:
        learner.learn(report)
        learner.commit(final=True)
    finally:
        learner.close()
    return _write_tasks(config, family, store, indices, steps, out_dir, report, start, resumed_from, policy_dirs)


def _last_chunk(store, label):
    try:
        return store.last()
    except chunk_store.ChunkError as e:
        _say(f"{label}: the saved learner progress cannot continue ({e}); starting it over")
        store.reset()
        return None


def _write_tasks(config, family, store, indices, steps, out_dir, report, start, resumed_from, policy_dirs) -> dict[int, dict]:
    """Write each task's group from the learner's chunks (its stream, then its rollouts), after
    its checkpoint policies."""
    seconds = (time.perf_counter() - start) / max(1, len(indices))
    out = {}
    for index in indices:
        stream = store.stream(index)
        if len(stream.get("rewards", ())) != steps:
            raise RuntimeError(f"task {index}: recorded {len(stream.get('rewards', ()))} steps, expected {steps}")
        if not (stream["terminated"][-1] or stream["truncated"][-1]):
            stream["truncated"][-1] = True  # the budget cut the last episode short (as a time limit would)
        segments = [(stream, SOURCE_REPLAY, -1), *[(rows, SOURCE_CHECKPOINT, step) for step, rows in store.rollouts(index)]]
        arrays = finish_task_arrays(segments, config.gamma)
        if config.checkpoint_every > 0:
            if store.folder is not None:  # copied: the chunks' folder keeps them until every task is written
                policy_files.publish_copy(store.policy_dir(index), out_dir, index)
            else:
                policy_files.publish(policy_dirs[index], out_dir, index)
        zarr_io.write_task_group(out_dir, index, arrays)
        if report:
            report(index, steps)
        out[index] = _summary(arrays, family.horizon, seconds) | {"resumed_from_step": int(resumed_from)}
    store.remove()
    return out


class _Learner:
    """The envs, recorders and SB3 SAC of one learner, with its chunk commits and their restore."""

    def __init__(self, config, family, tasks, steps, shared, store, policy_dirs):
        import gymnasium as gym
        from stable_baselines3 import SAC
        from stable_baselines3.common.vec_env import DummyVecEnv

        self.config, self.family, self.tasks, self.steps, self.shared, self.store = config, family, tasks, steps, shared, store
        self.indices = [i for i, _ in tasks]
        n = len(tasks)
        self.recorders, self.features, self.rollout_envs = [], [], []
        for index, params in tasks:
            env = family.make_env(params)
            if not isinstance(env.action_space, gym.spaces.Box):
                raise BadInput(f"family {family.name} has a {type(env.action_space).__name__} action space; SAC modes need a continuous one (use --mode random)")
            # Rows go to a chunk every few minutes: start small, the recorder grows as needed.
            capacity = steps if store.folder is None else min(steps, 4096)
            self.recorders.append(TransitionRecorder(env, seed=derived_seed(config.seed, index, _SEED_SALT_ENV), capacity=capacity))
            self.features.append(np.asarray(family.features(params), dtype=np.float32) if shared else np.zeros(0, np.float32))
        self.learner_envs = [LearnerReward(TaskFeatures(r, f) if shared else r) for r, f in zip(self.recorders, self.features)]
        self.vec = DummyVecEnv([(lambda e=e: e) for e in self.learner_envs])
        train_freq, gradient_steps = _sb3_schedule(config.sac.updates_per_step)
        self.model = SAC(
            "MlpPolicy",
            self.vec,
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
            seed=derived_seed(config.seed, _SEED_SALT_LEARNER, *self.indices),
            device=config.device,
            verbose=0,
        )
        self.checkpoints = config.checkpoint_every > 0  # policies are saved even without rollouts
        self.policy_dirs = policy_dirs
        self.pending: dict[int, list] = {i: [] for i in self.indices}  # rollouts since the last chunk
        self.done = 0  # vector steps taken (= env steps per task)
        self.replay_saved = 0  # replay rows [0, replay_saved) are in committed chunks

    # ------------------------------------------------------------------------------ learning
    def checkpoint(self, step: int) -> None:
        config, model = self.config, self.model
        arrays = policy_files.actor_arrays(model.actor)
        mode = "shared" if self.shared else "per-task"
        for j, (index, params) in enumerate(self.tasks):
            space = self.recorders[j].action_space
            spec = policy_files.actor_spec(model.actor, self.recorders[j].observation_space.shape[0], self.features[j], space.low, space.high, step, mode)
            policy_files.write_checkpoint(self.policy_dirs[index], step, arrays, spec)
            if config.checkpoint_rollouts <= 0:
                continue
            policy = policy_files.SavedPolicy(arrays, spec)
            if len(self.rollout_envs) <= j:
                self.rollout_envs.append(self._rollout_env(index, params))
            env, rng = self.rollout_envs[j]
            self.pending[index].append((step, rollout_episodes(env, policy, config.checkpoint_rollouts, rng, step)))

    def _rollout_env(self, index, params):
        seed = derived_seed(self.config.seed, index, _SEED_SALT_ROLLOUT)
        return TransitionRecorder(self.family.make_env(params), seed=seed), np.random.default_rng(seed)

    def learn(self, report) -> None:
        from stable_baselines3.common.callbacks import BaseCallback

        learner, config, steps = self, self.config, self.steps
        chunking = self.store.folder is not None

        class Driver(BaseCallback):
            """Stops the learner after ``steps`` vector steps; checkpoints; reports progress; and
            between two rollouts (a state a fresh ``learn`` continues exactly) commits chunks."""

            def __init__(self):
                super().__init__()
                self.last_report = time.perf_counter()
                self.last_chunk = time.monotonic()

            def _on_rollout_start(self) -> None:
                if chunking and 0 < learner.done < steps and time.monotonic() - self.last_chunk >= config.chunk_seconds:
                    learner.commit()
                    self.last_chunk = time.monotonic()

            def _on_step(self) -> bool:
                learner.done += 1
                if learner.checkpoints and learner.done % config.checkpoint_every == 0:
                    learner.checkpoint(learner.done)
                if report and time.perf_counter() - self.last_report > REPORT_EVERY_S:
                    for index in learner.indices:
                        report(index, learner.done)
                    self.last_report = time.perf_counter()
                return learner.done < steps

        n = len(self.tasks)
        # Torch threads are the caller's choice (collection workers set one per core they own).
        self.model.learn(total_timesteps=(steps - self.done) * n, callback=Driver(), reset_num_timesteps=self.done == 0)

    def close(self) -> None:
        self.vec.close()
        for env, _ in self.rollout_envs:
            env.close()

    # ------------------------------------------------------------------------------ chunks
    def commit(self, final: bool = False) -> None:
        """Commit what was recorded since the last chunk (with the whole learner state unless
        ``final``: the learner has finished and only its rows are still needed)."""
        streams = {i: r.flush() for i, r in zip(self.indices, self.recorders)}
        pending, self.pending = self.pending, {i: [] for i in self.indices}
        if final:
            self.store.commit(self.done, streams, pending, final=True)
            return
        buf = self.model.replay_buffer
        cap = int(buf.buffer_size)
        first = max(self.replay_saved, self.done - cap)  # older rows are overwritten in the buffer
        rows = np.arange(first, self.done) % cap
        replay = {name: getattr(buf, name)[rows] for name in _REPLAY_FIELDS if getattr(buf, name, None) is not None}
        self.store.commit(self.done, streams, pending, (first, replay), self._state(), keep_replay_from=self.done - cap)
        self.replay_saved = self.done

    def _state(self):
        import random

        import torch

        model = self.model
        np_meta, np_keys = chunk_store.legacy_state_to_json(np.random.get_state())
        py_version, py_state, py_gauss = random.getstate()
        meta = {
            "done": self.done,
            "num_timesteps": int(model.num_timesteps),
            "episode_num": int(model._episode_num),
            "n_updates": int(model._n_updates),
            "progress_remaining": float(model._current_progress_remaining),
            "numpy_global": np_meta,
            "python_random": [py_version, list(py_state), py_gauss],
            "action_space_rng": model.action_space.np_random.bit_generator.state,
            "envs": [],
            "rollout_envs": [],
        }
        arrays = {
            "last_obs": np.asarray(model._last_obs),
            "last_episode_starts": np.asarray(model._last_episode_starts),
            "numpy_global_keys": np_keys,
        }
        for j, recorder in enumerate(self.recorders):
            snap = recorder.snapshot()
            arrays[f"env_{j}_actions"] = snap.pop("actions")
            meta["envs"].append(snap)
        for j, (env, rng) in enumerate(self.rollout_envs):
            snap = env.snapshot()
            snap.pop("actions")
            meta["rollout_envs"].append({"recorder": snap, "rng": rng.bit_generator.state})
        learner = {
            "params": model.get_parameters(),
            "log_ent_coef": None if model.ent_coef_optimizer is None else model.log_ent_coef.detach().cpu(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if str(self.config.device).startswith("cuda") else None,
        }
        return meta, arrays, learner

    def restore(self) -> None:
        """Continue from the store's last chunk: envs (their episodes replayed and checked against
        the saved observations), replay buffer, networks, optimisers, counters, RNGs."""
        import random

        import torch

        meta, arrays, learner = self.store.state()
        model, done = self.model, int(meta["done"])
        if len(meta["envs"]) != len(self.recorders):
            raise ValueError(f"the state has {len(meta['envs'])} envs, the learner {len(self.recorders)}")
        for j, index in enumerate(self.indices):
            if len(self.store.stream(index).get("rewards", ())) != done:
                raise ValueError(f"task {index}: the chunks hold other than {done} rows")
        last_obs = arrays["last_obs"]
        for j, (recorder, outer) in enumerate(zip(self.recorders, self.learner_envs)):
            snap = dict(meta["envs"][j], actions=arrays[f"env_{j}_actions"])
            obs = recorder.restore(snap, outer)
            if obs is None or not np.array_equal(np.asarray(obs, dtype=last_obs.dtype), last_obs[j]):
                raise ValueError(f"task {self.indices[j]}: the replayed episode does not reach the saved observation")
        for j, ((index, params), saved) in enumerate(zip(self.tasks, meta["rollout_envs"])):
            env, _ = self._rollout_env(index, params)
            env.restore(saved["recorder"])
            self.rollout_envs.append((env, chunk_store.generator_from_state(saved["rng"])))
        buf = model.replay_buffer
        cap = int(buf.buffer_size)
        for first, slice_ in self.store.replay_slices():
            rows = (first + np.arange(len(next(iter(slice_.values()))))) % cap
            for name, values in slice_.items():
                if name not in _REPLAY_FIELDS:
                    raise ValueError(f"unexpected replay array {name!r}")
                getattr(buf, name)[rows] = values
        buf.pos, buf.full = done % cap, done >= cap
        model.set_parameters(learner["params"], exact_match=True, device=self.config.device)
        if learner.get("log_ent_coef") is not None:
            with torch.no_grad():
                model.log_ent_coef.copy_(learner["log_ent_coef"].to(model.log_ent_coef.device))
        model.num_timesteps = int(meta["num_timesteps"])
        model._episode_num = int(meta["episode_num"])
        model._n_updates = int(meta["n_updates"])
        model._current_progress_remaining = float(meta["progress_remaining"])
        model._last_obs = last_obs.copy()
        model._last_episode_starts = arrays["last_episode_starts"].copy()
        # RNGs last: building the model above drew from them.
        np.random.set_state(chunk_store.legacy_state_from_json(meta["numpy_global"], arrays["numpy_global_keys"]))
        version, state, gauss = meta["python_random"]
        random.setstate((version, tuple(state), gauss))
        model.action_space._np_random = chunk_store.generator_from_state(meta["action_space_rng"])
        torch.set_rng_state(learner["torch_rng"])
        if learner.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(learner["cuda_rng"])
        self.done = self.replay_saved = done


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
