"""Writing a simulation to a logs directory, atomically.

Two ways to the same files' contents: :func:`write_simulation` writes a
finished in-memory :class:`~simulate.result.SimulationResult`;
:func:`simulate_to` writes the daily tables (impressions, sessions, events,
deliveries, and the truth's sessions and impressions) while the next day is
simulated, one Parquet row group per day, and the truth known before day 0
while day 0 runs, which takes most of the writing off the end of the run.
The rows are the same; the files' row-group layout differs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from dwellrank_logs.io import atomic_dir, table_path, write_json, write_parquet
from dwellrank_logs.protocol import Ranker
from dwellrank_logs.schema import TABLE_NAMES
from simulate.config import WorldConfig
from simulate.engine import simulate
from simulate.result import SimulationResult, require_tables

__all__ = ["TRUTH_DIR", "simulate_to", "write_simulation"]

#: Sub-directory with ground-truth Parquet tables (estimators never read it).
TRUTH_DIR = "truth"


def write_simulation(result: SimulationResult, out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write the six log tables, ``truth.json``, ``truth/*.parquet`` and ``summary.json``.

    Everything goes to a temporary directory that is renamed onto ``out`` only
    when all files are written, so a failure leaves no partial output.

    Raises
    ------
    OutputExistsError
        ``out`` is a non-empty directory and ``overwrite`` is false, or cannot be written.
    """
    target = Path(out)
    require_tables(result, "write_simulation")
    with atomic_dir(target, overwrite=overwrite) as tmp:
        _write_result(result, tmp)
    return target


def simulate_to(
    out: str | os.PathLike[str],
    config: WorldConfig | None = None,
    seed: int | np.random.Generator = 0,
    ranker: Ranker | Mapping[str, Ranker] | None = None,
    member_arm: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    overwrite: bool = False,
    keep_tables: bool = True,
) -> SimulationResult:
    """Simulate (see :func:`simulate.simulate`) and write the result to ``out`` as it is produced.

    The daily tables and their truth are encoded on the simulator's worker
    thread while the next day runs, the truth known before day 0 while day 0
    runs; members, updates and the updates' truth are written at the end.
    ``out`` is checked before any work, and the files appear only when all
    of them are written: a failed run leaves nothing behind.  The same seed
    gives the same bytes.

    Parameters
    ----------
    out : path-like
        The logs directory to write.
    config, seed, ranker, member_arm, progress
        As for :func:`simulate.simulate`.
    overwrite : bool
        Replace a non-empty ``out``.
    keep_tables : bool
        False returns a result with only ``members``, ``updates`` and the
        updates' truth (the rest is on disk); memory then holds 8 bytes per
        impression instead of the tables.

    Returns
    -------
    SimulationResult
        The same result :func:`simulate.simulate` returns (summary included),
        less the written daily tables when ``keep_tables`` is false.

    Raises
    ------
    OutputExistsError
        ``out`` is a non-empty directory and ``overwrite`` is false, or cannot be written.
    """
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        (tmp / TRUTH_DIR).mkdir()
        with _StreamedParquet(tmp) as streamed:
            result = simulate(
                config, seed=seed, ranker=ranker, member_arm=member_arm, progress=progress, sink=streamed.write, keep_tables=keep_tables
            )
        # What the simulation does not stream: members, updates and the updates' truth exist only at the end.
        _write_result(result, tmp, skip=streamed.written)
    return result


def _write_result(result: SimulationResult, tmp: Path, skip: frozenset[str] = frozenset()) -> None:
    """The log and truth tables but those already written (named in ``skip``), ``truth.json`` and ``summary.json``."""
    for name in TABLE_NAMES:
        if name not in skip:
            write_parquet(result.tables[name], table_path(tmp, name))
    (tmp / TRUTH_DIR).mkdir(exist_ok=True)
    for name, frame in result.truth_tables.items():
        if f"{TRUTH_DIR}/{name}" not in skip:
            write_parquet(frame, tmp / TRUTH_DIR / f"{name}.parquet")
    write_json(tmp / "truth.json", result.truth)
    write_json(tmp / "summary.json", result.summary)


class _StreamedParquet:
    """One Parquet writer per streamed table; each piece becomes one row group.

    pyarrow's writer, because it appends row groups to an open file (polars
    writes whole frames only).  Pieces without rows add no row group.  String columns are dictionary-encoded (a few
    distinct values each); other columns plain, which is faster to encode and
    about as small once compressed.  Files go into a directory that
    :func:`dwellrank_logs.io.atomic_dir` renames into place, so they need no atomic
    writes of their own.  A table whose pieces never had a row is written
    empty, with its columns, on a clean exit.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._empty: dict[str, pl.DataFrame] = {}

    @property
    def written(self) -> frozenset[str]:
        """Names of the tables this writer has (or, on exit, will have) written."""
        return frozenset(self._writers) | frozenset(self._empty)

    def write(self, tables: dict[str, pl.DataFrame]) -> None:
        for name, frame in tables.items():
            if frame.height == 0:
                self._empty.setdefault(name, frame.clear())
                continue
            arrow = frame.to_arrow()
            writer = self._writers.get(name)
            if writer is None:
                strings = [c for c, t in frame.schema.items() if t == pl.String]
                writer = pq.ParquetWriter(self.directory / f"{name}.parquet", arrow.schema, compression="zstd", use_dictionary=strings)
                self._writers[name] = writer
            writer.write_table(arrow, row_group_size=arrow.num_rows)  # pyarrow would split at 2^20 rows

    def __enter__(self) -> _StreamedParquet:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        # Close every writer; on a failed run a close error must not hide the run's own error.
        close_error: BaseException | None = None
        for writer in self._writers.values():
            try:
                writer.close()
            except Exception as err:
                close_error = close_error or err
        if exc_type is None and close_error is not None:
            raise close_error
        if exc_type is None:
            for name, frame in self._empty.items():
                if name not in self._writers:
                    write_parquet(frame, self.directory / f"{name}.parquet")
