"""Intent mining on Spark: ``pyspark.ml.clustering.LDA`` (online optimizer) with the perplexity search over K.

The search of :func:`engagement.intents.mine_intents`, with Spark MLlib's
online variational Bayes in place of the single-machine batch fit: sessions
are documents (a row each, their 10 event-type counts a vector), a share
``holdout`` of them is held out, each K of ``k_min..k_max`` is fitted on the
rest and scored by the document-completion perplexity on the held-out
sessions (half of each one's events infer its intents, the other half are
scored, as :func:`engagement.lda.completion_perplexity`); the K with the
lowest wins.

Starts.  Spark's LDA starts from a random, nearly uniform topic matrix and
cannot be given a start; its online updates take damped steps, so within a
few dozen updates a fit often still has two intents merged into one topic
and another split in two (on the simulator's 7 intents, 2 to 4 of 6 seeds
end so at 20 to 40 updates, where the single-machine batch fit rarely
does).  Each K is therefore fitted from ``starts`` seeds, concurrently, and
the fit with the lowest perplexity bound on a sample of the training
sessions (Spark's ``logPerplexity``, the training perplexity by which the
single-machine engine picks its restart) is kept.  The chosen K's fit is
returned; unlike the single-machine engine it is not refitted with the
held-out sessions (Spark cannot start a fit from given topics).

Randomness: every seed comes from the caller's Generator; the search sample,
the holdout, the word split and the perplexity sample are hashes of each
session's counts and replicate number with those seeds (``xxhash64``), so
they do not depend on how Spark partitions the corpus; each LDA fit gets its
own seed.  Only the distinct count vectors (a few thousand rows on a 10-type
vocabulary) go from the driver to Spark, and only the fitted topics (K x 10)
and a few sums per fit come back.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from dwellrank_logs.checks import check_number, check_positive_int, is_finite_number, is_integer
from dwellrank_logs.errors import ConfigError, DwellrankError, SchemaError
from dwellrank_logs.schema import EVENT_TYPES
from dwellrank_logs.spark import require_pyspark
from dwellrank_logs.spark_tables import col, session_of, spark_message
from engagement.config import LdaConfig
from engagement.intents import Intents, choose_k
from engagement.lda import dedupe_counts

if TYPE_CHECKING:
    from pyspark.ml.clustering import LocalLDAModel
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["SparkLdaConfig", "mine_intents_spark"]

_V = len(EVENT_TYPES)
_C = tuple(f"_c{j}" for j in range(_V))
_MASK53 = (1 << 53) - 1
T = TypeVar("T")


@dataclass(frozen=True)
class SparkLdaConfig:
    """Settings of Spark's online LDA optimizer and of its random starts.

    The search itself (K range, holdout, priors, search sample) is
    :class:`~engagement.config.LdaConfig`; its ``restarts``, ``max_iter``,
    ``tol``, ``doc_iter``, ``doc_tol`` and ``n_jobs`` are the batch engine's
    and are not used on Spark (Spark's per-document inference stops at a
    mean change of 1e-3).

    Parameters
    ----------
    max_iter : int
        Online updates of a fit (Spark's ``maxIter``), one Spark job each.
    subsampling_rate : float
        Share of the documents in each update's mini-batch (Spark's
        ``subsamplingRate``); a fit makes ``max_iter * subsampling_rate``
        passes over the training sessions.
    learning_offset, learning_decay : float
        tau0 and kappa of the step size ``(tau0 + t) ** -kappa`` (Spark's
        ``learningOffset`` and ``learningDecay``); a small tau0 lets the
        first updates take nearly full steps, as a batch update does.
    starts : int
        Random starts (seeds) fitted per K, the restarts of the single-machine
        search: each is scored on the held-out sessions, K is chosen from those
        scores by ``LdaConfig.k_rule``, and of the chosen K's starts the one with
        the lowest perplexity bound on the training sample is kept.
    perplexity_sessions : int
        Training sessions (about; all when fewer) on which the starts' perplexities are compared.
    parallelism : int
        Starts fitted at once (threads submitting Spark jobs, as
        ``CrossValidator``'s ``parallelism``); the result does not depend on it.
    """

    max_iter: int = 40
    subsampling_rate: float = 0.1
    learning_offset: float = 0.01
    learning_decay: float = 0.51
    starts: int = 4
    perplexity_sessions: int = 5000
    parallelism: int = 4

    def __post_init__(self) -> None:
        for name in ("max_iter", "starts", "perplexity_sessions", "parallelism"):
            check_positive_int(name, getattr(self, name))
        check_number("learning_offset", self.learning_offset)
        if not (is_finite_number(self.subsampling_rate) and 0.0 < self.subsampling_rate <= 1.0):
            raise ConfigError(f"subsampling_rate must be in (0, 1], got {self.subsampling_rate!r}")
        if not (is_finite_number(self.learning_decay) and 0.5 < self.learning_decay <= 1.0):
            raise ConfigError(f"learning_decay must be in (0.5, 1], got {self.learning_decay!r}")


def mine_intents_spark(
    counts: np.ndarray | DataFrame,
    rng: int | np.random.Generator,
    config: LdaConfig | None = None,
    spark: SparkSession | None = None,
    optimizer: SparkLdaConfig | None = None,
) -> Intents:
    """:func:`engagement.intents.mine_intents` with Spark MLlib's online LDA.

    Parameters
    ----------
    counts : ndarray of int, shape (S, 10), or pyspark.sql.DataFrame
        Event counts per session (:attr:`EngagementData.session_counts`), or a
        Spark DataFrame with a count column per event type, named as
        :data:`~dwellrank_logs.schema.EVENT_TYPES`, a row per session
        (:func:`engagement.spark_dataset.session_documents_spark`).
    rng : int or numpy.random.Generator
        Seeds the search sample, the holdout, the word split, the perplexity
        sample and then the starts of each K, in that order.
    config : LdaConfig, optional
        ``k_min``, ``k_max``, ``holdout``, the priors (default 1 / K) and
        ``search_sessions`` (here a hashed Bernoulli sample of about that many
        sessions); the fitting settings are ``optimizer``'s.
    spark : SparkSession, optional
        Default the session of ``counts``, or the one active in this thread.
    optimizer : SparkLdaConfig, optional

    Returns
    -------
    Intents
        The chosen K's topic-word distributions (rows sum to 1, in Spark's
        topic order), the held-out completion perplexity of every K searched,
        the number of non-empty sessions and of distinct count vectors.

    Raises
    ------
    ConfigError
        pyspark is not installed; no session; a bad ``rng``.
    SchemaError
        A DataFrame without the count columns.
    DwellrankError
        Fewer than 10 non-empty sessions, or a holdout that leaves none.
    """
    require_pyspark()
    from pyspark import StorageLevel
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    cfg = config if config is not None else LdaConfig()
    opt = optimizer if optimizer is not None else SparkLdaConfig()
    if not (is_integer(rng) or isinstance(rng, np.random.Generator)):
        raise ConfigError(f"rng must be an integer or numpy Generator, got {rng!r}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(int(rng))
    session = counts.sparkSession if isinstance(counts, DataFrame) else session_of(spark, "intent mining")
    distinct = _distinct_documents(counts, session).persist(StorageLevel.MEMORY_AND_DISK)
    sizes = _run(lambda: distinct.agg(F.count(F.lit(1)), F.sum("_w")).collect()[0])
    n_distinct, n_sessions = int(sizes[0]), int(sizes[1] or 0)
    if n_sessions < 10:
        raise DwellrankError(f"intent mining needs at least 10 sessions with events, got {n_sessions}")
    search_seed, holdout_seed, split_seed, sample_seed = (int(v) for v in gen.integers(0, 2**62, 4))

    # One row per session: its counts and a key that identifies it (counts and replicate number).
    docs = distinct.select(*_C, F.explode(F.sequence(F.lit(1), col("_w"))).alias("_r"))
    if cfg.search_sessions is not None and n_sessions > cfg.search_sessions:
        docs = docs.where(_uniform(search_seed) < F.lit(cfg.search_sessions / n_sessions))
    held = _uniform(holdout_seed) < F.lit(cfg.holdout)
    train = docs.where(~held).select(*_C, "_r", _vector(_C).alias("features")).persist(StorageLevel.MEMORY_AND_DISK)
    test = _split_words(docs.where(held), split_seed).persist(StorageLevel.MEMORY_AND_DISK)
    sample = None
    try:
        n_train, n_held = _run(lambda: (train.count(), test.count()))
        if n_held == 0 or n_train < 10:
            raise DwellrankError(
                f"intent mining: holding out {cfg.holdout:g} of {n_train + n_held} sessions left {n_held} held-out and "
                f"{n_train} training sessions; the perplexity search needs at least 1 and 10"
            )
        if opt.starts > 1:
            share = min(1.0, opt.perplexity_sessions / n_train)
            sample = train.where(_uniform(sample_seed) < F.lit(share)).select("features").persist(StorageLevel.MEMORY_AND_DISK)
        fit_on = train.select("features")
        scores: dict[int, tuple[float, ...]] = {}
        topics: dict[int, np.ndarray] = {}
        for k in range(cfg.k_min, cfg.k_max + 1):
            seeds = [int(v) for v in gen.integers(0, 2**62, opt.starts)]
            topics[k], scores[k] = _starts(fit_on, sample, test, k, seeds, cfg, opt)
    finally:
        for frame in (train, test, sample, distinct):
            if frame is not None:
                frame.unpersist()
    best = choose_k(scores, cfg.k_rule)
    lam = topics[best]
    return Intents(
        profiles=lam / lam.sum(axis=1, keepdims=True),
        perplexity={k: float(np.mean(v)) for k, v in scores.items()},
        n_sessions=n_sessions,
        n_distinct=n_distinct,
        restarts=scores,
        rule=cfg.k_rule,
    )


def _starts(
    train: DataFrame, sample: DataFrame | None, test: DataFrame, k: int, seeds: list[int], cfg: LdaConfig, opt: SparkLdaConfig
) -> tuple[np.ndarray, tuple[float, ...]]:
    """One fit per seed: the topics (lambda, (K, V)) of the fit with the lowest perplexity bound on the training
    sample (as the single-machine engine keeps its restart), and every fit's held-out completion perplexity.
    """

    def run(seed: int) -> tuple[float, np.ndarray, float]:
        model = _fit(train, k, seed, cfg, opt)
        bound = float(_run(lambda: model.logPerplexity(sample))) if sample is not None else 0.0
        lam = np.asarray(_run(model.topicsMatrix).toArray(), dtype=np.float64).T  # (K, V): lambda
        return bound, lam, _completion_perplexity(model, test, lam)

    # Concurrent jobs, as CrossValidator's parallelism: on small data a fit is bound by job latency, not by the executors.
    with ThreadPoolExecutor(min(opt.parallelism, len(seeds))) as pool:
        fits = list(pool.map(run, seeds))
    return fits[int(np.argmin([f[0] for f in fits]))][1], tuple(f[2] for f in fits)


def _split_words(held: DataFrame, seed: int) -> DataFrame:
    """The held-out sessions' events split in halves: ``features`` (the observed half), ``_o*`` and ``_rest*`` counts."""
    observed = [_half(seed, j).alias(f"_o{j}") for j in range(_V)]
    return held.select(*observed, *(col(c) for c in _C)).select(
        _vector([f"_o{j}" for j in range(_V)]).alias("features"),
        *(col(f"_o{j}") for j in range(_V)),
        *((col(c) - col(f"_o{j}")).alias(f"_rest{j}") for j, c in enumerate(_C)),
    )


def _distinct_documents(counts: np.ndarray | DataFrame, session: SparkSession) -> DataFrame:
    """The distinct non-empty count vectors ``_c0..`` and their multiplicities ``_w``, as a Spark DataFrame."""
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if isinstance(counts, DataFrame):
        missing = [e for e in EVENT_TYPES if e not in counts.columns]
        if missing:
            raise SchemaError(
                f"<sessions>: the session documents are missing column(s) {', '.join(repr(m) for m in missing)}; found {', '.join(counts.columns)}"
            )
        c = counts.select(*(col(e).cast("long").alias(k) for e, k in zip(EVENT_TYPES, _C, strict=True)))
        return c.where(sum((col(k) for k in _C), F.lit(0)) > 0).groupBy(*_C).agg(F.count(F.lit(1)).alias("_w"))
    x = np.asarray(counts)
    if x.ndim != 2 or x.shape[1] != _V:
        raise ConfigError(f"counts must have shape (S, {_V}), got {x.shape}")
    u, w = dedupe_counts(x)
    schema = T.StructType([*(T.StructField(k, T.LongType(), False) for k in _C), T.StructField("_w", T.LongType(), False)])
    rows = np.column_stack([u, w]).astype(np.int64).tolist()
    return session.createDataFrame(rows, schema)


def _fit(frame: DataFrame, k: int, seed: int, cfg: LdaConfig, opt: SparkLdaConfig) -> LocalLDAModel:
    from pyspark.ml.clustering import LDA

    alpha = cfg.doc_topic_prior if cfg.doc_topic_prior is not None else 1.0 / k
    eta = cfg.topic_word_prior if cfg.topic_word_prior is not None else 1.0 / k
    lda = LDA(
        k=k,
        maxIter=opt.max_iter,
        seed=seed,
        optimizer="online",
        learningOffset=float(opt.learning_offset),
        learningDecay=float(opt.learning_decay),
        subsamplingRate=float(opt.subsampling_rate),
        optimizeDocConcentration=False,
        docConcentration=[float(alpha)] * k,
        topicConcentration=float(eta),
    )
    return cast("LocalLDAModel", _run(lambda: lda.fit(frame)))


def _completion_perplexity(model: LocalLDAModel, test: DataFrame, lam: np.ndarray) -> float:
    """:func:`engagement.lda.completion_perplexity` of the held-out sessions, as one Spark aggregation.

    ``theta`` is Spark's posterior topic mixture given the observed half (the
    uniform mixture, as the single-machine E-step gives, for an empty half);
    the rest is scored under the topics' means.
    """
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    k = lam.shape[0]
    beta = lam / lam.sum(axis=1, keepdims=True)  # (K, V): the topics' means
    scored = model.transform(test).select(
        vector_to_array(col("topicDistribution")).alias("_theta"),
        sum((col(f"_o{j}") for j in range(_V)), F.lit(0)).alias("_n_obs"),
        *(col(f"_rest{j}") for j in range(_V)),
    )
    theta = [F.when(col("_n_obs") > 0, F.element_at("_theta", i + 1)).otherwise(F.lit(1.0 / k)) for i in range(k)]
    ll = sum(
        (
            col(f"_rest{v}") * F.log(F.greatest(sum((theta[i] * F.lit(float(beta[i, v])) for i in range(k)), F.lit(0.0)), F.lit(1e-300)))
            for v in range(_V)
        ),
        F.lit(0.0),
    )
    words = sum((col(f"_rest{v}") for v in range(_V)), F.lit(0))
    row = cast(Any, _run(lambda: scored.agg(F.sum(ll), F.sum(words)).collect()[0]))
    return float(np.exp(-float(row[0]) / float(row[1])))


def _uniform(seed: int) -> Column:
    """A uniform draw in [0, 1) per session: a hash of ``seed``, its counts and its replicate number."""
    from pyspark.sql import functions as F

    return (F.xxhash64(F.lit(seed), *(col(c) for c in _C), col("_r")).bitwiseAND(F.lit(_MASK53))).cast("double") / F.lit(float(1 << 53))


def _half(seed: int, j: int) -> Column:
    """How many of a session's events of type ``j`` fall in the observed half (each with probability 1/2)."""
    from pyspark.sql import functions as F

    n = col(_C[j])
    key = [F.lit(seed), *(col(c) for c in _C), col("_r"), F.lit(j)]
    picked = F.size(F.filter(F.sequence(F.lit(1), F.greatest(n, F.lit(1))), lambda i: (F.xxhash64(*key, i).bitwiseAND(F.lit(1))) == 1))
    return F.when(n > 0, picked).otherwise(F.lit(0)).cast("long")


def _vector(columns: tuple[str, ...] | list[str]) -> Column:
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    return array_to_vector(F.array(*(col(c).cast("double") for c in columns)))


def _run(job: Callable[[], T]) -> T:
    try:
        return job()
    except DwellrankError:
        raise
    except Exception as exc:  # py4j and captured Spark errors, with a JVM stack trace
        raise DwellrankError(f"intent mining on Spark failed ({spark_message(exc)})") from exc
