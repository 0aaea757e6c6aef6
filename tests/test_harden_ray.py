"""Issue 10 item 17: Ray's conventions (RAY_ADDRESS, token auth) and no write after the driver dies."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from omrl_data.collection import runner
from omrl_data.store import zarr_io
from tests.synthetic import synthetic_task_arrays

REPO = Path(__file__).resolve().parent.parent


def test_a_write_guard_that_refuses_leaves_no_group(tmp_path):
    zarr_io.ensure_store(tmp_path)

    def refuse():
        raise runner.DriverGone("gone")

    zarr_io.set_write_guard(refuse)
    try:
        with pytest.raises(runner.DriverGone):
            zarr_io.write_task_group(tmp_path, 0, synthetic_task_arrays(20, 2, 2))
    finally:
        zarr_io.set_write_guard(None)
    assert not zarr_io.task_group_exists(tmp_path, 0)
    assert not list((tmp_path / "data.zarr" / "tasks").iterdir())  # no temporary group either
    zarr_io.write_task_group(tmp_path, 0, synthetic_task_arrays(20, 2, 2))  # no guard: written
    assert zarr_io.task_group_exists(tmp_path, 0)


def test_the_driver_guard_follows_the_lock_holder(tmp_path):
    import json

    out = tmp_path / "dataset"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "lock.json"
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with pytest.raises(runner.DriverGone, match="is gone"):
        runner._driver_guard(out)()
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    runner._driver_guard(out)()  # alive: no error


def test_ray_address_in_the_environment_is_checked_like_the_option(monkeypatch):
    pytest.importorskip("ray")
    from omrl_data.collection import CollectConfig
    from omrl_data.collection.plan import make_plan
    from omrl_data.errors import BadInput

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(BadInput, match="no Ray cluster answers"):
        make_plan(CollectConfig(family="point_robot_sparse", tasks=2, mode="random", steps_per_task=50, backend="ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_marked(*markers: str) -> None:
    """SIGKILL the processes whose command line holds a marker, and their children, by pid."""
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            procs[int(d)] = (ppid, cmd)
    tree = {p for p, (_, cmd) in procs.items() if any(m in cmd for m in markers) and p != os.getpid()}
    grown = True
    while grown:
        kids = {p for p, (pp, _) in procs.items() if pp in tree} - tree
        tree |= kids
        grown = bool(kids)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def ray_cluster():
    """A real `ray start --head` cluster on this machine, reached as 127.0.0.1:PORT (token auth on,
    as Ray >= 2.52 does)."""
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        pytest.skip("the ray command is not installed")
    temp = Path(f"/tmp/omrl-ray-{uuid.uuid4().hex[:6]}")
    port, client_port = _free_port(), _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_AUTH_MODE", None)
    env.pop("RAY_ADDRESS", None)
    started = subprocess.run(
        [str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=1",
         "--include-dashboard=false", f"--ray-client-server-port={client_port}", f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        _kill_marked(str(temp), f"--port={client_port}")
        shutil.rmtree(temp, ignore_errors=True)


def _collect(args, extra_env, root):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", **extra_env}
    env.pop("RAY_AUTH_MODE", None)
    cmd = [str(Path(sys.executable).parent / "omrl-data"), "collect", "point_robot_sparse", "--tasks", "2", "--mode", "random",
           "--steps-per-task", "100", "--backend", "ray", "--workers", "1", "--root", str(root), "--yes", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_collect_on_a_real_ray_start_cluster_by_address_and_by_ray_address(ray_cluster, tmp_path):
    import omrl_data

    r = _collect(["--ray-address", ray_cluster], {}, tmp_path / "a")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert omrl_data.load("omrl/point_robot_sparse/random-v1", root=tmp_path / "a").n_tasks == 2
    r = _collect([], {"RAY_ADDRESS": ray_cluster}, tmp_path / "b")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "Traceback" not in r.stderr
    data = omrl_data.load("omrl/point_robot_sparse/random-v1", root=tmp_path / "b")
    assert np.all(data.task_sizes == 100)


@pytest.mark.slow
def test_a_stale_cluster_address_file_does_not_stop_the_local_runtime(tmp_path):
    """`ray start` leaves <ray tmp>/ray/ray_current_cluster; ray.init() without an address would
    then try to join that (dead) cluster and refuse num_cpus. The local runtime must not care."""
    import omrl_data

    ray_tmp = Path(f"/tmp/omrl-rt-{uuid.uuid4().hex[:6]}")  # short: Ray's socket paths must fit 107 bytes
    (ray_tmp / "ray").mkdir(parents=True)
    (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{_free_port()}")
    try:
        r = _collect([], {"RAY_TMPDIR": str(ray_tmp)}, tmp_path / "root")
    finally:
        _kill_marked(str(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert omrl_data.load("omrl/point_robot_sparse/random-v1", root=tmp_path / "root").n_tasks == 2
