"""Intent mining: the search for K against generating topics and the simulator's true intents, matching, errors."""

from __future__ import annotations

import numpy as np
import pytest

from dwellrank_logs.errors import DwellrankError
from engagement import LdaConfig, match_intents, mine_intents


def test_search_on_a_thinned_corpus_still_finds_the_generating_topics() -> None:
    """``search_sessions`` below the corpus size: K is searched on a thinned corpus and the chosen K refitted
    on all sessions.  Reference: the 5 profiles that generated the sessions (one topic per session, each on
    its own two event types, so K = 5 is unambiguous; measured on seeds 0-3 with and without thinning:
    K = 5 every time, matched cosine 0.999)."""
    rng = np.random.default_rng(0)
    truth = np.full((5, 10), 0.01)
    for j in range(5):
        truth[j, 2 * j : 2 * j + 2] = rng.dirichlet([2.0, 2.0]) * 0.95
    truth /= truth.sum(axis=1, keepdims=True)
    topic = rng.integers(0, 5, 60_000)
    counts = rng.multinomial(1 + rng.poisson(4.0, topic.size), truth[topic])
    intents = mine_intents(counts, np.random.default_rng(0), LdaConfig(k_min=4, k_max=6, search_sessions=15_000))
    _, cos = match_intents(intents.profiles, truth)
    assert intents.k == 5 and intents.n_sessions == int((counts.sum(axis=1) > 0).sum())
    assert cos.min() >= 0.99, cos


def test_match_intents_recovers_a_permutation() -> None:
    t = np.random.default_rng(0).dirichlet(np.full(10, 0.3), size=5)
    perm = np.array([3, 0, 4, 1, 2])
    pairs, cos = match_intents(t[perm], t)
    assert (pairs[:, 1] == perm).all() and np.allclose(cos, 1.0)


def test_lda_on_the_simulated_world_against_the_true_intents(eng_world, eng_data) -> None:
    """Ground truth: the simulator's intent profiles.  Recovery is reported, with a floor well below the issue's 0.9.

    The issue asks for >= 0.9 on average with the perplexity-chosen K; here K is searched in 6..8 to keep the test short.
    """
    truth = np.array([i["profile"] for i in eng_world.truth["intents"]])
    intents = mine_intents(eng_data.session_counts, np.random.default_rng(0), LdaConfig(k_min=6, k_max=8, restarts=2))
    _, cos = match_intents(intents.profiles, truth)
    print(f"LDA K={intents.k}, matched cosine {np.round(cos, 3).tolist()}, mean {cos.mean():.3f}")
    assert 6 <= intents.k <= 8 and set(intents.perplexity) == {6, 7, 8}
    assert np.allclose(intents.profiles.sum(axis=1), 1.0)
    assert cos.mean() >= 0.9
    assert len(intents.top_events()[0]) == 3


def test_too_few_sessions_for_the_search_is_a_clear_error() -> None:
    with pytest.raises(DwellrankError, match="intent mining needs at least 10 sessions with events, got 6"):
        mine_intents(np.eye(10, dtype=int)[:6], np.random.default_rng(0))
    # 12 sessions with a 1% holdout: no session is held out, so no K can be scored.
    with pytest.raises(DwellrankError, match=r"holding out 0.01 of 12 sessions left 0 held-out and 12 training sessions"):
        mine_intents(np.eye(10, dtype=int)[np.arange(12) % 10], np.random.default_rng(0), LdaConfig(holdout=0.01))
