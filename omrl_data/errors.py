"""Errors a user can act on.

Library code raises :class:`OmrlError` (or a subclass) with a one-line message that says what was
wrong, what was expected and, where it helps, what to run instead. The CLI turns these into one
red line and a non-zero exit code; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class OmrlError(Exception):
    """A user-facing error. ``exit_code`` is what the CLI exits with (2 = bad input)."""

    exit_code = 1


class BadInput(OmrlError):
    """Arguments, ids or files the user gave are not acceptable."""

    exit_code = 2


class DatasetNotFound(BadInput):
    """No dataset with that id or path."""


class IntegrityError(OmrlError):
    """Stored data does not match its manifest (tampered, truncated or half-written)."""

    exit_code = 3


class LockedError(OmrlError):
    """Another process holds the lock on the target."""

    exit_code = 4


class StorageError(OmrlError):
    """The disk is full, read-only or not writable (while writing; a root that is not writable
    to begin with is BadInput). What was finished is kept: continue with ``--resume``."""

    exit_code = 5


# Exit codes of every omrl command (docs/exit-codes.md); keep them stable.
EXIT_CODES = {
    0: "success",
    1: "an unexpected error (a bug: please report it with the traceback)",
    2: "bad input: arguments, options, ids, files or folders the user gave; unreachable remotes",
    3: "integrity: stored data does not match its manifest or the schema (damaged or tampered)",
    4: "locked: another process is writing the same target",
    5: "storage: the disk filled up or became read-only while writing; continue with --resume",
    130: "interrupted (Ctrl-C)",
}
