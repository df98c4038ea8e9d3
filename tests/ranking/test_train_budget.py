"""Training within a memory budget: the chunked frame, negative downsampling and its recalibration, the flags."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal
from sklearn.linear_model import LogisticRegression

from cli import main
from ranking import training_frame
from ranking.features.chunked import day_counts, hour_counts, plan_chunks, training_frame_chunked
from ranking.heads import GBDTLRHead
from ranking.sampling import ResourceError, logit_shift, parse_memory, plan_head, recalibrate
from ranking.train import TrainConfig, train_ranker
from simulate import write_simulation
from tests.ranking.ranking_worlds import T_SKIP_S, TINY, world

_TINY_CFG = TrainConfig(t_skip_s=T_SKIP_S, seed=0, holdout_days=2, baselines=False, skip_lift=False)


# ----------------------------------------------------------------------------- recalibration


def test_recalibration_is_he_et_al_closed_form():
    """q = p / (p + (1 - p) / w) (He et al. 2014, eq. in section 6.3), written out here by hand."""
    p = np.array([1e-6, 0.01, 0.2, 0.5, 0.9, 1 - 1e-9])
    for w in (0.01, 0.1, 0.5, 1.0):
        np.testing.assert_allclose(recalibrate(p, 1.0, w), p / (p + (1 - p) / w), rtol=1e-13)
        # the same map as a logit shift of log(w), which a head folds into its intercept
        shifted = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + math.log(w))))
        np.testing.assert_allclose(recalibrate(p, 1.0, w), shifted, rtol=1e-9)
        assert logit_shift(1.0, w) == pytest.approx(math.log(w))
    # positives downsampled instead (the majority label): odds divided by the positives' rate
    np.testing.assert_allclose(recalibrate(p, 0.25, 1.0), (p / 0.25) / (p / 0.25 + 1 - p), rtol=1e-13)


def test_downsampled_recalibrated_lr_matches_full_data_fit():
    """Peer: scikit-learn's unpenalised LogisticRegression on 400K Bernoulli rows (true logit -3 + x1 - 0.5 x2).

    Fitted on every row, and on all positives plus 10% of the negatives with the
    predictions recalibrated: both predict the same probabilities (case-control
    sampling moves only the intercept, by log w).
    """
    rng = np.random.default_rng(7)
    n = 400_000
    X = rng.normal(size=(n, 2))
    p_true = 1 / (1 + np.exp(-(-3 + X[:, 0] - 0.5 * X[:, 1])))
    y = rng.random(n) < p_true
    w = 0.1
    plan = plan_head("y", n, int(y.sum()), n, rate=w)
    keep = plan.keep(rng.random(n), y)
    assert plan.method == "negative" and keep[y].all() and abs(keep[~y].mean() - w) < 0.005
    full = LogisticRegression(C=1e6, max_iter=1000).fit(X, y)
    sub = LogisticRegression(C=1e6, max_iter=1000).fit(X[keep], y[keep])
    grid = rng.normal(size=(2000, 2))
    p_full = full.predict_proba(grid)[:, 1]
    p_sub = sub.predict_proba(grid)[:, 1]
    q = recalibrate(p_sub, plan.rate_pos, plan.rate_neg)
    assert np.max(np.abs(q - p_full)) < 0.01
    assert abs(q.mean() / p_full.mean() - 1) < 0.03
    assert p_sub.mean() / p_full.mean() > 3  # without the map the sampled model is far off: the check can fail


def test_head_recalibration_folds_into_every_scoring_path(tmp_path):
    """GBDTLRHead.recalibrate: predict_proba, the one-hot reference and a saved and loaded copy agree with the closed form."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6000, 3))
    y = rng.random(6000) < 1 / (1 + np.exp(-(X[:, 0] - 1)))
    head = GBDTLRHead().fit(X, y, 0)
    before = head.predict_proba(X[:200])
    head.recalibrate(logit_shift(1.0, 0.2), {"rate_pos": 1.0, "rate_neg": 0.2})
    want = recalibrate(before, 1.0, 0.2)
    np.testing.assert_allclose(head.predict_proba(X[:200]), want, rtol=1e-9)
    np.testing.assert_allclose(head.predict_proba_one_hot(X[:200]), want, rtol=1e-9)
    head.save(tmp_path, "h")
    np.testing.assert_allclose(GBDTLRHead.load(tmp_path, "h").predict_proba(X[:200]), want, rtol=1e-9)


@pytest.mark.parametrize(
    ("rows", "positives", "max_rows", "rate", "method", "rate_pos", "rate_neg"),
    [
        (1000, 100, 1000, None, "none", 1.0, 1.0),
        (1000, 100, 500, None, "negative", 1.0, 400 / 900),
        (1000, 800, 500, None, "positive", 300 / 800, 1.0),
        (1000, 400, 500, None, "uniform", 0.5, 0.5),
        (1000, 100, 10, 0.25, "negative", 1.0, 0.25),
        (1000, 900, 10, 0.25, "positive", 0.25, 1.0),
        (1000, 100, 10, 1.0, "none", 1.0, 1.0),
    ],
)
def test_plan_head(rows, positives, max_rows, rate, method, rate_pos, rate_neg):
    plan = plan_head("h", rows, positives, max_rows, rate)
    assert (plan.method, plan.rate_pos, plan.rate_neg) == (method, pytest.approx(rate_pos), pytest.approx(rate_neg))
    kept = positives * plan.rate_pos + (rows - positives) * plan.rate_neg
    assert kept <= max(max_rows, 1) + 1e-9 or rate is not None


@pytest.mark.parametrize(("text", "want"), [("8G", 8 << 30), ("512M", 512 << 20), ("1.5G", 3 << 29), ("8GiB", 8 << 30), ("2gb", 2 << 30)])
def test_parse_memory(text, want):
    assert parse_memory(text) == want


@pytest.mark.parametrize("text", ["", "abc", "-1G", "8X", "10K", "0"])
def test_parse_memory_refuses(text):
    with pytest.raises(Exception, match=r"max_memory must be") as exc:
        parse_memory(text)
    assert "ConfigError" in type(exc.value).__name__


# ----------------------------------------------------------------------------- the chunked frame


@pytest.mark.parametrize("feature_set", ["dwell", "base"])
def test_chunked_frame_equals_in_memory_frame(feature_set):
    """Every column, exactly, with chunks of one to a few days (the running totals carried across chunks),
    from impressions held in memory or scanned again per chunk."""
    tables = world(*TINY).tables
    days = day_counts(tables, T_SKIP_S, 10.0)
    per_day = int(days["rows"].max())
    assert len(plan_chunks(days, per_day)) == days.height  # one day a chunk ...
    assert 1 < len(plan_chunks(days, 2 * per_day + 1)) < days.height  # ... and several days a chunk
    want = training_frame(tables, feature_set, T_SKIP_S)
    for max_rows, hold in ((per_day, True), (2 * per_day + 1, True), (2 * per_day + 1, False)):
        got = training_frame_chunked(tables, feature_set, T_SKIP_S, max_chunk_rows=max_rows, hold=hold)
        assert_frame_equal(got, want, check_exact=True)


@pytest.mark.parametrize("hold", [True, False])
def test_days_built_in_parts_of_whole_hours_equal_the_in_memory_frame(hold):
    """A day too large for one chunk is built in parts of consecutive hours (each part sees only the earlier
    days' totals, the day joins them after its last part): every column equal, exactly, to the one-pass frame."""
    tables = world(*TINY).tables
    days = day_counts(tables, T_SKIP_S, 10.0)
    part_rows = int(days["rows"].max()) // 3
    big = days.filter(pl.col("rows") > part_rows)["day"].to_list()
    hours = hour_counts(tables, big)
    assert hours.group_by("day").agg(pl.col("rows").sum()).sort("day")["rows"].to_list() == (
        days.filter(pl.col("day").is_in(big))["rows"].to_list()
    )
    chunks = plan_chunks(days, 2 * part_rows, hours, part_rows)
    parts = [c for c in chunks if len(c) == 4]
    assert len(parts) >= 3 * len(big) - len(big) and all(c[0] == c[1] for c in parts)  # most big days in >= 3 parts
    want = training_frame(tables, "dwell", T_SKIP_S)
    got = training_frame_chunked(tables, "dwell", T_SKIP_S, max_chunk_rows=2 * part_rows, hold=hold, part_rows=part_rows)
    assert_frame_equal(got, want, check_exact=True)


def test_day_counts_match_the_frame():
    tables = world(*TINY).tables
    frame = training_frame(tables, "dwell", T_SKIP_S)
    want = frame.group_by("day").agg(pl.len().cast(pl.UInt32).alias("rows"), pl.col("click", "skip", "long_dwell").sum()).sort("day")
    got = day_counts(tables, T_SKIP_S, 10.0).select(want.columns).with_columns(pl.col("rows").cast(pl.UInt32))
    assert_frame_equal(got, want, check_dtypes=False)


# ----------------------------------------------------------------------------- sampled training


@pytest.fixture(scope="module")
def sampled_model():
    return train_ranker(world(*TINY), config=_TINY_CFG, sample=0.3)


def test_sampled_model_records_the_sampling(sampled_model):
    """Rows before: the in-memory frame's training rows and positives; rates: --sample's, per head."""
    frame = training_frame(world(*TINY).tables, "dwell", T_SKIP_S)
    train = frame.filter(pl.col("day") <= frame["day"].max() - _TINY_CFG.holdout_days)
    data = sampled_model.metadata["data"]
    assert data["frame_rows"] == frame.height and data["sample_seed"] == 0
    heads = data["sampling"]["heads"]
    for h, rec in heads.items():
        pos = int(train[h].sum())
        assert (rec["rows_before"], rec["positives_before"]) == (train.height, pos)
        rare_pos = pos <= train.height - pos
        assert rec["method"] == ("negative" if rare_pos else "positive")
        assert (rec["rate_pos"], rec["rate_neg"]) == ((1.0, 0.3) if rare_pos else (0.3, 1.0))
        kept_rare = rec["positives_after"] if rare_pos else rec["rows_after"] - rec["positives_after"]
        assert kept_rare == (pos if rare_pos else train.height - pos)  # the rarer label is kept whole
        other = rec["rows_after"] - kept_rare
        assert abs(other / (train.height - kept_rare) - 0.3) < 0.02
        assert rec["logit_shift"] == pytest.approx(math.log(0.3) if rare_pos else -math.log(0.3))
    assert heads["skip"]["method"] == "positive"  # skips are the majority label
    reg = data["sampling"]["regressions"]
    assert reg["rows_before"] == train.height and abs(reg["rows_after"] / train.height - 0.3) < 0.02


def test_sampled_model_is_calibrated(sampled_model):
    """Recalibrated heads predict the held-out rates (the simulator's logs), not the sample's inflated ones."""
    for h in ("click", "skip", "long_dwell"):
        ratio = sampled_model.report["heads"][h]["metrics"]["gbdt_lr"]["calibration"]
        assert 0.85 < ratio < 1.15, (h, ratio)


@pytest.mark.slow
def test_sampled_model_saves_its_sampling(sampled_model, tmp_path):
    sampled_model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert meta["data"]["sampling"]["heads"]["click"]["rate_neg"] == 0.3
    lr = json.loads((tmp_path / "m" / "heads" / "click.lr.json").read_text())
    assert lr["sampling"]["logit_shift"] == pytest.approx(math.log(0.3))


@pytest.mark.slow
def test_budget_decides_the_path():
    """The default budget fits the tiny world in memory (no sampling recorded); a small one samples; a tiny one refuses."""
    whole = train_ranker(world(*TINY), config=_TINY_CFG)
    assert "sampling" not in whole.metadata["data"] and whole.metadata["data"]["sample_rows"] is None
    with pytest.raises(ResourceError, match=r"--max-memory 1\.0M: one hour of the logs holds [0-9,]+ impressions"):
        train_ranker(world(*TINY), config=_TINY_CFG, max_memory="1M")


# ----------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("logs") / "logs"
    write_simulation(world(*TINY), d)
    return d


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--max-memory", "lots"], r"--max-memory must be a size such as 8G, 512M or a number of bytes, got 'lots'"),
        (["--max-memory", "10K"], r"--max-memory must be at least 1M, got '10K'"),
        (["--max-memory", "1M"], r"--max-memory 1\.0M: one hour of the logs holds [0-9,]+ impressions .* raise --max-memory"),
        (["--sample", "0"], r"--sample must be a keep rate in \(0, 1\], got 0\.0"),
        (["--sample", "1.5"], r"--sample must be a keep rate in \(0, 1\], got 1\.5"),
        (["--sample", "0.5", "--engine", "spark"], r"--sample bounds the polars engine"),
    ],
)
def test_cli_bad_budget_flags_one_line_exit_2(logs_dir, tmp_path, extra, pattern):
    out = tmp_path / "m"
    res = CliRunner().invoke(main, ["train", "--logs", str(logs_dir), "--out", str(out), "--t-skip", "2.5", *extra])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output, res.output
    assert __import__("re").search(pattern, lines[0]), lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_days_built_in_hours_train_the_same_model(sampled_model, tmp_path, monkeypatch):
    """A budget whose chunk holds a third of a day builds each day in parts of whole hours: the same rows in the
    same order, so the same draws and the same model, file for file (what 200,000 members x 28 days needs)."""
    import ranking.train_sampled as ts

    days = day_counts(world(*TINY).tables, T_SKIP_S, 10.0)
    avail = parse_memory("8G") - ts.BASE_BYTES
    monkeypatch.setattr(ts, "CHUNK_BYTES_PER_ROW", (avail // 4) // (int(days["rows"].max()) // 3))
    calls = []
    real = ts.plan_chunks
    monkeypatch.setattr(ts, "plan_chunks", lambda *a: calls.append(real(*a)) or calls[-1])
    parted = train_ranker(world(*TINY), config=_TINY_CFG, sample=0.3)
    assert sum(len(c) == 4 for c in calls[0]) >= 2 * days.height  # most days in >= 3 parts
    sampled_model.save(tmp_path / "days")
    parted.save(tmp_path / "hours")
    for f in sorted((tmp_path / "days").rglob("*")):
        if f.is_file() and f.name not in ("metadata.json", "manifest.json", "report.json"):
            assert f.read_bytes() == (tmp_path / "hours" / f.relative_to(tmp_path / "days")).read_bytes(), f.name
    assert parted.metadata["data"]["sampling"] == sampled_model.metadata["data"]["sampling"]
