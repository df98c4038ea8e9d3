"""Exception types shared by every stage.

All of them derive from :class:`DwellrankError`, which the CLI turns into a
one-line message and a non-zero exit code.  Messages name the file, column or
argument, the rule that was broken and what arrived.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DroppedRowsWarning",
    "DwellrankError",
    "OutputError",
    "OutputExistsError",
    "SchemaError",
    "first_line",
]


class DwellrankError(Exception):
    """Base class of every error the library raises on purpose."""


class SchemaError(DwellrankError, ValueError):
    """A log table is missing, unreadable, or its columns break the schema."""


class ConfigError(DwellrankError, ValueError):
    """A configuration value or argument is out of its valid range."""


class OutputError(DwellrankError, OSError):
    """An output cannot be written: no permission, a read-only or full file system, a file in the way, one of the inputs.

    The message names the path and the system's reason (``strerror``).
    """


class OutputExistsError(OutputError, FileExistsError):
    """An output path already holds data and overwriting was not requested."""


class DroppedRowsWarning(UserWarning):
    """Rows or members that a stage leaves out on purpose, with their count and the rule that left them out.

    The CLI prints it as one ``warning:`` line; ``--strict`` turns it into an
    error (exit code 2), so that no row disappears without a word.
    """


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when empty), to quote a library's error in one-line messages."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
