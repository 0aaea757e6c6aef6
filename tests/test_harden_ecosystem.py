"""Issue 10 items 19, 20, 21, 25, 27: the ecosystem conventions the fuzz pass found missing."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _python(code: str, **env) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})


# ----------------------------------------------------------------------------------- item 21
def test_import_omrl_data_registers_the_gymnasium_ids():
    r = _python(
        "import gymnasium, omrl_data\n"
        "ids = sorted(i for i in gymnasium.registry if i.startswith('omrl/'))\n"
        "print(ids)\n"
        "env = gymnasium.make('omrl/PointRobotSparse-v0', task={'goal_angle': 1.0})\n"
        "print(env.reset(seed=0)[0].shape)\n"
    )
    assert r.returncode == 0, r.stderr
    assert "omrl/AntDir-v0" in r.stdout and "omrl/PointRobotSparse-v0" in r.stdout and "(2,)" in r.stdout, r.stdout


def test_the_module_form_of_gym_make_needs_no_import():
    r = _python("import gymnasium\nenv = gymnasium.make('omrl_data.tasks:omrl/PointRobotSparse-v0', task={'goal_angle': 1.0})\nprint(env.spec.id)")
    assert r.returncode == 0 and "omrl/PointRobotSparse-v0" in r.stdout, r.stderr
