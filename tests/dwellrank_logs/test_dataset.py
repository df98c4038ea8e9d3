"""Parquet dataset directories (Spark/Hive/pyarrow part files) read as one table."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.dataset as pads
import pytest

from dwellrank_logs import SchemaError, open_parquet, parquet_parts, scan_logs, scan_table


@pytest.fixture(scope="module")
def impressions(small_world) -> pl.DataFrame:
    return small_world.tables["impressions"]


def _split(df: pl.DataFrame, d: Path, n: int = 3) -> list[Path]:
    """Write ``df`` as ``n`` part files in nested folders, with Spark's markers beside them."""
    d.mkdir(parents=True)
    (d / "_SUCCESS").write_bytes(b"")
    size = -(-df.height // n)
    paths = []
    for i in range(n):
        p = d / f"batch={i}" / f"part-{i:05d}.snappy.parquet"
        p.parent.mkdir()
        df.slice(i * size, size).write_parquet(p)
        (p.parent / f".{p.name}.crc").write_bytes(b"junk")
        paths.append(p)
    return paths


def test_parts_are_read_as_one_table(impressions, tmp_path: Path):
    d = tmp_path / "impressions.parquet"  # Spark names the folder like the file
    paths = _split(impressions, d)
    assert parquet_parts(d) == sorted(paths)
    got = open_parquet(d, "impressions").collect()
    assert got.drop("batch").equals(impressions)
    # Hive directories become columns, counted as pyarrow's dataset reader counts them.
    ref = pads.dataset(d, format="parquet", partitioning="hive", exclude_invalid_files=False, ignore_prefixes=[".", "_"]).to_table(
        columns=["batch"]
    )
    assert got["batch"].value_counts(sort=True).rows() == pl.from_arrow(ref)["batch"].value_counts(sort=True).rows()
    # So a logs directory may hold a table as a folder of parts.
    lf = scan_logs(tmp_path, ("impressions",))["impressions"]
    assert lf.select(pl.len()).collect().item() == impressions.height


def test_hive_columns_start_below_the_directory(impressions, tmp_path: Path):
    d = tmp_path / "region=eu" / "imp"  # a key=value folder above the dataset is not a column
    for t in ("video", "text"):
        p = d / f"update_type={t}" / "part-0.parquet"
        p.parent.mkdir(parents=True)
        impressions.filter(pl.col("update_type") == t).drop("update_type").write_parquet(p)
    lf = scan_table(d, "impressions", columns=("update_type", "dwell_s"))
    assert "region" not in lf.collect_schema()
    counts = dict(lf.group_by("update_type").len().collect().rows())
    truth = dict(impressions.filter(pl.col("update_type").is_in(["video", "text"])).group_by("update_type").len().rows())
    assert counts == truth


def _write(df: pl.DataFrame, p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(p)


BAD = [
    (
        "no parts",
        lambda d, df: (d.mkdir(), (d / "_SUCCESS").write_bytes(b"")),
        r"imp: directory holds no \*\.parquet files \(expected the impressions table",
    ),
    (
        "not parquet",
        lambda d, df: (_write(df, d / "a.parquet"), (d / "notes.txt").write_text("x")),
        r"imp/notes\.txt: not named \*\.parquet; the impressions dataset directory .*imp must hold only Parquet part files",
    ),
    (
        "empty part",
        lambda d, df: (_write(df, d / "a.parquet"), (d / "b.parquet").write_bytes(b"")),
        r"imp/b\.parquet: file is empty, expected the impressions table",
    ),
    (
        "corrupt part",
        lambda d, df: (_write(df, d / "a.parquet"), (d / "b.parquet").write_bytes(b"PAR1 not a footer")),
        r"imp/b\.parquet: not a readable Parquet file \(",
    ),
    (
        "missing column",
        lambda d, df: (_write(df, d / "a.parquet"), _write(df.drop("shared"), d / "b.parquet")),
        r"imp/b\.parquet: missing column\(s\) 'shared' compared with .*imp/a\.parquet",
    ),
    (
        "extra column",
        lambda d, df: (_write(df, d / "a.parquet"), _write(df.with_columns(pl.lit(1).alias("x")), d / "b.parquet")),
        r"imp/b\.parquet: extra column\(s\) 'x'",
    ),
    (
        "type differs",
        lambda d, df: (_write(df, d / "a.parquet"), _write(df.with_columns(pl.col("dwell_s").cast(pl.Float32)), d / "b.parquet")),
        r"imp/b\.parquet: column 'dwell_s' is Float32, but Float64 in .*imp/a\.parquet",
    ),
    (
        "unfinished write",
        lambda d, df: (_write(df, d / "a.parquet"), _write(df, d / "_temporary" / "0" / "b.parquet")),
        r"imp/_temporary/0/b\.parquet: inside '_temporary', which marks an unfinished write",
    ),
    (
        "dangling link",
        lambda d, df: (_write(df, d / "a.parquet"), (d / "b.parquet").symlink_to(d / "gone.parquet")),
        r"imp/b\.parquet: cannot read \(No such file or directory\)",
    ),
    (
        "hive keys differ",
        lambda d, df: (_write(df, d / "k=1" / "a.parquet"), _write(df, d / "j=2" / "b.parquet")),
        r"imp/k=1/a\.parquet: sits under k=, but .*imp/j=2/b\.parquet under j=; every part .* same Hive key=value folders",
    ),
    (
        "hive depths differ",
        lambda d, df: (_write(df, d / "k=1" / "a.parquet"), _write(df, d / "k=2" / "j=3" / "b.parquet")),
        r"imp/k=2/j=3/b\.parquet: sits under k=/j=, but .*imp/k=1/a\.parquet under k=",
    ),
    (
        "plain beside hive",
        lambda d, df: (_write(df, d / "k=1" / "a.parquet"), _write(df, d / "z.parquet")),
        r"imp/z\.parquet: sits under no key=value folder, but",
    ),
    (
        "plain folder in hive",
        lambda d, df: (_write(df, d / "k=1" / "a.parquet"), _write(df, d / "k=2" / "sub" / "b.parquet")),
        r"sub/b\.parquet: sits under k=, and a folder that is not key=value",
    ),
    (
        "key also a column",
        lambda d, df: _write(df, d / "update_type=video" / "a.parquet"),
        r"a\.parquet: column 'update_type' is both a Hive folder key and a column of the file",
    ),
    (
        "linked twice",
        lambda d, df: (_write(df, d / "x" / "a.parquet"), (d / "y").symlink_to(d / "x")),
        r"imp/[xy]: reached twice through symbolic links",
    ),
]


@pytest.mark.parametrize(("name", "make", "pattern"), BAD, ids=[b[0] for b in BAD])
def test_bad_datasets_name_the_part(impressions, tmp_path: Path, name, make, pattern):
    d = tmp_path / "imp"
    make(d, impressions.head(50))
    with pytest.raises(SchemaError, match=pattern) as info:
        open_parquet(d, "impressions")
    assert "\n" not in str(info.value)


def test_links_and_bracketed_names_are_followed_and_checked(impressions, tmp_path: Path):
    """polars follows linked folders, so their parts are checked too; '[' in a path is not a glob."""
    df = impressions.head(100)
    ext = tmp_path / "ext"
    _write(df.with_columns(pl.col("clicked").cast(pl.Int8)), ext / "b.parquet")
    d = tmp_path / "imp[1]"
    _write(df, d / "a.parquet")
    (d / "more").symlink_to(ext)
    with pytest.raises(SchemaError, match=r"more/b\.parquet: column 'clicked' is Int8, but Boolean in .*a\.parquet"):
        open_parquet(d, "impressions")
    _write(df, ext / "b.parquet")
    assert parquet_parts(d) == [d / "a.parquet", d / "more" / "b.parquet"]
    assert open_parquet(d, "impressions").select(pl.len()).collect().item() == 2 * df.height
    single = tmp_path / "one[2].parquet"
    df.write_parquet(single)
    assert open_parquet(single, "impressions").collect().equals(df)
