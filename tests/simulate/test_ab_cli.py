"""`simulate-ab` on the command line: outputs, the text table, and bad input (exit != 0, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main

SMALL = ["--members", "400", "--days", "3", "--pre-days", "1"]


def _invoke(*args: str):
    return CliRunner().invoke(main, ["simulate-ab", *args])


def test_writes_outputs_with_ope(tmp_path: Path):
    out = tmp_path / "ab"
    res = _invoke("--control", "popularity", "--treatment", "oracle", *SMALL, "--seed", "1", "--ope", "--out", str(out), "--quiet")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "daily.parquet",
        "effects.parquet",
        "members.parquet",
        "report.json",
        "report.png",
        "report.txt",
    ]
    report = json.loads((out / "report.json").read_text())
    assert report["rankers"] == {"control": "popularity", "treatment": "oracle"}
    assert report["config"]["seed"] == 1 and report["config"]["split"] == 0.5
    ope = report["ope"]
    assert set(ope["targets"]) == {"control", "treatment"}
    for t in ope["targets"].values():
        assert 0 <= t["truth"] <= 1 and set(t["estimates"]) == {"ips", "snips", "dr"}
    effects = {e["metric"]: e for e in report["effects"]}
    assert effects["skip_rate"]["diff"] < 0 and effects["skip_rate"]["p_value"] < 0.05


def test_prints_one_screen_table(tmp_path: Path):
    res = _invoke("--control", "random", "--treatment", "popularity", *SMALL, "--out", str(tmp_path / "ab"))
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert any(line.startswith("skip_rate") for line in lines) and "seed 0" in res.output
    assert "control = random" in lines[0] and "treatment = popularity" in lines[0]
    assert len(lines) <= 25


def test_same_seed_same_bytes(tmp_path: Path):
    """Parquet outputs are byte-identical for the same seed (sums are taken in a fixed order)."""
    outs = [tmp_path / n for n in ("a", "b")]
    for out in outs:
        res = _invoke("--control", "random", "--treatment", "popularity", *SMALL, "--seed", "2", "--out", str(out), "--quiet")
        assert res.exit_code == 0, res.output
    for name in ("members.parquet", "effects.parquet", "daily.parquet"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--control", "nosuch", "--treatment", "random"], r"--control: unknown preset 'nosuch'; choose one of random, popularity"),
        (["--control", "random", "--treatment", "{tmp}/no_model"], r"--treatment: model directory '.*no_model' not found"),
        (["--control", "{tmp}/a_file", "--treatment", "random"], r"--control: '.*a_file' is a file, expected a model directory"),
        (
            ["--control", "random", "--treatment", "{tmp}/empty_model"],
            r"--treatment: .*(needs the ranking engine|incompatible or unreadable)",
        ),
        (
            ["--control", "random", "--treatment", "random", "--split", "0"],
            r"split \(the expected share .*\) must be in the open interval \(0, 1\), got 0.0",
        ),
        (["--control", "random", "--treatment", "random", "--split", "1"], r"must be in the open interval \(0, 1\), got 1.0"),
        (["--control", "random", "--treatment", "random", "--split", "1.5"], r"must be in the open interval \(0, 1\), got 1.5"),
        (
            ["--control", "random", "--treatment", "random", "--members", "30"],
            r"members: 30 members .* too few for a meaningful test: the minimum detectable effect would be \d\.\d\d standard deviations",
        ),
        (["--control", "random", "--treatment", "random", "--days", "0"], r"--days must be a positive integer, got 0"),
        (["--control", "random", "--treatment", "random", "--alpha", "2"], r"alpha .* got 2.0"),
        (["--control", "random", "--treatment", "random", "--ope-temperature", "0"], r"--ope-temperature must be a number > 0, got 0.0"),
    ],
)
def test_bad_input_exits_nonzero_and_writes_nothing(tmp_path: Path, args, pattern):
    (tmp_path / "a_file").write_text("not a model")
    (tmp_path / "empty_model").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "ab"
    res = _invoke(*SMALL, *[a.format(tmp=tmp_path) for a in args], "--out", str(out), "--quiet")  # later options win
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    assert __import__("re").search(pattern, res.output), res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_refuses_non_empty_out_before_working(tmp_path: Path):
    out = tmp_path / "ab"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = _invoke("--control", "random", "--treatment", "random", *SMALL, "--out", str(out))
    assert res.exit_code == 2 and "not empty (pass --overwrite" in res.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_missing_required_options():
    res = _invoke("--control", "random", "--out", "x")
    assert res.exit_code == 2 and "Missing option '--treatment'" in res.output
