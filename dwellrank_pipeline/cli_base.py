"""What every ``dwellrank`` command shares: the error boundary and the progress bar."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from dwellrank_logs.errors import DwellrankError, SchemaError
from dwellrank_pipeline.flags import in_flags

__all__ = ["ErrorsAsOneLine", "progress"]


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@contextmanager
def progress(total: int, label: str, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A click progress bar on a terminal; nothing when quiet or not a TTY.

    Yields a callback taking the number of steps done so far (or None).
    """
    if not _show_progress(quiet):
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        done = [0]

        def update(n: int) -> None:
            bar.update(n - done[0])
            done[0] = n

        yield update


class ErrorsAsOneLine(click.Group):
    """Turns library errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DwellrankError as exc:
            text = str(exc)
            if not isinstance(exc, SchemaError) and ctx.invoked_subcommand:
                text = in_flags(text, self.get_command(ctx, ctx.invoked_subcommand))
            click.echo(f"error: {' '.join(text.splitlines())}", err=True)
            ctx.exit(2)
