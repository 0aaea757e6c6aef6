"""Checkpoint policies saved with a dataset: SAC actor weights as ``.npz`` plus a JSON architecture.

Layout under a dataset's ``policies/`` folder::

    task_0003/step_00020000.npz    actor weights (no pickle; read with allow_pickle=False)
    task_0003/step_00020000.json   architecture, action bounds, task features, learner mode

``SavedPolicy`` runs a saved actor in numpy (no torch, no SB3 needed), so rollouts can be
extended later from the dataset alone. The network is SB3's SAC actor: ``hidden`` Linear+ReLU
layers on ``[observation, task features]`` (features empty for per-task learners), then a mean
head and a log-std head (clipped to ``[log_std_min, log_std_max]``), a tanh squash, and a linear
map from ``[-1, 1]`` to the action bounds.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from omrl_data.schema import POLICIES_DIR

POLICY_FORMAT = "omrl-sac-actor-v1"


def task_policy_dir(out_dir: str | Path, task_index: int) -> Path:
    return Path(out_dir) / POLICIES_DIR / f"task_{task_index:04d}"


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def actor_arrays(actor) -> dict[str, np.ndarray]:
    """Weights of an SB3 SAC ``Actor`` as named float32 arrays (``hidden_k_weight`` [out, in], ...)."""
    import torch

    linears = [m for m in actor.latent_pi if isinstance(m, torch.nn.Linear)]
    arrays = {}
    for k, layer in enumerate(linears):
        arrays[f"hidden_{k}_weight"] = layer.weight.detach().cpu().numpy().astype(np.float32)
        arrays[f"hidden_{k}_bias"] = layer.bias.detach().cpu().numpy().astype(np.float32)
    for head in ("mu", "log_std"):
        layer = getattr(actor, head)
        if not isinstance(layer, torch.nn.Linear):
            raise ValueError(f"unsupported SAC actor: {head} is {type(layer).__name__}, expected Linear (no gSDE)")
        arrays[f"{head}_weight"] = layer.weight.detach().cpu().numpy().astype(np.float32)
        arrays[f"{head}_bias"] = layer.bias.detach().cpu().numpy().astype(np.float32)
    return arrays


def actor_spec(actor, obs_dim: int, features: np.ndarray, action_low: np.ndarray, action_high: np.ndarray, step: int, mode: str) -> dict[str, Any]:
    from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN

    import torch

    hidden = [m.out_features for m in actor.latent_pi if isinstance(m, torch.nn.Linear)]
    return {
        "format": POLICY_FORMAT,
        "obs_dim": int(obs_dim),
        "task_features": [float(x) for x in np.asarray(features).reshape(-1)],  # appended to the observation
        "hidden": hidden,
        "activation": "relu",
        "act_dim": int(np.asarray(action_low).size),
        "log_std_min": float(LOG_STD_MIN),
        "log_std_max": float(LOG_STD_MAX),
        "squash": "tanh",
        "action_low": [float(x) for x in np.asarray(action_low).reshape(-1)],
        "action_high": [float(x) for x in np.asarray(action_high).reshape(-1)],
        "checkpoint_step": int(step),
        "learner": mode,
    }


def write_checkpoint(folder: Path, step: int, arrays: dict[str, np.ndarray], spec: dict[str, Any]) -> Path:
    """Write ``step_XXXXXXXX.npz`` and ``.json`` into ``folder``; returns the ``.npz`` path.

    Each file is written under a temporary name and renamed into place (a rerun after a kill
    replaces it whole), unless this process's write guard says its collection is gone."""
    from omrl_data.store import zarr_io

    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / checkpoint_name(step)
    tag = uuid.uuid4().hex[:8]
    tmp_npz, tmp_json = folder / f".{stem.name}-{tag}.npz", folder / f".{stem.name}-{tag}.json"
    try:
        np.savez(tmp_npz, **arrays)
        tmp_json.write_text(json.dumps(spec, indent=1))
        zarr_io.check_write_guard()
        os.replace(tmp_npz, stem.with_suffix(".npz"))
        os.replace(tmp_json, stem.with_suffix(".json"))
    finally:
        tmp_npz.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)
    return stem.with_suffix(".npz")


class SavedPolicy:
    """A saved SAC actor evaluated in numpy.

    ``act(obs [B, obs_dim], rng, deterministic) -> actions [B, act_dim]`` (float32, within the
    action bounds); the task features recorded with the checkpoint are appended to ``obs``.
    """

    def __init__(self, arrays: dict[str, np.ndarray], spec: dict[str, Any]):
        if spec.get("format") != POLICY_FORMAT:
            raise ValueError(f"unknown policy format {spec.get('format')!r}; expected {POLICY_FORMAT}")
        self.spec = spec
        n = len(spec["hidden"])
        self._features = np.asarray(spec["task_features"], dtype=np.float32)
        self.obs_dim = int(spec["obs_dim"])
        self.act_dim = int(spec["act_dim"])
        layers = [(arrays[f"hidden_{k}_weight"].T.astype(np.float32), arrays[f"hidden_{k}_bias"].astype(np.float32)) for k in range(n)]
        # The task features are constant: fold their share of the first layer into its bias.
        w0, b0 = layers[0]
        layers[0] = (np.ascontiguousarray(w0[: self.obs_dim]), b0 + self._features @ w0[self.obs_dim :])
        self._hidden = layers
        # Both heads in one matmul: columns [:act_dim] are the mean, [act_dim:] the log-std.
        self._heads_w = np.concatenate([arrays["mu_weight"].T, arrays["log_std_weight"].T], axis=1).astype(np.float32)
        self._heads_b = np.concatenate([arrays["mu_bias"], arrays["log_std_bias"]]).astype(np.float32)
        self._low = np.asarray(spec["action_low"], dtype=np.float32)
        self._high = np.asarray(spec["action_high"], dtype=np.float32)
        self._log_std_min, self._log_std_max = float(spec["log_std_min"]), float(spec["log_std_max"])

    @classmethod
    def load(cls, npz_path: str | Path) -> "SavedPolicy":
        npz_path = Path(npz_path)
        spec = json.loads(npz_path.with_suffix(".json").read_text())
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(arrays, spec)

    def mean_and_log_std(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pre-squash Gaussian mean and clipped log-std, each ``[B, act_dim]``."""
        x = np.asarray(obs, dtype=np.float32).reshape(-1, self.obs_dim)
        for w, b in self._hidden:
            x = np.maximum(x @ w + b, 0.0)
        heads = x @ self._heads_w + self._heads_b
        mean = heads[:, : self.act_dim]
        log_std = np.clip(heads[:, self.act_dim :], self._log_std_min, self._log_std_max)
        return mean, log_std

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False) -> np.ndarray:
        mean, log_std = self.mean_and_log_std(obs)
        pre = mean if deterministic else mean + np.exp(log_std) * rng.standard_normal(mean.shape, dtype=np.float32)
        squashed = np.tanh(pre)
        return (self._low + 0.5 * (squashed + 1.0) * (self._high - self._low)).astype(np.float32)


def list_checkpoints(out_dir: str | Path, task_index: int) -> list[Path]:
    """The ``.npz`` checkpoints of one task, by increasing step."""
    folder = task_policy_dir(out_dir, task_index)
    return sorted(folder.glob("step_*.npz")) if folder.exists() else []


def staging_dir(out_dir: str | Path, task_index: int) -> Path:
    """A fresh hidden folder for a task's checkpoints while the task is being collected."""
    return Path(out_dir) / POLICIES_DIR / f".tmp-task_{task_index:04d}-{uuid.uuid4().hex[:8]}"


def publish(staging: Path, out_dir: str | Path, task_index: int) -> None:
    """Move a task's staged checkpoints into place (replacing leftovers of an interrupted run)."""
    final = task_policy_dir(out_dir, task_index)
    if not staging.exists():  # no checkpoint fell within the budget
        shutil.rmtree(final, ignore_errors=True)
        return
    for root, _, files in os.walk(staging):
        for f in files:
            fd = os.open(os.path.join(root, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


def publish_copy(staging: Path, out_dir: str | Path, task_index: int) -> None:
    """Like :func:`publish`, but copies the checkpoints (``staging`` stays as it is)."""
    if not staging.exists():
        publish(staging, out_dir, task_index)
        return
    copy = staging_dir(out_dir, task_index)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(staging, copy, ignore=shutil.ignore_patterns(".*"))
    publish(copy, out_dir, task_index)


def remove_stale(out_dir: str | Path, task_indices: list[int]) -> None:
    """Delete staged checkpoint folders of these tasks left by an interrupted run."""
    folder = Path(out_dir) / POLICIES_DIR
    if not folder.exists():
        return
    for i in task_indices:
        for p in folder.glob(f".tmp-task_{i:04d}-*"):
            shutil.rmtree(p, ignore_errors=True)
