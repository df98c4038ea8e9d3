"""GLMix: a global logit plus per-entity random effects (personalised P(skip)).

Zhang et al., "GLMix: Generalized Linear Mixed Models For Large-Scale
Response Prediction" (KDD 2016), the model of LinkedIn's Photon-ML (GAME)::

    logit_i = offset_i + sum_blocks z_{block, i} . b_{block, entity(i)}

``offset`` is the fixed effect: the global head's logit (e.g.
:meth:`ranking.heads.GBDTLRHead.decision_function`), given as an array and
not refitted here.  Each random-effect block (per member, on update-side
features; per update, on member-side features) gives every entity its own
coefficients with a Gaussian prior N(0, sigma^2 I).  The fit is block
coordinate descent with offsets: each block in turn is refitted as many
independent L2-regularised logistic regressions whose offsets are the fixed
effect plus the other blocks' current scores (:func:`ranking.glmix_solve.newton_fit`),
for ``n_passes`` passes.  Entities unseen in training get zero random effects.

File format (:meth:`GlmixModel.save`, see ``docs/glmix.md``): a directory with
``glmix.json`` (format, config, world fingerprint, per block its name,
entity column, feature names, prior variance and entity count) and one
``<block>.npz`` per block holding ``ids`` (int64, ascending, shape (E,)) and
``coef`` (float64, shape (E, p), columns in the JSON's feature order).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dwellrank_logs.checks import check_int, is_finite_number
from dwellrank_logs.errors import ConfigError, DwellrankError, SchemaError
from ranking.features import IncompatibleModelError
from ranking.glmix_solve import SortedBlock, block_scores, newton_fit, sort_block

__all__ = [
    "GLMIX_FORMAT",
    "EffectDesign",
    "GlmixBlock",
    "GlmixConfig",
    "GlmixModel",
    "GlmixWorldError",
    "log_loss",
]

#: ``glmix.json``'s ``format``: name and version of the file layout.
GLMIX_FORMAT = {"name": "dwellrank-glmix", "version": 1}
#: A block with at least this many distinct ids in one scoring call, none of them known, is "another world".
MIN_IDS_FOR_WORLD_CHECK = 20


class GlmixWorldError(DwellrankError, ValueError):
    """Random effects scored on entities of another world than the one they were fitted on."""


@dataclass(frozen=True)
class GlmixConfig:
    """Hyper-parameters of a GLMix fit.

    Parameters
    ----------
    prior_var : tuple of (block name, float) pairs
        sigma^2 of each random-effect block's Gaussian prior (> 0), by block name.
    n_passes : int
        Block coordinate descent passes over all blocks (>= 1).
    max_newton : int
        Newton steps per block per pass at most (>= 1).
    newton_tol : float
        A block's Newton steps stop when no coefficient moves by more than this (> 0).
    max_step : float
        Largest Newton step per coefficient, logit units (> 0).
    chunk_rows : int
        Rows per chunk of the per-row temporaries (>= 1): buffers of about
        ``chunk_rows * (p + 1) * (p + 4) / 2 * 8`` bytes per block, and per-row
        vectors small enough for the allocator to reuse (a few MB).
    """

    prior_var: tuple[tuple[str, float], ...] = (("member", 0.3), ("update", 0.3))
    n_passes: int = 2
    max_newton: int = 10
    newton_tol: float = 1e-6
    max_step: float = 2.0
    chunk_rows: int = 262_144

    def __post_init__(self) -> None:
        check_int("n_passes", self.n_passes, 1)
        check_int("max_newton", self.max_newton, 1)
        check_int("chunk_rows", self.chunk_rows, 1)
        for name in ("newton_tol", "max_step"):
            v = getattr(self, name)
            if not (is_finite_number(v) and v > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")
        pv = self.prior_var
        if not isinstance(pv, tuple) or not pv or not all(isinstance(e, tuple) and len(e) == 2 for e in pv):
            raise ConfigError(f"prior_var must be a non-empty tuple of (block name, variance) pairs, got {pv!r}")
        names = [n for n, _ in pv]
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise ConfigError(f"prior_var's block names must be distinct non-empty strings, got {names!r}")
        for n, v in pv:
            if not (is_finite_number(v) and v > 0):
                raise ConfigError(f"prior_var of block {n!r} must be a finite number > 0, got {v!r}")

    def variance(self, block: str) -> float:
        """sigma^2 of ``block``'s prior."""
        for n, v in self.prior_var:
            if n == block:
                return float(v)
        raise ConfigError(f"block {block!r} has no prior variance in prior_var (blocks {', '.join(n for n, _ in self.prior_var)})")

    def with_variance(self, block: str, value: float) -> GlmixConfig:
        """A copy with ``block``'s prior variance set to ``value``."""
        self.variance(block)
        return replace(self, prior_var=tuple((n, float(value) if n == block else v) for n, v in self.prior_var))


@dataclass(frozen=True)
class EffectDesign:
    """The rows of one random-effect block: each row's entity id and the features its coefficients multiply.

    Parameters
    ----------
    name : str
        Block name (``"member"``, ``"update"``); keys the prior variance and the file.
    entity : str
        The entity id column it is keyed by (``"member_id"``), recorded in the file.
    ids : ndarray, shape (n_rows,), int
    X : ndarray, shape (n_rows, p), float
    features : tuple of str
        Names of the ``p`` columns of ``X``.
    """

    name: str
    entity: str
    ids: np.ndarray
    X: np.ndarray
    features: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name.isidentifier()):
            raise SchemaError(f"EffectDesign.name must be an identifier (it names a file), got {self.name!r}")
        ids, X = np.asarray(self.ids), np.asarray(self.X)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise SchemaError(f"block {self.name!r}: ids must be a 1-d integer array, got shape {ids.shape} of {ids.dtype}")
        if X.ndim != 2 or X.shape[0] != ids.size:
            raise SchemaError(f"block {self.name!r}: X must have shape (n_rows={ids.size}, p), got {X.shape}")
        if len(self.features) != X.shape[1] or len(set(self.features)) != len(self.features):
            raise SchemaError(f"block {self.name!r}: features must name the {X.shape[1]} columns of X once each, got {list(self.features)}")
        if not np.isfinite(X).all():
            raise SchemaError(f"block {self.name!r}: X holds NaN or infinite values")


def log_loss(y: np.ndarray, logit: np.ndarray) -> float:
    """Mean negative log-likelihood of 0/1 labels ``y`` under ``sigmoid(logit)``, nats per row."""
    y = np.asarray(y, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, logit) - y * logit))


def _labels_offset(y: np.ndarray, offset: np.ndarray, designs: Sequence[EffectDesign]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    if y.ndim != 1 or offset.shape != y.shape:
        raise SchemaError(f"y and offset must be 1-d arrays of one length, got shapes {y.shape} and {offset.shape}")
    if y.size == 0 or not designs:
        raise SchemaError(f"nothing to fit: {y.size} rows and {len(designs)} block(s); GLMix needs rows and at least one block")
    if not np.isin(y, (0.0, 1.0)).all():
        raise SchemaError("y must hold only 0/1 (or boolean) labels")
    if not np.isfinite(offset).all():
        raise SchemaError("offset holds NaN or infinite logits")
    for d in designs:
        if d.ids.size != y.size:
            raise SchemaError(f"block {d.name!r} has {d.ids.size} rows, y has {y.size}")
    if len({d.name for d in designs}) != len(designs):
        raise SchemaError(f"block names must be distinct, got {[d.name for d in designs]}")
    return y, offset


@dataclass
class GlmixBlock:
    """A fitted random-effect block: entity ids (ascending), coefficients (n_entities, p), feature names, prior variance."""

    name: str
    entity: str
    features: tuple[str, ...]
    prior_var: float
    ids: np.ndarray  # (E,) ascending
    coef: np.ndarray  # (E, p)


class GlmixModel:
    """Random effects over a given fixed-effect logit.

    Fitted attributes
    -----------------
    blocks_ : dict of str to GlmixBlock
        Each block's entity ids (ascending), coefficients (n_entities, p),
        feature names and prior variance.
    history_ : list of dict
        Training log loss after each block of each pass, and its Newton steps.
    world_ : str or None
        Fingerprint of the world the model was fitted on
        (:func:`ranking.glmix_data.world_fingerprint`), if given.
    """

    def __init__(self, config: GlmixConfig | None = None) -> None:
        self.config = config or GlmixConfig()

    def fit(self, y: np.ndarray, offset: np.ndarray, designs: Sequence[EffectDesign], world: str | None = None) -> GlmixModel:
        """Block coordinate descent over ``designs`` with ``offset`` as the fixed effect.

        Parameters
        ----------
        y : ndarray, shape (n_rows,), bool or 0/1
        offset : ndarray, shape (n_rows,), logits
        designs : sequence of EffectDesign
            Fitted in this order within each pass.
        world : str, optional
            The world's fingerprint, recorded and checked when scoring.
        """
        y, offset = _labels_offset(y, offset, designs)
        cfg = self.config
        sorted_blocks: dict[str, SortedBlock] = {d.name: sort_block(np.asarray(d.ids), np.asarray(d.X)) for d in designs}
        coef = {d.name: np.zeros((sorted_blocks[d.name].ids.size, d.X.shape[1])) for d in designs}
        scores = {d.name: np.zeros(y.size) for d in designs}  # original row order
        variances = {d.name: cfg.variance(d.name) for d in designs}
        y_sorted = {name: y[sb.perm] for name, sb in sorted_blocks.items()}
        self.history_: list[dict[str, Any]] = []
        for k in range(cfg.n_passes):
            for d in designs:
                sb = sorted_blocks[d.name]
                others = offset.copy()
                for n, s in scores.items():
                    if n != d.name:
                        others += s
                coef[d.name], steps = newton_fit(
                    sb,
                    y_sorted[d.name],
                    others[sb.perm],
                    variances[d.name],
                    coef[d.name],
                    cfg.max_newton,
                    cfg.newton_tol,
                    cfg.max_step,
                    cfg.chunk_rows,
                )
                scores[d.name][sb.perm] = block_scores(sb, coef[d.name], cfg.chunk_rows)
                self.history_.append(
                    {"pass": k, "block": d.name, "newton_steps": steps, "train_log_loss": log_loss(y, others + scores[d.name])}
                )
        self.blocks_ = {
            d.name: GlmixBlock(d.name, d.entity, tuple(d.features), variances[d.name], sorted_blocks[d.name].ids, coef[d.name])
            for d in designs
        }
        self.world_ = world
        return self

    def random_effect(self, designs: Sequence[EffectDesign], world: str | None = None) -> np.ndarray:
        """The summed random-effect logit of the rows, shape (n_rows,); unseen entities add 0.

        Raises
        ------
        IncompatibleModelError
            A design's block is not in the model or its features differ.
        GlmixWorldError
            ``world`` and the model's fingerprint are both known and differ, or
            every block was given at least :data:`MIN_IDS_FOR_WORLD_CHECK`
            distinct ids and none of them is known to the model.
        """
        if not designs:
            raise SchemaError("random_effect needs at least one block's design")
        if world is not None and self.world_ is not None and world != self.world_:
            raise GlmixWorldError(f"random effects fitted on world {self.world_!r}, scored on world {world!r}: refit on this world's logs")
        n = designs[0].ids.size
        total = np.zeros(n)
        unknown_blocks = []
        for d in designs:
            block = self._block(d)
            if d.ids.size != n:
                raise SchemaError(f"block {d.name!r} has {d.ids.size} rows, block {designs[0].name!r} has {n}")
            known = np.zeros(n, dtype=bool)
            if block.ids.size:
                pos = np.minimum(np.searchsorted(block.ids, d.ids), block.ids.size - 1)
                known = block.ids[pos] == d.ids
                total += np.where(known, np.einsum("ij,ij->i", np.asarray(d.X, dtype=np.float64), block.coef[pos]), 0.0)
            n_distinct = np.unique(d.ids).size
            if n_distinct >= MIN_IDS_FOR_WORLD_CHECK and not known.any():
                unknown_blocks.append(f"none of {n_distinct} distinct {d.entity} values is among the model's {block.ids.size:,}")
        if len(unknown_blocks) == len(designs):
            raise GlmixWorldError(f"random effects of another world: {'; '.join(unknown_blocks)} (fitted on world {self.world_!r})")
        return total

    def decision_function(self, offset: np.ndarray, designs: Sequence[EffectDesign], world: str | None = None) -> np.ndarray:
        """Logit: ``offset`` plus the random effects, shape (n_rows,)."""
        return np.asarray(offset, dtype=np.float64) + self.random_effect(designs, world)

    def predict_proba(self, offset: np.ndarray, designs: Sequence[EffectDesign], world: str | None = None) -> np.ndarray:
        """P(label), shape (n_rows,)."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(offset, designs, world)))

    def _block(self, d: EffectDesign) -> GlmixBlock:
        if d.name not in self.blocks_:
            raise IncompatibleModelError(f"GLMix model has no block {d.name!r} (blocks {', '.join(self.blocks_)})")
        block = self.blocks_[d.name]
        if tuple(d.features) != block.features:
            raise IncompatibleModelError(
                f"block {d.name!r}: scored with features {list(d.features)}, the model was fitted on {list(block.features)}"
            )
        return block

    def save(self, directory: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Write the model's directory (:func:`ranking.glmix_io.save_glmix`)."""
        from ranking.glmix_io import save_glmix

        return save_glmix(self, directory, overwrite)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], features: Mapping[str, Sequence[str]] | None = None) -> GlmixModel:
        """Read a model directory (:func:`ranking.glmix_io.load_glmix`), refusing other ``features``."""
        from ranking.glmix_io import load_glmix

        return load_glmix(directory, features)
