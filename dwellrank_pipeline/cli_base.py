"""What every ``dwellrank`` command shares: the error boundary and the progress bar."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from dwellrank_logs.errors import DroppedRowsWarning, DwellrankError, SchemaError
from dwellrank_pipeline.flags import in_flags

__all__ = ["ErrorsAsOneLine", "progress", "strict_option"]


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


def _strict(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        # Scoped to this command's context, so that an in-process caller (CliRunner) keeps its filters.
        ctx.with_resource(warnings.catch_warnings())
        warnings.simplefilter("error", DroppedRowsWarning)
    return value


strict_option = click.option(
    "--strict",
    is_flag=True,
    expose_value=False,
    callback=_strict,
    help="Fail, instead of warning, when rows or members are left out on purpose.",
)
"""``--strict``: a :class:`~dwellrank_logs.errors.DroppedRowsWarning` becomes an error (exit code 2)."""


class ErrorsAsOneLine(click.Group):
    """Turns library errors (and, under ``--strict``, dropped-rows warnings) into one line on stderr and exit code 2.

    Also the class of nested groups (``forecast``), so that a message names the flags of the
    command that ran, not of its group.
    """

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.parent is not None:
            return self._one_line_errors(ctx)
        # Warnings are held until the command ends: printed (one line each) when it succeeds, left
        # out when it fails, so that a failure is one line whose error names what went wrong.
        held: list[tuple[str, click.Command | None]] = []

        def hold(message: Warning | str, *_args: Any, **_kwargs: Any) -> None:
            running = click.get_current_context(silent=True)
            held.append((str(message), running.command if running is not None else None))

        shown = warnings.showwarning
        warnings.showwarning = hold
        try:
            result = self._one_line_errors(ctx)
        finally:
            warnings.showwarning = shown
        for message, command in held:
            click.echo(f"warning: {' '.join(in_flags(message, command).split())}", err=True)
        return result

    def _one_line_errors(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DwellrankError, DroppedRowsWarning) as exc:
            text = str(exc)
            if not isinstance(exc, SchemaError) and ctx.invoked_subcommand:
                text = in_flags(text, self.get_command(ctx, ctx.invoked_subcommand))
            click.echo(f"error: {' '.join(text.splitlines())}", err=True)
            ctx.exit(2)
