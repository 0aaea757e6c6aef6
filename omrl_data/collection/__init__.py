"""Collecting multi-task offline datasets: SAC learners (per-task or shared) or random actions,
run by parallel workers (local processes or Ray), written through the staged, locked store.

``collect(CollectConfig(family="ant_dir", tasks=50))`` returns the new dataset id;
``find_dataset(config, root)`` returns the newest version already collected with the same
recipe (``same_recipe(config, metadata)``: execution and runtime fields ignored), so
``find_dataset(config) or collect(config)`` collects only what is missing.
"""
from __future__ import annotations

from omrl_data.collection.config import CollectConfig, SacConfig
from omrl_data.collection.recipe import find_dataset, same_recipe
from omrl_data.collection.runner import CollectionInterrupted, collect

__all__ = ["CollectConfig", "CollectionInterrupted", "SacConfig", "collect", "find_dataset", "same_recipe"]
