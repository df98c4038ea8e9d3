"""The A/B analysis of logged experiments (polars engine) against the simulated A/B test's own report.

The reference is :func:`simulate.ab.run_ab`'s in-memory result on the same simulation: its per-member
aggregates and metrics, effects, SRM check and daily trajectories come from the tables in memory; the
logged analysis reads the Parquet logs run_ab wrote and knows nothing of the world.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from cli import main
from dwellrank_logs.errors import ConfigError, SchemaError
from simulate.ab import logged_ab_report
from tests.simulate.ab_logged_cases import AB, BAD, ABLogs, bad_logs, config, simulated_ab_logs


@pytest.fixture(scope="module")
def ab(tmp_path_factory: pytest.TempPathFactory) -> ABLogs:
    return simulated_ab_logs(tmp_path_factory.mktemp("ab_logged"))


def test_logged_report_equals_the_simulated_one(ab: ABLogs):
    """Per-member aggregates, metrics and covariates, effects (CUPED), SRM and daily rows: identical, not close."""
    got = logged_ab_report(ab.logs, config())
    ref = ab.result
    assert got.members.columns == ref.members.columns and got.members.equals(ref.members)
    assert got.effects.equals(ref.effects)
    assert got.daily.equals(ref.daily)
    assert got.srm == ref.srm and got.power["mde_sd"] == ref.power["mde_sd"]
    assert got.summary["members_outside"] == 0 and got.summary["period"]["experiment_start"] == "2026-01-07"


def test_experiment_start_is_the_same_split_as_pre_days(ab: ABLogs):
    by_date = logged_ab_report(ab.logs, config(pre_days=0, experiment_start="2026-01-07"))
    assert by_date.config.pre_days == AB.pre_days and by_date.members.equals(ab.result.members)


def test_without_pre_period_the_effects_are_plain_welch(ab: ABLogs):
    """No CUPED: the headline p-values are the raw Welch ones of the full-window metrics."""
    got = logged_ab_report(ab.logs, config(pre_days=0))
    assert "pre_skip_rate" not in got.members.columns and got.summary["period"]["days"] == 5
    np.testing.assert_array_equal(got.effects["p_value"].to_numpy(), got.effects["raw_p_value"].to_numpy())


def test_members_outside_and_other_labels(ab: ABLogs, tmp_path: Path):
    """Null arms are left out and counted; relabelled arms map onto control/treatment; the others' rows are unchanged."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for t in ("sessions", "impressions"):
        (logs / f"{t}.parquet").symlink_to(ab.logs / f"{t}.parquet")
    m = pl.read_parquet(ab.logs / "members.parquet")
    outside = m["member_id"].to_numpy() % 7 == 0
    relabel = pl.when(pl.col("member_id") % 7 == 0).then(None).when(pl.col("arm") == "control").then(pl.lit("A")).otherwise(pl.lit("B"))
    m.with_columns(relabel.alias("arm")).write_parquet(logs / "members.parquet")
    got = logged_ab_report(logs, config(arms=("A", "B")))
    assert got.summary["members_outside"] == int(outside.sum()) and got.members.height == m.height - int(outside.sum())
    ref = ab.result.members.filter(pl.col("member_id") % 7 != 0)
    assert got.members.equals(ref)
    assert got.srm["n_control"] == int((ref["arm"] == "control").sum())


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input(ab: ABLogs, tmp_path_factory: pytest.TempPathFactory, case):
    logs = bad_logs(tmp_path_factory.getbasetemp() / "bad_polars", ab.logs, case)
    with pytest.raises((SchemaError, ConfigError), match=case.pattern):
        logged_ab_report(logs, config(**case.config))


def _cli(*args: str):
    return CliRunner().invoke(main, ["ab-report", *args])


def test_cli_writes_simulate_ab_files(ab: ABLogs, tmp_path: Path):
    """The same files as simulate-ab; the per-member Parquet equals run_ab's members table."""
    out = tmp_path / "rep"
    tskip = tmp_path / "tskip.json"
    tskip.write_text(json.dumps({"t_skip_s": AB.resolved_t_skip_s}))
    res = _cli("--logs", str(ab.logs), "--out", str(out), "--tskip-json", str(tskip), "--pre-days", "2")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "daily.parquet",
        "effects.parquet",
        "members.parquet",
        "report.json",
        "report.png",
        "report.txt",
    ]
    assert pl.read_parquet(out / "members.parquet").equals(ab.result.members)
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["pre_days"] == 2 and report["summary"]["engine"] == "polars"
    assert "skip_rate" in (out / "report.txt").read_text() and "CUPED-adjusted" in res.output


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--t-skip", "-1"], r"--t-skip must be a number > 0 \(seconds\), got -1\.0"),
        (["--t-skip", "2.5", "--tskip-json", "x.json"], r"--t-skip and --tskip-json both given"),
        (["--tskip-json", "nowhere.json"], r"--tskip-json nowhere\.json: cannot read"),
        (["--t-skip", "2.5", "--arms", "A"], r"--arms must be two different non-empty labels"),
        (["--t-skip", "2.5", "--experiment-start", "soon"], r"--experiment-start must be an ISO date"),
        (["--t-skip", "2.5", "--pre-days", "9"], r"--pre-days 9 leaves no experiment day"),
        (["--t-skip", "2.5", "--split", "1.5"], r"--split .* must be in the open interval \(0, 1\), got 1\.5"),
        (["--t-skip", "2.5", "--engine", "duckdb"], r"Invalid value for '--engine'"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(ab: ABLogs, tmp_path: Path, args: list[str], pattern: str):
    out = tmp_path / "rep"
    res = _cli("--logs", str(ab.logs), "--out", str(out), *args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    error = [ln for ln in lines if ln.startswith("error:") or ln.startswith("Error:")]
    assert len(error) == 1 and re.search(pattern, error[0]), res.output
    assert "Traceback" not in res.output and not out.exists()


def test_cli_refuses_an_output_inside_the_logs(ab: ABLogs):
    res = _cli("--logs", str(ab.logs), "--out", str(ab.logs / "rep"), "--t-skip", "2.5")
    assert res.exit_code == 2 and re.search(r"--out .*rep: lies inside the --logs input", res.output), res.output
    assert not (ab.logs / "rep").exists()
