"""Writing simulations: the streamed writer against the in-memory one, failures, empty tables."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from logs import TABLE_NAMES
from logs.errors import ConfigError, OutputExistsError
from logs.io import scan_table
from logs.schema import TABLES
from simulate import PopularityRanker, WorldConfig, simulate, simulate_to, summarize, write_simulation

CFG = WorldConfig(n_members=400, n_days=5)


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


@pytest.mark.parametrize("keep_tables", [True, False])
def test_streamed_files_hold_the_rows_of_the_in_memory_write(tmp_path: Path, keep_tables: bool):
    """Reference: write_simulation of simulate()'s in-memory result (polars' writer)."""
    streamed = simulate_to(tmp_path / "a", CFG, seed=7, keep_tables=keep_tables)
    write_simulation(simulate(CFG, seed=7), tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    for rel in _files(tmp_path / "b"):
        if rel.endswith(".parquet"):
            assert pl.read_parquet(tmp_path / "a" / rel).equals(pl.read_parquet(tmp_path / "b" / rel)), rel
        else:
            assert (tmp_path / "a" / rel).read_text() == (tmp_path / "b" / rel).read_text(), rel
    for name in TABLE_NAMES:  # the schema module accepts the streamed files as they are
        scan_table(tmp_path / "a" / f"{name}.parquet", name).collect()
    if keep_tables:
        assert streamed.tables["impressions"].equals(pl.read_parquet(tmp_path / "a" / "impressions.parquet"))
    else:  # only the tables that exist whole at the end stay in memory; the summary is complete
        assert set(streamed.tables) == {"members", "updates"} and set(streamed.truth_tables) == {"updates"}
    assert streamed.summary == summarize(simulate(CFG, seed=7))
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


@pytest.mark.parametrize("keep_tables", [True, False])
def test_table_without_rows_on_any_day_is_written_empty_with_its_columns(tmp_path: Path, keep_tables: bool):
    res = simulate_to(tmp_path / "o", WorldConfig(n_members=100, n_days=3, delivery_rate=0.0), seed=1, keep_tables=keep_tables)
    assert res.summary["rows"]["deliveries"] == 0
    back = scan_table(tmp_path / "o" / "deliveries.parquet", "deliveries").collect()
    assert back.height == 0 and back.columns == list(TABLES["deliveries"].names)


def test_keep_tables_false_needs_a_sink():
    with pytest.raises(ConfigError, match="keep_tables=False needs a sink"):
        simulate(CFG, seed=0, keep_tables=False)


def test_summary_from_daily_counts_matches_the_tables():
    """Reference: summarize() over the finished tables (polars), for a world with and one without impressions."""
    for cfg in (CFG, WorldConfig(n_members=30, n_days=2, post_rate_mean=0.0)):
        res = simulate(cfg, seed=2)
        assert res.summary == summarize(res)


def test_world_without_impressions_streams_empty_tables(tmp_path: Path):
    res = simulate_to(tmp_path / "o", WorldConfig(n_members=30, n_days=2, post_rate_mean=0.0), seed=2, keep_tables=False)
    assert res.summary["rows"]["impressions"] == 0 and "skip_rate" not in res.summary
    for name in ("impressions", "truth/impressions"):
        assert pl.read_parquet(tmp_path / "o" / f"{name}.parquet").height == 0
