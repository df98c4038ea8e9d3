"""dwellrank command line: one thin command per verb over the library functions."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from logs.errors import DwellrankError

__all__ = ["main"]


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@contextmanager
def _progress(total: int, label: str, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A click progress bar on a terminal; nothing when quiet or not a TTY."""
    if not _show_progress(quiet):
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        done = [0]

        def update(n: int) -> None:
            bar.update(n - done[0])
            done[0] = n

        yield update


class _Group(click.Group):
    """Turns library errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DwellrankError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.version_option("0.1.0", prog_name="dwellrank")
def main() -> None:
    """Dwell-time-aware feed ranking, engagement forecasting and simulation."""


@main.command()
@click.option("--members", "n_members", type=int, default=5000, show_default=True, help="Members in the world.")
@click.option("--days", "n_days", type=int, default=28, show_default=True, help="Days to simulate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same bytes.")
@click.option("--t-skip", "t_skip_s", type=float, default=None, help="Ground-truth T_skip in seconds (default 2.5).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory for the logs.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
def simulate(n_members: int, n_days: int, seed: int, t_skip_s: float | None, out: str, overwrite: bool, quiet: bool) -> None:
    """Simulate a feed and write the six log tables, ground truth and a summary."""
    from logs.io import atomic_dir
    from simulate import WorldConfig, write_simulation
    from simulate import simulate as run_simulation

    changes: dict[str, Any] = {"n_members": n_members, "n_days": n_days}
    if t_skip_s is not None:
        changes["t_skip_s"] = t_skip_s
    cfg = WorldConfig(**changes)
    # Refuse a non-empty --out before spending time simulating.
    with atomic_dir(out, overwrite=overwrite):
        pass
    with _progress(cfg.n_days, "simulating days", quiet) as bar:
        result = run_simulation(cfg, seed=seed, progress=bar)
    write_simulation(result, out, overwrite=overwrite)
    if not quiet:
        s = result.summary
        click.echo(f"wrote {out} (seed {seed}, {cfg.n_members} members x {cfg.n_days} days)")
        for table, rows in s["rows"].items():
            click.echo(f"  {table:<12} {rows:>10,} rows")
        click.echo(
            f"  skip rate {s['skip_rate']:.3f}  click rate {s['click_rate']:.4f}  "
            f"react {s['react_rate']:.4f}  comment {s['comment_rate']:.4f}  share {s['share_rate']:.4f}"
        )
        click.echo(f"  sessions per member-day {s['sessions_per_member_day']:.3f}  true T_skip {cfg.t_skip_s} s")


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True, help="Output directory (replaced).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True)
def demo(out: str, seed: int, quiet: bool) -> None:
    """The main job on built-in defaults: simulate the default world and report.

    Later stages (T_skip, training, ranking, A/B) extend this command as they land.
    The output directory is replaced on every run.
    """
    from pathlib import Path

    from simulate import WorldConfig, write_simulation
    from simulate import simulate as run_simulation

    cfg = WorldConfig()
    logs_dir = Path(out) / "logs"
    with _progress(cfg.n_days, "simulating days", quiet) as bar:
        result = run_simulation(cfg, seed=seed, progress=bar)
    write_simulation(result, logs_dir, overwrite=True)
    s = result.summary
    click.echo(f"[1/1] simulated {cfg.n_members} members x {cfg.n_days} days (seed {seed}) -> {logs_dir}")
    click.echo(f"      {s['rows']['impressions']:,} impressions, {s['rows']['sessions']:,} sessions, "
               f"skip rate {s['skip_rate']:.3f}, click rate {s['click_rate']:.4f}")


if __name__ == "__main__":
    main()
