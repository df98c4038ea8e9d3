"""Intent mining: the search for K against generating topics and the simulator's true intents, matching, errors."""

from __future__ import annotations

import numpy as np
import pytest

from dwellrank_logs.errors import DwellrankError
from engagement import LdaConfig, match_intents, mine_intents
from engagement.intents import Intents, choose_k


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


def _known_k_corpus(k: int, seed: int, n: int = 10_000) -> np.ndarray:
    """Sessions drawn from LDA with ``k`` separated topics over the 10 event types (topic j: 0.6 + 0.02 on type j,
    0.25 + 0.02 on type j + 3, 0.02 elsewhere), mixtures ~ Dirichlet(0.1), 1 + Poisson(4) events each."""
    rng = np.random.default_rng(seed)
    truth = np.full((k, 10), 0.02)
    for j in range(k):
        truth[j, j] += 0.6
        truth[j, (j + 3) % 10] += 0.25
    truth /= truth.sum(axis=1, keepdims=True)
    p = rng.dirichlet(np.full(k, 0.1), n) @ truth
    return rng.multinomial(1 + rng.poisson(4.0, n), p / p.sum(axis=1, keepdims=True))


@pytest.mark.parametrize("k", [4, 7])
def test_best_restart_rule_recovers_a_known_k(k: int) -> None:
    """Reference: the K the corpus was drawn from.  Measured (10,000 sessions, K searched in k-1..k+1, 3 restarts,
    seeds 0-4 for corpus and search): best_restart found K 10 of 10 times, one_se 7, argmin (mean) 8; on seed 0
    the true K's best restart beat its neighbours by 0.26 (K=4) and 0.14 (K=7) perplexity points."""
    intents = mine_intents(_known_k_corpus(k, 0), np.random.default_rng(0), LdaConfig(k_min=k - 1, k_max=k + 1, restarts=3, n_jobs=1))
    assert intents.k == k and intents.rule == "best_restart"
    table = intents.to_dict()["perplexity_table"]
    assert sorted(table) == [str(k - 1), str(k), str(k + 1)] and all(row["restarts"] == 3 for row in table.values())
    for key, row in table.items():
        v = np.array(intents.restarts[int(key)])
        assert row["mean"] == pytest.approx(v.mean()) and row["std"] == pytest.approx(v.std(ddof=1)) and row["min"] == v.min()
    assert Intents.from_dict(intents.to_dict()).restarts == intents.restarts


@pytest.mark.parametrize(
    ("rule", "want"),
    [("best_restart", 5), ("argmin", 4), ("one_se", 3)],
)
def test_choose_k_rules_on_a_hand_made_table(rule: str, want: int) -> None:
    # By hand: means 6.1, 6.0, 6.2; best restarts 6.05, 5.9, 5.8; the std of K=4's (5.9, 6.1) is 0.1414, its s.e. 0.1.
    restarts = {3: (6.05, 6.15), 4: (5.9, 6.1), 5: (5.8, 6.6)}
    assert choose_k(restarts, rule) == want
