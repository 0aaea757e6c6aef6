"""Reusing collections (``same_recipe``, ``find_dataset``) and the family's default gamma."""
from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.data import app
from omrl_data.cards import collect_command
from omrl_data.collection import CollectConfig, collect, find_dataset, same_recipe
from omrl_data.collection.plan import resume_command
from omrl_data.collection.recipe import recipe
from omrl_data.returns import mc_returns
from omrl_data.slicing import SliceSpec, slice_dataset
from omrl_data.store import catalog, zarr_io
from omrl_data.tasks import family_names, get_family

runner = CliRunner()


def tiny(**kw) -> CollectConfig:
    base = dict(family="point_robot_sparse", tasks=2, mode="random", steps_per_task=100, workers=1)
    return CollectConfig(**{**base, **kw})


# ----------------------------------------------------------------------------------------------
# gamma


def test_family_default_gamma_and_explicit_override():
    assert get_family("bandit").default_gamma == 0.01
    assert all(get_family(f).default_gamma == 0.99 for f in family_names() if f != "bandit")
    assert CollectConfig(family="bandit", tasks=2).gamma == 0.01
    assert CollectConfig(family="ant_dir", tasks=2).gamma == 0.99
    assert CollectConfig(family="bandit", tasks=2, gamma=0.9).gamma == 0.9
    assert CollectConfig.from_dict({"family": "bandit", "tasks": 2}).gamma == 0.01
    import omrl_data.tasks.bandit as bandit_module

    assert "default gamma 0.01" in bandit_module.__doc__.lower()  # stated where the family is described


def test_families_lists_the_default_gammas():
    res = runner.invoke(app, ["families"])
    assert res.exit_code == 0 and "default --gamma 0.99 (bandit 0.01)" in " ".join(res.output.split())
    import json

    rows = json.loads(runner.invoke(app, ["families", "--json"]).output)
    assert {r["name"]: r["default_gamma"] for r in rows}["bandit"] == 0.01


def test_resume_and_card_commands_name_gamma_only_when_not_the_family_default():
    assert "--gamma" not in resume_command(CollectConfig(family="bandit", tasks=3, mode="random"), None)
    assert "--gamma 0.99" in resume_command(CollectConfig(family="bandit", tasks=3, mode="random", gamma=0.99), None)
    # a bandit collected before the default changed (0.99) regenerates with its gamma spelled out
    assert "--gamma 0.99" in collect_command(CollectConfig(family="bandit", tasks=3, gamma=0.99).to_dict())
    assert "--gamma" not in collect_command(CollectConfig(family="bandit", tasks=3).to_dict())
    assert "--gamma" not in collect_command(CollectConfig(family="ant_dir", tasks=3).to_dict())


def test_cli_collect_uses_the_family_gamma(omrl_home):
    res = runner.invoke(app, ["collect", "bandit", "--tasks", "2", "--mode", "random", "--steps-per-task", "50", "--workers", "1", "--yes"])
    assert res.exit_code == 0, res.output
    dataset_id = res.output.strip().splitlines()[-1].split()[-1]
    meta = catalog.read_metadata(catalog.resolve(dataset_id))
    assert meta["gamma"] == 0.01 and meta["collection"]["gamma"] == 0.01
    a = zarr_io.read_task_group(catalog.resolve(dataset_id), 0)
    expected, _ = mc_returns(a["rewards"], a["episode_index"], a["terminated"], 0.01)
    np.testing.assert_allclose(a["mc_returns"], expected, rtol=1e-6)
    assert np.abs(a["mc_returns"] - a["rewards"]).max() <= 0.0102  # a pull's value is about its reward
    res = runner.invoke(app, ["collect", "bandit", "--tasks", "2", "--gamma", "0", "--yes"])
    assert res.exit_code == 2 and "--gamma must be in (0, 1]" in res.output


# ----------------------------------------------------------------------------------------------
# same_recipe


def test_recipe_ignores_execution_runtime_and_label_fields():
    cfg = tiny()
    stored = {**cfg.to_dict(), "units": [[0], [1]], "resumed": True, "wall_seconds": 12.5}
    meta = {"family": cfg.family, "collection": stored}
    assert same_recipe(cfg, meta)
    for change in ({"workers": 8}, {"backend": "ray"}, {"device": "cuda"}, {"ray_address": "auto"}, {"name": "other"}):
        assert same_recipe(tiny(), {"family": cfg.family, "collection": {**stored, **change}}), change
    for change in ({"seed": 1}, {"steps_per_task": 101}, {"gamma": 0.9}, {"tasks": 3}, {"grid": True}, {"split": "interpolation"},
                   {"split_args": {"test_tasks": [1]}}, {"mode": "per-task"}):
        assert not same_recipe(tiny(), {"family": cfg.family, "collection": {**stored, **change}}), change
    # defaults filled in on both sides: leaving steps_per_task and gamma out is the same recipe
    assert recipe(CollectConfig(family="bandit", tasks=2)) == recipe({"family": "bandit", "tasks": 2, "steps_per_task": None, "gamma": 0.01})
    # random mode has no learner: SAC settings do not count; in per-task mode they do
    sac = {**stored["sac"], "batch_size": 7}
    assert same_recipe(cfg, {"collection": {**stored, "sac": sac}})
    per_task = tiny(mode="per-task")
    assert same_recipe(per_task, {"collection": per_task.to_dict()})
    assert not same_recipe(per_task, {"collection": {**per_task.to_dict(), "sac": sac}})


def test_recipe_rejects_slices_imports_and_odd_metadata():
    cfg = tiny()
    good = {"family": cfg.family, "collection": cfg.to_dict()}
    assert not same_recipe(cfg, {**good, "lineage": {"parent": "omrl/x/y-v1"}})
    assert not same_recipe(cfg, {**good, "family": "bandit"})
    assert not same_recipe(cfg, {})
    assert not same_recipe(cfg, {"collection": {"nonsense": 1}})
    assert not same_recipe(cfg, {"collection": "text"})


def test_shared_mode_shards_are_part_of_the_recipe():
    cfg = tiny(mode="shared", tasks=4, workers=2)
    meta = {"collection": {**cfg.to_dict(), "units": [[0, 1], [2, 3]]}}
    assert same_recipe(cfg, meta)
    assert not same_recipe(tiny(mode="shared", tasks=4, workers=4), meta)  # four SACs, not two
    assert not same_recipe(cfg, {"collection": cfg.to_dict()})  # no shard layout recorded


def test_find_dataset_returns_the_newest_matching_version(omrl_home):
    cfg = tiny()
    assert find_dataset(cfg) is None
    first = collect(cfg, progress=False)
    other = collect(tiny(seed=5), progress=False)
    second = collect(tiny(workers=2), progress=False)  # same recipe, other execution settings
    assert {first, other, second} == {f"omrl/point_robot_sparse/random-v{v}" for v in (1, 2, 3)}
    assert find_dataset(tiny(workers=4)) == second
    assert find_dataset(tiny(seed=5)) == other
    assert find_dataset(tiny(seed=6)) is None
    assert find_dataset(tiny(name="elsewhere")) is None
    assert find_dataset(tiny(name="elsewhere"), any_name=True) == second
    # a slice carries its parent's collection dict but is not the collection
    slice_dataset(second, "cut", SliceSpec(max_per_task=40))
    assert find_dataset(tiny(name="cut")) is None
    assert find_dataset(tiny(), any_name=True) == second
