"""Batch variational Bayes LDA on a deduplicated, weighted corpus (paper section 4).

Sessions over a 10-word vocabulary repeat a lot (a few thousand distinct count
vectors among millions of sessions), so the corpus is deduplicated and each
distinct count vector carries a weight.  The fit is scikit-learn's batch
variational Bayes (``LatentDirichletAllocation(learning_method="batch")``)
with the per-document E-step vectorised over documents and the sufficient
statistics and the bound weighted by the multiplicities; the tests check the
E-step and the perplexity against scikit-learn on the expanded corpus.
The search for the number of intents is :func:`engagement.intents.mine_intents`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache, reduce

import numpy as np
from scipy.special import gammaln, logsumexp, psi
from threadpoolctl import ThreadpoolController

from engagement.config import LdaConfig

__all__ = [
    "LdaFit",
    "completion_perplexity",
    "dedupe_counts",
    "e_step",
    "fit_lda",
    "perplexity",
    "seeded_topics",
]


_EPS = np.finfo(np.float64).eps
#: Documents per E-step block (the unit of threading in :func:`e_step`).
_BLOCK_DOCS = 8192


def _dirichlet_expectation(x: np.ndarray) -> np.ndarray:
    """E[log theta] for theta ~ Dirichlet(x), row-wise; shape of ``x``."""
    return psi(x) - psi(x.sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class LdaFit:
    """A fitted LDA model.

    Attributes
    ----------
    components : ndarray, shape (K, V)
        Variational topic-word parameters (scikit-learn's ``components_``, lambda).
    doc_topic_prior, topic_word_prior : float
        alpha and eta (scikit-learn's defaults, 1 / K).
    n_iter : int
        EM iterations run.
    """

    components: np.ndarray
    doc_topic_prior: float
    topic_word_prior: float
    n_iter: int

    @property
    def k(self) -> int:
        return int(self.components.shape[0])

    @property
    def profiles(self) -> np.ndarray:
        """Topic-word distributions, shape (K, V), rows sum to 1."""
        return self.components / self.components.sum(axis=1, keepdims=True)


def dedupe_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a count matrix and their multiplicities.

    Parameters
    ----------
    counts : ndarray of int, shape (S, V)

    Returns
    -------
    unique : ndarray of float64, shape (U, V)
    weights : ndarray of float64, shape (U,)
        How many times each distinct row occurs; sums to S.
    """
    c = np.asarray(counts)[np.asarray(counts).sum(axis=1) > 0].astype(np.int64)
    if c.size == 0:
        return np.zeros((0, counts.shape[1])), np.zeros(0)
    bits = max(int(c.max()).bit_length(), 1)
    if bits * c.shape[1] <= 62:
        # Pack each row into one int64 (first column most significant): same order as np.unique(axis=0), far faster.
        shifts = (bits * np.arange(c.shape[1] - 1, -1, -1)).astype(np.int64)
        keys, weights = np.unique((c << shifts).sum(axis=1), return_counts=True)
        unique = (keys[:, None] >> shifts) & ((1 << bits) - 1)
    else:
        unique, weights = np.unique(c, axis=0, return_counts=True)
    return unique.astype(np.float64), weights.astype(np.float64)


def e_step(
    x: np.ndarray,
    components: np.ndarray,
    doc_topic_prior: float,
    max_iter: int = 100,
    tol: float = 1e-3,
    gamma0: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    n_jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Variational E-step of batch LDA for all documents at once.

    Row for row the same updates and the same per-document stopping rule as
    scikit-learn's ``_update_doc_distribution``, with the loop over documents
    replaced by array operations (documents that have converged are frozen).

    Parameters
    ----------
    x : ndarray, shape (U, V)
        Word counts of each document.
    components : ndarray, shape (K, V)
        Topic-word parameters lambda.
    doc_topic_prior : float
    max_iter, tol : int, float
        Per-document iterations and mean-absolute-change tolerance.
    gamma0 : ndarray, shape (U, K), optional
        Initial document-topic parameters; default all ones (scikit-learn's
        deterministic start).
    weights : ndarray, shape (U,), optional
        Multiplicity of each document in the sufficient statistics.
    n_jobs : int
        Threads over blocks of 8,192 documents; the result does not depend on it.

    Returns
    -------
    gamma : ndarray, shape (U, K)
        Document-topic parameters (prior included).
    sstats : ndarray, shape (K, V)
        Expected sufficient statistics for the M-step, weighted.
    """
    exp_beta = np.exp(_dirichlet_expectation(components))  # (K, V)
    n = x.shape[0]
    gamma = np.ones((n, components.shape[0])) if gamma0 is None else gamma0.astype(np.float64, copy=True)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    blocks = [slice(a, min(a + _BLOCK_DOCS, n)) for a in range(0, n, _BLOCK_DOCS)] or [slice(0, 0)]

    def run(b: slice) -> np.ndarray:
        return _e_step_block(x[b], exp_beta, doc_topic_prior, max_iter, tol, gamma[b], w[b])

    # Invariant: the result is bit-identical for every n_jobs.  The blocks are fixed, each runs on one
    # BLAS thread whatever n_jobs (the threaded and the serial run then do the same arithmetic on any
    # BLAS, and do not oversubscribe), and their statistics are summed in block order.  numpy and scipy
    # ufuncs release the GIL, so threads over blocks run in parallel.
    with _blas_controller().limit(limits=1, user_api="blas") if len(blocks) > 1 else nullcontext():
        if n_jobs > 1 and len(blocks) > 1:
            with ThreadPoolExecutor(min(n_jobs, len(blocks))) as pool:
                parts = list(pool.map(run, blocks))
        else:
            parts = [run(b) for b in blocks]
    return gamma, reduce(np.add, parts) * exp_beta


@lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    """One scan of the loaded thread pools (threadpool_limits rescans them on every call, ~0.7 ms)."""
    return ThreadpoolController()


def _e_step_block(
    x: np.ndarray, exp_beta: np.ndarray, alpha: float, max_iter: int, tol: float, gamma: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """:func:`e_step` on one block; updates ``gamma`` (a view) in place, returns sstats before the exp_beta factor."""
    exp_theta = np.exp(_dirichlet_expectation(gamma))  # (U, K)
    # Work on compacted copies of the unconverged rows; write rows back as they converge.
    idx = np.arange(x.shape[0])
    xa, ga, et = x, gamma.copy(), exp_theta.copy()
    for _ in range(max_iter):
        if idx.size == 0:
            break
        norm_phi = et @ exp_beta + _EPS  # (A, V)
        new = et * ((xa / norm_phi) @ exp_beta.T) + alpha  # (A, K)
        change = np.abs(new - ga).mean(axis=1)
        ga, et = new, np.exp(_dirichlet_expectation(new))
        keep = change >= tol
        if not keep.all():
            done = ~keep
            gamma[idx[done]] = ga[done]
            exp_theta[idx[done]] = et[done]
            idx, xa, ga, et = idx[keep], xa[keep], ga[keep], et[keep]
    gamma[idx] = ga
    exp_theta[idx] = et
    norm_phi = exp_theta @ exp_beta + _EPS
    return exp_theta.T @ (w[:, None] * x / norm_phi)  # (K, V)


def _bound(x: np.ndarray, weights: np.ndarray, gamma: np.ndarray, fit: LdaFit) -> float:
    """scikit-learn's ``_approx_bound`` with each document counted ``weights`` times."""
    e_theta = _dirichlet_expectation(gamma)  # (U, K)
    e_beta = _dirichlet_expectation(fit.components)  # (K, V)
    alpha, eta, k = fit.doc_topic_prior, fit.topic_word_prior, fit.k
    norm_phi = logsumexp(e_theta[:, :, None] + e_beta[None, :, :], axis=1)  # (U, V)
    doc = (x * norm_phi).sum(axis=1)
    doc += ((alpha - gamma) * e_theta).sum(axis=1) + (gammaln(gamma) - gammaln(alpha)).sum(axis=1)
    doc += gammaln(alpha * k) - gammaln(gamma.sum(axis=1))
    score = float(weights @ doc)
    lam = fit.components
    score += float(((eta - lam) * e_beta).sum() + (gammaln(lam) - gammaln(eta)).sum())
    score += float((gammaln(eta * lam.shape[1]) - gammaln(lam.sum(axis=1))).sum())
    return score


def perplexity(x: np.ndarray, weights: np.ndarray, fit: LdaFit, doc_iter: int = 100, doc_tol: float = 1e-3, n_jobs: int = 1) -> float:
    """Perplexity of a weighted corpus under ``fit`` (scikit-learn's definition).

    ``exp(-bound / n_words)`` with the E-step started from ones, as
    ``LatentDirichletAllocation.perplexity`` does.
    """
    gamma, _ = e_step(x, fit.components, fit.doc_topic_prior, doc_iter, doc_tol, n_jobs=n_jobs)
    return float(np.exp(-_bound(x, weights, gamma, fit) / float(weights @ x.sum(axis=1))))


def seeded_topics(x: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator, n_iter: int = 10) -> np.ndarray:
    """A data-driven starting point for the topic-word parameters, shape (k, V).

    Weighted k-means on the documents' event shares (k-means++ seeding, then
    ``n_iter`` Lloyd steps, documents weighted by multiplicity x length), with
    each centroid scaled to the words its cluster holds, as one M-step after a
    hard assignment would give.  Sessions mostly follow one intent, so these
    centroids start LDA near separated topics, where a near-uniform start can
    settle with two intents merged into one topic.
    """
    n = x.sum(axis=1)
    share = x / n[:, None]
    mass = weights * n
    p = mass / mass.sum()
    centers = np.empty((k, x.shape[1]))
    centers[0] = share[rng.choice(share.shape[0], p=p)]
    d2 = ((share - centers[0]) ** 2).sum(axis=1)
    for j in range(1, k):
        q = p * d2
        total = q.sum()
        centers[j] = share[rng.choice(share.shape[0], p=q / total)] if total > 0 else share[rng.choice(share.shape[0], p=p)]
        d2 = np.minimum(d2, ((share - centers[j]) ** 2).sum(axis=1))
    for _ in range(max(n_iter, 1)):
        # ||a - c||^2 = ||a||^2 - 2 a.c + ||c||^2; the ||a||^2 term does not change the argmin.
        label = np.argmin((centers**2).sum(axis=1)[None, :] - 2.0 * share @ centers.T, axis=1)
        words = np.zeros((k, x.shape[1]))
        np.add.at(words, label, x * weights[:, None])
        filled = words.sum(axis=1) > 0
        centers[filled] = words[filled] / words[filled].sum(axis=1, keepdims=True)
    return words + 1.0


def fit_lda(
    x: np.ndarray,
    weights: np.ndarray,
    k: int,
    rng: np.random.Generator,
    config: LdaConfig | None = None,
    init: np.ndarray | None = None,
) -> LdaFit:
    """Batch variational Bayes LDA on a weighted corpus.

    Initialisation and updates as scikit-learn's batch method (lambda ~
    Gamma(100, 0.01), each E-step from gamma ~ Gamma(100, 0.01), priors 1/K),
    with documents weighted by their multiplicity.

    Parameters
    ----------
    x : ndarray, shape (U, V)
        Distinct documents' word counts.
    weights : ndarray, shape (U,)
        Multiplicities.
    k : int
        Number of topics.
    rng : numpy.random.Generator
    config : LdaConfig, optional
    init : ndarray, shape (k, V), optional
        Starting topic-word parameters (e.g. :func:`seeded_topics`); default
        scikit-learn's random start.
    """
    cfg = config if config is not None else LdaConfig()
    alpha = cfg.doc_topic_prior if cfg.doc_topic_prior is not None else 1.0 / k
    eta = cfg.topic_word_prior if cfg.topic_word_prior is not None else 1.0 / k
    lam = rng.gamma(100.0, 0.01, (k, x.shape[1])) if init is None else np.array(init, dtype=np.float64)
    n_iter = 0
    for _ in range(cfg.max_iter):
        n_iter += 1
        # As scikit-learn: every E-step restarts gamma near uniform (a warm start traps documents in their first topic).
        gamma0 = rng.gamma(100.0, 0.01, (x.shape[0], k))
        _, sstats = e_step(x, lam, alpha, cfg.doc_iter, cfg.doc_tol, gamma0=gamma0, weights=weights, n_jobs=cfg.n_jobs)
        new = eta + sstats
        change = float(np.max(np.abs(new - lam) / np.maximum(np.abs(lam), 1e-12)))
        lam = new
        if change < cfg.tol:
            break
    return LdaFit(components=lam, doc_topic_prior=alpha, topic_word_prior=eta, n_iter=n_iter)


def completion_perplexity(
    observed: np.ndarray,
    rest: np.ndarray,
    weights: np.ndarray,
    fit: LdaFit,
    doc_iter: int = 100,
    doc_tol: float = 1e-3,
    n_jobs: int = 1,
) -> float:
    """Document-completion perplexity: infer each document's intents from one part, score the other.

    ``exp(-sum_d w_d sum_v rest_dv log(theta_d . beta_v) / sum_d w_d |rest_d|)``
    with ``theta_d`` the posterior mean given ``observed_d`` and ``beta`` the
    topic-word means.  Unlike the variational bound (whose Dirichlet KL term
    grows with K and dominates on 4-event sessions) this is a predictive
    likelihood, so it can select the number of intents.

    Parameters
    ----------
    observed, rest : ndarray, shape (U, V)
        The two parts of each held-out document's word counts.
    weights : ndarray, shape (U,)
    """
    gamma, _ = e_step(observed, fit.components, fit.doc_topic_prior, doc_iter, doc_tol, n_jobs=n_jobs)
    theta = gamma / gamma.sum(axis=1, keepdims=True)  # (U, K)
    p = theta @ fit.profiles  # (U, V)
    ll = float(weights @ (rest * np.log(np.maximum(p, 1e-300))).sum(axis=1))
    return float(np.exp(-ll / float(weights @ rest.sum(axis=1))))
