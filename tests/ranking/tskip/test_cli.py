"""``dwellrank estimate-tskip``: outputs, summary, exit codes, and nothing partial on error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from cli import main
from simulate import WorldConfig, simulate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A simulated impressions file (1,200 members x 8 days, truth T_skip 1.5 s)."""
    r = simulate(WorldConfig(n_members=1200, n_days=8, t_skip_s=1.5), seed=4)
    p = tmp_path_factory.mktemp("logs") / "impressions.parquet"
    r.tables["impressions"].write_parquet(p)
    return p, float(r.truth["t_skip_s"])


def _run(*args: str):
    return CliRunner().invoke(main, ["estimate-tskip", *args])


def _strict_json(path: Path) -> dict:
    def no_constants(c: str) -> None:
        raise AssertionError(f"non-standard JSON constant {c}")

    return json.loads(path.read_text(), parse_constant=no_constants)


def test_writes_json_png_and_summary(logs, tmp_path: Path):
    imp, truth = logs
    out, png = tmp_path / "r" / "tskip.json", tmp_path / "r" / "tskip.png"
    res = _run("--impressions", str(imp), "--out", str(out), "--plot", str(png))
    assert res.exit_code == 0, res.output
    d = _strict_json(out)
    assert abs(d["t_skip_s"] - truth) <= 0.25
    assert set(d["per_group"]) == {"text", "image", "video", "article", "job"}
    assert all(abs(g["threshold_s"] - truth) <= 0.25 for g in d["per_group"].values())
    curve = d["curve"]
    for key in ("edges_s", "counts", "probability", "ci_low", "ci_high", "cdf_action", "cdf_no_action"):
        assert key in curve
    assert d["single_tskip"]["consistent"] is True
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert f"T_skip = {d['t_skip_s']:.2f} s" in res.stdout and "one T_skip fits every group" in res.stdout
    assert len(res.stdout.splitlines()) <= 24  # one screen
    assert sorted(p.name for p in out.parent.iterdir()) == ["tskip.json", "tskip.png"]  # no temp leftovers


def test_dataset_directory_gives_the_estimate_of_the_whole_table(logs, tmp_path: Path):
    """Part files in Hive folders by update_type (the column only in the paths) = the single file."""
    imp, truth = logs
    df = pl.read_parquet(imp)
    d = tmp_path / "impressions"
    for (t,), part in df.group_by("update_type"):
        for i, chunk in enumerate(part.drop("update_type").iter_slices(part.height // 2 + 1)):
            (d / f"update_type={t}").mkdir(parents=True, exist_ok=True)
            chunk.write_parquet(d / f"update_type={t}" / f"part-{i}.parquet")
    (d / "_SUCCESS").write_bytes(b"")
    whole, parts = tmp_path / "whole.json", tmp_path / "parts.json"
    assert _run("--impressions", str(imp), "--out", str(whole), "--quiet").exit_code == 0
    res = _run("--impressions", str(d), "--out", str(parts))
    assert res.exit_code == 0, res.output
    a, b = _strict_json(whole), _strict_json(parts)
    assert a.pop("source") != b.pop("source")
    assert a == b  # bins are counts, so the order parts are read in cannot matter
    assert abs(b["t_skip_s"] - truth) <= 0.25 and set(b["per_group"]) == {"text", "image", "video", "article", "job"}


def test_bad_dataset_directory_exits_2_and_writes_nothing(logs, tmp_path: Path):
    imp, _ = logs
    d = tmp_path / "impressions"
    d.mkdir()
    pl.read_parquet(imp).write_parquet(d / "part-0.parquet")
    pl.read_parquet(imp).with_columns(pl.col("clicked").cast(pl.Int8)).write_parquet(d / "part-1.parquet")
    out = tmp_path / "out"
    res = _run("--impressions", str(d), "--out", str(out / "t.json"), "--plot", str(out / "t.png"))
    assert res.exit_code == 2, res.output
    assert re.search(r"part-1\.parquet: column 'clicked' is Int8, but Boolean in .*part-0\.parquet", res.stderr), res.stderr
    assert not out.exists()


def test_options_by_none_action_cols_bin_width_and_quiet(logs, tmp_path: Path):
    imp, truth = logs
    out = tmp_path / "t.json"
    res = _run(
        "--impressions",
        str(imp),
        "--by",
        "none",
        "--action-cols",
        "clicked",
        "--bin-width",
        "0.2",
        "--eps",
        "0.001",
        "--out",
        str(out),
        "--quiet",
    )
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    d = _strict_json(out)
    assert d["by"] is None and d["per_group"] == {}
    assert d["config"]["action_cols"] == ["clicked"] and d["config"]["bin_width_s"] == 0.2
    assert abs(d["t_skip_s"] - truth) <= 0.2
    assert np.allclose(np.diff(d["curve"]["edges_s"]), 0.2)


def test_dropped_rows_warn_on_stderr(logs, tmp_path: Path):
    imp, _ = logs
    bad = tmp_path / "bad.parquet"
    pl.read_parquet(imp).with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(float("nan")).otherwise(pl.col("dwell_s")).alias("dwell_s")
    ).write_parquet(bad)
    res = _run("--impressions", str(bad), "--quiet")
    assert res.exit_code == 0
    assert "warning:" in res.stderr and "dropped 3 row(s)" in res.stderr and "(3 NaN)" in res.stderr


def _bad_nan(tmp: Path) -> Path:
    p = tmp / "nan.parquet"
    n = 3000
    rng = np.random.default_rng(0)
    pl.DataFrame(
        {
            "update_type": ["text"] * n,
            "dwell_s": np.r_[np.nan, rng.exponential(3, n - 1)],
            "clicked": rng.random(n) < 0.2,
            "reacted": [False] * n,
            "commented": [False] * n,
            "shared": [False] * n,
        }
    ).write_parquet(p)
    return p


def _garbage(tmp: Path) -> Path:
    p = tmp / "garbage.parquet"
    p.write_bytes(b"not parquet at all")
    return p


def _empty(tmp: Path) -> Path:
    p = tmp / "empty.parquet"
    p.write_bytes(b"")
    return p


@pytest.mark.parametrize(
    ("make", "extra", "pattern"),
    [
        (lambda t: t / "missing.parquet", [], r"missing\.parquet: no such file"),
        (_empty, [], r"empty\.parquet: file is empty"),
        (_garbage, [], r"garbage\.parquet: not a readable Parquet file"),
        (_bad_nan, ["--strict"], r"nan\.parquet: column 'dwell_s' has unusable values \(1 NaN\)"),
        (_bad_nan, ["--dwell-col", "dwell"], r"nan\.parquet: impressions table is missing column\(s\) 'dwell'"),
        (_bad_nan, ["--action-cols", "clicked,liked"], r"missing column\(s\) 'liked'"),
        (
            _bad_nan,
            ["--min-rows", "5000"],
            r"nan\.parquet: the table has 2,999 impressions with usable 'dwell_s', fewer than --min-rows=5,000",
        ),
        (_bad_nan, ["--bin-width", "-0.5"], r"--bin-width must be a finite number > 0, got -0.5"),
        (_bad_nan, ["--eps", "2"], r"--eps must be in \[0, 1\), got 2.0"),
    ],
)
def test_errors_exit_2_one_line_and_write_nothing(tmp_path: Path, make, extra, pattern):
    src = make(tmp_path)
    out_dir = tmp_path / "out"
    res = _run("--impressions", str(src), *extra, "--out", str(out_dir / "t.json"), "--plot", str(out_dir / "t.png"))
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert re.search(pattern, err), err
    assert not out_dir.exists()  # neither JSON nor PNG, not even their folder


def test_out_is_a_directory(logs, tmp_path: Path):
    imp, _ = logs
    res = _run("--impressions", str(imp), "--out", str(tmp_path))
    assert res.exit_code == 2
    assert "--out" in res.stderr and "is a directory" in res.stderr


@pytest.mark.parametrize("failing", ["plot_tskip", "write_json"])
def test_a_failing_output_leaves_neither(logs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str):
    """Outputs are all-or-nothing: whichever of the PNG and the JSON fails, neither file appears."""
    import ranking.tskip.outputs as outputs

    def boom(*a, **k):
        raise RuntimeError("writer crashed")

    monkeypatch.setattr(outputs, failing, boom)
    imp, _ = logs
    out = tmp_path / "t.json"
    res = _run("--impressions", str(imp), "--out", str(out), "--plot", str(tmp_path / "t.png"))
    assert res.exit_code != 0
    assert list(tmp_path.iterdir()) == []
