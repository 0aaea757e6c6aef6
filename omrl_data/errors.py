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
