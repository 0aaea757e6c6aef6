"""Minari interop: omrl -> Minari -> omrl keeps every value and the task table; Minari loads
each task with identical values and recovers the task's env; foreign Minari data imports."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import omrl_data
from cli.data import app
from omrl_data.errors import BadInput
from omrl_data.minari_io import export_minari, import_minari
from omrl_data.schema import FIELD_NAMES
from omrl_data.store import catalog
from omrl_data.store.writer import StagedDataset
from omrl_data.tasks import get_family
from tests.synthetic import synthetic_task_arrays

minari = pytest.importorskip("minari")
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def make_point_robot(root, n_tasks=3, rows=100, jump=(), name="real"):
    """A dataset with real point_robot_sparse tasks (so the env can be recovered). In tasks
    ``jump``, next_observations differ from the next row's observation inside episodes."""
    fam = get_family("point_robot_sparse")
    table = fam.sample_tasks(n_tasks, seed=3)
    staged = StagedDataset.create(root, fam.name, name)
    for i in range(n_tasks):
        a = synthetic_task_arrays(rows, 2, 2, 20, 0.99, i, 0, checkpoint_rows=20)
        if i in jump:
            a["next_observations"] = a["next_observations"] + np.float32(0.5)
        staged.write_task(i, a)
    staged.commit(
        {
            "family": fam.name,
            "tasks": table.to_dict(),
            "env_id": fam.env_id,
            "env_kwargs": {},
            "obs_dim": 2,
            "act_dim": 2,
            "observation_space": {"type": "Box", "shape": [2], "low": None, "high": None, "dtype": "float32"},
            "action_space": {"type": "Box", "shape": [2], "low": -0.1, "high": 0.1, "dtype": "float32"},
            "gamma": 0.99,
            "horizon": 20,
            "collection": {"mode": "shared", "seed": 3},
        }
    )
    return staged.dataset_id


def test_round_trip_keeps_every_value_and_the_task_table(omrl_home):
    pid = make_point_robot(omrl_home, jump=(1,))  # task 1: next_observations that Minari cannot derive
    ids = export_minari(pid)
    assert len(ids) == 3
    assert "next_observations" in minari.load_dataset(ids[1])[0].infos  # kept where it cannot be derived
    assert "next_observations" not in minari.load_dataset(ids[0])[0].infos
    back = import_minari([pid], "back")  # the namespace (default: the omrl id)
    a, b = omrl_data.load(pid), omrl_data.load(back)
    assert a.tasks.to_dict() == b.tasks.to_dict()
    assert np.array_equal(a.offsets, b.offsets)
    for f in FIELD_NAMES:
        assert a.fields[f].dtype == b.fields[f].dtype, f
        assert np.array_equal(a.fields[f], b.fields[f]), f
    lin = b.metadata["lineage"]
    assert lin["parent"] == pid and lin["op"] == "import-minari" and lin["spec"]["minari_datasets"] == ids
    assert b.metadata["gamma"] == a.metadata["gamma"] and b.metadata["collection"] == a.metadata["collection"]


def test_minari_sees_identical_values_task_metadata_and_env(omrl_home):
    pid = make_point_robot(omrl_home)
    ids = export_minari(pid)
    src = omrl_data.load(pid)
    assert set(ids) <= set(minari.list_local_datasets())
    ns = minari.namespace.get_namespace_metadata(pid)["omrl"]
    assert ns["task_table"] == src.tasks.to_dict() and ns["datasets"] == ids
    assert ns["splits"]["test"] == src.tasks.indices("test").tolist()
    assert np.allclose(ns["features"], src.tasks.features)
    for i, mid in enumerate(ids):
        ds = minari.load_dataset(mid)
        arrays = src.task_arrays(i)
        eps = list(ds.iterate_episodes())
        obs = np.concatenate([e.observations[:-1] for e in eps])
        assert np.array_equal(obs, arrays["observations"])
        assert np.array_equal(np.concatenate([e.observations[1:] for e in eps]), arrays["next_observations"])
        assert np.array_equal(np.concatenate([e.actions for e in eps]), arrays["actions"])
        assert np.array_equal(np.concatenate([e.rewards for e in eps]), arrays["rewards"])
        assert np.array_equal(np.concatenate([e.terminations for e in eps]), arrays["terminated"])
        assert np.array_equal(np.concatenate([e.truncations for e in eps]), arrays["truncated"])
        assert np.array_equal(np.concatenate([e.infos["collect_step"] for e in eps]), arrays["collect_step"])
        meta = next(iter(ds.storage.get_episode_metadata([0])))
        assert json.loads(meta["task_json"]) == src.tasks.params[i] and meta["split"] == src.tasks.split[i]
        env = ds.recover_environment()
        assert env.unwrapped.task == src.tasks.params[i]
        assert env.spec.max_episode_steps == 20


def test_cli_export_to_a_namespace_and_import_it(omrl_home):
    pid = make_point_robot(omrl_home, n_tasks=2, rows=40)
    r = run("export", pid, "--format", "minari", "--namespace", "shared/point")
    assert r.exit_code == 0, r.output
    assert sorted(k for k in minari.list_local_datasets() if k.startswith("shared/point/")) == ["shared/point/task0000-v0", "shared/point/task0001-v0"]
    r = run("import-minari", "shared/point", "--name", "again")
    assert r.exit_code == 0, r.output
    a, b = omrl_data.load(pid), omrl_data.load("omrl/point_robot_sparse/again-v1")
    assert a.tasks.to_dict() == b.tasks.to_dict() and np.array_equal(a.fields["mc_returns"], b.fields["mc_returns"])


def test_export_refuses_existing_and_cleans_up_on_failure(omrl_home, monkeypatch):
    pid = make_point_robot(omrl_home, n_tasks=2, rows=40)
    export_minari(pid)
    r = run("export", pid, "--format", "minari")
    assert r.exit_code == 2 and "already exists" in r.output
    # A failure on the second task removes the first task's Minari dataset again.
    import omrl_data.minari_io as mio

    calls = {"n": 0}
    real = mio._episode_buffers

    def flaky(arrays, cls, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(arrays, cls, **kw)

    monkeypatch.setattr(mio, "_episode_buffers", flaky)
    with pytest.raises(OSError):
        export_minari(pid, namespace="other/try")
    assert not any(k.startswith("other/try/") for k in minari.list_local_datasets())


def test_import_foreign_minari_datasets_with_params(omrl_home):
    from minari.data_collector import EpisodeBuffer

    import gymnasium

    fam = get_family("point_robot_sparse")
    env = gymnasium.make(fam.env_id)  # no task in the spec: the import cannot know the parameters
    ids = []
    for k, angle in enumerate((0.3, 2.0)):
        rng = np.random.default_rng(k)
        buffers = []
        for e in range(3):
            obs = rng.normal(size=(21, 2)).astype(np.float32)
            buffers.append(
                EpisodeBuffer(
                    id=e,
                    observations=obs,
                    actions=rng.uniform(-0.1, 0.1, size=(20, 2)).astype(np.float32),
                    rewards=rng.normal(size=20).astype(np.float32),
                    terminations=np.zeros(20, bool),
                    truncations=np.r_[np.zeros(19, bool), True],
                )
            )
        mid = f"foreign/point{k}-v0"
        minari.create_dataset_from_buffers(mid, buffers, env=env.spec, eval_env=env.spec, algorithm_name="x", author="t", author_email="t", code_permalink="x", description="x")
        ids.append(mid)
    # Without task parameters the import fails with one line that says how to give them.
    r = run("import-minari", *ids, "--name", "foreign", "--family", "point_robot_sparse")
    assert r.exit_code == 2 and "--params" in r.output and len(r.output.strip().splitlines()) == 1
    r = run("import-minari", *ids, "--name", "foreign", "--params", '{"goal_angle": 0.3}', "--params", '{"goal_angle": 2.0}', "--family", "point_robot_sparse", "--test-tasks", "1")
    assert r.exit_code == 0, r.output
    d = omrl_data.load("omrl/point_robot_sparse/foreign-v1")
    assert d.tasks.params == ({"goal_angle": 0.3}, {"goal_angle": 2.0}) and d.tasks.split == ("train", "test")
    a = d.task_arrays(0)
    assert len(a["rewards"]) == 60 and a["episode_index"].tolist() == np.repeat(np.arange(3), 20).tolist()
    assert a["collect_step"].tolist() == list(range(60)) and (a["source"] == 0).all()
    # Monte Carlo returns were computed with the default gamma 0.99.
    r0 = a["rewards"][:20].astype(np.float64)
    assert np.isclose(a["mc_returns"][0], sum(0.99**j * r0[j] for j in range(20)), rtol=1e-5)
    assert np.isclose(a["mc_bootstrap_discount"][19], 0.99)


def test_import_bad_inputs(omrl_home):
    for args, needle in (
        (["nothing/here-v0", "--name", "x"], "no local Minari dataset"),
        (["nothing/here-v0", "--name", "x", "--params", "{bad"], "not JSON"),
    ):
        r = run("import-minari", *args)
        assert r.exit_code == 2 and needle in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = run("export", "omrl/point_robot_sparse/none", "--format", "minari")
    assert r.exit_code == 2 and "no dataset" in r.output
    with pytest.raises(BadInput, match="Minari namespace"):
        pid = make_point_robot(omrl_home, n_tasks=2, rows=20)
        export_minari(pid, namespace="x")
    assert catalog.list_datasets()[0]["id"] == pid
