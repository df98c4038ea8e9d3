"""Dwell embeddings: the factorisation, strictly-past training features, the model directory and serving.

References: an exactly low-rank matrix (its factors' product is the matrix);
numpy's dense ``np.linalg.svd`` of the member x author and member x topic
matrices summed here from the impressions with polars (its rank-k
reconstruction is the affinity); the logs with one day's dwell changed (the
earlier rows' features must not move by a bit); the batch ``rank`` and
``score_frame`` paths for the online matrix path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.manifest import write_manifest
from dwellrank_logs.protocol import HistoryTables
from ranking import FeedRanker, load_model
from ranking.embeddings_fit import fit_served_embeddings, with_embedding_features
from ranking.embeddings_io import save_embeddings
from ranking.features import IncompatibleModelError, candidate_features, history_from_logs, member_profiles, training_frame
from ranking.features.catalogue import EMBEDDING_COLUMNS, FEATURE_SETS
from ranking.features.embeddings import EmbeddingConfig, fit_factors
from ranking.model import MODEL_FORMAT, MODEL_KIND, RankerModel
from ranking.ranker import rank_candidates_file, with_dwell_embeddings
from ranking.train import TrainConfig, train_ranker
from simulate import WorldConfig, simulate
from simulate.output import write_simulation
from tests.ranking.ranking_worlds import T_SKIP_S, TINY, day_candidates, world

SMALL = (200, 5, 2)  # members, days, seed: the reference and strictly-past checks
DAY = dt.date(2026, 1, 10)  # the tiny world's last day (2026-01-05 .. 2026-01-10)
# Oversampled past the matrices' smaller side, the randomized SVD spans the whole range: exact to rounding.
EXACT = EmbeddingConfig(author_rank=3, topic_rank=2, n_oversamples=250, n_iter=2)


@lru_cache(maxsize=1)
def emb_model() -> RankerModel:
    cfg = TrainConfig(t_skip_s=T_SKIP_S, seed=0, holdout_days=2, baselines=False, skip_lift=False, dwell_embeddings=True)
    return train_ranker(world(*TINY), config=cfg)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emb_model().save(tmp_path_factory.mktemp("emb_model") / "model")


def _embedded(tables: dict[str, pl.DataFrame], config: EmbeddingConfig = EXACT, seed: int = 0) -> pl.DataFrame:
    frame = training_frame(tables, "dwell", T_SKIP_S)
    return with_embedding_features(frame, tables, T_SKIP_S, config, np.random.default_rng(seed))[0]


def test_factors_reproduce_an_exactly_low_rank_matrix():
    rng = np.random.default_rng(0)
    a, b = rng.random((40, 3)), rng.random((25, 3))
    exact = sp.csr_matrix(a @ b.T)
    rows, cols, s = fit_factors(exact, 3, 7, EmbeddingConfig())
    np.testing.assert_allclose(rows @ cols.T, a @ b.T, rtol=1e-10, atol=1e-10)
    assert np.all(np.diff(s) <= 0) and s.shape == (3,)
    zero_rows, zero_cols, _ = fit_factors(sp.csr_matrix((40, 25)), 3, 7, EmbeddingConfig())
    assert not zero_rows.any() and not zero_cols.any()


def test_affinities_equal_a_dense_svd_of_the_earlier_days():
    """Rows of day d: emb_ma/mp_affinity = rank-k reconstruction (np.linalg.svd) of the matrices of days < d."""
    tables = world(*SMALL).tables
    frame = _embedded(tables)
    days = sorted(frame["day"].unique().to_list())
    d = days[3]
    imp = (
        tables["impressions"]
        .join(tables["sessions"].select("session_id", "start_ts"), on="session_id")
        .join(tables["updates"].select("update_id", "author_id", "topic"), on="update_id")
        .with_columns(pl.col("start_ts").dt.epoch("d").alias("day"))
        .filter((pl.col("day") < d) & ((pl.col("dwell_s") >= T_SKIP_S) | pl.any_horizontal("clicked", "reacted", "commented", "shared")))
    )
    rows = frame.filter(pl.col("day") == d).join(tables["updates"].select("update_id", "author_id", "topic"), on="update_id", how="left")
    members = np.sort(tables["members"]["member_id"].to_numpy())
    for col, key, k in (("emb_ma_affinity", "author_id", EXACT.author_rank), ("emb_mp_affinity", "topic", EXACT.topic_rank)):
        universe = np.unique(tables["updates"][key].cast(pl.Int64).to_numpy())
        cells = imp.group_by("member_id", key).agg(pl.col("dwell_s").sum().log1p().alias("v"))
        dense = np.zeros((members.size, universe.size))
        dense[np.searchsorted(members, cells["member_id"].to_numpy()), np.searchsorted(universe, cells[key].cast(pl.Int64).to_numpy())] = (
            cells["v"].to_numpy()
        )
        u, s, vt = np.linalg.svd(dense, full_matrices=False)
        recon = (u[:, :k] * s[:k]) @ vt[:k]
        want = recon[np.searchsorted(members, rows["member_id"].to_numpy()), np.searchsorted(universe, rows[key].cast(pl.Int64).to_numpy())]
        np.testing.assert_allclose(rows[col].to_numpy(), want, rtol=1e-8, atol=1e-8)
    first = frame.filter(pl.col("day") == days[0])
    assert not first.select(EMBEDDING_COLUMNS).to_numpy().any()  # no earlier day: no embedding


def test_no_row_reads_its_own_day_or_later():
    """Dwell of day d changed (some skips turned reads and back): rows of days <= d unchanged bit for bit, later ones move."""
    tables = world(*SMALL).tables
    before = _embedded(tables, EmbeddingConfig())
    days = sorted(before["day"].unique().to_list())
    d = days[2]
    start = tables["sessions"].select("session_id", pl.col("start_ts").dt.epoch("d").alias("day"))
    imp = tables["impressions"].join(start, on="session_id", how="left", maintain_order="left")
    on_d = imp["day"] == d
    changed = {
        **tables,
        "impressions": imp.with_columns(pl.when(on_d).then(pl.col("dwell_s") * 3 + 2.0).otherwise(pl.col("dwell_s")).alias("dwell_s")).drop(
            "day"
        ),
    }
    after = _embedded(changed, EmbeddingConfig())
    cols = list(EMBEDDING_COLUMNS)
    early = before["day"] <= d
    assert np.array_equal(before.filter(early).select(cols).to_numpy(), after.filter(early).select(cols).to_numpy())
    assert not np.array_equal(before.filter(~early).select(cols).to_numpy(), after.filter(~early).select(cols).to_numpy())


def test_same_seed_same_bytes(tmp_path: Path):
    tables = world(*SMALL).tables
    a, b = _embedded(tables, EmbeddingConfig(), 3), _embedded(tables, EmbeddingConfig(), 3)
    assert np.array_equal(a.select(EMBEDDING_COLUMNS).to_numpy(), b.select(EMBEDDING_COLUMNS).to_numpy())
    for name in ("x", "y"):  # fitted and written twice
        save_embeddings(fit_served_embeddings(tables, T_SKIP_S, EmbeddingConfig(), np.random.default_rng(3)), tmp_path / name)
    for f in ("embeddings.json", "member_author.npz", "member_topic.npz"):
        x, y = ((tmp_path / n / f).read_bytes() for n in ("x", "y"))
        assert hashlib.sha256(x).digest() == hashlib.sha256(y).digest(), f


def test_model_directory_holds_and_records_the_embeddings(model_dir: Path):
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["feature_set"] == {"name": "dwell_emb", "version": 1, "columns": [*FEATURE_SETS["dwell"].columns, *EMBEDDING_COLUMNS]}
    rec = meta["embeddings"]
    assert rec["model"] == "dwell_embeddings" and rec["ranks"] == {"member_author": 16, "member_topic": 4}
    assert rec["library"].startswith("scikit-learn ") and "log1p(sum of dwell_s" in rec["matrices"]["member_author"]
    assert rec["fit_window"]["served"] == ["2026-01-05", "2026-01-10"] and meta["train_config"]["dwell_embeddings"] is True
    listed = set(json.loads((model_dir / "manifest.json").read_text())["files"])
    assert {"embeddings/embeddings.json", "embeddings/member_author.npz", "embeddings/member_topic.npz"} <= listed
    loaded = load_model(model_dir)
    assert loaded.embeddings is not None
    for name, f in emb_model().embeddings.factors.items():  # type: ignore[union-attr]
        assert np.array_equal(loaded.embeddings.factors[name].rows, f.rows) and np.array_equal(loaded.embeddings.factors[name].cols, f.cols)


def test_a_model_without_the_option_records_nothing_new():
    from tests.ranking.ranking_worlds import tiny_model

    m = tiny_model()
    assert m.embeddings is None and "embeddings" not in m.metadata and m.feature_set is FEATURE_SETS["dwell"]
    assert not any(k.startswith(("dwell_embeddings", "embedding_")) for k in m.metadata["train_config"])


def _history() -> HistoryTables:
    t = world(*TINY).tables
    return history_from_logs(t["impressions"], t["sessions"], t["updates"], DAY, T_SKIP_S)


def _candidates(n: int = 80) -> pl.DataFrame:
    """Impressions served on DAY as candidates, plus a row of an author no impression showed (zero author vector)."""
    t = world(*TINY).tables
    cand = day_candidates(t, DAY, n)
    return pl.concat([cand, cand.head(1).with_columns(pl.lit(10**9, cand["author_id"].dtype).alias("author_id"))])


def test_online_equals_batch_rank(model_dir: Path, tmp_path: Path):
    """FeedRanker.rank (numpy matrix path) = batch `rank` from the logs = score_frame of the feature frame, to 1e-12."""
    ranker = FeedRanker.load(model_dir, backend="numpy", full=True)
    cand, history = _candidates(), _history()
    online = ranker.rank(cand, history, np.random.default_rng(0)).scores
    logs = write_simulation(world(*TINY), tmp_path / "logs")
    cand.write_parquet(tmp_path / "cand.parquet")
    batch = rank_candidates_file(model_dir, tmp_path / "cand.parquet", tmp_path / "out.parquet", logs_dir=logs)
    np.testing.assert_allclose(batch["score"].to_numpy(), online, rtol=1e-12, atol=1e-12)
    hist = candidate_features(cand, history, ranker.profiles, FEATURE_SETS["dwell"], position=0)
    framed = ranker.score_frame(pl.concat([cand.select("member_id", "author_id", "topic"), hist], how="horizontal"))
    np.testing.assert_allclose(framed["score"].to_numpy(), online, rtol=1e-12, atol=1e-12)
    X = ranker.features(cand, history)
    assert X[-1, list(ranker.feature_set.columns).index("emb_a_norm")] == 0.0  # the unseen author
    assert X.flags.c_contiguous and X.shape == (cand.height, len(ranker.feature_set.columns))


def _edited(model_dir: Path, tmp_path: Path, edit) -> Path:
    d = tmp_path / "model"
    shutil.copytree(model_dir, d)
    edit(d)
    write_manifest(d, MODEL_KIND, MODEL_FORMAT)  # past the manifest check, as a writer of another version would
    return d


def _json_edit(key: str, value: object):
    def edit(d: Path) -> None:
        path = d / "embeddings" / "embeddings.json"
        doc = json.loads(path.read_text())
        doc[key] = value
        path.write_text(json.dumps(doc))

    return edit


def _rank_edit(d: Path) -> None:
    path = d / "embeddings" / "embeddings.json"
    doc = json.loads(path.read_text())
    doc["matrices"][0]["rank"] = 15
    path.write_text(json.dumps(doc))


def _drop_record(d: Path) -> None:
    path = d / "metadata.json"
    meta = json.loads(path.read_text())
    meta.pop("embeddings")
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_json_edit("features", ["emb_ma_affinity", "emb_x"]), r"embeddings\.json: serves features .*emb_x"),
        (_json_edit("world", "0123456789abcdef"), r"embeddings\.json: vectors fitted on the members of world '0123456789abcdef'"),
        (_json_edit("format", {"name": "dwellrank-dwell-embeddings", "version": 9}), r"embeddings\.json: format .*version': 9"),
        (_rank_edit, r"member_author\.npz: rows \(\d+, 16\), .*rank 15"),
        (_drop_record, r"metadata\.json: feature set 'dwell_emb' reads dwell embeddings"),
        (lambda d: (d / "embeddings" / "member_topic.npz").unlink(), r"member_topic\.npz: missing"),
    ],
)
def test_bad_embedding_files_are_refused_naming_the_file(model_dir: Path, tmp_path: Path, edit, message: str):
    with pytest.raises(IncompatibleModelError, match=message) as info:
        load_model(_edited(model_dir, tmp_path, edit))
    assert "\n" not in str(info.value)


def test_profiles_of_another_world_are_refused(model_dir: Path):
    other = member_profiles(simulate(WorldConfig(n_members=TINY[0], n_days=1), seed=TINY[2] + 1).tables["members"])
    with pytest.raises(IncompatibleModelError, match="dwell embeddings were fitted on the members of world"):
        FeedRanker(load_model(model_dir), profiles=other)


def test_refit_on_other_logs_serves_their_members():
    """with_dwell_embeddings: the heads stay, the vectors and profiles are the other logs' (same ids, other people)."""
    base = emb_model()
    other = world(*SMALL)
    m = with_dwell_embeddings(base, other)
    assert m.heads is base.heads and m.embeddings is not None and m.embeddings.world != base.embeddings.world  # type: ignore[union-attr]
    assert m.embeddings.factors["member_author"].row_ids.size == SMALL[0]
    FeedRanker(m, profiles=member_profiles(other.tables["members"]), backend="numpy")  # the same world: accepted


def test_options_that_cannot_fit_embeddings_are_refused_before_training(tmp_path: Path):
    with pytest.raises(ConfigError, match="dwell_embeddings must be True or False"):
        TrainConfig(dwell_embeddings="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="extends the 'dwell' feature set"):
        TrainConfig(dwell_embeddings=True, feature_set="base")
    with pytest.raises(ConfigError, match="author_rank must be"):
        TrainConfig(dwell_embeddings=True, embedding_author_rank=0)
    cfg = TrainConfig(t_skip_s=T_SKIP_S, dwell_embeddings=True)
    with pytest.raises(ConfigError, match="whole in-memory training frame"):
        train_ranker(world(*TINY), config=cfg, sample=0.5)
    with pytest.raises(ConfigError, match="without frame= \\(the Spark engine\\)"):
        train_ranker(world(*TINY), config=cfg, frame=tmp_path)


def test_gathers_with_gapped_and_unseen_ids_equal_the_written_out_dot_products():
    """Ids with gaps (binary search) and without (subtraction); unseen ids gather zeros."""
    from ranking.features.embeddings import DwellEmbeddings, Factors

    rng = np.random.default_rng(1)
    members, authors, topics = np.array([2, 5, 9]), np.array([10, 11, 12, 13]), np.array([0, 3])
    ma = Factors(members, rng.normal(size=(3, 2)), authors, rng.normal(size=(4, 2)), np.ones(2), 1)
    mp = Factors(members, rng.normal(size=(3, 1)), topics, rng.normal(size=(2, 1)), np.ones(1), 1)
    got = DwellEmbeddings({"member_author": ma, "member_topic": mp}, {}).features(
        np.array([5, 3, 9, 2]), np.array([13, 10, 99, 11]), np.array([3, 0, 0, 1])
    )
    for row, (m, a, t) in enumerate([(1, 3, 1), (None, 0, 0), (2, None, 0), (0, 1, None)]):
        u = ma.rows[m] if m is not None else np.zeros(2)
        v = ma.cols[a] if a is not None else np.zeros(2)
        up = mp.rows[m] if m is not None else np.zeros(1)
        vp = mp.cols[t] if t is not None else np.zeros(1)
        want = [u[0] * v[0] + u[1] * v[1], up[0] * vp[0], np.hypot(u[0], u[1]), np.hypot(v[0], v[1])]
        np.testing.assert_allclose(got[row], want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--engine", "spark"], "the Spark engine does not build them yet"),
        (["--sample", "0.5"], "without --sample"),
        (["--feature-set", "base"], "extends the dwell feature set"),
    ],
)
def test_cli_refuses_what_cannot_fit_the_embeddings(tmp_path: Path, extra: list[str], message: str):
    from click.testing import CliRunner

    from cli import main

    (tmp_path / "logs").mkdir()
    args = ["train", "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "m"), "--dwell-embeddings", *extra]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and message in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "m").exists()


@pytest.mark.spark
def test_spark_rank_from_logs_refuses_the_embeddings_clearly(model_dir: Path, tmp_path: Path, spark):
    """rank --engine spark does not derive emb_* from logs: one line naming the model, before any Spark job."""
    pytest.importorskip("pyspark")
    from ranking.spark_rank import rank_candidates_spark

    logs = write_simulation(world(*TINY), tmp_path / "logs")
    _candidates(5).write_parquet(tmp_path / "cand.parquet")
    with pytest.raises(ConfigError, match=r"feature set 'dwell_emb' has dwell embeddings, which rank --engine spark does not derive"):
        rank_candidates_spark(model_dir, str(tmp_path / "cand.parquet"), tmp_path / "out", spark=spark, logs=str(logs))
    assert not (tmp_path / "out").exists()
