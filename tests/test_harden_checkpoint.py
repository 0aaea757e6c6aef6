"""Issue 10 item 1: a checkpoint is a file a user may have received; loading it runs no code."""
from __future__ import annotations

import os
import sys

import pytest
import torch
from typer.testing import CliRunner

from cli.train import app, eval_app
from omrl_algos.train import evaluate_run, read_checkpoint, resolve_config, train
from omrl_data.errors import BadInput
from tests.algos_data import write_bandit_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["algo.width=8", "algo.depth=2", "algo.latent_dim=4", "algo.support_size=16", "algo.query_size=16",
        "train.threads=1", "eval.episodes=1", "train.steps=2"]


class _RunsACommand:
    """Unpickling this calls os.system, as a hostile checkpoint would."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"{sys.executable} -c \"open({str(self.marker)!r}, 'w').write('pwned')\"",))


def _hostile(path, marker, base: dict | None = None) -> None:
    state = dict(base or {})
    state["payload"] = _RunsACommand(marker)
    torch.save(state, path)


@pytest.fixture
def run_dir(tmp_path):
    ds = write_bandit_dataset(n_rows=300)
    cfg = resolve_config("macaw", [f"dataset={ds}", f"out={tmp_path / 'run'}", *TINY])
    return train(cfg, progress=False).run_dir


def test_a_real_checkpoint_loads_with_weights_only(run_dir):
    ckpt = read_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert ckpt["step"] == 2 and ckpt["algorithm"] == "macaw"
    # and the file is loadable by torch's safe unpickler on its own
    torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)


def test_hostile_checkpoint_runs_nothing_on_eval_checkpoint_and_resume(run_dir, tmp_path):
    marker = tmp_path / "pwned"
    good = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    latest = run_dir / "checkpoints" / "latest.pt"
    _hostile(latest, marker, good)
    _hostile(run_dir / "checkpoints" / "step_000001.pt", marker, good)
    # the library call
    with pytest.raises(BadInput, match="not loaded"):
        evaluate_run(run_dir)
    # the three CLI paths of the issue: omrl-eval RUN, --checkpoint N, omrl-train --resume
    runner = CliRunner()
    for cmd, args in ((eval_app, [str(run_dir)]), (eval_app, [str(run_dir), "--checkpoint", "1"]),
                      (app, ["macaw", "--out", str(run_dir), "--resume", "--steps", "3", "--quiet"])):
        r = runner.invoke(cmd, args)
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output and "cannot be read" in r.output, r.output
    assert not marker.exists(), "unpickling the checkpoint ran a command"


def test_a_checkpoint_that_is_not_ours_is_one_line(run_dir):
    torch.save({"weights": torch.zeros(2)}, run_dir / "checkpoints" / "latest.pt")
    with pytest.raises(BadInput, match="not an omrl checkpoint"):
        read_checkpoint(run_dir / "checkpoints" / "latest.pt")
