"""Issue 10, items whose first tests left a path untried: a disk that fills during a collection
(item 9, end to end, with the SAC learner's chunks of item 15), an S3 endpoint nobody answers
(item 10) and a pull from a tampered remote into a root that holds the good copy (item 20)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.data import app
from omrl_data.store import catalog, manifest, zarr_io
from tests.synthetic import make_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]
FAMILY = "point_robot_sparse"


def _cli(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("omrl-data")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from cli.data import main; main()", *args]


@pytest.fixture
def small_disk(tmp_path):
    """A 96 MB tmpfs (needs mount rights, e.g. root in a container; skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _fill(disk: Path) -> Path:
    """Write zeros into ``disk`` until it is full; returns the file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 1 << 12, 1):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.slow
def test_a_disk_that_fills_during_a_shared_collection_is_one_line_exit_5_then_resumes(small_disk):
    """The disk fills while a shared-SAC learner runs: its next chunk cannot be written. The run
    ends with one line and exit code 5 (no traceback), keeps its committed chunks, and once space
    is freed the printed --resume continues from the last chunk to a dataset that verifies."""
    root = small_disk / "root"
    steps = 1500
    args = [FAMILY, "--tasks", "2", "--steps-per-task", str(steps), "--workers", "1", "--sac", "net_arch=16,16",
            "--sac", "batch_size=16", "--sac", "learning_starts=40", "--chunk-seconds", "0.2", "--root", str(root), "--yes"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "400"}
    proc = subprocess.Popen(_cli("collect", *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    work = root / catalog.STAGING_DIR / "omrl" / FAMILY / "replay-v1" / "work"
    try:
        deadline = time.monotonic() + 120
        while not list(work.glob("learner_*/chunk_*/chunk.json")):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no chunk within 120 s"
            time.sleep(0.01)
        filler = _fill(small_disk)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5, out
    assert "Traceback" not in out and "No space left on device" in out and "--resume" in out, out
    last = [ln for ln in out.strip().splitlines() if ln.strip()][-1]
    assert last.startswith("error:"), out
    kept = sorted(json.loads(p.read_text())["done"] for p in work.glob("learner_*/chunk_*/chunk.json"))
    assert kept and not list(work.glob("learner_*/.tmp-*")), "a chunk the full disk interrupted was left behind"

    filler.unlink()
    resumed = subprocess.run(_cli("collect", *args[:-1], "--resume", "--yes"), capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    folder = catalog.resolve(f"omrl/{FAMILY}/replay-v1", root)
    assert manifest.verify(folder) == []
    assert zarr_io.task_row_counts(folder, 2) == [steps, steps]
    stats = catalog.read_metadata(folder)["learner_stats"]
    assert stats["0"]["resumed_from_step"] == kept[-1] > 0


def test_an_s3_endpoint_nobody_answers_is_exit_2_in_one_line(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own setting: no retries, a fast answer
    r = CliRunner().invoke(app, ["list", "--remote", "s3://bucket/x", "--endpoint-url", "http://127.0.0.1:9"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1 and "cannot access" in r.output, r.output


def test_a_pull_from_a_tampered_remote_into_a_root_with_the_good_copy_says_what_was_done(omrl_home, tmp_path):
    """Nothing is downloaded (the local copy has the manifest the index lists), and the output
    says so instead of "every checksum verified"; the local copy is untouched and verifies."""
    from omrl_data.publish import publish

    ds = make_synthetic_dataset(omrl_home, n_tasks=2, n_rows=20)
    remote = tmp_path / "remote"
    publish(ds, str(remote), card=False)
    local = catalog.resolve(ds)
    before = {p: p.read_bytes() for p in local.rglob("*") if p.is_file()}
    remote_rewards = next((remote / "omrl" / FAMILY / "synthetic-v1").rglob("rewards/c/0"))
    data = bytearray(remote_rewards.read_bytes())
    data[len(data) // 2] ^= 0x40
    remote_rewards.write_bytes(bytes(data))
    r = CliRunner().invoke(app, ["pull", ds, "--from", str(remote)])
    assert r.exit_code == 0, r.output
    assert "nothing downloaded" in r.output and "verified" not in r.output and "checked" not in r.output, r.output
    assert {p: p.read_bytes() for p in local.rglob("*") if p.is_file()} == before
    assert manifest.verify(local) == []
    # Into a root without the good copy, the tampered byte is caught (exit 3) and nothing is placed.
    other = CliRunner().invoke(app, ["pull", ds, "--from", str(remote), "--root", str(tmp_path / "other")])
    assert other.exit_code == 3, other.output
    assert catalog.list_datasets(tmp_path / "other") == []
