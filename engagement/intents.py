"""Basic intents: the number of LDA topics chosen by held-out perplexity, and intent similarity (paper section 4).

:func:`mine_intents` searches ``k_min..k_max`` with the weighted LDA of
:mod:`engagement.lda` and returns the chosen :class:`Intents`; the cosine of a
session's event frequencies to each intent (paper eq. 2), Hungarian matching
of two intent sets and each member's most frequent intent build on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from dwellrank_logs.errors import DwellrankError
from dwellrank_logs.schema import EVENT_TYPES
from engagement.config import LdaConfig
from engagement.lda import LdaFit, completion_perplexity, dedupe_counts, fit_lda, perplexity, seeded_topics

__all__ = [
    "Intents",
    "intent_cosine",
    "match_intents",
    "mine_intents",
    "most_frequent_intent",
]


@dataclass(frozen=True)
class Intents:
    """The basic intents t_1..t_K and how they were chosen.

    Attributes
    ----------
    profiles : ndarray, shape (K, 10)
        Row k is intent t_k, a distribution over :data:`dwellrank_logs.schema.EVENT_TYPES`.
    perplexity : dict of int to float
        Held-out perplexity of each K searched.
    n_sessions, n_distinct : int
        Corpus size and number of distinct count vectors.
    """

    profiles: np.ndarray
    perplexity: dict[int, float] = field(default_factory=dict)
    n_sessions: int = 0
    n_distinct: int = 0

    @property
    def k(self) -> int:
        return int(self.profiles.shape[0])

    def top_events(self, n: int = 3) -> list[list[tuple[str, float]]]:
        """The ``n`` heaviest event types of each intent, with their weights."""
        order = np.argsort(-self.profiles, axis=1)[:, :n]
        return [[(EVENT_TYPES[j], float(self.profiles[k, j])) for j in row] for k, row in enumerate(order)]

    def labels(self) -> list[str]:
        """A short name per intent from its two heaviest event types, e.g. ``"jobs+search"``."""
        return [f"{k}: " + "+".join(e for e, _ in row[:2]) for k, row in enumerate(self.top_events(2))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "labels": self.labels(),
            "event_types": list(EVENT_TYPES),
            "profiles": self.profiles.round(6).tolist(),
            "top_events": [[{"event": e, "weight": round(w, 4)} for e, w in row] for row in self.top_events()],
            "perplexity": {str(k): v for k, v in self.perplexity.items()},
            "n_sessions": self.n_sessions,
            "n_distinct": self.n_distinct,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Intents:
        return cls(
            profiles=np.asarray(d["profiles"], dtype=np.float64),
            perplexity={int(k): float(v) for k, v in d.get("perplexity", {}).items()},
            n_sessions=int(d.get("n_sessions", 0)),
            n_distinct=int(d.get("n_distinct", 0)),
        )


def _split_words(x: np.ndarray, w: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand weighted documents, send each word to the observed part with probability 1/2, re-deduplicate."""
    docs = np.repeat(x, w.astype(np.int64), axis=0).astype(np.int64)
    observed = rng.binomial(docs, 0.5)
    both = np.concatenate([observed, docs - observed], axis=1)
    u, c = np.unique(both, axis=0, return_counts=True)
    v = x.shape[1]
    return u[:, :v].astype(np.float64), u[:, v:].astype(np.float64), c.astype(np.float64)


def _best_fit(x: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator, cfg: LdaConfig) -> LdaFit:
    """The restart with the lowest training perplexity (LDA's objective is multimodal).

    The first restart starts as scikit-learn does; the others from :func:`seeded_topics`.
    """
    fits = [fit_lda(x, w, k, rng, cfg, init=None if r == 0 else seeded_topics(x, w, k, rng)) for r in range(cfg.restarts)]
    if len(fits) == 1:
        return fits[0]
    return min(fits, key=lambda f: perplexity(x, w, f, cfg.doc_iter, cfg.doc_tol, cfg.n_jobs))


def mine_intents(counts: np.ndarray, rng: np.random.Generator, config: LdaConfig | None = None) -> Intents:
    """Choose K by held-out completion perplexity over ``k_min..k_max``; return the intents.

    The search runs on ``search_sessions`` sessions drawn without
    replacement when there are more (all of them otherwise).  A share
    ``holdout`` of them is held out (binomially, per distinct count vector);
    each K is fitted on the rest (best of ``restarts`` by training perplexity)
    and scored by :func:`engagement.lda.completion_perplexity` on the held-out
    sessions.  The chosen K's best fit is then refitted on all sessions,
    starting from its topics.

    Parameters
    ----------
    counts : ndarray of int, shape (S, 10)
        Event counts per session (:attr:`EngagementData.session_counts`).
    rng : numpy.random.Generator
        Draws the search sample, the holdout, the word split and every fit's start, in that order.
    config : LdaConfig, optional

    Returns
    -------
    Intents
        The chosen K's profiles and the held-out perplexity of every K searched.

    Raises
    ------
    DwellrankError
        Fewer than 10 non-empty sessions.
    """
    cfg = config if config is not None else LdaConfig()
    x, w = dedupe_counts(counts)
    if w.sum() < 10:
        raise DwellrankError(f"intent mining needs at least 10 sessions with events, got {int(w.sum())}")
    sx, sw = x, w
    if cfg.search_sessions is not None and w.sum() > cfg.search_sessions:
        # Exactly search_sessions sessions, drawn without replacement.
        sub = rng.multivariate_hypergeometric(w.astype(np.int64), cfg.search_sessions, method="marginals").astype(np.float64)
        sx, sw = x[sub > 0], sub[sub > 0]
    held = rng.binomial(sw.astype(np.int64), cfg.holdout).astype(np.float64)
    train_w, ho = sw - held, held > 0
    tx, tw = sx[train_w > 0], train_w[train_w > 0]
    if not ho.any() or tw.sum() < 10:
        raise DwellrankError(
            f"intent mining: holding out {cfg.holdout:g} of {int(sw.sum())} sessions left {int(held.sum())} held-out and "
            f"{int(tw.sum())} training sessions; the perplexity search needs at least 1 and 10"
        )
    observed, rest, hw = _split_words(sx[ho], held[ho], rng)
    scores: dict[int, float] = {}
    fits: dict[int, LdaFit] = {}
    for k in range(cfg.k_min, cfg.k_max + 1):
        fits[k] = _best_fit(tx, tw, k, rng, cfg)
        scores[k] = completion_perplexity(observed, rest, hw, fits[k], cfg.doc_iter, cfg.doc_tol, cfg.n_jobs)
    best = min(scores, key=lambda k: scores[k])
    # lambda = eta + expected word counts per topic: rescale the counts to the whole corpus.
    eta = fits[best].topic_word_prior
    scale = float(w @ x.sum(axis=1)) / float(tw @ tx.sum(axis=1))
    fit = fit_lda(x, w, best, rng, cfg, init=eta + (fits[best].components - eta) * scale)
    return Intents(profiles=fit.profiles, perplexity=scores, n_sessions=int(w.sum()), n_distinct=int(x.shape[0]))


def intent_cosine(nu: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """Session intents ``i_k = cos(nu, t_k)`` (paper eq. 2), numpy reference.

    Parameters
    ----------
    nu : ndarray, shape (..., V)
        Event frequency vectors; all-zero rows (padding) give zeros.
    profiles : ndarray, shape (K, V)

    Returns
    -------
    ndarray, shape (..., K)
    """
    num = nu @ profiles.T
    den = np.linalg.norm(nu, axis=-1, keepdims=True) * np.linalg.norm(profiles, axis=-1)
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def match_intents(found: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of found intents to true ones by cosine similarity.

    Parameters
    ----------
    found : ndarray, shape (K, V)
    truth : ndarray, shape (K_true, V)

    Returns
    -------
    pairs : ndarray of int, shape (min(K, K_true), 2)
        (found index, true index) of each matched pair.
    cosine : ndarray, shape (min(K, K_true),)
        Cosine similarity of each matched pair.
    """
    sim = intent_cosine(found, truth)  # (K, K_true)
    r, c = linear_sum_assignment(-sim)
    return np.column_stack([r, c]), sim[r, c]


def most_frequent_intent(nu: np.ndarray, lengths: np.ndarray, intents: Intents) -> np.ndarray:
    """Each member's most frequent session intent (argmax cosine) over its valid sessions.

    Parameters
    ----------
    nu : ndarray, shape (N, T, V)
    lengths : ndarray of int, shape (N,)

    Returns
    -------
    ndarray of int, shape (N,)
    """
    cos = intent_cosine(nu, intents.profiles)  # (N, T, K)
    top = cos.argmax(axis=-1)  # (N, T)
    valid = np.arange(nu.shape[1])[None, :] < lengths[:, None]
    counts = np.stack([((top == k) & valid).sum(axis=1) for k in range(intents.k)], axis=1)
    return counts.argmax(axis=1)
