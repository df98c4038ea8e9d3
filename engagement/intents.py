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
    "choose_k",
    "intent_cosine",
    "match_intents",
    "mine_intents",
    "most_frequent_intent",
    "perplexity_table",
]


@dataclass(frozen=True)
class Intents:
    """The basic intents t_1..t_K and how they were chosen.

    Attributes
    ----------
    profiles : ndarray, shape (K, 10)
        Row k is intent t_k, a distribution over :data:`dwellrank_logs.schema.EVENT_TYPES`.
    perplexity : dict of int to float
        Held-out perplexity of each K searched: the mean over its restarts.
    n_sessions, n_distinct : int
        Corpus size and number of distinct count vectors.
    restarts : dict of int to tuple of float
        Held-out perplexity of each restart of each K, in restart order
        (empty for intents saved before restarts were recorded).
    rule : str
        How K was chosen from them (see :func:`choose_k`).
    """

    profiles: np.ndarray
    perplexity: dict[int, float] = field(default_factory=dict)
    n_sessions: int = 0
    n_distinct: int = 0
    restarts: dict[int, tuple[float, ...]] = field(default_factory=dict)
    rule: str = "argmin"

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
            "perplexity_table": perplexity_table(self.restarts),
            "k_rule": self.rule,
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
            restarts={int(k): tuple(float(v) for v in row["values"]) for k, row in d.get("perplexity_table", {}).items()},
            rule=str(d.get("k_rule", "argmin")),
        )


def perplexity_table(restarts: dict[int, tuple[float, ...]]) -> dict[str, dict[str, Any]]:
    """Per K: mean, standard deviation (ddof 1; 0 for one restart), standard error, minimum, count and values of the restarts."""
    out = {}
    for k, values in sorted(restarts.items()):
        v = np.asarray(values, dtype=np.float64)
        std = float(v.std(ddof=1)) if v.size > 1 else 0.0
        out[str(k)] = {
            "mean": float(v.mean()),
            "std": std,
            "se": std / float(np.sqrt(v.size)),
            "min": float(v.min()),
            "restarts": int(v.size),
            "values": [float(x) for x in v],
        }
    return out


def _split_words(x: np.ndarray, w: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand weighted documents, send each word to the observed part with probability 1/2, re-deduplicate."""
    docs = np.repeat(x, w.astype(np.int64), axis=0).astype(np.int64)
    observed = rng.binomial(docs, 0.5)
    both = np.concatenate([observed, docs - observed], axis=1)
    u, c = np.unique(both, axis=0, return_counts=True)
    v = x.shape[1]
    return u[:, :v].astype(np.float64), u[:, v:].astype(np.float64), c.astype(np.float64)


def _restarts(x: np.ndarray, w: np.ndarray, k: int, rngs: list[np.random.Generator], cfg: LdaConfig) -> list[LdaFit]:
    """One fit per Generator (LDA's objective is multimodal): the first from scikit-learn's random start, the others from :func:`seeded_topics`."""
    return [fit_lda(x, w, k, r, cfg, init=None if i == 0 else seeded_topics(x, w, k, r)) for i, r in enumerate(rngs)]


def choose_k(restarts: dict[int, tuple[float, ...]], rule: str = "best_restart") -> int:
    """The number of intents chosen from each K's held-out perplexities over restarts.

    ``"best_restart"``: the K whose best restart has the lowest held-out
    perplexity.  Each restart is a local optimum of LDA's bound, and one
    that merges two intents (or splits one) scores far worse than the
    optimum at that K: on synthetic corpora with known K the restarts' spread
    at the true K was up to 0.7 perplexity points, larger than the gap to the
    neighbouring K, so the mean over restarts measures the optimiser's luck
    at K more than K's fit.  ``"one_se"``: the smallest K whose mean over
    restarts is within one standard error (std over restarts / sqrt(restarts))
    of the lowest mean, the cross-validation rule.  ``"argmin"``: the K of
    lowest mean.  Ties go to the smaller K.

    Parameters
    ----------
    restarts : dict of int to tuple of float
        Held-out perplexity of each restart, per K.
    rule : {"best_restart", "one_se", "argmin"}
    """
    if rule == "best_restart":
        return min(restarts, key=lambda k: (min(restarts[k]), k))
    mean = {k: float(np.mean(v)) for k, v in restarts.items()}
    best = min(mean, key=lambda k: (mean[k], k))
    if rule == "argmin":
        return best
    v = np.asarray(restarts[best], dtype=np.float64)
    se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
    return min(k for k in mean if mean[k] <= mean[best] + se)


def mine_intents(counts: np.ndarray, rng: np.random.Generator, config: LdaConfig | None = None) -> Intents:
    """Choose K by held-out completion perplexity over ``k_min..k_max``; return the intents.

    The search runs on ``search_sessions`` sessions drawn without
    replacement when there are more (all of them otherwise).  A share
    ``holdout`` of them is held out (binomially, per distinct count vector);
    each K is fitted ``restarts`` times on the rest, each restart from its own
    child of ``rng``, and every restart is scored by
    :func:`engagement.lda.completion_perplexity` on the held-out sessions.
    K is chosen from those scores by ``config.k_rule`` (:func:`choose_k`);
    its restart of lowest training perplexity is then refitted on all
    sessions, starting from its topics.

    Parameters
    ----------
    counts : ndarray of int, shape (S, 10)
        Event counts per session (:attr:`EngagementData.session_counts`).
    rng : numpy.random.Generator
        Draws the search sample, the holdout and the word split, then spawns
        one child per K (and one per restart of it), then starts the refit.
    config : LdaConfig, optional

    Returns
    -------
    Intents
        The chosen K's profiles and the held-out perplexity of every restart of every K searched.

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
    ks = list(range(cfg.k_min, cfg.k_max + 1))
    scores: dict[int, tuple[float, ...]] = {}
    fits: dict[int, list[LdaFit]] = {}
    for k, child in zip(ks, rng.spawn(len(ks)), strict=True):
        fits[k] = _restarts(tx, tw, k, child.spawn(cfg.restarts), cfg)
        scores[k] = tuple(completion_perplexity(observed, rest, hw, f, cfg.doc_iter, cfg.doc_tol, cfg.n_jobs) for f in fits[k])
    best = choose_k(scores, cfg.k_rule)
    kept = fits[best][0]
    if len(fits[best]) > 1:
        kept = min(fits[best], key=lambda f: perplexity(tx, tw, f, cfg.doc_iter, cfg.doc_tol, cfg.n_jobs))
    # lambda = eta + expected word counts per topic: rescale the counts to the whole corpus.
    eta = kept.topic_word_prior
    scale = float(w @ x.sum(axis=1)) / float(tw @ tx.sum(axis=1))
    fit = fit_lda(x, w, best, rng, cfg, init=eta + (kept.components - eta) * scale)
    return Intents(
        profiles=fit.profiles,
        perplexity={k: float(np.mean(v)) for k, v in scores.items()},
        n_sessions=int(w.sum()),
        n_distinct=int(x.shape[0]),
        restarts=scores,
        rule=cfg.k_rule,
    )


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
