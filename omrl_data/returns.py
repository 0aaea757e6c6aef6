"""Monte Carlo returns inside stored episodes."""
from __future__ import annotations

import numpy as np


def mc_returns(
    rewards: np.ndarray,
    episode_index: np.ndarray,
    terminated: np.ndarray,
    gamma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Return-to-go within each episode, and the bootstrap discount of non-terminal ends.

    rewards, episode_index, terminated: ``[n]`` rows of one task in chronological order; an
    episode is a maximal run of equal ``episode_index``. Returns ``(mc_returns [n] float32,
    bootstrap_discount [n] float32)`` with ``mc_returns[t] = sum_{j>=t} gamma^(j-t) r_j`` over the
    rest of t's episode, and ``bootstrap_discount[t] = gamma^(T-t)`` when the episode's last row
    (index T-1) is not terminal (time-limit truncation, or the stream ended mid-episode), else 0,
    so that ``mc_returns[t] + bootstrap_discount[t] * V(s_T)`` is the bootstrapped target.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    terminated = np.asarray(terminated, dtype=bool)
    n = rewards.shape[0]
    returns = np.zeros(n, dtype=np.float64)
    discount = np.zeros(n, dtype=np.float64)
    if n == 0:
        return returns.astype(np.float32), discount.astype(np.float32)
    ends = np.append(np.flatnonzero(np.diff(np.asarray(episode_index)) != 0), n - 1)
    start = 0
    for end in ends:
        acc = 0.0
        for k in range(end, start - 1, -1):
            acc = rewards[k] + gamma * acc
            returns[k] = acc
        if not terminated[end]:
            length = end + 1 - start
            discount[start : end + 1] = gamma ** (length - np.arange(length))
        start = end + 1
    return returns.astype(np.float32), discount.astype(np.float32)
