"""The family registry, Gymnasium registration and parameter validation."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import omrl_data
from omrl_data.errors import BadInput
from omrl_data.tasks import family_names, get_family

ALL = ["cheetah_dir", "cheetah_vel", "ant_dir", "walker_params", "hopper_params", "point_robot_sparse", "bandit"]
DIMS = {  # obs_dim, act_dim
    "cheetah_dir": (17, 6), "cheetah_vel": (17, 6), "ant_dir": (27, 8), "walker_params": (17, 6),
    "hopper_params": (11, 3), "point_robot_sparse": (2, 2), "bandit": (1, 5),
}


def test_seven_families_listed():
    assert family_names() == ALL
    assert omrl_data.get_family("ant_dir") is get_family("ant_dir")


def test_unknown_family_names_the_accepted_ones():
    with pytest.raises(BadInput, match="unknown task family 'nope'.*cheetah_dir.*bandit"):
        get_family("nope")


@pytest.mark.parametrize("name", ALL)
def test_gymnasium_id_builds_the_task_env(name):
    fam = get_family(name)
    assert fam.env_id in gym.registry and fam.env_id.startswith("omrl/")
    task = fam.sample_tasks(min(3, fam.max_tasks or 3), seed=5).params[-1]
    env = gym.make(fam.env_id, task=task)
    assert env.unwrapped.task == task
    assert env.observation_space.shape == (DIMS[name][0],) == (fam.obs_dim,)
    assert env.action_space.shape == (DIMS[name][1],) == (fam.act_dim,)
    assert env.spec.max_episode_steps == fam.horizon
    env.close()


@pytest.mark.parametrize("name", ALL)
def test_sampled_params_are_json_and_validate_to_themselves(name):
    import json

    fam = get_family(name)
    table = fam.sample_tasks(min(4, fam.max_tasks or 4), seed=1)
    for p in table.params:
        assert json.loads(json.dumps(p)) == p
        assert fam.validate_params(p) == p
        assert set(p) == set(fam.param_names)
    assert table.features.dtype == np.float32 and np.all(np.isfinite(table.features))


BAD = [
    ("cheetah_dir", {"direction": 0.5}, "direction must be 1 or -1"),
    ("cheetah_dir", {"dir": 1}, "accepted keys: direction"),
    ("cheetah_vel", {"target_velocity": 3.5}, r"target_velocity must be a number in \[0, 3\]"),
    ("cheetah_vel", {"target_velocity": "fast"}, "target_velocity must be a number"),
    ("ant_dir", {"goal_angle": 2 * math.pi}, "goal_angle"),
    ("ant_dir", {"goal_angle": 1.0, "speed": 2}, "unknown speed"),
    ("point_robot_sparse", {"goal_angle": -0.1}, "goal_angle"),
    ("bandit", {"arm_probs": [0.5, 0.5]}, r"arm_probs must be an array of shape \[5\]"),
    ("bandit", {"arm_probs": [0.5, 0.5, 0.5, 0.5, 1.2]}, "entries in"),
    ("walker_params", {"body_mass_log_scale": [0.0] * 8}, "missing body_inertia_log_scale"),
    ("bandit", [0.5] * 5, "must be a dict"),
]


@pytest.mark.parametrize("name,params,match", BAD)
def test_malformed_params_raise_one_line(name, params, match):
    with pytest.raises(BadInput, match=match) as e:
        get_family(name).validate_params(params)
    assert "\n" not in str(e.value)


def test_physics_param_shapes_match_the_models():
    for name in ("walker_params", "hopper_params"):
        fam = get_family(name)
        model = fam.make_env().unwrapped.model
        shapes = fam.shapes()
        for field in ("body_mass", "body_inertia", "dof_damping", "geom_friction"):
            assert getattr(model, field).shape == shapes[f"{field}_log_scale"]
        # The elements the features leave out are exactly those that are zero in the model.
        assert np.all(model.body_mass[0] == 0) and np.all(model.body_inertia[0] == 0)
        assert np.all(model.dof_damping[: fam.n_root_dofs] == 0) and np.all(model.dof_damping[fam.n_root_dofs :] > 0)
        assert np.all(model.body_mass[1:] > 0) and np.all(model.geom_friction > 0)


def test_features_distance_means_similarity():
    ant = get_family("ant_dir")
    f = lambda a: ant.features({"goal_angle": a})  # noqa: E731
    # Angles just either side of 0 are close; opposite directions are far.
    assert np.linalg.norm(f(0.01) - f(2 * math.pi - 0.01)) < 0.05
    assert np.linalg.norm(f(0.0) - f(math.pi)) == pytest.approx(2.0)
    vel = get_family("cheetah_vel")
    assert vel.features({"target_velocity": 3.0}).tolist() == [1.0]
    walker = get_family("walker_params")
    zero = walker.default_params()
    assert np.all(walker.features(zero) == 0) and walker.features(zero).shape == (7 + 21 + 6 + 24,)
