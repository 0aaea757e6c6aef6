"""Tiny real collections with `collect_shard` in every mode: schema, counts, episode boundaries,
Monte Carlo returns (recomputed here), checkpoint policies, resume, determinism, learning."""
from __future__ import annotations

import json

import numpy as np
import pytest

from omrl_data.collection.config import CollectConfig, SacConfig
from omrl_data.collection.learners import collect_shard
from omrl_data.collection.policies import SavedPolicy, list_checkpoints
from omrl_data.errors import BadInput
from omrl_data.schema import FIELDS, SOURCE_CHECKPOINT, SOURCE_RANDOM, SOURCE_REPLAY
from omrl_data.store import zarr_io
from omrl_data.tasks import get_family

@pytest.fixture(autouse=True)
def one_torch_thread():
    """As collection workers run: two torch threads on the shared 2-core machine ran 10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_SAC = SacConfig(net_arch=(16, 16), batch_size=32, learning_starts=50)


def shard_of(family: str, n: int, seed: int = 0) -> list[tuple[int, dict]]:
    return list(enumerate(get_family(family).sample_tasks(n, seed=seed).params))


def config(family: str, n: int, **kw) -> CollectConfig:
    kw.setdefault("sac", TINY_SAC)
    return CollectConfig(family=family, tasks=n, **kw)


def independent_mc_returns(rewards, episode_index, terminated, gamma):
    """Return-to-go and bootstrap discount, written from the definition (not via omrl_data.returns)."""
    n = len(rewards)
    returns = np.zeros(n)
    discount = np.zeros(n)
    for t in range(n):
        end = t
        while end + 1 < n and episode_index[end + 1] == episode_index[t]:
            end += 1
        returns[t] = sum(gamma ** (j - t) * float(rewards[j]) for j in range(t, end + 1))
        discount[t] = 0.0 if terminated[end] else gamma ** (end + 1 - t)
    return returns, discount


def check_task_arrays(a: dict, family: str, gamma: float) -> None:
    """Schema, episode structure and Monte Carlo returns of one stored task."""
    fam = get_family(family)
    n = len(a["rewards"])
    assert n > 0
    for f in FIELDS:
        assert f.name in a, f.name
        assert a[f.name].dtype == f.dtype, f.name
        assert a[f.name].shape[0] == n
    assert a["observations"].shape == (n, fam.obs_dim) == a["next_observations"].shape
    assert a["actions"].shape == (n, fam.act_dim)
    # Episodes: contiguous runs, indices 0, 1, 2, ... steps 0..T-1, only the last row ends it.
    ep = a["episode_index"]
    assert ep[0] == 0 and np.all(np.diff(ep) >= 0) and np.all(np.diff(ep) <= 1)
    ends = a["terminated"] | a["truncated"]
    last_of_episode = np.r_[np.diff(ep) != 0, True]
    np.testing.assert_array_equal(ends, last_of_episode)
    for e in np.unique(ep):
        rows = np.flatnonzero(ep == e)
        np.testing.assert_array_equal(a["step_in_episode"][rows], np.arange(len(rows)))
        assert len(rows) <= fam.horizon
        # Within an episode the next observation is the following row's observation.
        np.testing.assert_array_equal(a["next_observations"][rows[:-1]], a["observations"][rows[1:]])
    assert not np.any(a["terminated"] & a["truncated"])
    returns, discount = independent_mc_returns(a["rewards"], ep, a["terminated"], gamma)
    np.testing.assert_allclose(a["mc_returns"], returns, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a["mc_bootstrap_discount"], discount, rtol=1e-5, atol=1e-6)


def test_random_point_robot(tmp_path):
    calls = []
    cfg = config("point_robot_sparse", 2, mode="random", steps_per_task=130, gamma=0.9)
    stats = collect_shard(cfg, shard_of("point_robot_sparse", 2), tmp_path, report=lambda i, k: calls.append((i, k)))
    assert sorted(stats) == [0, 1]
    for i in (0, 1):
        a = zarr_io.read_task_group(tmp_path, i)
        check_task_arrays(a, "point_robot_sparse", 0.9)
        assert len(a["rewards"]) == 130 and stats[i]["transitions"] == 130
        assert np.all(a["source"] == SOURCE_RANDOM) and np.all(a["checkpoint_step"] == -1)
        np.testing.assert_array_equal(a["collect_step"], np.arange(130))
        # 6 full episodes of 20 steps ended by the time limit, then one cut at 10 steps by the budget.
        assert stats[i]["episodes"] == 7 and a["truncated"].sum() == 7
        starts = np.flatnonzero(a["step_in_episode"] == 0)
        np.testing.assert_array_equal(a["observations"][starts], 0.0)  # the robot starts at the origin
        assert np.all(np.abs(a["actions"]) <= 0.1)
    assert (0, 130) in calls and (1, 130) in calls
    # Different tasks get different action streams.
    assert not np.array_equal(zarr_io.read_task_group(tmp_path, 0)["actions"], zarr_io.read_task_group(tmp_path, 1)["actions"])


def test_shared_with_checkpoint_rollouts(tmp_path):
    steps, every, rollouts = 240, 100, 2
    cfg = config("point_robot_sparse", 2, mode="shared", steps_per_task=steps, checkpoint_every=every, checkpoint_rollouts=rollouts)
    stats = collect_shard(cfg, shard_of("point_robot_sparse", 2), tmp_path)
    horizon = get_family("point_robot_sparse").horizon
    for i in (0, 1):
        a = zarr_io.read_task_group(tmp_path, i)
        check_task_arrays(a, "point_robot_sparse", cfg.gamma)
        n_ckpt_rows = 2 * rollouts * horizon  # checkpoints at 100 and 200
        assert len(a["rewards"]) == steps + n_ckpt_rows == stats[i]["transitions"]
        # Row order: the replay stream first, then the rollouts of each checkpoint by step.
        np.testing.assert_array_equal(a["source"][:steps], SOURCE_REPLAY)
        np.testing.assert_array_equal(a["collect_step"][:steps], np.arange(steps))
        np.testing.assert_array_equal(a["checkpoint_step"][:steps], -1)
        tail = slice(steps, None)
        np.testing.assert_array_equal(a["source"][tail], SOURCE_CHECKPOINT)
        np.testing.assert_array_equal(a["checkpoint_step"][tail], np.repeat([100, 200], rollouts * horizon))
        np.testing.assert_array_equal(a["collect_step"][tail], a["checkpoint_step"][tail])
        # Stored observations are the env's (2-D), without the task features the learner sees.
        assert a["observations"].shape[1] == 2
        # The checkpoints: npz + json per step, loadable without pickle, actions within bounds.
        ckpts = list_checkpoints(tmp_path, i)
        assert [p.name for p in ckpts] == ["step_00000100.npz", "step_00000200.npz"]
        spec = json.loads(ckpts[0].with_suffix(".json").read_text())
        assert spec["obs_dim"] == 2 and spec["hidden"] == [16, 16] and spec["learner"] == "shared"
        np.testing.assert_allclose(spec["task_features"], get_family("point_robot_sparse").features(shard_of("point_robot_sparse", 2)[i][1]), rtol=1e-6)
        policy = SavedPolicy.load(ckpts[-1])
        acts = policy.act(a["observations"][:50], np.random.default_rng(0))
        assert acts.shape == (50, 2) and np.all(np.abs(acts) <= 0.1 + 1e-6)
    assert not list((tmp_path / "policies").glob(".tmp-*"))


@pytest.mark.parametrize("features", [[], [0.3, -0.7]])
def test_saved_policy_matches_sb3_actor(features):
    """The numpy actor of a checkpoint computes what SB3's actor computes on [obs, features]."""
    import torch
    from stable_baselines3 import SAC

    from omrl_data.collection.policies import actor_arrays, actor_spec
    from omrl_data.collection.recorder import TaskFeatures

    env = get_family("cheetah_vel").make_env({"target_velocity": 1.0})
    learner_env = TaskFeatures(env, np.array(features, np.float32)) if features else env
    model = SAC("MlpPolicy", learner_env, policy_kwargs={"net_arch": [32, 16]}, seed=3, device="cpu")
    spec = actor_spec(model.actor, 17, np.array(features), env.action_space.low, env.action_space.high, 0, "shared")
    policy = SavedPolicy(actor_arrays(model.actor), spec)
    obs = np.random.default_rng(0).standard_normal((7, 17)).astype(np.float32)
    full = np.concatenate([obs, np.broadcast_to(np.array(features, np.float32), (7, len(features)))], axis=1)
    with torch.no_grad():
        mean, log_std, _ = model.actor.get_action_dist_params(torch.as_tensor(full))
        expected = model.policy.unscale_action(torch.tanh(mean).numpy())
    ours_mean, ours_log_std = policy.mean_and_log_std(obs)
    np.testing.assert_allclose(ours_mean, mean.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours_log_std, log_std.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(policy.act(obs, np.random.default_rng(0), deterministic=True), expected, rtol=1e-4, atol=1e-5)
    # Stochastic actions: tanh(mean + std * noise), within the action bounds.
    acts = policy.act(np.repeat(obs[:1], 2000, 0), np.random.default_rng(1))
    assert np.all(np.abs(acts) <= 1.0) and acts.std(0).min() > 0.01


def test_per_task_mode_and_resume(tmp_path):
    cfg = config("point_robot_sparse", 2, mode="per-task", steps_per_task=120, checkpoint_every=60, checkpoint_rollouts=1)
    shard = shard_of("point_robot_sparse", 2)
    collect_shard(cfg, shard[:1], tmp_path)  # an "interrupted" run that finished task 0 only
    files0 = {p: p.read_bytes() for p in (tmp_path / "data.zarr" / "tasks" / "0000").rglob("*") if p.is_file()}
    calls = []
    stats = collect_shard(cfg, shard, tmp_path, report=lambda i, k: calls.append((i, k)))
    assert stats[0]["skipped"] and not stats[1]["skipped"]
    assert stats[0]["transitions"] == stats[1]["transitions"] == 120 + 2 * 20
    assert {p: p.read_bytes() for p in files0} == files0  # the finished task is untouched
    assert (0, 120) in calls and (1, 120) in calls
    for i in (0, 1):
        a = zarr_io.read_task_group(tmp_path, i)
        check_task_arrays(a, "point_robot_sparse", cfg.gamma)
        spec = json.loads(list_checkpoints(tmp_path, i)[0].with_suffix(".json").read_text())
        assert spec["task_features"] == [] and spec["learner"] == "per-task"


def test_seeded_collections_repeat_exactly(tmp_path):
    shard = shard_of("point_robot_sparse", 2)
    for mode in ("random", "shared"):
        cfg = config("point_robot_sparse", 2, mode=mode, steps_per_task=100, seed=7)
        a = collect_shard(cfg, shard, tmp_path / f"{mode}-a")
        b = collect_shard(cfg, shard, tmp_path / f"{mode}-b")
        assert a.keys() == b.keys()
        for i in (0, 1):
            x, y = zarr_io.read_task_group(tmp_path / f"{mode}-a", i), zarr_io.read_task_group(tmp_path / f"{mode}-b", i)
            for k in x:
                np.testing.assert_array_equal(x[k], y[k], err_msg=f"{mode} {k}")
        other = collect_shard(config("point_robot_sparse", 2, mode=mode, steps_per_task=100, seed=8), shard, tmp_path / f"{mode}-c")
        assert other
        assert not np.array_equal(zarr_io.read_task_group(tmp_path / f"{mode}-c", 0)["actions"], zarr_io.read_task_group(tmp_path / f"{mode}-a", 0)["actions"])


@pytest.mark.parametrize("mode", ["random", "shared", "per-task"])
def test_cheetah_vel_every_mode(tmp_path, mode):
    steps = 250  # one 200-step episode ended by the time limit, one cut at 50 steps by the budget
    cfg = config("cheetah_vel", 2, mode=mode, steps_per_task=steps, checkpoint_every=250, checkpoint_rollouts=1)
    stats = collect_shard(cfg, shard_of("cheetah_vel", 2), tmp_path)
    sac = mode != "random"
    for i in (0, 1):
        a = zarr_io.read_task_group(tmp_path, i)
        check_task_arrays(a, "cheetah_vel", cfg.gamma)
        assert len(a["rewards"]) == steps + (200 if sac else 0) == stats[i]["transitions"]
        replay = a["source"] != SOURCE_CHECKPOINT
        assert a["truncated"][replay].sum() == 2 and not a["terminated"].any()
        np.testing.assert_array_equal(a["step_in_episode"][replay][[199, 200, 249]], [199, 0, 49])
        # Bootstrap discount: gamma^(T-t) for both truncated episodes (no terminal states here).
        assert a["mc_bootstrap_discount"][199] == pytest.approx(cfg.gamma)
        assert a["mc_bootstrap_discount"][200] == pytest.approx(cfg.gamma**50, rel=1e-5)
        assert np.all(np.isfinite(a["rewards"])) and np.all(a["rewards"] <= 0)  # -|v - v*| - ctrl cost
        if sac:
            assert len(list_checkpoints(tmp_path, i)) == 1


def test_bad_input(tmp_path):
    shard = shard_of("point_robot_sparse", 1)
    with pytest.raises(BadInput, match="mode"):
        collect_shard(config("point_robot_sparse", 1, mode="greedy", steps_per_task=10), shard, tmp_path)
    with pytest.raises(BadInput, match="positive"):
        collect_shard(config("point_robot_sparse", 1, mode="random", steps_per_task=-5), shard, tmp_path)
    with pytest.raises(BadInput, match="updates per step"):
        collect_shard(config("point_robot_sparse", 1, steps_per_task=10, sac=SacConfig(updates_per_step=0)), shard, tmp_path)
    assert not zarr_io.task_group_exists(tmp_path, 0)


def test_shared_sac_data_improves(tmp_path):
    """The learner's own stream gets better: mean return of the last quarter above the first."""
    # 800 steps per task (40 episodes); a fast learner: lr 3e-3, 2 gradient steps per vector step.
    # With seeds 0, 1 and 2 the last quarter averaged 7.2-8.6 and the first 0.0.
    sac = SacConfig(net_arch=(32, 32), batch_size=64, learning_starts=100, learning_rate=3e-3, updates_per_step=2)
    cfg = config("point_robot_sparse", 2, mode="shared", steps_per_task=800, seed=0, sac=sac)
    collect_shard(cfg, shard_of("point_robot_sparse", 2, seed=0), tmp_path)
    for i in (0, 1):
        a = zarr_io.read_task_group(tmp_path, i)
        returns = np.add.reduceat(a["rewards"].astype(np.float64), np.flatnonzero(a["step_in_episode"] == 0))
        quarter = len(returns) // 4
        first, last = returns[:quarter].mean(), returns[-quarter:].mean()
        assert last > first + 2.0, (i, first, last)  # sparse reward: ~0 at first, near the goal later


def test_checkpoints_without_rollouts_and_beyond_budget(tmp_path):
    shard = shard_of("point_robot_sparse", 1)
    cfg = config("point_robot_sparse", 1, mode="shared", steps_per_task=100, checkpoint_every=60, checkpoint_rollouts=0)
    stats = collect_shard(cfg, shard, tmp_path / "a")
    assert stats[0]["transitions"] == 100  # policies saved, no rollout rows
    assert [p.name for p in list_checkpoints(tmp_path / "a", 0)] == ["step_00000060.npz"]
    cfg = config("point_robot_sparse", 1, mode="per-task", steps_per_task=100, checkpoint_every=500, checkpoint_rollouts=3)
    stats = collect_shard(cfg, shard, tmp_path / "b")
    assert stats[0]["transitions"] == 100 and list_checkpoints(tmp_path / "b", 0) == []
    assert not list((tmp_path / "b" / "policies").glob("*")) if (tmp_path / "b" / "policies").exists() else True
