"""Task sampling and splits: deterministic by seed, disjoint and covering, per-kind semantics."""
from __future__ import annotations

import math

import numpy as np
import pytest

from omrl_data.errors import BadInput
from omrl_data.tasks import family_names, get_family
from omrl_data.tasks.splits import parse_index_list, parse_range, resplit
from omrl_data.tasks.table import TaskTable


def _check_partition(table: TaskTable) -> None:
    train, test = set(table.indices("train")), set(table.indices("test"))
    if table.split_args.get("test_equals_train"):
        assert train == test == set(range(len(table)))
    else:
        assert train and test and not train & test
        assert train | test == set(range(len(table)))


@pytest.mark.parametrize("name", family_names())
def test_sampling_is_deterministic_by_seed(name):
    fam = get_family(name)
    n = min(8, fam.max_tasks or 8)
    a, b = fam.sample_tasks(n, seed=3), fam.sample_tasks(n, seed=3)
    assert a.params == b.params and a.split == b.split and np.array_equal(a.features, b.features)
    _check_partition(a)
    if name != "cheetah_dir":  # its two tasks do not depend on the seed
        assert fam.sample_tasks(n, seed=4).params != a.params


def test_ant_dir_50_tasks_split_45_5():
    t = get_family("ant_dir").sample_tasks(50, seed=0)
    assert len(t) == 50 and len(t.indices("train")) == 45 and len(t.indices("test")) == 5
    _check_partition(t)
    angles = np.array([p["goal_angle"] for p in t.params])
    assert angles.min() >= 0 and angles.max() < 2 * math.pi


def test_split_never_shifts_the_tasks():
    fam = get_family("cheetah_vel")
    a = fam.sample_tasks(20, seed=7)
    b = fam.sample_tasks(20, seed=7, split="random", test_fraction=0.3)
    c = fam.sample_tasks(20, seed=7, split="interpolation", every=4)
    assert a.params == b.params == c.params
    assert len(b.indices("test")) == 6


def test_random_split_at_least_one_test_and_one_train():
    fam = get_family("point_robot_sparse")
    assert len(fam.sample_tasks(3, seed=0).indices("test")) == 1  # round(0.3) = 0 -> at least one
    two = fam.sample_tasks(2, seed=0, test_fraction=0.9)
    assert len(two.indices("train")) == 1 and len(two.indices("test")) == 1
    one = fam.sample_tasks(1, seed=0)
    assert one.split_args["test_equals_train"] and list(one.indices("test")) == [0]


def test_cheetah_dir_is_two_tasks_with_train_equal_test():
    fam = get_family("cheetah_dir")
    t = fam.sample_tasks(2, seed=9)
    assert [p["direction"] for p in t.params] == [1.0, -1.0]
    assert list(t.indices("train")) == [0, 1] and list(t.indices("test")) == [0, 1]
    back = TaskTable.from_dict(t.to_dict())  # the train = test meaning survives a round trip
    assert list(back.indices("test")) == [0, 1]
    with pytest.raises(BadInput, match="exactly 2 tasks"):
        fam.sample_tasks(3)
    explicit = fam.sample_tasks(2, split="explicit", test_tasks=[1])
    assert list(explicit.indices("train")) == [0] and list(explicit.indices("test")) == [1]
    with pytest.raises(BadInput, match="train = test"):
        fam.sample_tasks(2, split="extrapolation")


def test_grids_are_the_papers():
    vel = get_family("cheetah_vel").sample_tasks(40, grid=True)
    assert np.allclose([p["target_velocity"] for p in vel.params], np.linspace(0.075, 3.0, 40))
    pr = get_family("point_robot_sparse").sample_tasks(5, grid=True)
    assert np.allclose([p["goal_angle"] for p in pr.params], np.linspace(0, math.pi, 5))
    with pytest.raises(BadInput, match="no fixed task grid"):
        get_family("ant_dir").sample_tasks(5, grid=True)


def test_interpolation_holds_out_inner_tasks_every_k():
    fam = get_family("ant_dir")
    t = fam.sample_tasks(50, seed=2, split="interpolation")
    _check_partition(t)
    keys = np.array([p["goal_angle"] for p in t.params])
    order = np.argsort(keys)
    rank = np.empty(50, int)
    rank[order] = np.arange(50)
    assert sorted(rank[t.indices("test")].tolist()) == [5, 15, 25, 35, 45]
    train_keys = keys[t.indices("train")]
    assert np.all((keys[t.indices("test")] > train_keys.min()) & (keys[t.indices("test")] < train_keys.max()))


def test_extrapolation_holds_out_a_parameter_range():
    t = get_family("cheetah_vel").sample_tasks(40, grid=True, split="extrapolation")
    v = np.array([p["target_velocity"] for p in t.params])
    assert np.all(v[t.indices("train")] < 1.0) and np.all(v[t.indices("test")] >= 1.0)
    assert len(t.indices("train")) == 13 and len(t.indices("test")) == 27  # MACAW's OOD split
    assert t.split_args["train_range"] == [0.0, 1.0]
    w = get_family("walker_params").sample_tasks(30, seed=0, split="extrapolation", train_range=(-3, 0.0))
    means = np.array([np.mean(p["body_mass_log_scale"][1:]) for p in w.params])
    assert np.all(means[w.indices("test")] >= 0.0) and np.all(means[w.indices("train")] < 0.0)
    with pytest.raises(BadInput, match="leaves no test task"):
        get_family("cheetah_vel").sample_tasks(10, split="extrapolation", train_range=(0, 3.1))


def test_explicit_split_and_its_errors():
    fam = get_family("cheetah_vel")
    t = fam.sample_tasks(40, grid=True, split="explicit", test_tasks=[2, 7, 15, 23, 26])
    assert t.indices("test").tolist() == [2, 7, 15, 23, 26] and len(t.indices("train")) == 35
    for bad in ([], [40], [0, 1, 2], "2,7"):
        with pytest.raises(BadInput):
            fam.sample_tasks(3 if bad == [0, 1, 2] else 40, split="explicit", test_tasks=bad)
    with pytest.raises(BadInput, match="does not take every"):
        fam.sample_tasks(10, split="random", every=3)
    with pytest.raises(BadInput, match="unknown split"):
        fam.sample_tasks(10, split="loo")


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "4"])
def test_bad_task_counts(n):
    with pytest.raises(BadInput, match="positive integer"):
        get_family("bandit").sample_tasks(n)


def test_resplit_and_parsers():
    t = get_family("point_robot_sparse").sample_tasks(12, grid=True)
    r = resplit(t, "interpolation", every=4)
    assert r.params == t.params and r.split_kind == "interpolation" and r.split_args["every"] == 4
    _check_partition(r)
    assert parse_index_list("2, 7,15") == [2, 7, 15]
    assert parse_range("0,1.5") == (0.0, 1.5)
    with pytest.raises(BadInput):
        parse_index_list("two")
    with pytest.raises(BadInput):
        parse_range("1")
