"""Planning a collection: checking the request, sampling the tasks, cutting the work into units.

Everything here runs before anything is written to the catalog, so a bad request fails with one
:class:`~omrl_data.errors.BadInput` line and leaves no trace. The plan is saved in the staging
folder (``StagedDataset.save_plan``); ``--resume`` re-reads it, refuses a request whose data
settings differ, and redoes only the units whose tasks are not yet complete.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omrl_data.collection.config import BACKENDS, MODES, CollectConfig, sac_settings, split_arg_settings
from omrl_data.errors import BadInput
from omrl_data.schema import FIELDS
from omrl_data.store import catalog
from omrl_data.tasks.table import TaskTable

PLAN_VERSION = 1
# Settings that change how the work runs but not what is collected: a resumed run may change them.
# (In shared mode the shards are part of the saved plan, so --workers only changes parallelism.)
EXECUTION_FIELDS = ("workers", "backend", "ray_address", "device", "chunk_seconds")
DISK_MARGIN = 1.1  # ask for 10% more free space than the estimate
MIN_FREE_BYTES = 64 * 2**20  # and never start on a nearly full disk


@dataclass
class CollectionPlan:
    """What a collection will do. ``units`` are the pieces of work given to workers.

    per-task / random mode: one task per unit; shared mode: ``workers`` shards of tasks, each
    learnt by one SAC over a vector of its task envs.
    """

    config: CollectConfig  # with steps_per_task resolved to a number
    tasks: TaskTable  # the sampled task table (index = row)
    units: list[list[int]]  # task indices of each unit of work
    rows_per_task: int  # expected rows of one task (learner stream + checkpoint rollouts, upper bound)
    est_bytes: int  # uncompressed size of all rows and checkpoint policies (an upper bound)
    horizon: int  # episode length of the family
    est_seconds: float | None = None  # wall time from the calibration run (None = not calibrated)
    work_bytes: int = 0  # scratch space of the SAC learners' chunks at the peak (an upper bound)

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def transitions(self) -> int:
        return self.rows_per_task * self.n_tasks

    def to_dict(self) -> dict[str, Any]:
        """The JSON saved in the staging folder, compared on resume."""
        return {
            "plan_version": PLAN_VERSION,
            "config": self.config.to_dict(),
            "tasks": self.tasks.to_dict(),
            "units": [list(map(int, u)) for u in self.units],
        }


# ------------------------------------------------------------------------------------------------
def _check_int(value: Any, what: str, minimum: int, accepted: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BadInput(f"{what} must be {accepted}, got {value!r}")
    return int(value)


def default_steps(family_name: str) -> int:
    """The family's default env steps per task (set by the learners module)."""
    from omrl_data.collection.learners import default_steps_per_task

    return int(default_steps_per_task(family_name))


def validate(config: CollectConfig):
    """Check every field that can be checked without touching the disk; returns the family.

    Raises BadInput (one line: what was wrong, what is accepted).
    """
    from omrl_data.tasks import get_family

    family = get_family(config.family)  # BadInput naming the accepted families
    if config.mode not in MODES:
        raise BadInput(f"unknown mode {config.mode!r}; accepted: {', '.join(MODES)}")
    if config.backend not in BACKENDS:
        raise BadInput(f"unknown backend {config.backend!r}; accepted: {', '.join(BACKENDS)}")
    n = _check_int(config.tasks, "--tasks", 1, "a positive integer")
    if family.max_tasks is not None and n > family.max_tasks:
        raise BadInput(f"{family.name} has at most {family.max_tasks} tasks, got --tasks {n}")
    if config.steps_per_task is not None:
        _check_int(config.steps_per_task, "--steps-per-task", 1, "a positive integer")
    _check_int(config.workers, "--workers", 1, "a positive integer")
    _check_int(config.seed, "--seed", 0, "a non-negative integer")
    _check_int(config.checkpoint_every, "--checkpoint-every", 0, "0 (never) or a positive number of env steps")
    _check_int(config.checkpoint_rollouts, "--checkpoint-rollouts", 0, "0 or a positive number of episodes")
    if config.checkpoint_rollouts > 0 and config.checkpoint_every == 0:
        # (--checkpoint-every without rollouts is fine: the policies are saved for later rollouts)
        raise BadInput("--checkpoint-rollouts R needs --checkpoint-every C > 0 (the checkpoints to roll out)")
    if config.checkpoint_every > 0 and config.mode == "random":
        raise BadInput("random mode has no policy to checkpoint; use --mode shared or per-task with --checkpoint-every")
    if not isinstance(config.gamma, (int, float)) or isinstance(config.gamma, bool) or not 0.0 < config.gamma <= 1.0:
        raise BadInput(f"--gamma must be in (0, 1], got {config.gamma!r}")
    if config.ray_address and config.backend != "ray":
        raise BadInput("--ray-address needs --backend ray")
    if config.backend == "ray":
        prepare_ray_auth(config.ray_address or os.environ.get("RAY_ADDRESS"))
        try:
            import ray  # noqa: F401
        except ImportError:
            raise BadInput("--backend ray needs Ray: pip install 'omrl[ray]'") from None
        if config.ray_address:
            check_ray_address(config.ray_address)
        elif os.environ.get("RAY_ADDRESS"):  # Ray's own convention for "connect to this cluster"
            check_ray_address(os.environ["RAY_ADDRESS"])
    chunk = config.chunk_seconds
    if isinstance(chunk, bool) or not isinstance(chunk, (int, float)) or not 0 <= chunk < math.inf:
        raise BadInput(f"--chunk-seconds must be a number of seconds >= 0, got {chunk!r}")
    device = str(config.device)
    if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
        raise BadInput(f"--device must be cpu, cuda or cuda:<n>, got {device!r}")
    if device != "cpu" and config.mode != "random":
        import torch

        if not torch.cuda.is_available():
            raise BadInput(f"--device {device}: no CUDA device is visible here; use --device cpu")
    catalog.check_name(config.dataset_name() if config.name is None else config.name)  # '' is not "the default"
    s = config.sac
    if s.batch_size < 1 or s.learning_starts < 0 or not s.updates_per_step > 0 or not 0 < s.tau <= 1:
        raise BadInput("SAC settings: batch_size >= 1, learning_starts >= 0, updates_per_step > 0, 0 < tau <= 1")
    return family


def prepare_ray_auth(address: str | None) -> None:
    """Ray >= 2.52: ``ray start`` enables token authentication and writes ``~/.ray/auth_token``,
    but a driver given an address only sends the token with ``RAY_AUTH_MODE=token``. When the
    user has not chosen a mode and a token is here (the cluster was started by this user), use
    it, as ``--ray-address auto`` would. Ray reads the mode when it is imported: call this first."""
    if not address or os.environ.get("RAY_AUTH_MODE"):
        return
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(token_file):
        os.environ["RAY_AUTH_MODE"] = "token"


def check_ray_address(address: str, timeout_s: float = 3.0) -> None:
    """BadInput unless ``host:port`` (or ``ray://host:port``) accepts a TCP connection.

    Ray itself retries an unreachable address for minutes; this answers in seconds. ``auto``
    (the cluster this machine belongs to) is left to Ray.
    """
    import socket

    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise BadInput(f"--ray-address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise BadInput(
            f"no Ray cluster answers at {address} ({e.strerror or e}); check --ray-address, "
            "or leave it out to start a local Ray runtime"
        ) from None


def resolved(config: CollectConfig) -> CollectConfig:
    """A copy with defaults filled in (steps per task), so that plans compare exactly."""
    d = config.to_dict()
    if d["steps_per_task"] is None:
        d["steps_per_task"] = default_steps(config.family)
    d["name"] = config.dataset_name()
    return CollectConfig.from_dict(d)


def sample_tasks(config: CollectConfig) -> TaskTable:
    from omrl_data.tasks import get_family

    return get_family(config.family).sample_tasks(
        config.tasks, seed=config.seed, grid=config.grid, split=config.split, **config.split_args
    )


def default_workers() -> int:
    """One worker per CPU core this process may use (the CLI's default for --workers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def make_units(mode: str, n_tasks: int, workers: int) -> list[list[int]]:
    """Task indices of each unit of work: one task per unit, or (shared) ``workers`` contiguous shards."""
    if mode == "shared":
        return [list(map(int, s)) for s in np.array_split(np.arange(n_tasks), min(workers, n_tasks))]
    return [[i] for i in range(n_tasks)]


def bytes_per_row(obs_dim: int, act_dim: int) -> int:
    dims = {"": 1, "obs": obs_dim, "act": act_dim}
    return sum(f.dtype.itemsize * dims[f.per_step_shape] for f in FIELDS)


def make_plan(config: CollectConfig) -> CollectionPlan:
    """Validate ``config`` and sample its tasks (nothing is written)."""
    family = validate(config)
    config = resolved(config)
    tasks = sample_tasks(config)
    steps = int(config.steps_per_task)
    checkpoints = steps // config.checkpoint_every if config.checkpoint_every else 0
    rows = steps + checkpoints * config.checkpoint_rollouts * int(family.horizon)
    units = make_units(config.mode, len(tasks), config.workers)
    # Checkpoint policies: actor weights (obs + task features in, 2 * act out), float32, per unit.
    h = list(config.sac.net_arch)
    sizes = [family.obs_dim + tasks.features.shape[1], *h, 2 * family.act_dim]
    actor = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    policy_bytes = 4 * actor * checkpoints * (len(units) if config.mode == "shared" else len(tasks))
    est = rows * len(tasks) * bytes_per_row(family.obs_dim, family.act_dim) + policy_bytes
    work = work_bytes(config, family, tasks.features.shape[1], units, rows, actor)
    return CollectionPlan(config, tasks, units, rows, int(est), int(family.horizon), work_bytes=int(work))


def work_bytes(config: CollectConfig, family, n_features: int, units: list[list[int]], rows: int, actor_params: int) -> int:
    """Scratch space of the SAC learners' chunks (``omrl_data.collection.chunks``) at the peak,
    uncompressed: per learner its rows (stream and rollouts), the replay rows still in its buffer,
    two learner states; every shard's learner at once in shared mode, ``workers`` one-task
    learners in per-task mode (a learner's folder is deleted once its tasks are written)."""
    if config.mode == "random":
        return 0
    steps = int(config.steps_per_task)
    feats = n_features if config.mode == "shared" else 0
    obs_in = family.obs_dim + feats
    replay_row = 4 * (2 * obs_in + family.act_dim + 3)  # obs, next obs, action, reward, done, timeout
    h = list(config.sac.net_arch)
    q = sum((a + 1) * b for a, b in zip([obs_in + family.act_dim, *h], [*h, 1]))
    # actor and two critics with their Adam moments, plus the two target critics
    state = 2 * 4 * (3 * actor_params + 3 * 2 * q + 2 * q)

    def learner(m: int) -> int:
        return m * rows * bytes_per_row(family.obs_dim, family.act_dim) + min(config.sac.buffer_size, steps * m) * replay_row + state

    if config.mode == "shared":
        return sum(learner(len(u)) for u in units)
    return min(config.workers, len(units)) * learner(1)


def plan_from_saved(saved: dict[str, Any], request: CollectionPlan, dataset_id: str) -> CollectionPlan:
    """The plan to resume: the saved one, if the request asks for the same data (BadInput otherwise).

    Execution settings (workers, backend, Ray address, device) come from the request.
    """
    old = CollectConfig.from_dict(saved["config"]).to_dict()
    new = request.config.to_dict()
    diff = [k for k in new if k not in EXECUTION_FIELDS and old.get(k) != new[k]]
    if diff:
        shown = "; ".join(f"{k}: was {old.get(k)!r}, now {new[k]!r}" for k in diff)
        raise BadInput(
            f"cannot resume {dataset_id}: it was started with other settings ({shown}); "
            "repeat its original command with --resume, or drop --resume to start a new version"
        )
    config = CollectConfig.from_dict({**old, **{k: new[k] for k in EXECUTION_FIELDS}})
    tasks = TaskTable.from_dict(saved["tasks"])
    return CollectionPlan(
        config, tasks, [list(u) for u in saved["units"]], request.rows_per_task, request.est_bytes, request.horizon,
        work_bytes=request.work_bytes,
    )


# ------------------------------------------------------------------------------------------------
def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def check_root(root: Path, need_bytes: int) -> None:
    """BadInput unless ``root`` can be created/written and its disk has room for ``need_bytes``."""
    from omrl_data.store.catalog import check_writable

    base = _existing_ancestor(root)
    check_writable(root)  # a real write: /proc and read-only mounts are "not writable", not "0 B free"
    free = shutil.disk_usage(base).free
    need = int(need_bytes * DISK_MARGIN) + MIN_FREE_BYTES
    if free < need:
        raise BadInput(
            f"not enough free disk under {base}: the collection needs about {human_bytes(need)}, "
            f"{human_bytes(free)} are free; free space, pass another --root, or collect fewer steps"
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def resume_command(config: CollectConfig, root: Path | None) -> str:
    """The ``omrl-data collect`` command line that resumes this collection (non-default options only)."""
    default = CollectConfig(family=config.family, tasks=config.tasks)
    parts = ["omrl-data", "collect", config.family, "--tasks", str(config.tasks)]
    flags = {
        "seed": "--seed",
        "split": "--split",
        "steps_per_task": "--steps-per-task",
        "mode": "--mode",
        "checkpoint_every": "--checkpoint-every",
        "checkpoint_rollouts": "--checkpoint-rollouts",
        "gamma": "--gamma",
        "workers": "--workers",
        "backend": "--backend",
        "ray_address": "--ray-address",
        "device": "--device",
        "chunk_seconds": "--chunk-seconds",
    }
    if config.grid:
        parts.append("--grid")
    for key, flag in flags.items():
        value = getattr(config, key)
        if value != getattr(default, key) and value is not None:
            parts += [flag, str(value)]
    if config.split_args.get("test_tasks") is not None:
        parts += ["--test-tasks", ",".join(str(int(i)) for i in config.split_args["test_tasks"])]
    for item in split_arg_settings(config.split_args):
        parts += ["--split-arg", item]
    for item in sac_settings(config.sac):
        parts += ["--sac", item]
    if config.name and config.name != CollectConfig(family=config.family, tasks=1, mode=config.mode).dataset_name():
        parts += ["--name", config.name]
    if root is not None:
        parts += ["--root", str(root)]
    return " ".join([*parts, "--resume"])
