"""`omrl-data families` and `omrl-data tasks` through the real typer app, error paths included."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cli.data import app
from omrl_data.tasks import family_names
from omrl_data.tasks.table import TaskTable

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_families_lists_the_seven():
    r = run("families", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == family_names()
    ant = {row["name"]: row for row in rows}["ant_dir"]
    assert ant["env_id"] == "omrl/AntDir-v0" and ant["obs_dim"] == 27 and ant["act_dim"] == 8 and ant["horizon"] == 200
    assert "MACAW" in ant["papers"] and ant["params"] == ["goal_angle"]
    r = run("families")
    assert r.exit_code == 0 and all(name in r.stdout for name in family_names())


def test_tasks_ant_dir_50_json_has_45_train_5_test():
    r = run("tasks", "ant_dir", "--tasks", 50, "--seed", 0, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert len(d["tasks"]) == 50 and d["counts"] == {"tasks": 50, "train": 45, "test": 5}
    assert sum(t["split"] == "test" for t in d["tasks"]) == 5
    table = TaskTable.from_dict(d)  # the JSON is a task table
    assert table.family == "ant_dir" and len(table.features[0]) == 2
    again = json.loads(run("tasks", "ant_dir", "--tasks", 50, "--seed", 0, "--json").stdout)
    assert again == d


def test_tasks_splits_from_the_command_line():
    d = json.loads(run("tasks", "cheetah_vel", "-n", 40, "--grid", "--test-tasks", "2,7,15,23,26", "--json").stdout)
    assert d["split_kind"] == "explicit" and [t["index"] for t in d["tasks"] if t["split"] == "test"] == [2, 7, 15, 23, 26]
    d = json.loads(run("tasks", "cheetah_vel", "-n", 40, "--grid", "--split", "extrapolation", "--json").stdout)
    assert d["counts"]["train"] == 13 and d["counts"]["test"] == 27
    d = json.loads(run("tasks", "point_robot_sparse", "-n", 20, "--grid", "--split", "interpolation", "--every", 5, "--json").stdout)
    assert d["split_kind"] == "interpolation" and d["counts"]["test"] == 4
    r = run("tasks", "cheetah_dir")
    assert r.exit_code == 0 and "test = train" in r.stdout and "train+test" in r.stdout
    r = run("tasks", "walker_params", "-n", 3)
    assert r.exit_code == 0 and "body_mass_log_scale=[8 mean" in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["tasks", "nope", "-n", 3], "unknown task family 'nope'; accepted: cheetah_dir"),
        (["tasks", "ant_dir", "-n", 0], "positive integer"),
        (["tasks", "ant_dir", "-n", -4], "positive integer"),
        (["tasks", "cheetah_dir", "-n", 3], "exactly 2 tasks"),
        (["tasks", "ant_dir", "-n", 5, "--test-tasks", "a,b"], "comma-separated task indices"),
        (["tasks", "ant_dir", "-n", 5, "--test-tasks", "7"], "task indices in 0..4"),
        (["tasks", "ant_dir", "-n", 5, "--split", "bogus"], "unknown split 'bogus'"),
        (["tasks", "ant_dir", "-n", 5, "--grid"], "no fixed task grid"),
        (["tasks", "ant_dir", "-n", 5, "--split", "extrapolation", "--train-range", "1"], "two numbers"),
        (["tasks", "cheetah_vel", "-n", 5, "--split", "extrapolation", "--train-range", "0,5"], "no test task"),
    ],
)
def test_error_paths_exit_2_with_one_line(args, message):
    r = run(*args)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.output
    assert "Traceback" not in r.output


def test_help_has_examples():
    r = run("tasks", "--help")
    assert r.exit_code == 0 and "omrl-data tasks ant_dir --tasks 50" in r.output
    assert "Examples" in run("families", "--help").output


def test_console_script_error_has_no_traceback():
    """The installed entry point, as a user runs it (a separate process)."""
    code = "from cli.data import main; main()"
    p = subprocess.run(
        [sys.executable, "-c", code, "tasks", "cheetah_dir", "--tasks", "3"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == ["error: cheetah_dir has exactly 2 tasks; asked for 3 (accepted: 1..2)"]
