"""Writing simulations: the streamed writer against the in-memory one, failures, empty tables."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from logs import TABLE_NAMES
from logs.errors import OutputExistsError
from logs.io import scan_table
from simulate import PopularityRanker, WorldConfig, simulate, simulate_to, write_simulation

CFG = WorldConfig(n_members=400, n_days=5)


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def test_streamed_files_hold_the_rows_of_the_in_memory_write(tmp_path: Path):
    """Reference: write_simulation of simulate()'s in-memory result (polars' writer)."""
    streamed = simulate_to(tmp_path / "a", CFG, seed=7)
    write_simulation(simulate(CFG, seed=7), tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    for rel in _files(tmp_path / "b"):
        if rel.endswith(".parquet"):
            assert pl.read_parquet(tmp_path / "a" / rel).equals(pl.read_parquet(tmp_path / "b" / rel)), rel
        else:
            assert (tmp_path / "a" / rel).read_text() == (tmp_path / "b" / rel).read_text(), rel
    for name in TABLE_NAMES:  # the schema module accepts the streamed files as they are
        scan_table(tmp_path / "a" / f"{name}.parquet", name).collect()
    assert streamed.tables["impressions"].equals(pl.read_parquet(tmp_path / "a" / "impressions.parquet"))
    # One row group per simulated day for the daily tables.
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "a" / "impressions.parquet").metadata.num_row_groups == CFG.n_days


def test_failed_run_leaves_nothing_and_stops_early(tmp_path: Path):
    calls = []

    class Breaks(PopularityRanker):
        def rank(self, candidates, history, rng):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("ranker failed on day 3")
            return super().rank(candidates, history, rng)

    with pytest.raises(RuntimeError, match="day 3"):
        simulate_to(tmp_path / "out", CFG, seed=0, ranker=Breaks())
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary directory


def test_failing_sink_stops_the_simulation_within_two_days():
    days = []

    def sink(tables):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        simulate(WorldConfig(n_members=200, n_days=10), seed=0, progress=days.append, sink=sink)
    assert len(days) <= 3


def test_non_empty_out_is_refused_before_simulating(tmp_path: Path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    progress: list[int] = []
    with pytest.raises(OutputExistsError):
        simulate_to(out, CFG, seed=0, progress=progress.append)
    assert progress == [] and [p.name for p in out.iterdir()] == ["keep.txt"]


def test_table_without_rows_on_any_day_is_written_empty_with_its_columns(tmp_path: Path):
    res = simulate_to(tmp_path / "o", WorldConfig(n_members=100, n_days=3, delivery_rate=0.0), seed=1)
    assert res.tables["deliveries"].height == 0
    back = scan_table(tmp_path / "o" / "deliveries.parquet", "deliveries").collect()
    assert back.height == 0 and back.columns == res.tables["deliveries"].columns
