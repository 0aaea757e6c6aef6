"""`omrl-data`: task families, collection, catalog, slices, interop and publishing.

Each group of commands lives in its own module with a ``register(app)`` function; this file only
assembles them.
"""
from __future__ import annotations

import typer

app = typer.Typer(
    name="omrl-data",
    help="Multi-task offline datasets for offline meta-RL: tasks, collection, catalog, publishing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _register_all() -> None:
    from cli import data_catalog, data_collect, data_share, data_tasks

    for module in (data_tasks, data_collect, data_catalog, data_share):
        module.register(app)


_register_all()


def main() -> None:
    from cli.common import run_app

    run_app(app)
