"""Issue 10 item 18: Minari import refuses foreign dims, reads the task from the env spec;
exports declare the stored dtype and no placeholder permalink."""
from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import omrl_data
from cli.data import app
from omrl_data.tasks import get_family

minari = pytest.importorskip("minari")


def _record(mid, env, obs_dim, act_dim, seed=0):
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(seed)
    buffers = [
        EpisodeBuffer(id=e, observations=rng.normal(size=(21, obs_dim)).astype(np.float32),
                      actions=rng.uniform(-0.1, 0.1, size=(20, act_dim)).astype(np.float32), rewards=rng.normal(size=20).astype(np.float32),
                      terminations=np.zeros(20, bool), truncations=np.r_[np.zeros(19, bool), True])
        for e in range(2)
    ]
    minari.create_dataset_from_buffers(mid, buffers, env=env.spec, algorithm_name="x", author="t", author_email="t",
                                       code_permalink="x", description="x")
    return mid


def test_foreign_data_recorded_on_an_omrl_env_gets_its_task_from_the_env_spec(omrl_home):
    fam = get_family("point_robot_sparse")
    ids = [_record(f"foreign/pt{k}-v0", fam.make_env({"goal_angle": a}), 2, 2, k) for k, a in enumerate((0.3, 2.0))]
    r = CliRunner().invoke(app, ["import-minari", *ids, "--name", "foreign", "--family", "point_robot_sparse", "--test-tasks", "1"])
    assert r.exit_code == 0, r.output
    d = omrl_data.load("omrl/point_robot_sparse/foreign-v1")
    assert d.tasks.params == ({"goal_angle": 0.3}, {"goal_angle": 2.0})


def test_import_refuses_data_of_another_env_in_one_line(omrl_home):
    import gymnasium

    mid = _record("foreign/pendulum-v0", gymnasium.make("Pendulum-v1"), 3, 1)
    r = CliRunner().invoke(app, ["import-minari", mid, "--name", "pend", "--family", "point_robot_sparse", "--params", '{"goal_angle": 1.0}'])
    assert r.exit_code == 2, r.output
    assert "observation/action dims 3/1" in r.output and "2/2" in r.output and "Traceback" not in r.output, r.output


def test_export_declares_the_stored_dtype_and_no_placeholder_permalink(omrl_home):
    from omrl_data.minari_io import export_minari
    from tests.test_minari_io import make_point_robot

    pid = make_point_robot(omrl_home, n_tasks=2, rows=20)
    # an env whose own space is float64 (as MuJoCo's are): the export still says float32
    import json

    from omrl_data.store import catalog, manifest

    folder = catalog.resolve(pid)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["observation_space"]["dtype"] = "float64"
    (folder / "metadata.json").write_text(json.dumps(meta))
    manifest.write_manifest(folder)
    ids = export_minari(pid)
    ds = minari.load_dataset(ids[0])
    assert ds.observation_space.dtype == np.float32 and ds.action_space.dtype == np.float32
    assert ds.storage.metadata.get("code_permalink") in (None, "", "None")
    ep = next(ds.iterate_episodes())
    assert ep.observations.dtype == np.float32 and ds.observation_space.contains(ep.observations[0])


def test_a_combinable_export_can_be_combined_and_keeps_each_steps_task(omrl_home):
    from omrl_data.minari_io import export_minari
    from tests.test_minari_io import make_point_robot

    pid = make_point_robot(omrl_home, n_tasks=3, rows=40)
    per_task = [minari.load_dataset(i) for i in export_minari(pid)]
    with pytest.raises(ValueError, match="env_spec"):  # the default export: one env per task
        minari.combine_datasets(per_task, "omrl-test/combined-v0")
    import shutil

    from minari.storage.datasets_root_dir import get_dataset_path

    shutil.rmtree(get_dataset_path("omrl-test/combined-v0"), ignore_errors=True)
    r = CliRunner().invoke(app, ["export", pid, "--combinable", "--namespace", "omrl-test/comb"])
    assert r.exit_code == 0, r.output
    parts = [minari.load_dataset(f"omrl-test/comb/task{i:04d}-v0") for i in range(3)]
    combined = minari.combine_datasets(parts, "omrl-test/all-v0")
    assert combined.total_episodes == sum(p.total_episodes for p in parts)
    seen = set()
    for ep in combined.iterate_episodes():
        seen |= set(np.asarray(ep.infos["task_index"]).tolist())
    assert seen == {0, 1, 2}
    # and the per-task parts still import back into omrl with their tasks
    r = CliRunner().invoke(app, ["import-minari", "omrl-test/comb", "--name", "back"])
    assert r.exit_code == 0, r.output
    assert len(omrl_data.load("omrl/point_robot_sparse/back-v1").tasks) == 3
