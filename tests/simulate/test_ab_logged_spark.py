"""Parity of the Spark reduction of a logged experiment with the polars engine's, on the logs of a small simulated A/B test.

Per-member aggregates (counts and float sums) and the daily sums must be identical, not close: both engines
sum seconds as integer nanoseconds (``simulate.ab.split_seconds``), whatever the layout of the files, so the
test also shuffles the impressions into part files.  Bad input gets the polars engine's one-line messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.spark, pytest.mark.slow]

from dwellrank_logs.errors import ConfigError, SchemaError  # noqa: E402
from simulate.ab import analyse_reduction, logged_ab_report, reduce_logs  # noqa: E402
from simulate.ab.logged_spark import reduce_logs_spark  # noqa: E402
from tests.simulate.ab_logged_cases import BAD, ABLogs, bad_logs, config, simulated_ab_logs  # noqa: E402


@pytest.fixture(scope="module")
def ab(tmp_path_factory: pytest.TempPathFactory) -> ABLogs:
    return simulated_ab_logs(tmp_path_factory.mktemp("ab_logged_spark"))


def _assert_same_reduction(got: Any, ref: Any) -> None:
    assert got.arms.equals(ref.arms) and got.n_outside == ref.n_outside and got.period == ref.period
    assert got.experiment.schema == ref.experiment.schema and got.experiment.equals(ref.experiment)
    assert (got.pre is None) == (ref.pre is None) and (got.pre is None or got.pre.equals(ref.pre))


def test_per_member_aggregates_identical_to_polars(ab: ABLogs, spark: Any):
    """Every aggregate of both windows bit-identical; the report's members and effects then identical too."""
    ref = reduce_logs(ab.logs, config())
    got = reduce_logs_spark(ab.logs, config(), spark)
    _assert_same_reduction(got, ref)
    assert float(got.experiment["feed_dwell_s"].sum()) > 0  # the float sums were compared on real data
    assert got.daily.equals(ref.daily)  # counts, rates and the per-arm-day time sums
    report = analyse_reduction(got, config())  # what logged_ab_report(engine='spark') returns, without reducing again
    assert report.members.equals(ab.result.members) and report.effects.equals(ab.result.effects)


def test_order_of_the_rows_does_not_matter(ab: ABLogs, tmp_path: Path, spark: Any):
    """Impressions shuffled into 4 part files and members relabelled/partly outside: both engines still equal the in-memory sums."""
    logs = tmp_path / "logs"
    (logs / "impressions.parquet").mkdir(parents=True)
    (logs / "sessions.parquet").symlink_to(ab.logs / "sessions.parquet")
    imp = pl.read_parquet(ab.logs / "impressions.parquet").sample(fraction=1.0, shuffle=True, seed=3)
    for k, part in enumerate(np.array_split(np.arange(imp.height), 4)):
        imp[part].write_parquet(logs / "impressions.parquet" / f"part-{k}.parquet")
    m = pl.read_parquet(ab.logs / "members.parquet")
    relabel = pl.when(pl.col("member_id") % 5 == 0).then(None).when(pl.col("arm") == "control").then(pl.lit("c")).otherwise(pl.lit("t"))
    m.with_columns(relabel.alias("arm")).write_parquet(logs / "members.parquet")
    cfg = config(arms=("c", "t"))
    ref_members = ab.result.members.filter(pl.col("member_id") % 5 != 0)
    for red in (reduce_logs(logs, cfg), reduce_logs_spark(logs, cfg, spark)):
        aggregates = red.experiment.columns[1:]
        assert red.n_outside == int((m["member_id"] % 5 == 0).sum())
        assert red.experiment.equals(ref_members.select("member_id", *aggregates))
    assert reduce_logs_spark(logs, cfg, spark).daily.equals(reduce_logs(logs, cfg).daily)


def test_spark_dataframes_as_input(ab: ABLogs, spark: Any):
    tables = {t: spark.read.parquet(str(ab.logs / f"{t}.parquet")) for t in ("members", "sessions", "impressions")}
    _assert_same_reduction(reduce_logs_spark(tables, config(), spark), reduce_logs(ab.logs, config()))


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input_same_message_as_polars(ab: ABLogs, tmp_path_factory: pytest.TempPathFactory, spark: Any, case):
    logs = bad_logs(tmp_path_factory.getbasetemp() / "bad_spark", ab.logs, case)
    cfg = config(**case.config)
    with pytest.raises((SchemaError, ConfigError), match=case.pattern) as polars_error:
        logged_ab_report(logs, cfg)
    with pytest.raises(type(polars_error.value)) as spark_error:
        logged_ab_report(logs, cfg, engine="spark", spark=spark)
    assert str(spark_error.value) == str(polars_error.value)
    assert "\n" not in str(spark_error.value)


def test_cli_spark_writes_the_polars_files(ab: ABLogs, tmp_path: Path, spark: Any):
    """ab-report --engine spark (reusing the running session): members and effects Parquet byte-identical to --engine polars'."""
    from click.testing import CliRunner

    from cli import main

    outs = {}
    for engine in ("polars", "spark"):
        outs[engine] = tmp_path / engine
        args = ["ab-report", "--logs", str(ab.logs), "--out", str(outs[engine]), "--t-skip", "2.5", "--pre-days", "2", "--quiet"]
        res = CliRunner().invoke(main, [*args, "--engine", engine])
        assert res.exit_code == 0, res.output
    for f in ("members.parquet", "effects.parquet"):
        assert (outs["spark"] / f).read_bytes() == (outs["polars"] / f).read_bytes()
    one_arm = bad_logs(tmp_path, ab.logs, next(c for c in BAD if c.id == "one-arm-only"))
    lines = {}
    for engine in ("polars", "spark"):
        res = CliRunner().invoke(
            main, ["ab-report", "--logs", str(one_arm), "--out", str(tmp_path / "x"), "--t-skip", "2.5", "--engine", engine]
        )
        assert res.exit_code == 2 and "Traceback" not in res.output
        lines[engine] = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines["spark"] == lines["polars"] and len(lines["polars"]) == 1 and lines["polars"][0].startswith("error: ")
