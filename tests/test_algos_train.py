"""The training loop end to end: learning on bandits, resume, evaluation, CLI errors."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from cli.train import app, eval_app
from omrl_algos.logger import read_metrics
from omrl_algos.train import evaluate_run, resolve_config, train
from tests.algos_data import write_bandit_dataset
from tests.synthetic import make_synthetic_dataset

# A small MACAW that learns the bandit in a few hundred meta-steps on one core.
TINY = [
    "algo.width=32", "algo.depth=2", "algo.latent_dim=16", "algo.support_size=64", "algo.query_size=64",
    "algo.inner_lr_init=0.1", "algo.lr_lr=0.01", "algo.policy_lr=1e-3", "algo.value_lr=1e-3", "train.threads=1",
]


def run_config(dataset: str, out, *extra: str):
    return resolve_config("macaw", [f"dataset={dataset}", f"out={out}", *TINY, *extra])


def test_macaw_learns_to_adapt_on_held_out_bandits(tmp_path):
    ds = write_bandit_dataset()
    cfg = run_config(ds, tmp_path / "run", "train.steps=250", "train.eval_every=250", "eval.episodes=10", "train.seed=0")
    result = train(cfg, progress=False)
    m = result.eval["mean"]
    # 10 pulls per episode; the good arm pays 0.9, the others 0.1-0.3 (random: about 3.4).
    # Without adaptation the policy cannot know which arm is good on a held-out task.
    assert m["after"] > m["before"] + 1.5, m
    assert m["after"] > m["random"] + 1.5, m
    assert m["after"] > 5.5, m
    run = result.run_dir
    assert (run / "learning_curve.png").stat().st_size > 0
    assert (run / "checkpoints" / "latest.pt").exists() and (run / "config.yaml").exists()
    saved = json.loads((run / "eval.json").read_text())
    assert len(saved["tasks"]) == 5 and {"before", "after", "random"} <= set(saved["tasks"][0])
    keys = {r["key"] for r in read_metrics(run)}
    assert {"train/value_loss", "train/meta_grad_norm/policy", "train/adv_coef", "eval/return_after"} <= keys
    assert any(k.startswith("train/inner_lr/policy/") for k in keys)
    assert any((run / "tensorboard").iterdir())


def _state(run) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "latest.pt", weights_only=False)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    ds = write_bandit_dataset(n_rows=300)
    common = ["train.eval_every=3", "train.log_every=1", "eval.episodes=1", "algo.support_size=16", "algo.query_size=16"]
    full = train(run_config(ds, tmp_path / "full", "train.steps=8", *common), progress=False)
    train(run_config(ds, tmp_path / "part", "train.steps=5", *common), progress=False)
    resumed_cfg = resolve_config("macaw", ["train.steps=8"], resume_dir=tmp_path / "part")
    resumed = train(resumed_cfg, resume=True, progress=False)
    a, b = _state(full.run_dir), _state(resumed.run_dir)
    assert a["step"] == b["step"] == 8
    for k in a["algo"]:
        assert torch.equal(a["algo"][k], b["algo"][k]), k
    assert torch.equal(a["sampler"]["generator"], b["sampler"]["generator"])
    rows = lambda run: [(r["step"], r["key"], r["value"]) for r in read_metrics(run) if r["key"].startswith("train/") and "per_s" not in r["key"]]
    assert rows(full.run_dir) == rows(resumed.run_dir)
    assert full.eval["mean"] == resumed.eval["mean"]


def test_eval_run_with_online_finetuning(tmp_path):
    ds = write_bandit_dataset(n_rows=300)
    train(run_config(ds, tmp_path / "run", "train.steps=2", "eval.episodes=1", "algo.support_size=16", "algo.query_size=16"), progress=False)
    import gymnasium
    import numpy as np

    from omrl_data.tasks import get_family

    def float64_env(params):  # MuJoCo envs return float64 observations
        env = get_family("bandit").make_env(params)
        return gymnasium.wrappers.TransformObservation(env, lambda o: o.astype(np.float64), env.observation_space)

    result, path = evaluate_run(tmp_path / "run", online_steps=[0, 20], make_env=float64_env,
                                overrides=["eval.online_value_updates=2", "eval.online_policy_updates=2", "eval.max_tasks=2"])
    assert path.exists() and len(result["tasks"]) == 2
    for row in result["tasks"]:
        assert set(row["online"]) == {"0", "20"} and row["online"]["0"] == row["after"]


# ------------------------------------------------------------------------------ bad inputs
runner = CliRunner()


def _fails(result, text: str) -> None:
    out = result.output + (result.stderr if hasattr(result, "stderr") and result.stderr_bytes is not None else "")
    assert result.exit_code == 2, out
    assert text in out and "Traceback" not in out, out


def test_lr_decay_schedule_reaches_the_final_fraction_and_resumes_exactly(tmp_path):
    from omrl_algos.config import TrainConfig
    from omrl_algos.train import lr_factor

    for decay in ("cosine", "linear"):
        t = TrainConfig(steps=101, lr_decay=decay, lr_final=0.1)
        f = [lr_factor(t, s) for s in range(1, 102)]
        assert f[0] == 1.0 and abs(f[-1] - 0.1) < 1e-12 and all(a >= b for a, b in zip(f, f[1:]))
    assert lr_factor(TrainConfig(steps=10, lr_decay="cosine"), 6) < lr_factor(TrainConfig(steps=10, lr_decay="linear"), 6) + 0.2
    assert lr_factor(TrainConfig(steps=10), 10) == 1.0  # none
    ds = write_bandit_dataset(n_rows=300)
    common = ["train.eval_every=3", "train.log_every=1", "eval.episodes=1", "algo.support_size=16", "algo.query_size=16",
              "train.lr_decay=cosine", "train.lr_final=0.2"]
    full = train(run_config(ds, tmp_path / "full", "train.steps=8", "train.checkpoint_every=3", *common), progress=False)
    plain = train(run_config(ds, tmp_path / "plain", "train.steps=8", *common[:-2]), progress=False)
    # An 8-step run interrupted after step 6: its folder as the kill left it, latest = step 6.
    shutil.copytree(full.run_dir, tmp_path / "part")
    shutil.copy(tmp_path / "part" / "checkpoints" / "step_000006.pt", tmp_path / "part" / "checkpoints" / "latest.pt")
    resumed = train(resolve_config("macaw", [], resume_dir=tmp_path / "part"), resume=True, progress=False)
    a, b, c = _state(full.run_dir), _state(resumed.run_dir), _state(plain.run_dir)
    for k in a["algo"]:
        assert torch.equal(a["algo"][k], b["algo"][k]), k
    assert any(not torch.equal(a["algo"][k], c["algo"][k]) for k in a["algo"])  # the schedule changed the updates
    lrs = [g["lr"] for g in a["optimizer"]["param_groups"]]
    bases = [g["base_lr"] for g in a["optimizer"]["param_groups"]]
    assert lrs == [pytest.approx(0.2 * x) for x in bases]  # the last step ran at lr_final


def test_cli_unknown_dataset_fails_in_one_line(tmp_path):
    _fails(runner.invoke(app, ["macaw", "--dataset", "omrl/bandit/nope", "--out", str(tmp_path / "r")]), "error")
    assert not (tmp_path / "r").exists()


def test_cli_empty_test_split_fails_before_training(tmp_path, omrl_home):
    ds = make_synthetic_dataset(omrl_home, family="bandit", n_tasks=4, n_test=0, obs_dim=1, act_dim=5)
    _fails(runner.invoke(app, ["macaw", "--dataset", ds, "--out", str(tmp_path / "r")]), "empty test split")
    assert not (tmp_path / "r").exists()


def test_cli_bad_settings_and_resume_errors(tmp_path):
    ds = write_bandit_dataset(n_rows=300)
    _fails(runner.invoke(app, ["macaw", "--dataset", ds, "--set", "algo.widht=3"]), "unknown setting")
    _fails(runner.invoke(app, ["macaw", "--dataset", ds, "--steps", "0", "--out", str(tmp_path / "r")]), "train.steps=0")
    _fails(runner.invoke(app, ["macaw", "--dataset", ds, "--set", "train.lr_decay=step", "--out", str(tmp_path / "r")]), "train.lr_decay")
    _fails(runner.invoke(app, ["macaw", "--dataset", ds, "--resume", "--out", str(tmp_path / "none")]), "nothing to resume")
    if not torch.cuda.is_available():
        _fails(runner.invoke(app, ["macaw", "--dataset", ds, "--device", "cuda", "--out", str(tmp_path / "r")]), "CUDA is not available")
    _fails(runner.invoke(eval_app, [str(tmp_path / "none")]), "not a run folder")


def test_cli_train_then_wrong_action_dims_for_the_checkpoint(tmp_path, omrl_home):
    ds = write_bandit_dataset(n_rows=300)
    out = tmp_path / "run"
    args = ["macaw", "--dataset", ds, "--out", str(out), "--steps", "2", "--eval-episodes", "1", "--quiet",
            "--set", "algo.support_size=16", "--set", "algo.query_size=16", "--set", "algo.width=8", "--set", "algo.latent_dim=4"]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert "run folder" in ok.output and "mean" in ok.output
    _fails(runner.invoke(app, args), "already holds a run")
    other = make_synthetic_dataset(omrl_home, family="bandit", n_tasks=4, obs_dim=1, act_dim=3, name="three_arms")
    _fails(runner.invoke(eval_app, [str(out), "--set", f"dataset={other}"]), "act dims")
    again = runner.invoke(eval_app, [str(out), "--episodes", "1"])
    assert again.exit_code == 0, again.output


def test_sampler_bootstrap_fields_point_at_the_episode_end(synthetic_dataset, omrl_home):
    import numpy as np

    from omrl_data.dataset import load
    from omrl_data.sampler import TaskBatchSampler

    ds = load(synthetic_dataset, root=omrl_home)
    for packed in (True, False):
        sampler = TaskBatchSampler(ds, tasks="all", batch_size=50, seed=1, bootstrap=True, packed=packed)
        batch = sampler.sample()
        obs, nxt = ds.fields["observations"], ds.fields["next_observations"]
        ep, disc = ds.fields["episode_index"], ds.fields["mc_bootstrap_discount"]
        for t in range(batch.num_tasks):
            lo, hi = ds.offsets[batch.task_index[t]], ds.offsets[batch.task_index[t] + 1]
            for j in range(batch.batch_size):
                row = lo + int(np.flatnonzero((obs[lo:hi] == batch.observations[t, j].numpy()).all(1))[0])
                end = lo + int(np.flatnonzero(ep[lo:hi] == ep[row])[-1])
                np.testing.assert_array_equal(batch.bootstrap_observations[t, j].numpy(), nxt[end])
                assert float(batch.mc_bootstrap_discount[t, j]) == float(disc[row])
    assert TaskBatchSampler(ds, tasks="all", batch_size=5).sample().bootstrap_observations is None
