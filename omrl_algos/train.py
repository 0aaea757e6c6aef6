"""The one training loop every algorithm uses, with checkpoints, resume and evaluation.

Run folder (``RunConfig.out``)::

    config.yaml, config.json   the resolved config (give either back with --config)
    metrics.csv                long-form step,key,value rows (train/..., eval/...)
    tensorboard/               the same metrics as TensorBoard events
    checkpoints/latest.pt      written at every evaluation and at the end
    checkpoints/step_NNNNNN.pt kept every ``checkpoint_every`` meta-steps
    eval.json                  per-task returns of the last evaluation, and the eval history
    learning_curve.png         eval returns and outer losses against meta-steps

A checkpoint holds the algorithm (networks, learned inner lrs), its optimizer, the sampler's
generator state, the global torch RNG states and the step, so ``resume`` continues with exactly
the batches and numbers an uninterrupted run would have produced.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from omrl_algos.config import RunConfig, TrainConfig, apply_overrides, default_config, load_config_file
from omrl_algos.evaluation import Evaluator
from omrl_algos.logger import MetricsLogger, plot_learning_curve
from omrl_algos.registry import get_algorithm
from omrl_data.errors import BadInput

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"
EVAL_FILE = "eval.json"


@dataclass
class RunResult:
    run_dir: Path  # the run folder
    step: int  # meta-steps done
    eval: dict[str, Any] | None  # the last evaluation (see Evaluator.evaluate)


# ------------------------------------------------------------------------------ configuration
def resolve_config(
    algorithm: str,
    overrides: list[str] | tuple[str, ...] = (),
    config_file: str | Path | None = None,
    resume_dir: str | Path | None = None,
) -> RunConfig:
    """Defaults of ``algorithm`` (or a resumed run's saved config), then a config file, then overrides."""
    if resume_dir is not None:
        saved = Path(resume_dir) / "config.json"
        if not saved.is_file():
            raise BadInput(f"nothing to resume in {resume_dir}: no config.json there; start the run without --resume")
        cfg = read_run_config(saved)
        if cfg.algorithm != algorithm:
            raise BadInput(f"run folder {resume_dir} holds a {cfg.algorithm} run, not {algorithm}")
    else:
        cfg = default_config(algorithm)
    if config_file is not None:
        d = load_config_file(config_file)
        if d.get("algorithm", algorithm) != algorithm:
            raise BadInput(f"config file {config_file} is for {d['algorithm']}, not {algorithm}")
        d["algorithm"] = algorithm
        base = cfg.to_dict()
        _deep_update(base, d)
        cfg = RunConfig.from_dict(base)
    return apply_overrides(cfg, list(overrides))


def _deep_update(base: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v


def check_device(device: str) -> torch.device:
    """The torch device, or BadInput when it does not exist here."""
    try:
        d = torch.device(device)
    except RuntimeError:
        raise BadInput(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInput(f"device {device!r} requested but CUDA is not available here; use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise BadInput(f"device {device!r} does not exist; this machine has {torch.cuda.device_count()} CUDA devices")
    elif d.type != "cpu":
        raise BadInput(f"unsupported device {device!r}; use cpu, cuda or cuda:N")
    return d


def load_dataset(cfg: RunConfig) -> Any:
    """The run's dataset (DatasetNotFound in one line when the id is unknown)."""
    from omrl_data.dataset import load

    if not cfg.dataset:
        raise BadInput("no dataset given; pass --dataset ID (omrl-data list shows the ids)")
    return load(cfg.dataset, root=cfg.root)


def default_run_dir(cfg: RunConfig, dataset: Any) -> Path:
    name = (dataset.id or Path(str(dataset.path)).name).replace("/", "_")
    return Path("runs") / f"{cfg.algorithm}-{name}-s{cfg.train.seed}"


def check_dataset(cfg: RunConfig, dataset: Any) -> None:
    """Dataset/config mismatches that would only surface later, as one line, before training."""
    n_train = len(dataset.tasks.indices("train"))
    if n_train == 0:
        raise BadInput(f"dataset {dataset.id} has no train tasks; use a dataset with a train/test split")
    if len(dataset.tasks.indices("test")) == 0:
        raise BadInput(f"dataset {dataset.id} has an empty test split; evaluation needs held-out tasks (collect with a split)")
    for name, value in (("train.steps", cfg.train.steps), ("train.log_every", cfg.train.log_every)):
        if value < 1:
            raise BadInput(f"{name}={value} must be at least 1")
    for name, value in (("train.eval_every", cfg.train.eval_every), ("train.checkpoint_every", cfg.train.checkpoint_every)):
        if value < 0:
            raise BadInput(f"{name}={value} must be >= 0 (0 = off)")
    check_lr_schedule(cfg.train)


LR_DECAYS = ("none", "cosine", "linear")


def check_lr_schedule(t: TrainConfig) -> None:
    if t.lr_decay not in LR_DECAYS:
        raise BadInput(f"train.lr_decay={t.lr_decay!r} is not one of {', '.join(LR_DECAYS)}")
    if not 0.0 <= t.lr_final <= 1.0:
        raise BadInput(f"train.lr_final={t.lr_final} must be in [0, 1] (a fraction of the configured lr)")


def lr_factor(t: TrainConfig, step: int) -> float:
    """The outer lr of meta-step ``step`` (1-based) as a fraction of the configured one: 1 at the
    first step, ``lr_final`` at ``t.steps`` (a pure function of the step, so a resumed run follows
    the same schedule)."""
    if t.lr_decay == "none" or t.steps <= 1:
        return 1.0
    frac = min(max((step - 1) / (t.steps - 1), 0.0), 1.0)
    shape = 0.5 * (1.0 + math.cos(math.pi * frac)) if t.lr_decay == "cosine" else 1.0 - frac
    return t.lr_final + (1.0 - t.lr_final) * shape


def set_outer_lr(optimizer: Any, factor: float) -> None:
    """Scale every param group's lr to ``factor`` x the lr it was built with (kept as ``base_lr``)."""
    for group in optimizer.param_groups:
        group.setdefault("base_lr", group["lr"])
        group["lr"] = group["base_lr"] * factor


def resolve_dataset_settings(cfg: RunConfig, dataset: Any) -> None:
    """Settings that default to a value measured on the dataset (saved resolved in config.yaml).

    ``algo.reward_scale = 0`` (auto): ``1 / std`` of the training tasks' MC returns, so that the
    value works on targets of unit scale in every family (cheetah returns of ~300 and bandit
    returns of ~1 alike) and one inner SGD step at the default inner lr has the same size.
    """
    algo = cfg.algo
    if getattr(algo, "reward_scale", None) == 0:
        offsets = np.asarray(dataset.offsets)
        returns = np.concatenate([np.asarray(dataset.fields["mc_returns"][offsets[t] : offsets[t + 1]]) for t in dataset.tasks.indices("train")])
        std = float(np.std(returns)) if returns.size else 0.0
        algo.reward_scale = float(f"{1.0 / std:.3g}") if std > 1e-8 else 1.0


# Algorithm settings that size something: at least 1. Every other integer setting: at least 0.
_SIZE_SETTINGS = ("width", "depth", "latent_dim", "adv_width", "meta_batch", "support_size", "query_size", "batch_size", "perturbations")


def check_settings(cfg: RunConfig) -> None:
    """Values no algorithm can use, as one line before any work (seed, sizes, counts, NaN)."""
    import dataclasses
    import math

    from omrl_data.tasks.base import check_seed

    check_seed(cfg.train.seed, "train.seed (--seed)")
    for key, value in (("eval.episodes", cfg.eval.episodes), ("eval.adapt_batch", cfg.eval.adapt_batch)):
        if isinstance(value, int) and value < 1:
            raise BadInput(f"{key}={value} must be at least 1")
    groups = [("train", cfg.train), ("eval", cfg.eval)] + ([("algo", cfg.algo)] if dataclasses.is_dataclass(cfg.algo) else [])
    for prefix, group in groups:
        for f in dataclasses.fields(group):
            value, key = getattr(group, f.name), f"{prefix}.{f.name}"
            if isinstance(value, bool):
                continue
            if isinstance(value, int):
                low = 1 if prefix == "algo" and (f.name in _SIZE_SETTINGS or f.name.endswith(("_size", "_width"))) else 0
                if value < low:
                    raise BadInput(f"{key}={value} must be at least {low}")
            elif isinstance(value, float) and math.isnan(value):
                raise BadInput(f"{key}=nan is not a number; give a finite value")
            elif isinstance(value, tuple) and any(isinstance(v, int) and not isinstance(v, bool) and v < 0 for v in value):
                raise BadInput(f"{key}={list(value)} must hold values >= 0")


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run folder, or BadInput in one line when it is a file or cannot be written."""
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInput(f"run folder {run_dir} is a file; pass --out a folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise BadInput(f"cannot write the run folder {run_dir} ({e.strerror or e}); pass --out a writable folder") from None


def build_algorithm(cfg: RunConfig, obs_dim: int, act_dim: int, device: torch.device) -> Any:
    cls = get_algorithm(cfg.algorithm)
    return cls(cfg.algo, obs_dim, act_dim, device)


MAX_AUTO_THREADS = 4  # the networks are small: more intra-op threads than this do not pay


def auto_threads() -> int:
    """Torch threads for ``train.threads=0``: the cores this process may use minus the load
    average (other processes' work), at least 1 and at most MAX_AUTO_THREADS. Torch's own
    default takes every core and, on a shared machine, ran ~5x slower than one thread."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(MAX_AUTO_THREADS, cores - int(round(busy))))


def set_threads(cfg: RunConfig) -> int:
    """Apply ``train.threads`` (0 = :func:`auto_threads`) to torch; returns the number used."""
    n = cfg.train.threads if cfg.train.threads > 0 else auto_threads()
    torch.set_num_threads(n)
    return n


class Diverged(BadInput):
    """A training metric became NaN or infinite (the run stops; see train.stop_on_nan)."""


def check_finite(metrics: dict[str, Any], step: int, last_checkpoint: int) -> None:
    import math

    for key, value in metrics.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(v):
            kept = f"the last checkpoint is at meta-step {last_checkpoint}" if last_checkpoint > 0 else "no checkpoint was written"
            raise Diverged(
                f"{key} is {v} at meta-step {step}: training diverged and was stopped ({kept}); lower the learning "
                "rates, or pass --set train.stop_on_nan=false to continue anyway"
            )


# -------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, algo: Any, sampler: Any, step: int, cfg: RunConfig, dataset: Any) -> None:
    state = {
        "step": step,
        "algorithm": cfg.algorithm,
        "dataset_id": dataset.id,
        "obs_dim": algo.obs_dim,
        "act_dim": algo.act_dim,
        "config": cfg.to_dict(),
        "algo": algo.state_dict(),
        "optimizer": algo.optimizer.state_dict() if algo.optimizer is not None else None,
        "sampler": sampler.state_dict() if sampler is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)  # never a half-written checkpoint under the final name


def read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BadInput(f"checkpoint {path} does not exist")
    # weights_only: a checkpoint may come from someone else; its pickle may hold only tensors and
    # plain containers, never objects whose unpickling would run code.
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or unsafe file is a user-visible condition, not a bug
        why = "it holds objects other than tensors and plain values; it was not loaded" if isinstance(e, pickle.UnpicklingError) else type(e).__name__
        raise BadInput(f"checkpoint {path} cannot be read ({why}); use another checkpoint") from None
    missing = [k for k in ("step", "algorithm", "obs_dim", "act_dim", "config", "algo") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise BadInput(f"checkpoint {path} is not an omrl checkpoint (missing {', '.join(missing)}); use another checkpoint")
    return ckpt


def check_checkpoint_matches(ckpt: dict[str, Any], dataset: Any, path: Path) -> None:
    if (ckpt["obs_dim"], ckpt["act_dim"]) != (dataset.obs_dim, dataset.act_dim):
        raise BadInput(
            f"checkpoint {path} was trained with obs/act dims {ckpt['obs_dim']}/{ckpt['act_dim']} but dataset "
            f"{dataset.id} has {dataset.obs_dim}/{dataset.act_dim}; evaluate it on a dataset of the same family"
        )


def restore(ckpt: dict[str, Any], algo: Any, sampler: Any | None, device: torch.device) -> None:
    algo.load_state_dict(ckpt["algo"])
    if algo.optimizer is not None and ckpt.get("optimizer") is not None:
        algo.optimizer.load_state_dict(ckpt["optimizer"])
    if sampler is not None and ckpt.get("sampler") is not None:
        sampler.load_state_dict(ckpt["sampler"])
    torch.set_rng_state(ckpt["torch_rng"])
    if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])


# --------------------------------------------------------------------------------------- loop
def eval_metrics(result: dict[str, Any]) -> dict[str, float]:
    m = result["mean"]
    out = {f"eval/return_{k}": v for k, v in m.items() if k not in ("online", "normalised") and isinstance(v, (int, float))}
    for k, v in enumerate(m.get("episodes") or [], start=1):  # zero-shot: episode k of a trial
        out[f"eval/return_episode_{k}"] = v
    for k, v in enumerate(m.get("normalised_episodes") or [], start=1):
        if v is not None:
            out[f"eval/normalised_episode_{k}"] = v
    for k, v in (m.get("normalised") or {}).items():
        if v is not None:
            out[f"eval/normalised_{k}"] = v
    for s, v in m.get("online", {}).items():
        out[f"eval/online_return_{s}"] = v
    for row in result["tasks"]:
        out[f"eval/task_{row['task']}/return_after"] = row["after"]
        if (row.get("normalised") or {}).get("after") is not None:
            out[f"eval/task_{row['task']}/normalised_after"] = row["normalised"]["after"]
    return out


def train(
    cfg: RunConfig,
    resume: bool = False,
    progress: bool = True,
    make_env: Callable[[dict], Any] | None = None,
    console: Any = None,
) -> RunResult:
    """Train ``cfg.algorithm`` on ``cfg.dataset``, evaluating every ``eval_every`` meta-steps.

    Every check (dataset, splits, device, checkpoint dims, run folder) happens before the first
    meta-step. ``resume`` continues from ``<out>/checkpoints/latest.pt``.
    """
    device = check_device(cfg.train.device)
    check_settings(cfg)
    set_threads(cfg)
    dataset = load_dataset(cfg)
    check_dataset(cfg, dataset)
    record_used_settings(cfg, dataset, console)
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg, dataset)
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInput(f"run folder {run_dir} is a file; pass --out a folder")
    latest = run_dir / CHECKPOINT_DIR / LATEST
    ckpt = None
    if resume:
        ckpt = read_checkpoint(latest) if latest.exists() else None
        if ckpt is None:
            raise BadInput(f"nothing to resume in {run_dir}: no {CHECKPOINT_DIR}/{LATEST}; start the run without --resume")
        check_checkpoint_matches(ckpt, dataset, latest)
        if ckpt["algorithm"] != cfg.algorithm:
            raise BadInput(f"{latest} is a {ckpt['algorithm']} checkpoint, not {cfg.algorithm}")
    elif latest.exists():
        raise BadInput(f"run folder {run_dir} already holds a run; pass --resume to continue it or --out for a new folder")
    _remove_dead_temporaries(run_dir)
    if ckpt is not None and int(ckpt["step"]) >= cfg.train.steps:
        saved = _read_eval(run_dir)
        if saved is not None and saved.get("step") == int(ckpt["step"]):
            # A finished run: nothing to train, and its evaluation is on disk. Report it; append
            # nothing (evaluating again would duplicate rows in metrics.csv and the history).
            return RunResult(run_dir, int(ckpt["step"]), saved)

    torch.manual_seed(cfg.train.seed)
    if ckpt is None:
        resolve_dataset_settings(cfg, dataset)
    else:  # a resumed run keeps the settings it resolved when it started
        cfg.algo = RunConfig.from_dict(ckpt["config"]).algo
    algo = build_algorithm(cfg, dataset.obs_dim, dataset.act_dim, device)
    algo.set_action_bounds(*dataset.action_bounds)
    sampler = algo.make_sampler(dataset, cfg.train.seed, device)
    evaluator = Evaluator(dataset, cfg.eval, seed=cfg.train.seed, device=device, make_env=make_env)
    start = 0
    if ckpt is not None:
        restore(ckpt, algo, sampler, device)
        start = int(ckpt["step"])
    prepare_run_dir(run_dir)
    cfg.out = str(run_dir)
    cfg.save(run_dir)
    logger = MetricsLogger(run_dir, resume_step=start if resume else None)
    history = _read_history(run_dir, start) if resume else []
    last_eval: dict[str, Any] | None = None
    steps = cfg.train.steps

    def do_eval(step: int) -> None:
        nonlocal last_eval
        result = evaluator.evaluate(algo)
        result["step"] = step
        last_eval = result
        logger.log(step, eval_metrics(result))
        history.append({"step": step, **{k: v for k, v in result["mean"].items()}})
        _write_json(run_dir / EVAL_FILE, {"step": step, "dataset": dataset.id, "algorithm": cfg.algorithm, **result, "history": history})
        plot_learning_curve(run_dir, f"{cfg.algorithm} on {dataset.id}")

    bar = _progress(progress, console, steps, start)
    t0 = time.time()
    last_checkpoint = start
    try:
        for step in range(start + 1, steps + 1):
            if cfg.train.lr_decay != "none" and algo.optimizer is not None:
                set_outer_lr(algo.optimizer, lr_factor(cfg.train, step))
            metrics = algo.train_step(sampler)
            if cfg.train.stop_on_nan:
                check_finite(metrics, step, last_checkpoint)
            if step % cfg.train.log_every == 0 or step == steps:
                metrics["train/steps_per_s"] = (step - start) / max(time.time() - t0, 1e-9)
                logger.log(step, metrics)
            is_eval = (cfg.train.eval_every > 0 and step % cfg.train.eval_every == 0) or step == steps
            if is_eval:
                do_eval(step)
                save_checkpoint(run_dir / CHECKPOINT_DIR / LATEST, algo, sampler, step, cfg, dataset)
                last_checkpoint = step
            if cfg.train.checkpoint_every > 0 and step % cfg.train.checkpoint_every == 0:
                save_checkpoint(run_dir / CHECKPOINT_DIR / f"step_{step:06d}.pt", algo, sampler, step, cfg, dataset)
            if bar is not None:
                bar.advance(step, last_eval)
        if start >= steps and last_eval is None:  # resumed a finished run: evaluate again
            do_eval(start)
        algo.write_artifacts(run_dir, dataset)
    finally:
        if bar is not None:
            bar.stop()
        logger.close()
        evaluator.close()
    return RunResult(run_dir, max(start, steps), last_eval)


def record_used_settings(cfg: RunConfig, dataset: Any, console: Any = None) -> None:
    """Make the saved config say what the run uses: the catalog root the dataset came from (so
    ``omrl-eval RUN`` finds it under any ``OMRL_HOME``) and ``algo.meta_batch`` as capped at the
    number of training tasks (a note says so)."""
    from omrl_data.store import catalog

    if cfg.root is None and not Path(str(cfg.dataset)).expanduser().is_dir():
        cfg.root = str(catalog.resolve_root(None))
    n_train = len(dataset.tasks.indices("train"))
    asked = getattr(cfg.algo, "meta_batch", None)
    if isinstance(asked, int) and asked > n_train:
        cfg.algo.meta_batch = n_train
        if console is not None:
            console.print(f"[yellow]note:[/] algo.meta_batch={asked} is more than the {n_train} training tasks; using {n_train}",
                          highlight=False, soft_wrap=True)


def _remove_dead_temporaries(run_dir: Path) -> None:
    """Delete ``checkpoints/*.tmp<pid>`` and ``*.tmp`` JSON left by a writer that was killed."""
    from omrl_data.store.lock import pid_alive

    for p in (run_dir / CHECKPOINT_DIR).glob("*.tmp*") if (run_dir / CHECKPOINT_DIR).is_dir() else []:
        pid = p.suffix.removeprefix(".tmp")
        if not pid.isdigit() or not pid_alive(int(pid)) or int(pid) == os.getpid():
            p.unlink(missing_ok=True)
    for p in run_dir.glob("*.tmp") if run_dir.is_dir() else []:
        p.unlink(missing_ok=True)


def _read_eval(run_dir: Path) -> dict[str, Any] | None:
    try:
        d = json.loads((run_dir / EVAL_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return d if isinstance(d, dict) and isinstance(d.get("mean"), dict) and isinstance(d.get("tasks"), list) else None


def _read_history(run_dir: Path, step: int) -> list[dict[str, Any]]:
    p = run_dir / EVAL_FILE
    if not p.is_file():
        return []
    return [h for h in json.loads(p.read_text()).get("history", []) if h["step"] <= step]


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


class _Bar:
    """Rich progress bar: step, rate, ETA and the latest eval return."""

    def __init__(self, console: Any, total: int, start: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]meta-step"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[eval]}"),
            console=console,
        )
        self.task = self.progress.add_task("train", total=total, completed=start, rate="", eval="eval: -")
        self.t0, self.start = time.time(), start
        self.progress.start()

    def advance(self, step: int, last_eval: dict[str, Any] | None) -> None:
        rate = (step - self.start) / max(time.time() - self.t0, 1e-9)
        ev = "eval: -" if last_eval is None else f"eval after/before: {last_eval['mean']['after']:.1f}/{last_eval['mean']['before']:.1f}"
        self.progress.update(self.task, completed=step, rate=f"{rate:.2f} it/s", eval=ev)

    def stop(self) -> None:
        self.progress.stop()


def _progress(enabled: bool, console: Any, total: int, start: int) -> _Bar | None:
    return _Bar(console, total, start) if enabled else None


# --------------------------------------------------------------------------------- re-evaluate
def read_run_config(saved: Path) -> RunConfig:
    """A run folder's config.json, or BadInput in one line when it is damaged."""
    try:
        d = json.loads(saved.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"{saved} cannot be read ({type(e).__name__}); the run folder is damaged (its config.yaml may still be good)") from None
    if not isinstance(d, dict):
        raise BadInput(f"{saved} must hold a mapping of settings, not {type(d).__name__}; the run folder is damaged")
    return RunConfig.from_dict(d)
def evaluate_run(
    run_dir: str | Path,
    checkpoint: str = "latest",
    online_steps: list[int] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    make_env: Callable[[dict], Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluate a checkpoint of a run folder again (``omrl-eval``); returns the result and its file.

    checkpoint: ``latest``, a step number, or a file name under ``checkpoints/``.
    overrides: ``key=value`` settings on top of the run's config (e.g. ``eval.episodes=5``,
    ``dataset=...`` to evaluate on another dataset of the same family).
    """
    run_dir = Path(run_dir)
    saved = run_dir / "config.json"
    if not saved.is_file():
        raise BadInput(f"{run_dir} is not a run folder (no config.json); give the folder omrl-train wrote")
    cfg = apply_overrides(read_run_config(saved), list(overrides))
    check_settings(cfg)
    name = checkpoint if checkpoint.endswith(".pt") else (LATEST if checkpoint == "latest" else f"step_{int(checkpoint):06d}.pt" if checkpoint.isdigit() else checkpoint)
    path = run_dir / CHECKPOINT_DIR / name
    ckpt = read_checkpoint(path)
    device = check_device(cfg.train.device)
    set_threads(cfg)
    dataset = load_dataset(cfg)
    check_checkpoint_matches(ckpt, dataset, path)
    # The architecture comes from the checkpoint's own config; evaluation settings from cfg.
    algo = build_algorithm(RunConfig.from_dict(ckpt["config"]), dataset.obs_dim, dataset.act_dim, device)
    algo.load_state_dict(ckpt["algo"])
    evaluator = Evaluator(dataset, cfg.eval, seed=cfg.train.seed, device=device, make_env=make_env)
    try:
        result = evaluator.evaluate(algo, online_steps=online_steps, progress=progress)
    finally:
        evaluator.close()
    result["step"] = int(ckpt["step"])
    out = run_dir / f"eval_{Path(name).stem}.json"
    _write_json(out, {"checkpoint": name, "dataset": dataset.id, "algorithm": cfg.algorithm, **result})
    return result, out
