"""`simulate-ab --ope --ope-k K`: the whole-feed OPE section (normal and bootstrap intervals) of report.json, report.txt and report.png."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli import main

ESTIMATORS = {
    f"{sn}{e}" for sn in ("", "sn_") for e in ("slate_ips", "independent_ips", "cascade_ips", "cascade_dr", "pseudoinverse_factorised")
}


def test_ope_reports_every_slate_estimator_beside_the_feed_truth(tmp_path: Path):
    out = tmp_path / "ab"
    args = ["--control", "popularity", "--treatment", "random", "--members", "400", "--days", "1", "--pre-days", "0"]
    res = CliRunner().invoke(main, ["simulate-ab", *args, "--ope", "--ope-k", "2", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["ope_k"] == 2
    feed = report["ope"]["feed"]
    assert feed["k"] == 2 and feed["n_requests"] == report["ope"]["n_requests"]
    for t in feed["targets"].values():
        assert 0 < t["truth"] <= 2 and set(t["estimates"]) == ESTIMATORS
        for e in t["estimates"].values():
            assert set(e) == {"value", "se", "ci_low", "ci_high", "n", "covers", "boot_se", "boot_ci_low", "boot_ci_high", "boot_covers"}
    assert feed["bootstrap"]["n_boot"] == 1000 and "SeedSequence(0)" in feed["bootstrap"]["seed"]
    for t in report["ope"]["targets"].values():
        assert set(t["estimates"]) == {"ips", "snips", "dr"} and set(t["more_estimates"]) == {"dm", "sndr", "switch_dr(tau=20)"}
    text = (out / "report.txt").read_text()
    assert "off-policy evaluation of the feed (click count over the first 2 positions)" in text
    assert all(any(line.startswith(e + " ") for line in text.splitlines()) for e in ESTIMATORS)
    assert "[ ] : 95% percentile bootstrap over requests (1,000 resamples)" in text
    assert (out / "report.png").stat().st_size > 0


def test_ope_k_beyond_the_feed_is_refused(tmp_path: Path):
    args = ["--control", "random", "--treatment", "random", "--members", "400", "--days", "2", "--pre-days", "0", "--ope-k", "26"]
    res = CliRunner().invoke(main, ["simulate-ab", *args, "--out", str(tmp_path / "ab"), "--quiet"])
    assert res.exit_code == 2 and "--ope-k must be <= the feed length (25), got 26" in res.output, res.output
    assert not (tmp_path / "ab").exists()
