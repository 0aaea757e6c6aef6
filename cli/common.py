"""What every command shares: turning library errors into one red line and an exit code."""
from __future__ import annotations

import errno
import functools
import sys
from typing import Any, Callable

import typer
from rich.console import Console
from rich.table import Table

from omrl_data.errors import OmrlError

FILE_WIDTH = 200  # columns of tables and progress lines when the output is a file or a pipe


def _make_console(stderr: bool = False) -> Console:
    """A terminal gets its real width; a file or pipe (no terminal, no $COLUMNS) gets a wide
    default instead of Rich's 80 columns, so tables are not wrapped mid-word in logs."""
    import os

    stream = sys.stderr if stderr else sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    width = None if tty or os.environ.get("COLUMNS") else FILE_WIDTH
    return Console(stderr=stderr, width=width)


console = _make_console()
err_console = _make_console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print one red line on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# The filesystem refused a write: the environment, not a bug (see docs/exit-codes.md).
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def storage_error_line(e: OSError) -> str:
    where = f" {e.filename}" if getattr(e, "filename", None) else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        what, fix = f"the disk is full{' writing' + where if where else ''}", "free space"
    elif e.errno == errno.EROFS:
        what, fix = f"read-only file system{':' + where if where else ''}", "use a writable folder"
    else:
        what, fix = f"permission denied{':' + where if where else ''}", "fix the permissions or use another folder"
    return f"{what} ({e.strerror or e}); {fix}, then run the command again (a collection: with --resume)"


def stdin_is_terminal() -> bool:
    """Whether a prompt can be answered (a function, so that tests can pretend)."""
    return sys.stdin.isatty()


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for typer commands: OmrlError -> one red line + its exit code; a full or
    read-only disk -> one line, exit 5; Ctrl-C (also at a prompt) -> 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OmrlError as e:
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            sys.exit(130)
        except OSError as e:
            if e.errno in STORAGE_ERRNOS:
                fail(storage_error_line(e), 5)
            raise
        except Exception as e:
            if type(e).__name__ == "Abort":  # click's: Ctrl-C or end of input at a prompt
                err_console.print("[yellow]interrupted[/]")
                sys.exit(130)
            raise

    return wrapper


def run_app(app: typer.Typer) -> None:
    """Run a typer app so that usage errors, like library errors, are one red line.

    Click would print a multi-line box for a bad option; here it becomes
    ``error: <what was wrong> (see '<command> --help')`` with click's exit code (2).
    """
    try:  # typer >= 0.20 vendors click as typer._click
        from typer._click import exceptions as click_exc  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - older typer on real click
        from click import exceptions as click_exc

    try:
        result = app(standalone_mode=False)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except click_exc.ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare command: its help, as click would
            print(e.format_message())
            sys.exit(e.exit_code)
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        err_console.print(f"[bold red]error:[/] {e.format_message()}{hint}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    # With standalone_mode=False click returns the exit code of typer.Exit instead of exiting.
    sys.exit(result if isinstance(result, int) else 0)


def human_size(n: float) -> str:
    """Bytes as ``12.3 MB``."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def print_versions(rows: list[dict[str, Any]], title: str, time_key: str) -> None:
    """The table of dataset versions shared by ``list`` and ``list --remote``.

    rows: dicts with id, tasks, train_tasks, test_tasks, transitions, size_bytes, parent and
    ``time_key`` (created / published). The family is the id's second part, so it is left out.
    """
    table = Table(title=title, caption="tasks: all (train/test)")
    for col in ("id", "tasks", "transitions", "size", time_key, "parent"):
        table.add_column(col, justify="right" if col in ("transitions", "size") else "left", no_wrap=col in ("id", "transitions"))
    for r in rows:
        table.add_row(
            r["id"],
            f"{r.get('tasks')} ({r.get('train_tasks')}/{r.get('test_tasks')})",
            f"{r.get('transitions') or 0:,}",
            human_size(int(r.get("size_bytes") or 0)),
            str(r.get(time_key) or "-")[:16].replace("T", " "),
            r.get("parent") or "-",
        )
    console.print(table)
