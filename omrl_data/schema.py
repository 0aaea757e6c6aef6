"""The per-transition fields of an omrl dataset and the on-disk layout of one dataset version.

Layout of a dataset version (``<root>/<namespace>/<family>/<name>-v<N>/``)::

    metadata.json     family, task table, env ids/kwargs, spaces, gamma, collection config,
                      package versions, created, format_version, lineage (for slices)
    data.zarr/        zarr v3 store; one group per task: ``tasks/0000``, ``tasks/0001``, ...
                      each group holds one 1-D/2-D array per field below, rows in collect order
    policies/         optional: checkpoint policy weights as ``.npz`` (never pickle)
    manifest.json     written last and atomically: sha256 and size of every file above
    card.md, *.png    optional, regenerable; not covered by the manifest (`verify` names them;
                      `publish` records their sha256 in the remote index, `pull` keeps them only
                      when it matches)

Rows of a task group are transitions in chronological (collect) order; an episode is a run of
rows with the same ``episode_index`` and increasing ``step_in_episode``; its last row has
``terminated`` or ``truncated`` set.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FORMAT_VERSION = 1
DEFAULT_NAMESPACE = "omrl"

# Values of the `source` field.
SOURCE_REPLAY = 0  # the learner's own replay stream (per-task or shared SAC)
SOURCE_CHECKPOINT = 1  # stochastic rollouts of a saved policy checkpoint
SOURCE_RANDOM = 2  # uniform random actions
SOURCE_NAMES = {SOURCE_REPLAY: "replay", SOURCE_CHECKPOINT: "checkpoint", SOURCE_RANDOM: "random"}


@dataclass(frozen=True)
class Field:
    name: str
    dtype: np.dtype
    per_step_shape: str  # "", "obs" or "act": trailing dims of one row
    meaning: str


FIELDS: tuple[Field, ...] = (
    Field("observations", np.dtype("float32"), "obs", "observation s_t before the action"),
    Field("actions", np.dtype("float32"), "act", "action a_t taken in s_t"),
    Field("rewards", np.dtype("float32"), "", "reward r_t"),
    Field("next_observations", np.dtype("float32"), "obs", "observation s_{t+1} after the action (the final observation on the last step)"),
    Field("terminated", np.dtype("bool"), "", "the MDP reached a terminal state at s_{t+1} (no bootstrap)"),
    Field("truncated", np.dtype("bool"), "", "the episode was cut by the time limit at s_{t+1}"),
    Field("episode_index", np.dtype("int64"), "", "episode number within this task, increasing from 0"),
    Field("step_in_episode", np.dtype("int32"), "", "t, the step within its episode, from 0"),
    Field("collect_step", np.dtype("int64"), "", "the learner's env steps on this task when the row was collected (basis of quality tiers)"),
    Field("source", np.dtype("uint8"), "", "0 replay, 1 checkpoint rollout, 2 random actions"),
    Field("checkpoint_step", np.dtype("int64"), "", "for checkpoint rollouts: the env step of the checkpoint; -1 otherwise"),
    Field("mc_returns", np.dtype("float32"), "", "Monte Carlo return-to-go inside the episode: sum_{j>=t} gamma^(j-t) r_j"),
    Field("mc_bootstrap_discount", np.dtype("float32"), "", "gamma^(T-t) if the episode ended by truncation at T, else 0: target R_t + this * V(s_T)"),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}

METADATA_FILE = "metadata.json"
MANIFEST_FILE = "manifest.json"
DATA_DIR = "data.zarr"
POLICIES_DIR = "policies"


def task_group_name(task_index: int) -> str:
    """Zarr group path of one task inside ``data.zarr``."""
    return f"tasks/{task_index:04d}"


def field_shape(field: Field, n: int, obs_dim: int, act_dim: int) -> tuple[int, ...]:
    extra = {"": (), "obs": (obs_dim,), "act": (act_dim,)}[field.per_step_shape]
    return (n, *extra)
