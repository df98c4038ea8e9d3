"""The command line: outputs, determinism of bytes, and bad input (exit != 0, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from dwellrank_logs import TABLE_NAMES

SMALL = ["--members", "300", "--days", "4", "--quiet"]


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _bytes(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_simulate_writes_tables_truth_and_summary(tmp_path: Path):
    out = tmp_path / "logs"
    res = _run("simulate", *SMALL, "--seed", "3", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert res.output == ""  # --quiet
    for t in TABLE_NAMES:
        assert (out / f"{t}.parquet").stat().st_size > 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["t_skip_s"] == 2.5 and len(truth["intents"]) == 7
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"]["members"] == 300 and summary["seed"] == 3
    assert (out / "truth" / "intent_paths.parquet").exists()


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path):
    a, b, c = (tmp_path / n for n in "abc")
    for d, seed in ((a, "1"), (b, "1"), (c, "2")):
        assert _run("simulate", *SMALL, "--seed", seed, "--out", str(d)).exit_code == 0
    assert _bytes(a) == _bytes(b)
    assert _bytes(a)["impressions.parquet"] != _bytes(c)["impressions.parquet"]


def test_summary_printed_without_quiet(tmp_path: Path):
    res = _run("simulate", "--members", "200", "--days", "3", "--out", str(tmp_path / "o"))
    assert res.exit_code == 0
    assert "impressions" in res.output and "skip rate" in res.output and "seed 0" in res.output


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--members", "-5"], "--members must be a positive integer, got -5"),
        (["--days", "0"], "--days must be a positive integer, got 0"),
        (["--t-skip", "-1"], "--t-skip must be > 0"),
        (["--set", "phase_lengthfixed"], "--set takes FIELD=VALUE, got 'phase_lengthfixed'"),
        (["--set", "nope=1"], "--set: WorldConfig has no field 'nope'; fields: n_members, n_days"),
        (["--set", "phase_rate=abc"], "--set phase_rate: expected float like 1.2, got 'abc'"),
        (["--set", "phase_length=poisson"], "phase_length must be 'geometric' or 'fixed', got 'poisson'"),
        (["--set", "click_prob=0.2,0.2"], "click_prob must have one value per update type (5), got 2"),
    ],
)
def test_simulate_bad_config_exits_nonzero_and_writes_nothing(tmp_path: Path, args, pattern):
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["simulate", "--quiet", "--out", str(out), *args])
    assert res.exit_code == 2
    assert pattern in res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_simulate_refuses_non_empty_out_and_keeps_it(tmp_path: Path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    res = CliRunner().invoke(main, ["simulate", *SMALL, "--out", str(out)])
    assert res.exit_code == 2
    assert "not empty (pass --overwrite" in res.output
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    res = CliRunner().invoke(main, ["simulate", *SMALL, "--out", str(out), "--overwrite"])
    assert res.exit_code == 0
    assert not (out / "precious.txt").exists() and (out / "impressions.parquet").exists()


def test_simulate_unwritable_out(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(main, ["simulate", *SMALL, "--out", str(blocker / "sub")])
    assert res.exit_code == 2
    assert "cannot write output here" in res.output


def test_set_overrides_world_fields(tmp_path: Path):
    out = tmp_path / "o"
    res = _run(
        "simulate",
        *SMALL,
        "--out",
        str(out),
        "--set",
        "phase_length=fixed",
        "--set",
        "phase_rate=2.5",
        "--set",
        "click_prob=0.1,0.1,0.1,0.1,0.1",
    )
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "truth.json").read_text())["config"]
    assert cfg["phase_length"] == "fixed" and cfg["phase_rate"] == 2.5 and cfg["click_prob"] == [0.1] * 5
    assert cfg["n_members"] == 300  # --members still wins
