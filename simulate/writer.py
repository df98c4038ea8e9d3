"""The background writer: each day's tables are typed and handed to the sink while the next day runs.

One worker thread, so the days reach the sink in order.  It reads a day's
arrays and never writes to them, and the day loop never writes to them after
handing them over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import polars as pl

from simulate.config import WorldConfig
from simulate.summary import DayCounts, count_day
from simulate.tables import day_log_tables
from simulate.truth_tables import day_truth_tables

__all__ = ["DayArrays", "DayWriter", "FinishedDay", "Sink"]

#: Receives pieces of a run's tables in order, name -> DataFrame (see :func:`simulate.engine.simulate`).
Sink = Callable[[dict[str, pl.DataFrame]], None]


@dataclass(frozen=True)
class DayArrays:
    """One simulated day's arrays, as the day loop hands them to the writer.

    Attributes
    ----------
    imp, sess, events, deliveries : dict of str to ndarray
        :func:`simulate.impressions.view_feeds`, :func:`simulate.sessions.start_sessions`
        (with ``duration_s``), its events, :func:`simulate.deliveries.deliver`.
    intent : ndarray of int, shape (n_sessions,)
        Each session's intent.
    day : int
    """

    imp: dict[str, np.ndarray]
    sess: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    deliveries: dict[str, np.ndarray]
    intent: np.ndarray
    day: int


@dataclass(frozen=True)
class FinishedDay:
    """What the run keeps of a finished day: its tables (None once dropped) and its counts for the summary."""

    tables: dict[str, pl.DataFrame] | None
    counts: DayCounts


class DayWriter:
    """Types each day's tables on a worker thread and hands them to ``sink``.

    Use as a context manager around the day loop: :meth:`start` hands over the
    truth known before day 0, :meth:`submit` each day, :meth:`finish` waits for
    the last day and returns them all.  :meth:`submit` returns once the day
    before the submitted one is done, so at most one earlier day is still in
    the worker: memory stays bounded when the sink is slow, and a failed sink
    stops the run within a day (its error is raised from :meth:`submit` or
    :meth:`finish`).  On an error the sink is not called again and days not
    yet started are dropped.

    Parameters
    ----------
    sink : callable, optional
        Receives each piece (name -> DataFrame), on the worker thread.
    keep_tables : bool
        False drops each day's tables once the sink has them.
    """

    def __init__(self, cfg: WorldConfig, sink: Sink | None, keep_tables: bool) -> None:
        self._cfg = cfg
        self._keep = keep_tables
        self._stopped = threading.Event()
        self._sink = _guarded(sink, self._stopped) if sink is not None else None
        self._worker: ThreadPoolExecutor | None = None
        self._days: list[Future[FinishedDay]] = []
        self._behind: list[Future[Any]] = []

    def __enter__(self) -> DayWriter:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dwellrank-day-tables")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is not None:
            self._stopped.set()  # queued days skip the sink; those not started are dropped
            for f in self._days:
                f.cancel()
        self._running().shutdown(wait=True)

    def start(self, static_truth: dict[str, pl.DataFrame]) -> None:
        """Hand the sink the truth tables known before day 0 (as ``truth/<name>``)."""
        if self._sink is not None:
            self._behind = [self._running().submit(self._sink, {f"truth/{n}": f for n, f in static_truth.items()})]

    def submit(self, arrays: DayArrays) -> None:
        """Queue one day, then wait until the day before it is done."""
        self._days.append(self._running().submit(_finish_day, self._cfg, arrays, self._sink, self._keep))
        for f in self._behind:
            f.result()
        self._behind = [self._days[-1]]

    def finish(self) -> list[FinishedDay]:
        """Wait for the last day; every day's result, in order."""
        for f in self._behind:
            f.result()
        self._behind = []
        return [d.result() for d in self._days]

    def _running(self) -> ThreadPoolExecutor:
        if self._worker is None:
            raise RuntimeError("DayWriter is used outside its with block")
        return self._worker


def _guarded(sink: Sink, stopped: threading.Event) -> Sink:
    """``sink`` that is not called again once it raised or the run stopped."""

    def call(tables: dict[str, pl.DataFrame]) -> None:
        if stopped.is_set():
            return
        try:
            sink(tables)
        except BaseException:
            stopped.set()
            raise

    return call


def _finish_day(cfg: WorldConfig, arrays: DayArrays, sink: Sink | None, keep: bool) -> FinishedDay:
    """Type the day's log and truth tables, hand them to ``sink``, count what the summary needs."""
    a = arrays
    tables = {**day_log_tables(cfg, a.imp, a.sess, a.events, a.deliveries), **day_truth_tables(a.imp, a.sess, a.intent, a.day)}
    if sink is not None:
        sink(tables)
    return FinishedDay(tables=tables if keep else None, counts=count_day(cfg.t_skip_s, a.imp, tables))
