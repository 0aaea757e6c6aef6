"""Registered algorithms: name -> ``module:Class`` (imported on first use).

Adding an algorithm is one file with a :class:`~omrl_algos.base.MetaAlgorithm` subclass and
one line here.
"""
from __future__ import annotations

import importlib

from omrl_data.errors import BadInput

ALGORITHMS: dict[str, str] = {
    "macaw": "omrl_algos.macaw:Macaw",
    "macega": "omrl_algos.macega:Macega",
    "mtft": "omrl_algos.mtft:MultiTaskFineTune",
    "metabc": "omrl_algos.metabc:MetaBC",
    "r2pgo": "omrl_algos.r2pgo:R2pgo",
    "focal": "omrl_algos.focal:Focal",
    "corro": "omrl_algos.corro:Corro",
    "csro": "omrl_algos.csro:Csro",
    "borel": "omrl_algos.borel:Borel",
    "pearl": "omrl_algos.pearl:Pearl",
}


def algorithm_names() -> list[str]:
    return sorted(ALGORITHMS)


def get_algorithm(name: str) -> type:
    """The algorithm class registered as ``name`` (BadInput naming the registered ones)."""
    if name not in ALGORITHMS:
        raise BadInput(f"unknown algorithm {name!r}; registered: {', '.join(algorithm_names())}")
    module, cls = ALGORITHMS[name].split(":")
    return getattr(importlib.import_module(module), cls)
