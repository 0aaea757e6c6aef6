"""What every command shares: turning library errors into one red line and an exit code."""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import typer
from rich.console import Console

from omrl_data.errors import OmrlError

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print one red line on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for typer commands: OmrlError -> one red line + its exit code; Ctrl-C -> 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OmrlError as e:
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            sys.exit(130)

    return wrapper
