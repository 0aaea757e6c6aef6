"""The task envs on real steps: Gymnasium's checker, reward formulas against the env's own state,
tasks that change the MDP, exact restoration of model values, determinism and time limits."""
from __future__ import annotations

import math
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from omrl_data.tasks import family_names, get_family


def _actions(env, n, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = env.action_space.low, env.action_space.high
    return [rng.uniform(lo, hi).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("name", family_names())
def test_gymnasium_env_checker_passes(name):
    fam = get_family(name)
    env = fam.make_env(fam.sample_tasks(min(2, fam.max_tasks or 2), seed=0).params[-1])
    # The checker warns about unbounded Box observations, as for Gymnasium's own MuJoCo envs;
    # it raises on real violations (spaces, dtypes, reset/step signatures, seeding determinism).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_render_check=True)


def _cheetah_steps(name, params, n=30):
    """(reward, v_x computed from qpos, action) on ``n`` real steps."""
    env = get_family(name).make_env(params)
    env.reset(seed=0)
    u = env.unwrapped
    out = []
    for a in _actions(env, n):
        x0 = float(u.data.qpos[0])
        _, r, term, trunc, info = env.step(a)
        v = (float(u.data.qpos[0]) - x0) / u.dt
        assert not term
        out.append((r, v, a, info))
    return out


def test_cheetah_vel_reward_formula():
    steps = _cheetah_steps("cheetah_vel", {"target_velocity": 1.5})
    for r, v, a, info in steps:
        assert r == pytest.approx(-abs(v - 1.5) - 0.05 * float(np.sum(a.astype(np.float64) ** 2)), abs=1e-6)
        assert info["x_velocity"] == pytest.approx(v)


def test_cheetah_dir_reward_formula_and_direction_changes_reward():
    fwd = _cheetah_steps("cheetah_dir", {"direction": 1})
    bwd = _cheetah_steps("cheetah_dir", {"direction": -1})
    for (r1, v1, a, _), (r2, v2, _, _) in zip(fwd, bwd):
        ctrl = 0.05 * float(np.sum(a.astype(np.float64) ** 2))
        assert v1 == pytest.approx(v2)  # same actions, same seed: same motion
        assert r1 == pytest.approx(v1 - ctrl, abs=1e-6) and r2 == pytest.approx(-v1 - ctrl, abs=1e-6)
    assert sum(r for r, *_ in fwd) != pytest.approx(sum(r for r, *_ in bwd))


def test_ant_dir_reward_and_termination_from_state():
    fam = get_family("ant_dir")
    theta = 2.0
    env = fam.make_env({"goal_angle": theta})
    env.reset(seed=1)
    u = env.unwrapped
    rewards = []
    for a in _actions(env, 40, seed=1):
        xy0 = u.data.body("torso").xpos[:2].copy()
        _, r, term, _, info = env.step(a)
        v = (u.data.body("torso").xpos[:2] - xy0) / u.dt
        expected = v @ np.array([math.cos(theta), math.sin(theta)]) - 0.5 * np.sum(a.astype(np.float64) ** 2) + 1.0
        assert r == pytest.approx(expected, abs=1e-6)
        assert info["reward_contact"] == 0.0
        z = u.data.qpos[2]
        assert term == (not (0.2 <= z <= 1.0 and np.all(np.isfinite(u.state_vector()))))
        rewards.append(r)
        if term:
            break
    # Another direction, same actions and seed: different rewards.
    env2 = fam.make_env({"goal_angle": theta + 2.5})
    env2.reset(seed=1)
    r2 = [env2.step(a)[1] for a in _actions(env2, len(rewards), seed=1)]
    assert not np.allclose(rewards, r2)


@pytest.mark.parametrize("name", ["walker_params", "hopper_params"])
def test_physics_reward_and_termination_from_state(name):
    fam = get_family(name)
    env = fam.make_env(fam.sample_tasks(1, seed=3).params[0])
    u = env.unwrapped
    assert u.dt == pytest.approx(0.016)
    env.reset(seed=0)
    terminated_once = False
    for a in _actions(env, 150, seed=2):
        x0 = float(u.data.qpos[0])
        _, r, term, _, _ = env.step(a)
        v = (float(u.data.qpos[0]) - x0) / u.dt
        assert r == pytest.approx(v + 1.0 - 1e-3 * float(np.sum(a.astype(np.float64) ** 2)), abs=1e-6)
        z, angle = u.data.qpos[1], u.data.qpos[2]
        if name == "walker_params":
            healthy = 0.8 < z < 2.0 and -1.0 < angle < 1.0
        else:
            s = u.state_vector()[2:]
            healthy = bool(np.all(np.abs(s) < 100)) and z > 0.7 and abs(angle) < 0.2
        assert term == (not healthy)
        if term:
            terminated_once = True
            break
    assert terminated_once  # random actions topple both robots within 150 steps


@pytest.mark.parametrize("name", ["walker_params", "hopper_params"])
def test_physics_tasks_change_dynamics_and_switching_back_is_exact(name):
    fam = get_family(name)
    t = fam.sample_tasks(2, seed=0)
    env = fam.make_env(t.params[0])
    u = env.unwrapped
    fields = ("body_mass", "body_inertia", "dof_damping", "geom_friction")
    default_env = fam.make_env().unwrapped
    for f, base in zip(fields, (1.5, 1.5, 1.3, 1.5)):
        expected = getattr(default_env.model, f) * base ** np.asarray(t.params[0][f"{f}_log_scale"])
        assert np.array_equal(getattr(u.model, f), expected)
    first = {f: getattr(u.model, f).copy() for f in fields}
    actions = _actions(env, 25, seed=4)

    def rollout():
        obs = [env.reset(seed=0)[0]]
        for a in actions:
            obs.append(env.step(a)[0])
        return np.array(obs)

    traj_a = rollout()
    for _ in range(3):  # switching repeatedly must not compound
        u.set_task(t.params[1])
    traj_b = rollout()
    assert not np.allclose(traj_a, traj_b)
    u.set_task(t.params[0])
    for f in fields:
        assert np.array_equal(getattr(u.model, f), first[f])
    assert np.array_equal(rollout(), traj_a)
    u.set_task(fam.default_params())
    for f in fields:
        assert np.array_equal(getattr(u.model, f), getattr(default_env.model, f))
    u.set_task(t.params[1])
    copy = pickle.loads(pickle.dumps(u))  # a copy (e.g. for a subprocess) keeps the current task
    assert copy.task == t.params[1] and np.array_equal(copy.model.body_mass, u.model.body_mass)


def test_point_robot_sparse_reward_and_dense_info():
    fam = get_family("point_robot_sparse")
    theta = math.pi / 3
    env = fam.make_env({"goal_angle": theta})
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs, [0.0, 0.0])
    goal = np.array([math.cos(theta), math.sin(theta)])
    s = np.zeros(2)
    seen_inside = seen_outside = False
    for t in range(20):
        # Steer at the goal (the env clips the big action), then walk away from it.
        a = (3 * (goal - s)).astype(np.float32) if t < 12 else np.array([-0.1, 0.0], dtype=np.float32)
        obs, r, term, trunc, info = env.step(a)
        s = s + np.clip(a, -0.1, 0.1)
        d = np.linalg.norm(s - goal)
        assert np.allclose(obs, s, atol=1e-6)
        assert info["dense_reward"] == pytest.approx(-d)
        assert r == pytest.approx(1.0 - d if d <= 0.2 else 0.0)
        seen_inside |= d <= 0.2
        seen_outside |= d > 0.2
        assert not term and trunc == (t == 19)  # 20-step horizon
    assert seen_inside and seen_outside
    other = fam.make_env({"goal_angle": 0.0})
    other.reset(seed=0)
    rewards = [other.step(np.array([0.3, 0.3], dtype=np.float32))[1] for _ in range(12)]
    assert sum(rewards) == 0.0  # moving up-right never nears the goal at (1, 0)


def test_bandit_pulls_argmax_arm_with_its_probability():
    fam = get_family("bandit")
    env = fam.make_env({"arm_probs": [0.0, 0.3, 1.0, 0.0, 0.0]})
    env.reset(seed=0)
    a = np.array([-1, -1, 0.5, -1, -1], dtype=np.float32)
    obs, r, term, trunc, info = env.step(a)
    assert info["arm"] == 2 and r == 1.0 and np.array_equal(obs, [1.0]) and not term
    for _ in range(8):
        _, r, _, trunc, info = env.step(np.array([0.9, -1, -1, -1, -1], dtype=np.float32))
        assert info["arm"] == 0 and r == 0.0 and not trunc
    assert env.step(a)[3]  # 10th pull truncates
    u = env.unwrapped
    u.reset(seed=1)
    pulls = [u.step(np.array([0, 1, 0, 0, 0], dtype=np.float32))[1] for _ in range(4000)]
    assert np.mean(pulls) == pytest.approx(0.3, abs=0.03)
    u.set_task({"arm_probs": [0.0, 0.9, 0.0, 0.0, 0.0]})
    pulls = [u.step(np.array([0, 1, 0, 0, 0], dtype=np.float32))[1] for _ in range(4000)]
    assert np.mean(pulls) == pytest.approx(0.9, abs=0.03)


@pytest.mark.parametrize("name", family_names())
def test_reset_seed_makes_rollouts_repeat_and_reset_options_switch_task(name):
    fam = get_family(name)
    tasks = fam.sample_tasks(min(2, fam.max_tasks or 2), seed=0).params
    env = fam.make_env(tasks[0])
    actions = _actions(env, 15, seed=5)

    def rollout(**reset_kw):
        obs, _ = env.reset(seed=11, **reset_kw)
        out = [np.asarray(obs, dtype=np.float64)]
        rewards = []
        for a in actions:
            o, r, term, trunc, info = env.step(a)
            out.append(np.asarray(o, dtype=np.float64))
            # The point robot's sparse reward is 0 far from any goal; its dense reward shows the task.
            rewards.append(info.get("dense_reward", r))
            if term or trunc:
                break
        return np.concatenate(out), np.array(rewards)

    o1, r1 = rollout()
    o2, r2 = rollout()
    assert np.array_equal(o1, o2) and np.array_equal(r1, r2)
    o3, r3 = rollout(options={"task": tasks[1]})
    assert env.unwrapped.task == tasks[1]
    assert not (np.array_equal(o1, o3) and np.array_equal(r1, r3))


def test_mujoco_horizon_truncates_at_200():
    env = get_family("cheetah_vel").make_env({"target_velocity": 1.0})
    env.reset(seed=0)
    zero = np.zeros(6, dtype=np.float32)
    for t in range(200):
        _, _, term, trunc, _ = env.step(zero)
        assert not term and trunc == (t == 199)


def test_make_env_passes_gymnasium_kwargs():
    env = get_family("walker_params").make_env(None, frame_skip=4)
    assert env.unwrapped.dt == pytest.approx(0.008)
    env = gym.make("omrl/AntDir-v0", task={"goal_angle": 1.0}, max_episode_steps=7)
    env.reset(seed=0)
    assert [env.step(np.zeros(8, dtype=np.float32))[3] for _ in range(7)][-1]


def test_cheetah_model_equals_gymnasiums_without_the_mujoco_warning(tmp_path, monkeypatch):
    """The cheetah model is compiled without the deprecated settotalmass (no MUJOCO_LOG.TXT) and
    is identical to HalfCheetah-v5's, so the physics is Gymnasium's."""
    monkeypatch.chdir(tmp_path)
    ours = get_family("cheetah_vel").make_env({"target_velocity": 1.0}).unwrapped.model
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    plain = gym.make("HalfCheetah-v5").unwrapped.model
    fields = [n for n in dir(plain) if not n.startswith("_") and isinstance(getattr(plain, n), np.ndarray)]
    assert len(fields) > 50
    for name in fields:
        assert np.array_equal(getattr(ours, name), getattr(plain, name)), name
