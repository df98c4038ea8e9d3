"""Batched Newton fits of many small L2-regularised logistic regressions with offsets.

One random-effect block of a GLMix model (:mod:`ranking.glmix`) is a
logistic regression per entity (a member, an update): entity ``e`` has
coefficients ``b_e`` (shape ``(p,)``) and, over its rows ``i``, minimises

    sum_i [log(1 + exp(eta_i)) - y_i eta_i] + ||b_e||^2 / (2 sigma^2),
    eta_i = offset_i + z_i . b_e,

a Gaussian prior N(0, sigma^2 I) on ``b_e``.  The fits are independent, so
all entities take their Newton step together: rows are sorted by entity
once, per-entity gradients and Hessians are segment sums
(``np.add.reduceat``) of per-row terms, and the ``(n_entities, p, p)``
systems are solved by one batched ``np.linalg.solve``.  Rows are processed
in chunks of whole entities to bound the per-row temporaries; the loops run
over chunks and over feature pairs, never over entities.  Features are
stored feature-major (``(p, n_rows)``): products of two feature columns are
then contiguous vector operations (gathering columns of a row-major
``(n_rows, p)`` array, ``X[:, i] * X[:, j]``, was 25x slower).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = ["SortedBlock", "block_scores", "newton_fit", "sort_block"]

#: Entities whose full (p, p) Hessians are built and solved at once.
_SOLVE_ENTITIES = 16_384


@dataclass(frozen=True)
class SortedBlock:
    """One block's rows sorted by entity.

    Attributes
    ----------
    ids : ndarray, shape (n_entities,), int64
        The distinct entity ids, ascending (entity code ``k`` is ``ids[k]``).
    perm : ndarray, shape (n_rows,), int64
        Row order: sorted row ``j`` is original row ``perm[j]``.
    starts : ndarray, shape (n_entities + 1,), int64
        Sorted rows ``starts[k]:starts[k + 1]`` belong to entity ``k``.
    XT : ndarray, shape (p, n_rows), float64, C-contiguous
        The block's features, feature-major, in sorted row order.
    together : ndarray, shape (p, p), bool
        Whether features ``i`` and ``j`` are both nonzero in some row.  Pairs
        that never are (two levels of one one-hot group) have Hessian entry 0
        for every entity and are not computed.
    indicator : ndarray, shape (p,), bool
        Features whose values are all 0 or 1 (one-hot levels, flags).
    active : ndarray, shape (k, n_rows), int16
        The indicator features equal to 1 in each row, ascending, padded with
        -1 (``k``: the most in any row).  A Hessian entry of two indicators is
        the sum of ``w`` over the rows holding both, so it is counted from these
        slots with one weighted ``np.bincount`` per slot pair instead of a
        product over every row.
    """

    ids: np.ndarray
    perm: np.ndarray
    starts: np.ndarray
    XT: np.ndarray
    together: np.ndarray
    indicator: np.ndarray
    active: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """Rows per entity, shape (n_entities,)."""
        return np.diff(self.starts)


def sort_block(ids: np.ndarray, X: np.ndarray) -> SortedBlock:
    """Sort rows by entity id (one stable argsort) and find each entity's run of rows.

    Parameters
    ----------
    ids : ndarray, shape (n_rows,), int
    X : ndarray, shape (n_rows, p), float
    """
    perm = np.argsort(ids, kind="stable")
    s = ids[perm]
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if s.size else np.zeros(0, dtype=np.int64)
    starts = np.r_[first, s.size].astype(np.int64)
    X = np.asarray(X, dtype=np.float64)
    XT = np.empty((X.shape[1], perm.size))
    for a in range(0, perm.size, 1 << 18):  # whole rows gathered a slice at a time: no second (n_rows, p) copy
        XT[:, a : a + (1 << 18)] = X[perm[a : a + (1 << 18)]].T
    cooc = np.zeros((X.shape[1], X.shape[1]))
    for a in range(0, perm.size, 1 << 20):
        nz = (XT[:, a : a + (1 << 20)] != 0).astype(np.float32)  # (p, rows)
        cooc += nz @ nz.T  # co-occurrence counts by BLAS, exact in float32 within a chunk (< 2^24 rows)
    indicator = np.array([bool(((XT[j] == 0) | (XT[j] == 1)).all()) for j in range(X.shape[1])], dtype=bool)
    n_on = np.zeros(perm.size, dtype=np.int16)
    ones = [int(j) for j in np.flatnonzero(indicator)]
    for j in ones:
        n_on += XT[j].astype(np.int16)
    active = np.full((int(n_on.max(initial=0)), perm.size), -1, dtype=np.int16)
    n_on[:] = 0
    for j in ones:  # ascending: slot t of a row holds its t-th indicator that is 1
        on = np.flatnonzero(XT[j])
        active[n_on[on], on] = j
        n_on[on] += 1
    return SortedBlock(
        ids=s[first].astype(np.int64), perm=perm, starts=starts, XT=XT, together=cooc > 0, indicator=indicator, active=active
    )


def _chunks(starts: np.ndarray, chunk_rows: int) -> list[tuple[int, int]]:
    """Entity ranges ``[a, b)`` holding about ``chunk_rows`` rows each (at least one entity)."""
    n_ent = starts.size - 1
    bounds = [0]
    while bounds[-1] < n_ent:
        a = bounds[-1]
        b = int(np.searchsorted(starts, starts[a] + chunk_rows, side="right")) - 1
        bounds.append(min(max(b, a + 1), n_ent))
    return list(itertools.pairwise(bounds))


def block_scores(block: SortedBlock, coef: np.ndarray, chunk_rows: int = 262_144) -> np.ndarray:
    """Per-row random-effect score ``z_i . b_e`` in sorted row order, shape (n_rows,)."""
    out = np.empty(block.XT.shape[1])
    for a, b in _chunks(block.starts, chunk_rows):
        out[block.starts[a] : block.starts[b]] = _chunk_scores(block, coef, a, b)
    return out


def _chunk_scores(block: SortedBlock, coef: np.ndarray, a: int, b: int) -> np.ndarray:
    """``z_i . b_e`` of the rows of entities ``a:b``, shape (rows,)."""
    r0, r1 = block.starts[a], block.starts[b]
    counts = block.counts[a:b]
    out = np.zeros(r1 - r0)
    for j in range(block.XT.shape[0]):
        out += block.XT[j, r0:r1] * np.repeat(coef[a:b, j], counts)
    return out


def newton_fit(
    block: SortedBlock,
    y: np.ndarray,
    offset: np.ndarray,
    prior_var: float,
    coef0: np.ndarray | None = None,
    max_iter: int = 10,
    tol: float = 1e-6,
    max_step: float = 2.0,
    chunk_rows: int = 262_144,
) -> tuple[np.ndarray, int]:
    """Every entity's penalised logistic regression, by batched Newton steps.

    Parameters
    ----------
    block : SortedBlock
    y : ndarray, shape (n_rows,), 0/1, in sorted row order
    offset : ndarray, shape (n_rows,), logits, in sorted row order
        The other blocks' and the fixed effect's scores.
    prior_var : float
        sigma^2 of the Gaussian prior (> 0).
    coef0 : ndarray, shape (n_entities, p), optional
        Warm start (zeros by default).
    max_iter : int
        Newton steps at most.
    tol : float
        Stop when no coefficient moved by more than this in the last step.
    max_step : float
        Each entity's step is scaled down so that its largest component is at
        most this (logit units): full Newton steps can overshoot far from the
        optimum of a logistic loss; near it the cap is inactive.
    chunk_rows : int
        Rows per chunk of the per-row temporaries.

    Returns
    -------
    coef : ndarray, shape (n_entities, p)
    steps : int
        Newton steps taken.
    """
    n_ent, p = block.ids.size, block.XT.shape[0]
    coef = np.zeros((n_ent, p)) if coef0 is None else np.array(coef0, dtype=np.float64)
    iu, ju = np.triu_indices(p)
    live = block.together[iu, ju]
    iu, ju = iu[live], ju[live]  # the upper-triangle pairs that can be nonzero, row-major: the pair loop's order
    tri = np.full((p, p), iu.size, dtype=np.int64)  # index iu.size: an appended column of zeros
    tri[iu, ju] = tri[ju, iu] = np.arange(iu.size)
    sym = tri.ravel()
    # Pairs of two indicators are counted from the active slots; the others are products.
    dense = np.flatnonzero(~(block.indicator[iu] & block.indicator[ju]))
    slot_pairs = [(t, u) for t in range(block.active.shape[0]) for u in range(t, block.active.shape[0])]
    row_entity = np.repeat(np.arange(n_ent), block.counts) if slot_pairs else np.zeros(0, dtype=np.int64)
    chunks = _chunks(block.starts, chunk_rows)
    precision = 1.0 / prior_var
    rows_max = max((int(block.starts[b] - block.starts[a]) for a, b in chunks), default=0)
    # Buffers reused by every chunk and step: fresh arrays this large are mmap-ed and page-faulted
    # on every allocation, which cost more than the arithmetic.
    pair = np.empty((dense.size, rows_max))  # (dense pairs, rows)
    resid = np.empty((p, rows_max))  # (p, rows)
    wx = np.empty(rows_max)
    hess_buf = np.empty((min(n_ent, _SOLVE_ENTITIES), p * p))
    steps = 0
    for steps in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        grad = coef * precision  # (E, p)
        hess_up = np.zeros((n_ent, iu.size + 1))  # (E, pairs + 1): each Hessian's live upper-triangle entries, then 0
        for a, b in chunks:
            r0, r1 = block.starts[a], block.starts[b]
            m = r1 - r0
            XT = block.XT[:, r0:r1]  # (p, rows)
            mu = 1.0 / (1.0 + np.exp(-(offset[r0:r1] + _chunk_scores(block, coef, a, b))))
            w = mu * (1.0 - mu)
            seg = block.starts[a:b] - r0  # first row of each entity within the chunk
            np.multiply(XT, mu - y[r0:r1], out=resid[:, :m])
            grad[a:b] += np.add.reduceat(resid[:, :m], seg, axis=1).T
            last_i = -1
            for q, k in enumerate(dense):
                if iu[k] != last_i:
                    last_i = int(iu[k])
                    np.multiply(XT[last_i], w, out=wx[:m])
                np.multiply(wx[:m], XT[ju[k]], out=pair[q, :m])
            if dense.size:
                hess_up[a:b, dense] = np.add.reduceat(pair[:, :m], seg, axis=1).T
            for t, u in slot_pairs:
                cu = block.active[u, r0:r1]
                on = np.flatnonzero(cu >= 0)  # slot t <= u is then filled too
                key = (row_entity[r0:r1][on] - a) * (iu.size + 1) + tri[block.active[t, r0:r1][on], cu[on]]
                hess_up[a:b] += np.bincount(key, weights=w[on], minlength=(b - a) * (iu.size + 1)).reshape(b - a, iu.size + 1)
        step = np.empty((n_ent, p))
        for e0 in range(0, n_ent, _SOLVE_ENTITIES):  # full Hessians a slice of entities at a time, in one reused buffer
            e1 = min(e0 + _SOLVE_ENTITIES, n_ent)
            flat = np.take(hess_up[e0:e1], sym, axis=1, out=hess_buf[: e1 - e0])  # one gather fills both triangles
            flat[:, :: p + 1] += precision  # the prior makes every system positive definite
            step[e0:e1] = np.linalg.solve(flat.reshape(e1 - e0, p, p), grad[e0:e1, :, None])[:, :, 0]
        big = np.abs(step).max(axis=1, initial=0.0)
        step *= np.minimum(1.0, max_step / np.maximum(big, 1e-300))[:, None]
        coef -= step
        if big.size == 0 or float(big.max()) < tol:
            break
    return coef, steps
