"""Messages of the command line in the user's terms: library argument names as the flags they came from, warnings in one line.

The library's checks name their arguments (``n_days must be a positive
integer``); on the command line the user typed ``--days``.  ``dwellrank``'s
error handler passes every message but a file's (a
:class:`~dwellrank_logs.errors.SchemaError` names the file and column, which
is what the user gave) through :func:`in_flags`, with the one table
:data:`FLAG_OF`.
"""

from __future__ import annotations

import re
from typing import Any

import click

__all__ = ["FLAG_OF", "in_flags", "one_line_warning"]

# The one table from a library argument's name to the option a user types.  A name is
# replaced where the message names it as an argument: at its start, or anywhere for an
# identifier with an underscore; only with an option the command has, and never in a
# message that already names a flag (--set's) or a file's column (a SchemaError).
FLAG_OF = {
    "n_members": "--members",
    "members": "--members",
    "ab_members": "--members",
    "n_days": "--days",
    "days": "--days",
    "ab_days": "--days",
    "seed": "--seed",
    "t_skip_s": "--t-skip",
    "top_k": "--top-k",
    "holdout_days": "--holdout-days",
    "feature_set": "--feature-set",
    "dwell_col": "--dwell-col",
    "action_cols": "--action-cols",
    "by": "--by",
    "bin_width_s": "--bin-width",
    "eps": "--eps",
    "persist": "--persist",
    "min_rows_per_group": "--min-rows",
    "split": "--split",
    "alpha": "--alpha",
    "pre_days": "--pre-days",
    "ope_reward": "--ope-reward",
    "ope_temperature": "--ope-temperature",
    "warmup_members": "--warmup-members",
    "warmup_days": "--warmup-days",
    "max_epochs": "--epochs",
    "k_min": "--k-min",
    "k_max": "--k-max",
}


def in_flags(message: str, command: click.Command | None) -> str:
    """``message`` with the library argument names of :data:`FLAG_OF` replaced by ``command``'s options."""
    if command is None or message.startswith("--"):
        return message
    opts = {o for p in command.params for o in getattr(p, "opts", ())}
    for name, flag in FLAG_OF.items():
        if flag not in opts:
            continue
        if "_" in name:
            message = re.sub(rf"(?<![\w./-]){name}(?![\w/-])", flag, message)
        elif re.match(rf"{name}\b(?![/.-])", message):
            message = flag + message[len(name) :]
    return message


def one_line_warning(message: Warning | str, *_args: Any, **_kwargs: Any) -> None:
    """``warnings.showwarning`` for the command line: ``warning: <message>``, without the source file and line."""
    click.echo(f"warning: {' '.join(str(message).split())}", err=True)
