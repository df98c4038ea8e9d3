"""The weighted batch LDA against scikit-learn on the expanded corpus, and the seeded start against generating topics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import LatentDirichletAllocation

from engagement import LdaConfig, match_intents
from engagement.lda import LdaFit, dedupe_counts, e_step, fit_lda, perplexity, seeded_topics


def _corpus(seed: int = 0, n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(10, 0.3), size=3)
    z = rng.integers(0, 3, n)
    return np.stack([rng.multinomial(1 + rng.poisson(3), topics[k]) for k in z])


def _sklearn_with(components: np.ndarray) -> LatentDirichletAllocation:
    k, v = components.shape
    lda = LatentDirichletAllocation(n_components=k, learning_method="batch", random_state=0, max_iter=1)
    lda.fit(np.ones((2, v)))  # sets the internal attributes; replaced below
    lda.components_ = components.copy()
    from sklearn.decomposition._lda import _dirichlet_expectation_2d

    lda.exp_dirichlet_component_ = np.exp(_dirichlet_expectation_2d(components))
    return lda


def test_dedupe_weights_count_the_repeats() -> None:
    counts = np.array([[1, 0], [0, 2], [1, 0], [0, 0], [1, 0]])
    x, w = dedupe_counts(counts)
    assert x.tolist() == [[0, 2], [1, 0]] and w.tolist() == [1, 3]  # the empty session is dropped


@pytest.mark.parametrize("big", [False, True])
def test_dedupe_matches_numpy_unique_rows(big: bool) -> None:
    """Reference: ``numpy.unique(axis=0)``; ``big`` forces the fallback path (counts too wide to pack)."""
    c = np.random.default_rng(0).poisson(0.5, (5000, 10))
    if big:
        c[0, 0] = 10**7
    x, w = dedupe_counts(c)
    u, n = np.unique(c[c.sum(1) > 0], axis=0, return_counts=True)
    assert np.array_equal(x, u) and np.array_equal(w, n)


def test_weighted_e_step_equals_sklearn_on_the_expanded_corpus() -> None:
    """Reference: scikit-learn 1.x ``LatentDirichletAllocation._e_step`` (deterministic start) on repeated rows."""
    counts = _corpus()
    x, w = dedupe_counts(counts)
    lam = np.random.default_rng(1).gamma(100.0, 0.01, (3, 10))
    gamma, sstats = e_step(x, lam, 1 / 3, weights=w)
    lda = _sklearn_with(lam)
    sk_gamma, sk_sstats = lda._e_step(np.repeat(x, w.astype(int), axis=0), cal_sstats=True, random_init=False)
    # scikit-learn's Cython digamma is an approximation (~1e-6 relative); scipy's is exact.
    np.testing.assert_allclose(np.repeat(gamma, w.astype(int), axis=0), sk_gamma, rtol=1e-5)
    np.testing.assert_allclose(sstats, sk_sstats, rtol=1e-5)


def test_blocked_threaded_e_step_equals_sklearn_and_does_not_depend_on_threads() -> None:
    """More documents than one block (8,192): each block's rows and the summed statistics against
    scikit-learn's ``_e_step`` on the same documents; 1 and 3 threads give identical arrays."""
    rng = np.random.default_rng(7)
    topics = rng.dirichlet(np.full(10, 0.3), size=4)
    x = rng.multinomial(40, topics[rng.integers(0, 4, 20_000)]).astype(np.float64)  # long documents: nearly all distinct
    lam = rng.gamma(100.0, 0.01, (4, 10)) * 30
    g1, s1 = e_step(x, lam, 0.25, n_jobs=1)
    g3, s3 = e_step(x, lam, 0.25, n_jobs=3)
    assert np.array_equal(g1, g3) and np.array_equal(s1, s3)
    sk_gamma, sk_sstats = _sklearn_with(lam)._e_step(x, cal_sstats=True, random_init=False)
    np.testing.assert_allclose(g1, sk_gamma, rtol=1e-5)
    np.testing.assert_allclose(s1, sk_sstats, rtol=1e-5)


def test_weighted_perplexity_equals_sklearn_on_the_expanded_corpus() -> None:
    counts = _corpus(seed=2)
    x, w = dedupe_counts(counts)
    lam = np.random.default_rng(3).gamma(100.0, 0.01, (3, 10)) * 50
    fit = LdaFit(components=lam, doc_topic_prior=1 / 3, topic_word_prior=1 / 3, n_iter=0)
    ours = perplexity(x, w, fit)
    ref = _sklearn_with(lam).perplexity(np.repeat(x, w.astype(int), axis=0))
    assert ours == pytest.approx(ref, rel=1e-6)


@pytest.mark.slow
def test_fit_reaches_sklearn_perplexity() -> None:
    """At equal K the weighted fit is as good as scikit-learn's batch fit on the expanded corpus.

    Both objectives are multimodal, so the best of a few restarts is compared (scikit-learn 1.x,
    ``learning_method="batch"``, ``max_iter=200``, random_state 0 and 1).
    """
    counts = _corpus(seed=4, n=600)
    x, w = dedupe_counts(counts)
    ours = min(perplexity(x, w, fit_lda(x, w, 3, np.random.default_rng(s), LdaConfig(tol=1e-4, max_iter=500))) for s in range(6))
    ref = min(
        perplexity(x, w, LdaFit(components=sk.components_, doc_topic_prior=1 / 3, topic_word_prior=1 / 3, n_iter=0))
        for sk in (LatentDirichletAllocation(3, learning_method="batch", max_iter=200, random_state=r).fit(counts) for r in (0, 1))
    )
    assert ours <= ref * 1.005


def test_seeded_topics_start_near_the_generating_topics() -> None:
    """Reference: the profiles that generated a corpus of one-topic sessions (4-8 events, 7 topics over
    10 event types, as the simulator's sessions).  The seeded start must already be close to every one
    (measured: matched cosine 0.97-1.00), and LDA from it must keep them (measured: 0.90-0.99, mean 0.96;
    three random starts on this corpus reach minima of 0.29-0.72)."""
    rng = np.random.default_rng(3)
    truth = rng.dirichlet(np.full(10, 0.3), size=7)
    topic = rng.integers(0, 7, 20000)
    counts = np.stack([rng.multinomial(n, truth[t]) for n, t in zip(rng.integers(4, 9, topic.size), topic, strict=True)])
    x, w = dedupe_counts(counts)
    start = seeded_topics(x, w, 7, np.random.default_rng(0))
    assert start.shape == (7, 10) and (start > 0).all()
    _, cos0 = match_intents(start / start.sum(axis=1, keepdims=True), truth)
    assert cos0.min() >= 0.95, cos0
    fit = fit_lda(x, w, 7, np.random.default_rng(0), LdaConfig(), init=start)
    _, cos = match_intents(fit.profiles, truth)
    assert cos.min() >= 0.85 and cos.mean() >= 0.95, cos
