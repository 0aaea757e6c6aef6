"""`omrl-train` and `omrl-eval`."""
from __future__ import annotations

import typer

app = typer.Typer(name="omrl-train", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
eval_app = typer.Typer(name="omrl-eval", add_completion=False, pretty_exceptions_enable=False)


def main() -> None:
    app()


def eval_main() -> None:
    eval_app()
