"""The trained model and its directory: predictions, the value score, save and load.

A model directory holds::

    metadata.json      schema + feature-set name/version/columns, T_skip, seed, data sizes,
                       and dwell_weighting (ranking.weighting) when the heads were fitted with dwell weights
    weights.json       value-function weights (edit, or pass others to FeedRanker)
    heads/<h>.trees.txt, heads/<h>.lr.json          LightGBM trees, LR coefficients
    regressors/<t>_<a>.json (+ .trees.txt)          E[target | action]; regressors/dwell.*: E[dwell_s]
    profiles.parquet   member profile snapshot (member-side features at serving time)
    report.json, report.png                          held-out metrics, calibration and ROC
    glmix/glmix.json, glmix/<block>.npz               optional: GLMix random effects of P(skip) (ranking.glmix_pskip;
                                                      metadata.json's ``pskip`` records the fit)
    embeddings/embeddings.json, embeddings/<m>.npz    optional: dwell embeddings of the ``dwell_emb`` feature set
                                                      (ranking.embeddings_io; metadata.json's ``embeddings`` records the fit)
    manifest.json      every file above with its size and sha256 (dwellrank_logs.manifest), written last

:func:`ranking.model_io.load_model` reads it back: it checks the manifest
before LightGBM reads any file, and refuses a directory written for another
feature-set version, naming what differs.  :func:`ranking.train.train_ranker` builds the
model.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.io import atomic_dir, write_json, write_parquet
from dwellrank_logs.manifest import write_manifest
from dwellrank_logs.schema import ACTIONS
from ranking.embeddings_io import EMBEDDING_DIR, save_embeddings
from ranking.features import FeatureSet
from ranking.features.embeddings import DwellEmbeddings
from ranking.forest import CompiledForest, compile_forest, exp_exact
from ranking.glmix_pskip import GLMIX_DIR, PskipGlmix
from ranking.heads import GBDTLRHead, _sigmoid
from ranking.native import NativeScorer, ScorerSpec, available_cpus, build_native, value_params
from ranking.regressors import ActionRegressor
from ranking.report import plot_report
from ranking.value import ValueWeights, needed_predictions, value_function

__all__ = ["BACKENDS", "HEADS", "MODEL_FORMAT", "MODEL_KIND", "REGRESSORS", "RankerModel"]

#: The binary heads, in order (``long_dwell``: dwell_s > T_long, an optional value term).
HEADS: tuple[str, ...] = (*ACTIONS, "skip", "long_dwell")
#: The regressions: E[downstream | a], E[upstream | a] per action, and E[dwell_s] (optional value term).
REGRESSORS: tuple[str, ...] = (*(f"{t}_{a}" for t in ("down", "up") for a in ACTIONS), "dwell")
#: Version of the model-directory layout.
MODEL_FORMAT = 1
#: The kind recorded in the directory's manifest.json (a forecast model directory has another).
MODEL_KIND = "dwellrank.ranking.model"
#: The compiled forest is single-threaded numpy.  Measured with bench/rank.py's model (13
#: boosters, 230 trees) on 2 cores, it is faster than LightGBM's predict at every batch size:
#: 0.26 ms against 0.37 ms for 1 row, 2.5 against 4.1 ms for 1,000, 2.9 s against 5.9 s for 1M
#: rows at one LightGBM thread (2.4 against 2.7 s at two).  LightGBM scales with threads, so
#: with more than two it gets large batches (from _FOREST_MIN_ROWS_THREADED rows).
_FOREST_MAX_THREADS = 2
_FOREST_MIN_ROWS_THREADED = 2048
#: Scoring backends: "auto" (native code where it builds, see ranking.native; else the numpy
#: forest and LightGBM as above) and "numpy" (never native).
BACKENDS = ("auto", "numpy")


class RankerModel:
    """Trained heads, regressions, default weights and profile snapshot.

    Attributes
    ----------
    feature_set : FeatureSet
    t_skip_s : float, seconds
    heads : dict of str to GBDTLRHead
        ``click``, ``react``, ``comment``, ``share``, ``skip``, ``long_dwell``.
    regressors : dict of str to ActionRegressor
        ``down_<a>`` and ``up_<a>`` for each action ``a``, and ``dwell``.
    weights : ValueWeights
        Default weights (the rule in :mod:`ranking.value`).
    profiles : polars.DataFrame
        member_id and profile columns, from the training logs.
    metadata, report : dict
    backend : {"auto", "numpy"}
        "auto" scores with :mod:`ranking.native` where it builds (and
        ``DWELLRANK_NATIVE`` does not turn it off); "numpy" never does.
    fingerprint_ : str or None
        sha256 of the model directory's manifest when loaded from one (keys
        the native code cache); None for a model built in memory.
    glmix : PskipGlmix or None
        GLMix random effects of P(skip) (:mod:`ranking.glmix_pskip`): their logit,
        given to :meth:`predict` and :meth:`score` as ``skip_offset``, is added
        to the P(skip) head's before the sigmoid.
    embeddings : DwellEmbeddings or None
        The fitted vectors of the feature set's ``emb_*`` columns (the
        ``dwell_emb`` set, :mod:`ranking.features.embeddings`); the feature
        matrix holds their features, which the ranker computes from them.
    """

    def __init__(
        self,
        feature_set: FeatureSet,
        t_skip_s: float,
        heads: dict[str, GBDTLRHead],
        regressors: dict[str, ActionRegressor],
        weights: ValueWeights,
        profiles: pl.DataFrame,
        metadata: dict[str, Any],
        report: dict[str, Any] | None = None,
        glmix: PskipGlmix | None = None,
        embeddings: DwellEmbeddings | None = None,
    ) -> None:
        self.feature_set = feature_set
        self.t_skip_s = float(t_skip_s)
        self.heads = heads
        self.regressors = regressors
        self.weights = weights
        self.profiles = profiles
        self.metadata = metadata
        self.report = report or {}
        self._forests: dict[tuple[str, ...] | None, CompiledForest | None] = {}
        self._natives: dict[tuple[str, ...] | None, NativeScorer | None] = {}
        self.backend = "auto"
        self.fingerprint_: str | None = None
        self.glmix = glmix
        self.embeddings = embeddings

    def skip_offset(
        self, X: np.ndarray, member_ids: np.ndarray, update_ids: np.ndarray, topics: np.ndarray, world: str | None = None
    ) -> np.ndarray | None:
        """The GLMix random-effect logit of P(skip) of the rows (None without GLMix): :meth:`predict`'s ``skip_offset``."""
        if self.glmix is None:
            return None
        return self.glmix.effect(np.asarray(X, dtype=np.float64), member_ids, update_ids, topics, world)

    def __getstate__(self) -> dict[str, Any]:
        """The model's state without its native scorers: machine code and ctypes pointers do not pickle.

        Spark broadcasts a model to its executors, and ``copy.copy`` goes through here too; the
        copy scores with the numpy forest until :meth:`prepare` loads the native code again
        (from the on-disk cache: milliseconds).
        """
        state = self.__dict__.copy()
        state["_natives"] = {}
        return state

    def predict(
        self, X: np.ndarray, num_threads: int = 1, only: tuple[str, ...] | None = None, skip_offset: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Every head's P and every regression's expectation.

        Parameters
        ----------
        X : ndarray, shape (n_rows, n_features)
            Columns in the order of ``feature_set.columns``.
        num_threads : int
            Prediction threads (0: :func:`ranking.native.available_cpus`, the
            container's CPU limit, not ``os.cpu_count()``).
        only : tuple of str, optional
            Compute just these outputs (e.g. :func:`ranking.value.needed_predictions`).
        skip_offset : ndarray, shape (n_rows,), optional
            Logit added to the P(skip) head's before its sigmoid (the GLMix
            random effects, :meth:`skip_offset`); None: the head alone.

        Returns
        -------
        dict name -> ndarray, shape (n_rows,)
            ``p_<head>`` for the six heads, ``down_<a>``, ``up_<a>`` and ``dwell`` (seconds).
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        threads = num_threads if num_threads > 0 else available_cpus()
        native = self._natives.get(only) if self.backend != "numpy" else None  # built by prepare()
        if native is not None and X.shape[1] == native.n_features:
            return self._predict_numpy(X, threads, only, native.raw_scores(X, threads), skip_offset)
        return self._predict_numpy(X, threads, only, None, skip_offset)

    def _predict_numpy(
        self,
        X: np.ndarray,
        threads: int,
        only: tuple[str, ...] | None,
        raw_scores: list[np.ndarray] | None = None,
        skip_offset: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """:meth:`predict` with the trees' raw scores given (native code) or from the numpy forest or LightGBM."""
        heads, regs, boosters = self._outputs(only)
        # All trees in one vectorised pass (the compiled forest, see ranking.forest's invariant);
        # LightGBM's predict for unsupported trees and many-thread large batches.
        raw: dict[int, np.ndarray] = {}
        if raw_scores is not None:
            raw = {id(b): r for b, r in zip(boosters, raw_scores, strict=True)}
        elif threads <= _FOREST_MAX_THREADS or X.shape[0] < _FOREST_MIN_ROWS_THREADED:
            forest = self._forest(only, boosters)
            if forest is not None and X.ndim == 2 and X.shape[1] == forest.n_features:
                raw = {id(b): r for b, r in zip(boosters, forest.raw_scores(X), strict=True)}
        shared: dict[str, np.ndarray] = {}  # raw_transform(X), computed once for all heads
        out = {}
        for h, head in heads:
            kind = head.config.raw_transform
            if kind not in shared:
                shared[kind] = head.scaler_.f(X)
            if h == "skip" and skip_offset is not None:  # GLMix: the random effects join the head's logit
                logit = head.decision_function(X, threads, transformed=shared[kind], leaf_part=raw.get(id(head.folded_)))
                out[f"p_{h}"] = _sigmoid(logit + np.asarray(skip_offset, dtype=np.float64))
                continue
            out[f"p_{h}"] = head.predict_proba(X, threads, transformed=shared[kind], leaf_part=raw.get(id(head.folded_)))
        for name, reg in regs:
            r = raw.get(id(reg.booster_)) if reg.booster_ is not None else None
            out[name] = exp_exact(r) if r is not None else reg.predict(X, threads)
        return out

    def _outputs(self, only: tuple[str, ...] | None) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], list[Any]]:
        """The heads and regressions ``only`` asks for, and their boosters in the forest's order."""
        heads = [(h, head) for h, head in self.heads.items() if only is None or f"p_{h}" in only]
        regs = [(n, reg) for n, reg in self.regressors.items() if only is None or n in only]
        # Both regression objectives (poisson, tweedie) predict exp(raw score).
        boosters = [head.folded_ for _, head in heads] + [reg.booster_ for _, reg in regs if reg.booster_ is not None]
        return heads, regs, boosters

    def _forest(self, only: tuple[str, ...] | None, boosters: list[Any]) -> CompiledForest | None:
        """The compiled forest of ``boosters``, cached by ``only`` (which decides the boosters)."""
        if only not in self._forests:
            self._forests[only] = compile_forest(boosters)
        return self._forests[only]

    def _native(self, only: tuple[str, ...] | None, weights: ValueWeights | None = None) -> NativeScorer | None:
        """The native scorer of the outputs ``only``, built on first call and kept; None (backend "numpy", unavailable, refused).

        Each build or cache load is checked on probe rows: raw scores equal to LightGBM's, scores
        within 1e-12 of the numpy path's.
        """
        if self.backend == "numpy":
            return None
        if only not in self._natives:
            heads, regs, boosters = self._outputs(only)
            spec = ScorerSpec(
                boosters=boosters,
                heads=tuple(h for h, _ in heads),
                coefs=tuple(np.asarray(head.raw_coef_, dtype=np.float64) for _, head in heads),
                intercepts=tuple(float(head.intercept_) for _, head in heads),
                transforms=tuple(head.config.raw_transform for _, head in heads),
                regs=tuple(n for n, _ in regs),
                fingerprint=self.fingerprint_ or self._content_hash(),
                constants=tuple(None if reg.booster_ is not None else float(reg.constant_) for _, reg in regs),
            )
            w = weights or self.weights
            self._natives[only] = build_native(spec, check=lambda scorer: self._native_agrees(scorer, only, boosters, w))
        return self._natives[only]

    def _content_hash(self) -> str:
        """sha256 of every tree and LR coefficient (the native cache key of a model without a manifest)."""
        h = hashlib.sha256()
        for name, head in self.heads.items():
            h.update(name.encode() + head.folded_.model_to_string().encode())
            h.update(np.asarray(head.raw_coef_, dtype=np.float64).tobytes() + repr(float(head.intercept_)).encode())
            h.update(head.config.raw_transform.encode())
        for name, reg in self.regressors.items():
            h.update(
                name.encode() + (reg.booster_.model_to_string().encode() if reg.booster_ is not None else repr(reg.constant_).encode())
            )
        return h.hexdigest()

    def _native_agrees(self, scorer: NativeScorer, only: tuple[str, ...] | None, boosters: list[Any], weights: ValueWeights) -> bool:
        """Probe rows (split thresholds and their neighbours, 0, tiny, NaN; and integer counts) agree with the numpy path."""
        from ranking.forest import _probe_rows

        forest = self._forest(only, boosters)
        rng = np.random.default_rng(0)
        n_features = scorer.n_features
        X = _probe_rows(forest) if forest is not None else rng.normal(size=(512, n_features))
        if X.shape[1] != n_features:
            return False
        counts = rng.integers(0, 5000, size=(256, n_features)).astype(np.float64)  # the asinh table's range and past it
        X = np.vstack([X, counts, np.abs(X)])
        raw = scorer.raw_scores(X)
        for booster, got in zip(boosters, raw, strict=True):
            if not np.array_equal(got, booster.predict(X, raw_score=True, num_threads=1)):
                return False
        want = value_function(self._predict_numpy(X, 1, only), weights)  # reads only the predictions the weights use
        got_score = scorer.score(X, value_params(weights))
        return bool(np.allclose(got_score, want, rtol=1e-12, atol=1e-12, equal_nan=True))

    def prepare(self, weights: ValueWeights | None = None, full: bool = False) -> bool:
        """Compile what :meth:`score` under ``weights`` uses, or with ``full`` every output (:meth:`predict` and :meth:`score`).

        Builds the native scorer (:mod:`ranking.native`; LLVM takes about a
        second per model the first time, then it is loaded from the on-disk
        cache in milliseconds) and the numpy forest that serves when native
        code is unavailable (tens of milliseconds), so that neither falls on
        the first request.  Only a prepared model scores natively: training and
        evaluation, which predict once per model, stay on the numpy forest and
        pay no compilation.  Returns whether the trees compiled (False:
        LightGBM's predict serves them).  The ``full`` scorer also serves
        :meth:`score` under any weights (a term of weight 0 adds exactly 0),
        so one compilation serves a caller that writes every prediction.
        """
        w = weights or self.weights
        need = needed_predictions(w)
        forest = self._forest(need, self._outputs(need)[2])  # the numpy fallback of score()
        if full:
            forest = self._forest(None, self._outputs(None)[2])
        return self._native(None if full else need, w) is not None or forest is not None

    def score(
        self, X: np.ndarray, weights: ValueWeights | None = None, num_threads: int = 1, skip_offset: np.ndarray | None = None
    ) -> np.ndarray:
        """Value-function score, shape (n_rows,); only the predictions the weights use are computed.

        With ``skip_offset`` (GLMix, :meth:`skip_offset`) and a skip penalty, the
        compiled code gives the trees' raw scores and numpy the heads and the
        value function: the random effects enter P(skip) before its sigmoid,
        which the compiled value function cannot take.
        """
        w = weights or self.weights
        only = needed_predictions(w)
        native = (self._natives.get(only) or self._natives.get(None)) if self.backend != "numpy" else None  # built by prepare()
        X = np.ascontiguousarray(X, dtype=np.float64)
        threads = num_threads if num_threads > 0 else available_cpus()
        if skip_offset is not None and "p_skip" in only:
            if native is not None and X.ndim == 2 and X.shape[1] == native.n_features:
                key = only if self._natives.get(only) is native else None  # the outputs that native code computes
                return value_function(self._predict_numpy(X, threads, key, native.raw_scores(X, threads), skip_offset), w)
            return value_function(self._predict_numpy(X, threads, only, None, skip_offset), w)
        if native is not None and X.ndim == 2 and X.shape[1] == native.n_features:
            return native.score(X, value_params(w), num_threads if num_threads > 0 else available_cpus())
        return value_function(self.predict(X, num_threads, only=only), w)

    # ---------------------------------------------------------------- persistence

    def save(self, directory: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Write the model directory atomically (see the module docstring)."""
        with atomic_dir(directory, overwrite=overwrite) as tmp:
            (tmp / "heads").mkdir()
            (tmp / "regressors").mkdir()
            for name, head in self.heads.items():
                head.save(tmp / "heads", name)
            for name, reg in self.regressors.items():
                reg.save(tmp / "regressors", name)
            write_parquet(self.profiles, tmp / "profiles.parquet")
            if self.glmix is not None:
                self.glmix.save(tmp / GLMIX_DIR)
            if self.embeddings is not None:
                save_embeddings(self.embeddings, tmp / EMBEDDING_DIR)
            write_json(tmp / "weights.json", self.weights.to_dict())
            write_json(tmp / "metadata.json", self.metadata)
            write_json(tmp / "report.json", self.report)
            if self.report:
                plot_report(self.report, tmp / "report.png")
            write_manifest(tmp, MODEL_KIND, MODEL_FORMAT)  # last: it lists every file above
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], verify: bool = True) -> RankerModel:
        """Alias of :func:`ranking.model_io.load_model`."""
        from ranking.model_io import load_model  # the reader builds this class

        return load_model(directory, verify=verify)
