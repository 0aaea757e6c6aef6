"""Recording the transitions of one task env, and turning them into the stored fields.

`TransitionRecorder` wraps the task env *inside* anything a learner adds (task features, SB3's
vector env with its auto-reset), so it sees the true ``terminated``/``truncated`` flags and the
true final observation of every episode, and the observation without task features.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from omrl_data.returns import mc_returns
from omrl_data.schema import FIELDS_BY_NAME

_GROW = 4096  # initial row capacity; doubles when full


class TransitionRecorder(gym.Wrapper):
    """Records every step of the wrapped env into growing numpy buffers.

    ``seed``: used for the first ``reset`` (instead of any seed the driver passes), so each
    task's env stream is reproducible whoever drives it. ``collect_step`` of a row is the number of steps
    this recorder had recorded before it since the last ``take`` (the learner's env steps on this
    task), unless the driver sets ``collect_step_override`` (checkpoint rollouts: the checkpoint's step).

    ``flush`` hands over the rows recorded so far without ending anything (a learner commits them
    as a chunk); ``snapshot`` / ``restore`` carry the episode in progress into a fresh env: the env's
    RNG state before the episode's reset plus the episode's actions so far, replayed on restore.
    """

    def __init__(self, env: gym.Env, seed: int | None = None, capacity: int = _GROW):
        super().__init__(env)
        self._first_seed = seed
        obs_dim = int(np.prod(env.observation_space.shape))
        act_dim = int(np.prod(env.action_space.shape)) if env.action_space.shape else 1
        self._obs_dim, self._act_dim = obs_dim, act_dim
        self._cap = 0
        self._n = 0
        self._buf: dict[str, np.ndarray] = {}
        self._alloc(max(1, capacity))  # rows preallocated; the buffers double when full
        self._obs: np.ndarray | None = None
        self.episode = 0  # index of the episode in progress
        self.t = 0  # step in the episode in progress
        self.collect_step_override: int | None = None
        self.episodes_done = 0
        self.last_cut = False  # whether the last `take` cut an episode short
        self._offset = 0  # rows handed over by `flush` since the last `take`
        self._episode_start: dict[str, Any] | None = None  # how the episode in progress was reset
        self._episode_actions: list[np.ndarray] = []  # its actions so far, as passed to step

    def _alloc(self, cap: int) -> None:
        shapes = {
            "observations": (cap, self._obs_dim), "actions": (cap, self._act_dim), "rewards": (cap,),
            "next_observations": (cap, self._obs_dim), "terminated": (cap,), "truncated": (cap,),
            "episode_index": (cap,), "step_in_episode": (cap,), "collect_step": (cap,),
        }
        new = {k: np.zeros(s, dtype=FIELDS_BY_NAME[k].dtype) for k, s in shapes.items()}
        for k, old in self._buf.items():
            new[k][: self._n] = old[: self._n]
        self._buf, self._cap = new, cap

    def __len__(self) -> int:
        return self._n

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if self._first_seed is not None:
            # Our seed wins over a driver's (SB3 seeds vector envs by position in the vector), so a
            # task's env stream depends on the task, not on the shard it was collected in.
            seed, self._first_seed = self._first_seed, None
        if seed is not None:
            self._episode_start = {"seed": int(seed)}
        else:
            gen = getattr(self.env.unwrapped, "_np_random", None)
            self._episode_start = {"rng": None if gen is None else gen.bit_generator.state}
        self._episode_start["options"] = options
        self._episode_actions = []
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = np.asarray(obs, dtype=np.float32).reshape(-1)
        self.t = 0
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._episode_actions.append(np.array(action, copy=True))
        if self._n == self._cap:
            self._alloc(2 * self._cap)
        i, b = self._n, self._buf
        b["observations"][i] = self._obs
        b["actions"][i] = np.asarray(action, dtype=np.float32).reshape(-1)
        b["rewards"][i] = reward
        nxt = np.asarray(obs, dtype=np.float32).reshape(-1)
        b["next_observations"][i] = nxt
        b["terminated"][i] = terminated
        b["truncated"][i] = truncated
        b["episode_index"][i] = self.episode
        b["step_in_episode"][i] = self.t
        b["collect_step"][i] = self._offset + i if self.collect_step_override is None else self.collect_step_override
        self._n += 1
        self._obs = nxt
        self.t += 1
        if terminated or truncated:
            self.episode += 1
            self.episodes_done += 1
            self.t = 0
        return obs, reward, terminated, truncated, info

    def take(self) -> dict[str, np.ndarray]:
        """The rows recorded so far (copies), and start a fresh recording.

        An episode still in progress is cut: its last row gets ``truncated`` set (the stream
        ended there, as a time limit would end it), and the next step starts a new episode.
        """
        rows = {k: v[: self._n].copy() for k, v in self._buf.items()}
        self.last_cut = bool(self._n and self.t)
        if self.last_cut:
            rows["truncated"][-1] = True
            self.episode += 1
            self.t = 0
        self._n = 0
        self._offset = 0
        return rows

    def flush(self) -> dict[str, np.ndarray]:
        """The rows recorded since the last ``flush``/``take`` (copies); the recording goes on
        (an episode in progress continues, ``collect_step`` keeps counting)."""
        rows = {k: v[: self._n].copy() for k, v in self._buf.items()}
        self._offset += self._n
        self._n = 0
        return rows

    def snapshot(self) -> dict[str, Any]:
        """What :meth:`restore` needs to continue this recording in a fresh env (JSON-able except
        ``actions``, an array ``[t, act_dim]``). Rows not yet flushed are not part of it."""
        actions = np.stack(self._episode_actions) if self._episode_actions else np.zeros((0, self._act_dim), np.float32)
        if self._episode_start is None:  # never reset: a fresh recorder with the same first seed
            start: dict[str, Any] = {"fresh": True, "seed": self._first_seed}
        elif self.t == 0 and self._episode_actions:
            # The episode ended and nobody has reset since (a rollout env between episodes): the
            # next reset draws from the env's RNG as it is now.
            gen = getattr(self.env.unwrapped, "_np_random", None)
            start = {"rng": None if gen is None else gen.bit_generator.state, "pending": True}
            actions = actions[:0]
        else:  # an episode in progress (or just reset): its reset, then its actions so far
            start = dict(self._episode_start)
        return {
            "start": start,
            "actions": actions,
            "episode": int(self.episode),
            "episodes_done": int(self.episodes_done),
            "offset": int(self._offset + self._n),
            "t": int(self.t),
        }

    def restore(self, snap: dict[str, Any], outer: gym.Env | None = None):
        """Continue the recording ``snap`` (from :meth:`snapshot`) in this fresh recorder.

        The episode in progress is rebuilt by resetting the env as it was reset (same seed, or
        the same RNG state) and replaying its actions through ``outer`` (the env chain the driver
        steps, which wraps this recorder; default: this recorder). Returns the observation
        ``outer`` would return now (None when no episode is in progress)."""
        from omrl_data.collection.chunks import generator_from_state

        outer = self if outer is None else outer
        start = snap["start"]
        obs = None
        if start.get("fresh"):
            self._first_seed = start.get("seed")
        else:
            self._first_seed = None
            if "seed" in start:
                seed = int(start["seed"])
            else:
                seed = None
                if start.get("rng") is not None:
                    self.env.unwrapped._np_random = generator_from_state(start["rng"])
            if not start.get("pending"):
                options = start.get("options")
                if seed is not None:
                    self._first_seed = seed  # the recorder's own first reset
                obs, _ = outer.reset(options=options) if options is not None else outer.reset()
                for action in snap["actions"]:
                    obs, _, terminated, truncated, _ = outer.step(action)
                    if terminated or truncated:
                        raise ValueError("a replayed episode ended early: the env is not deterministic here")
        self._n = 0
        self._offset = int(snap["offset"])
        self.episode = int(snap["episode"])
        self.episodes_done = int(snap["episodes_done"])
        if self.t != int(snap["t"]):
            raise ValueError(f"replayed {self.t} steps of the episode in progress, expected {snap['t']}")
        return obs

    @property
    def mid_episode(self) -> bool:
        return self.t > 0


class TaskFeatures(gym.ObservationWrapper):
    """Appends the task's feature vector ``[F]`` to every observation (what the shared learner sees)."""

    def __init__(self, env: gym.Env, features: np.ndarray):
        super().__init__(env)
        self._features = np.asarray(features, dtype=np.float32).reshape(-1)
        space = env.observation_space
        f = self._features.shape[0]
        self.observation_space = gym.spaces.Box(
            low=np.concatenate([np.broadcast_to(space.low, space.shape).reshape(-1), np.full(f, -np.inf, np.float32)]).astype(np.float32),
            high=np.concatenate([np.broadcast_to(space.high, space.shape).reshape(-1), np.full(f, np.inf, np.float32)]).astype(np.float32),
            dtype=np.float32,
        )

    def observation(self, observation):
        return np.concatenate([np.asarray(observation, dtype=np.float32).reshape(-1), self._features])


class LearnerReward(gym.Wrapper):
    """Gives the learner ``info["dense_reward"]`` when the env provides one (sparse families such as
    point_robot_sparse offer it for exactly this): SAC cannot discover a sparse goal within a small
    budget, and the stored reward stays the env's own (the recorder sits inside this wrapper)."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, info.get("dense_reward", reward), terminated, truncated, info


def finish_task_arrays(segments: list[tuple[dict[str, np.ndarray], int, np.ndarray | int]], gamma: float) -> dict[str, np.ndarray]:
    """Concatenate a task's recorded segments into the stored fields of ``omrl_data.schema``.

    ``segments``: ``(rows from TransitionRecorder.take, source code, checkpoint_step)`` in the
    order they are to be stored; ``checkpoint_step`` is an int or a per-row array. Episode
    indices are renumbered to increase from 0 over the whole task; ``mc_returns`` and
    ``mc_bootstrap_discount`` are computed inside each episode with ``gamma``.
    """
    parts: dict[str, list[np.ndarray]] = {}
    next_episode = 0
    for rows, source, ckpt in segments:
        n = len(rows["rewards"])
        if n == 0:
            continue
        # Renumber to 0..k-1 within the segment (recorders may have started mid-count), then offset.
        _, local = np.unique(rows["episode_index"], return_inverse=True)
        rows = dict(rows)
        rows["episode_index"] = local.astype(np.int64) + next_episode
        next_episode = int(rows["episode_index"][-1]) + 1
        rows["source"] = np.full(n, source, dtype=np.uint8)
        rows["checkpoint_step"] = np.broadcast_to(np.asarray(ckpt, dtype=np.int64), (n,)).copy()
        for k, v in rows.items():
            parts.setdefault(k, []).append(v)
    if not parts:
        raise ValueError("no transitions were recorded")
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["mc_returns"], out["mc_bootstrap_discount"] = mc_returns(out["rewards"], out["episode_index"], out["terminated"], gamma)
    return out


def episode_returns(rewards: np.ndarray, episode_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undiscounted return ``[E]`` and first row ``[E]`` of each episode (runs of equal index)."""
    n = len(rewards)
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, np.diff(episode_index) != 0])
    return np.add.reduceat(np.asarray(rewards, dtype=np.float64), starts), starts


def window_return(rewards: np.ndarray, episode_index: np.ndarray, lo: float, hi: float, drop_last: bool = False) -> float:
    """Mean return of the episodes that start in rows ``[lo*n, hi*n)`` (fractions of the stream).

    ``drop_last``: ignore the last episode (cut short by the end of the stream) unless it is the
    only one. If no episode starts in the window, the episode containing its first row is used.
    """
    n = len(rewards)
    if n == 0:
        return float("nan")
    returns, starts = episode_returns(rewards, episode_index)
    if drop_last and len(starts) > 1:
        n, returns, starts = int(starts[-1]), returns[:-1], starts[:-1]
    a, b = int(lo * n), max(int(lo * n) + 1, int(hi * n))
    sel = (starts >= a) & (starts < b)
    if not sel.any():
        sel = np.zeros(len(starts), dtype=bool)
        sel[np.searchsorted(starts, min(a, n - 1), side="right") - 1] = True
    return float(returns[sel].mean())
