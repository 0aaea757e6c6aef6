"""Checking a training configuration before any data exist, so that a bad setting costs a second,
not a multi-minute collection followed by a failure."""
from __future__ import annotations

from typing import Any

from omrl_data.errors import BadInput


def resolve_training(algorithm: str, overrides: list[str], family: str, rows_per_task: int | None = None) -> Any:
    """The run config of ``omrl-train <algorithm> --set ...`` (without a dataset yet), checked.

    Raises BadInput (one line) for: an unknown algorithm or setting, a value of the wrong type,
    counts that must be positive (meta-steps, log interval, episodes, adaptation batch), negative
    intervals or seeds, a device that is not here, settings that cannot build the networks for
    ``family``'s observation and action sizes, and batches larger than ``rows_per_task`` (the rows
    the recipe will collect per task).
    """
    import torch

    from omrl_algos.train import build_algorithm, check_device, check_lr_schedule, resolve_config
    from omrl_data.tasks import get_family

    cfg = resolve_config(algorithm, list(overrides))
    t, e = cfg.train, cfg.eval
    for name, value in (("train.steps", t.steps), ("train.log_every", t.log_every), ("eval.episodes", e.episodes),
                        ("eval.adapt_batch", e.adapt_batch), ("eval.adapt_draws", e.adapt_draws)):
        if value < 1:
            raise BadInput(f"{name}={value} must be at least 1")
    for name, value in (("train.eval_every", t.eval_every), ("train.checkpoint_every", t.checkpoint_every),
                        ("train.seed", t.seed), ("train.threads", t.threads)):
        if value < 0:
            raise BadInput(f"{name}={value} must be >= 0")
    check_device(t.device)
    check_lr_schedule(t)
    fam = get_family(family)
    try:
        build_algorithm(cfg, int(fam.obs_dim), int(fam.act_dim), torch.device("cpu"))
    except BadInput:
        raise
    except Exception as err:  # noqa: BLE001 - e.g. a negative width reaches torch
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInput(f"{algorithm}: these settings cannot build its networks ({first}); check the algo.* settings") from None
    if rows_per_task is not None:
        a = cfg.algo
        need = int(getattr(a, "support_size", 0) or 0) + int(getattr(a, "query_size", 0) or 0)
        need = max(need, int(getattr(a, "batch_size", 0) or 0))
        for what, n in (("the support + query batch", need), ("eval.adapt_batch", e.adapt_batch)):
            if n > rows_per_task:
                raise BadInput(f"{algorithm}: {what} ({n} rows) exceeds the {rows_per_task} rows per task the "
                               "recipe collects; lower it or collect more steps per task")
    return cfg
