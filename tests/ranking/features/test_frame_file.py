"""The training-frame reader: the same rows and the same seeded sample whatever the layout of the parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from ranking.features.catalogue import get_feature_set
from ranking.features.frame_file import FRAME_META, FRAME_ORDER, frame_meta, frame_schema, read_training_frame

_N = 3000


def _frame(seed: int) -> pl.DataFrame:
    """A synthetic frame of :func:`frame_schema`'s columns: unique (request_id, update_id), 6 days."""
    rng = np.random.default_rng(seed)
    cols = {}
    for c, t in frame_schema("base").items():
        if c == "request_id":
            cols[c] = pl.Series(c, np.arange(_N) // 3, dtype=t)
        elif c == "update_id":
            cols[c] = pl.Series(c, rng.integers(0, 10**6, _N) * 3 + np.arange(_N) % 3, dtype=t)
        elif c == "day":
            cols[c] = pl.Series(c, rng.integers(0, 6, _N), dtype=t)
        elif c == "ts":
            cols[c] = pl.Series(c, rng.integers(0, 10**12, _N)).cast(pl.Datetime("us")).cast(t)
        elif isinstance(t, pl.Boolean):
            cols[c] = pl.Series(c, rng.random(_N) < 0.3)
        else:
            cols[c] = pl.Series(c, rng.normal(size=_N), dtype=t)
    return pl.DataFrame(cols)


def _write(frame: pl.DataFrame, d: Path, parts: int, seed: int) -> Path:
    d.mkdir()
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    for k, idx in enumerate(np.array_split(np.arange(frame.height), parts)):
        shuffled[idx].write_parquet(d / f"part-{k:05d}.parquet")
    (d / FRAME_META).write_text(json.dumps(frame_meta("spark", get_feature_set("base"), 2.5, 10.0, frame.height)))
    return d


def test_whole_frame_and_sample_do_not_depend_on_the_parts(tmp_path: Path):
    frame = _frame(0)
    one = _write(frame, tmp_path / "one", 1, 1)
    four = _write(frame, tmp_path / "four", 4, 2)
    whole, info = read_training_frame(four, "base", 2.5, 10.0)
    assert whole.equals(frame.sort(FRAME_ORDER)) and info["sample_rows"] is None
    a, info = read_training_frame(one, "base", 2.5, 10.0, max_rows=500, rng=7)
    b, _ = read_training_frame(four, "base", 2.5, 10.0, max_rows=500, rng=7)
    assert a.equals(b) and a.height == 500 and info == {"engine": "spark", "frame_rows": _N, "sample_rows": 500}
    assert a.equals(a.sort(FRAME_ORDER)) and a.join(frame, on=frame.columns, how="anti").height == 0
    c, _ = read_training_frame(four, "base", 2.5, 10.0, max_rows=500, rng=8)
    assert c.join(a, on=["request_id", "update_id"], how="semi").height < 200  # another seed, another sample (~83 shared)


def test_the_sample_is_uniform():
    """Over 40 seeds, each row's inclusion rate is 1/6 on average per day: a chi-square over the 6 days within its 0.999 quantile."""
    # Inclusion by the hash alone (what read_training_frame keeps), without files: the k smallest of a seeded hash.
    from dwellrank_logs.hashing import keyed_hash

    frame = _frame(1)
    days = frame["day"].to_numpy()
    counts = np.zeros(6)
    for seed in range(40):
        h = keyed_hash(seed, frame["request_id"].to_numpy(), frame["update_id"].to_numpy())
        counts += np.bincount(days[np.argsort(h)[:500]], minlength=6)
    expected = np.bincount(days, minlength=6) / _N * 500 * 40
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 20.5, (chi2, counts, expected)  # chi-square(5) 0.999 quantile 20.5; draws without replacement only shrink it
