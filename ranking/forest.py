"""Exact, vectorised evaluation of the raw scores of small LightGBM boosters.

LightGBM's ``Booster.predict`` walks every tree row by row (about 10-20 ns per
tree and row); the simulator scores ~200K candidate rows a day through 13
boosters (230 trees of at most 8 leaves), which made tree traversal most of
the ranking cost.  :class:`CompiledForest` evaluates the same trees column-wise
with numpy:

* every distinct split decision ``(feature, threshold, missing type, default
  direction)`` of all trees is computed once per block of rows (splits repeat:
  thresholds are histogram-bin boundaries shared by trees and boosters);
* each tree's (<= 8) split outcomes are packed into a small integer code;
  a per-tree lookup table maps the code to the leaf value;
* leaf values are summed tree by tree in LightGBM's order, from 0.0.

Invariant: :meth:`CompiledForest.raw_scores` equals LightGBM's
``Booster.predict(X, raw_score=True)`` bit for bit, for every booster it
accepts and every input, so a model scores the same whichever of the two
serves it (:class:`ranking.model.RankerModel` picks by batch size and
threads).  It holds because LightGBM's input conventions are reproduced
(values with ``|x| <= 1e-35`` are read as 0; NaN is read as 0 unless a
split's missing type is NaN, then it takes the default direction; with
missing type Zero, 0 and NaN take the default direction), the leaf values
are added in LightGBM's order, and anything else (categorical or linear
trees, more than 8 split nodes, several trees per iteration) is refused with
:class:`UnsupportedForest`.  :func:`compile_forest` also checks bitwise
agreement on probe rows built from the split thresholds and returns None
otherwise; callers then use ``Booster.predict``.  :func:`exp_exact` keeps the
invariant for the regressions' ``exp`` of the raw score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np

__all__ = ["CompiledForest", "UnsupportedForest", "compile_forest", "exp_exact"]

_K_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float literal)
_MAX_SPLITS = 8  # split nodes per tree: outcomes packed into one uint8 code
_BLOCK = 4096  # rows per block: the decision matrix and codes stay cache-sized


class UnsupportedForest(ValueError):
    """A booster uses something :class:`CompiledForest` does not evaluate."""


class CompiledForest:
    """Raw scores of several boosters over one feature matrix, as LightGBM computes them.

    Parameters
    ----------
    boosters : sequence of lightgbm.Booster
        Binary or regression boosters (one tree per iteration) over the same
        feature columns.
    """

    def __init__(self, boosters: Sequence[lgb.Booster]) -> None:
        decisions: dict[tuple[int, float, str, bool], int] = {}
        tree_rows: list[list[tuple[int, float, str, bool]]] = []  # per tree: its split nodes' decisions
        luts: list[np.ndarray] = []  # per tree: leaf value by code
        self.tree_slices: list[tuple[int, int]] = []
        n_features = None
        for booster in boosters:
            dump = booster.dump_model()
            if dump.get("num_tree_per_iteration", 1) != 1 or dump.get("num_class", 1) != 1:
                raise UnsupportedForest("several trees per iteration")
            nf = booster.num_feature()
            if n_features is not None and nf != n_features:
                raise UnsupportedForest("boosters over different numbers of features")
            n_features = nf
            start = len(luts)
            for info in dump["tree_info"]:
                if info.get("is_linear"):
                    raise UnsupportedForest("linear trees")
                rows, lut = _compile_tree(info["tree_structure"], decisions)
                tree_rows.append(rows)
                luts.append(lut)
            self.tree_slices.append((start, len(luts)))
        self.n_features = n_features or 0
        # Decision rows grouped by (feature, missing type, default direction): one broadcast
        # comparison per group, written straight into a contiguous block of the decision matrix.
        keys = sorted(decisions, key=lambda k: (k[0], k[2], k[3], k[1]))
        order = {k: i for i, k in enumerate(keys)}
        self.n_decisions = len(keys)
        pad = self.n_decisions  # an always-False decision row for unused code bits
        self.node_rows = np.full((len(tree_rows), _MAX_SPLITS), pad, dtype=np.intp)
        for t, rows in enumerate(tree_rows):
            self.node_rows[t, : len(rows)] = [order[inv] for inv in rows]
        self.n_bits = max((len(r) for r in tree_rows), default=0)
        self.lut_flat = np.concatenate(luts) if luts else np.zeros(0)
        self.lut_base = (np.arange(len(luts), dtype=np.intp) << _MAX_SPLITS)[:, None]
        self.groups: list[tuple[int, str, bool, int, int, np.ndarray]] = []
        i = 0
        while i < len(keys):
            j = i
            while j < len(keys) and keys[j][0] == keys[i][0] and keys[j][2] == keys[i][2] and keys[j][3] == keys[i][3]:
                j += 1
            thr = np.asarray([k[1] for k in keys[i:j]], dtype=np.float64)[:, None]
            self.groups.append((keys[i][0], keys[i][2], keys[i][3], i, j, thr))
            i = j

    def raw_scores(self, X: np.ndarray) -> list[np.ndarray]:
        """Raw score of each booster, shape (n_rows,) each, equal to ``predict(X, raw_score=True)``."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a 2-D matrix with {self.n_features} columns, got shape {X.shape}")
        n = X.shape[0]
        outs = [np.zeros(n) for _ in self.tree_slices]
        if n == 0:
            return outs
        n_trees = self.node_rows.shape[0]
        D = np.zeros((self.n_decisions + 1, min(n, _BLOCK)), dtype=bool)
        codes = np.empty((n_trees, D.shape[1]), dtype=np.uint8)
        bits = np.empty_like(codes)
        for a in range(0, n, _BLOCK):
            b = min(a + _BLOCK, n)
            m = b - a
            XT = np.ascontiguousarray(X[a:b].T)  # (n_features, m)
            XT[np.abs(XT) <= _K_ZERO] = 0.0  # LightGBM drops |x| <= kZeroThreshold (keeps NaN)
            nan = np.isnan(XT)
            any_nan = bool(nan.any())
            if any_nan:
                X0 = np.where(nan, 0.0, XT)
            Dm = D[:, :m]
            for f, mt, dl, i, j, thr in self.groups:
                rows = Dm[i:j]
                if mt == "None":
                    np.less_equal((X0[f] if any_nan else XT[f])[None, :], thr, out=rows)
                elif mt == "NaN":
                    np.less_equal(XT[f][None, :], thr, out=rows)  # NaN compares False
                    if any_nan and dl:
                        rows |= nan[f][None, :]
                else:  # "Zero": 0 (and NaN, read as 0) take the default direction
                    x = X0[f] if any_nan else XT[f]
                    rows[...] = np.where((x == 0.0)[None, :], dl, x[None, :] <= thr)
            cm, bm = codes[:, :m], bits[:, :m]
            Du8 = Dm.view(np.uint8)
            cm[...] = 0
            for k in range(self.n_bits):
                np.take(Du8, self.node_rows[:, k], axis=0, out=bm)
                if k:
                    np.left_shift(bm, k, out=bm)
                np.bitwise_or(cm, bm, out=cm)
            idx = cm.astype(np.intp)
            idx += self.lut_base
            V = self.lut_flat.take(idx)  # (n_trees, m): each tree's leaf value
            for out, (s, e) in zip(outs, self.tree_slices, strict=True):
                # Trees added in order, as LightGBM does (0.0 + tree 0 + tree 1 + ...): a reduction
                # over the slow axis is sequential in numpy (pairwise summation is for the fast axis only).
                # A one-row block has no fast axis left: numpy would sum that column pairwise.
                if e > s and m > 1:
                    out[a:b] += np.add.reduce(V[s:e], axis=0)
                elif e > s:
                    acc = 0.0
                    for v in V[s:e, 0].tolist():
                        acc += v
                    out[a] = acc
        return outs


def _compile_tree(node: dict, decisions: dict[tuple[int, float, str, bool], int]) -> tuple[list[tuple[int, float, str, bool]], np.ndarray]:
    """Decision rows of a tree's split nodes and its code -> leaf value table (256 entries)."""
    splits: list[dict] = []

    def walk(nd: dict) -> None:
        if "split_feature" in nd:
            if nd.get("decision_type") != "<=":
                raise UnsupportedForest(f"decision type {nd.get('decision_type')!r}")
            if nd.get("missing_type") not in ("None", "NaN", "Zero"):
                raise UnsupportedForest(f"missing type {nd.get('missing_type')!r}")
            nd["_k"] = len(splits)
            splits.append(nd)
            walk(nd["left_child"])
            walk(nd["right_child"])
        elif "leaf_value" not in nd:
            raise UnsupportedForest("tree node without split or leaf value")

    walk(node)
    if len(splits) > _MAX_SPLITS:
        raise UnsupportedForest(f"a tree with {len(splits)} split nodes (at most {_MAX_SPLITS})")
    rows = []
    for nd in splits:
        key = (int(nd["split_feature"]), float(nd["threshold"]), str(nd["missing_type"]), bool(nd["default_left"]))
        decisions.setdefault(key, len(decisions))
        rows.append(key)
    lut = np.empty(1 << _MAX_SPLITS, dtype=np.float64)
    for code in range(lut.size):
        nd = node
        while "split_feature" in nd:
            nd = nd["left_child"] if (code >> nd["_k"]) & 1 else nd["right_child"]
        lut[code] = float(nd["leaf_value"])
    for nd in splits:
        del nd["_k"]
    return rows, lut


def _probe_rows(forest: CompiledForest, n_rows: int = 512, seed: int = 0) -> np.ndarray:
    """Rows whose values sit on, just above and just below the split thresholds (plus 0, tiny, NaN)."""
    rng = np.random.default_rng(seed)
    per_feature: dict[int, list[float]] = {f: [0.0, -0.0, 1e-36, -1e-36, np.nan, 1.0] for f in range(forest.n_features)}
    for f, _mt, _dl, _i, _j, thr in forest.groups:
        for t in thr[:, 0]:
            per_feature[f] += [t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)]
    X = np.empty((n_rows, forest.n_features))
    for f, vals in per_feature.items():
        X[:, f] = rng.choice(np.asarray(vals, dtype=np.float64), n_rows)
    return X


def compile_forest(boosters: Sequence[lgb.Booster]) -> CompiledForest | None:
    """A :class:`CompiledForest` over ``boosters`` checked bitwise against LightGBM, or None if unsupported."""
    try:
        forest = CompiledForest(boosters)
    except (UnsupportedForest, KeyError, TypeError, ValueError):
        return None
    X = _probe_rows(forest)
    mine = forest.raw_scores(X)
    for booster, got in zip(boosters, mine, strict=True):
        ref = booster.predict(X, raw_score=True, num_threads=1)
        if not np.array_equal(ref, got):
            return None
    return forest


def exp_exact(x: np.ndarray) -> np.ndarray:
    """``exp`` of each element as the C library computes it (LightGBM's Poisson/Tweedie output).

    numpy's vectorised exp may differ from libm's by one unit in the last
    place; Python's ``math.exp`` is libm's.  A forest's raw scores take few
    distinct values (one per reached leaf combination), so exp runs on those.
    """
    x = np.asarray(x, dtype=np.float64)
    u, inv = np.unique(x.ravel(), return_inverse=True)
    eu = np.fromiter(map(math.exp, u.tolist()), dtype=np.float64, count=u.size)
    return eu[inv].reshape(x.shape)
