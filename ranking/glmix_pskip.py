"""GLMix P(skip) of a ranking model: random effects over the P(skip) head's logit, fitted, stored and served.

The fixed effect is the model's global P(skip) head (its logit,
:meth:`ranking.heads.GBDTLRHead.decision_function`, not refitted); the member
block gives each member coefficients on the update type and topic, the update
block each update an intercept (:mod:`ranking.glmix_data`).  Prior variances
are chosen on the last ``valid_days`` of the training days
(:func:`ranking.glmix_select.select_prior_variances`), then GLMix is refitted
on all training days and scored on the model's held-out days beside the head.

Serving (:meth:`PskipGlmix.effect`): the member design is the feature
matrix's ``type_*`` columns and a one-hot of the candidate's topic; each
block's coefficients are gathered by ``np.searchsorted`` on its sorted ids
(:meth:`ranking.glmix.GlmixModel.random_effect`); unseen entities add 0.
The model directory keeps the random effects in ``glmix/`` (the format of
:mod:`ranking.glmix_io`) and the record of the fit in ``metadata.json``'s
``pskip`` entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.checks import check_int, is_finite_number
from dwellrank_logs.errors import ConfigError, SchemaError
from ranking.features import FeatureSet, IncompatibleModelError
from ranking.glmix import EffectDesign, GlmixConfig, GlmixModel, log_loss
from ranking.glmix_data import MEMBER_TYPE_FEATURES, glmix_designs, topic_features, world_fingerprint
from ranking.glmix_io import load_glmix
from ranking.glmix_select import select_prior_variances
from ranking.metrics import binary_metrics

__all__ = [
    "BLOCKS",
    "GLMIX_DIR",
    "UPDATE_FEATURES",
    "PskipGlmix",
    "PskipGlmixConfig",
    "check_selection_split",
    "fit_pskip_glmix",
    "held_out_record",
    "load_pskip_glmix",
    "profiles_fingerprint",
    "pskip_record",
]

#: The model directory's subdirectory of the random effects.
GLMIX_DIR = "glmix"
#: The update block's features (an intercept: the update's own skip tendency).
UPDATE_FEATURES: tuple[str, ...] = ("intercept",)
#: The random-effect blocks, in fitting order.
BLOCKS: tuple[str, ...] = ("member", "update")


@dataclass(frozen=True)
class PskipGlmixConfig:
    """How :func:`fit_pskip_glmix` fits.

    Parameters
    ----------
    valid_days : int
        The last training days that choose the prior variances (>= 1); GLMix is
        fitted on the training days before them for the choice.
    grid : tuple of float
        Candidate prior variances of each block (> 0).
    glmix : GlmixConfig
        Passes, Newton steps and the starting variances.
    blocks : tuple of str
        The random-effect blocks, of ``("member", "update")``: both by default;
        ``("member",)`` where update ids of the fitting logs do not name the
        serving world's updates.
    """

    valid_days: int = 3
    grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    glmix: GlmixConfig = field(default_factory=GlmixConfig)
    blocks: tuple[str, ...] = BLOCKS

    def __post_init__(self) -> None:
        check_int("valid_days", self.valid_days, 1)
        if not self.blocks or len(set(self.blocks)) != len(self.blocks) or not set(self.blocks) <= set(BLOCKS):
            raise ConfigError(f"blocks must be distinct names of {BLOCKS}, got {self.blocks!r}")
        if not self.grid or not all(is_finite_number(v) and v > 0 for v in self.grid):
            raise ConfigError(f"grid must be a non-empty tuple of variances > 0, got {self.grid!r}")


class PskipGlmix:
    """Random effects of P(skip), served from a feature matrix and the candidates' ids and topics.

    Parameters
    ----------
    model : GlmixModel
        Blocks ``member`` (features ``type_*`` then ``topic_<t>``) and ``update`` (``intercept``).
    topics : sequence of int
        The topic ids of the member block's topic columns, in order.
    feature_set : FeatureSet
        The ranking model's feature set (the ``type_*`` columns of its matrix).
    blocks : tuple of str
        The model's blocks, of :data:`BLOCKS`.
    """

    def __init__(self, model: GlmixModel, topics: Sequence[int], feature_set: FeatureSet, blocks: Sequence[str] = BLOCKS) -> None:
        self.model = model
        self.blocks = tuple(b for b in BLOCKS if b in blocks)
        self.topics = np.asarray([int(t) for t in topics], dtype=np.int64)
        missing = [c for c in MEMBER_TYPE_FEATURES if c not in feature_set.columns]
        if missing:
            raise ConfigError(f"GLMix P(skip) needs the feature set's update-type columns; '{feature_set.name}' lacks {missing}")
        self._type_cols = np.asarray([feature_set.columns.index(c) for c in MEMBER_TYPE_FEATURES], dtype=np.intp)

    @property
    def features(self) -> dict[str, list[str]]:
        """Each block's feature names, as the library defines them for these topics."""
        every = {"member": [*MEMBER_TYPE_FEATURES, *topic_features(self.topics.tolist())], "update": list(UPDATE_FEATURES)}
        return {b: every[b] for b in self.blocks}

    def designs(self, X: np.ndarray, member_ids: np.ndarray, update_ids: np.ndarray, topics: np.ndarray) -> list[EffectDesign]:
        """The member and update designs of rows of the feature matrix ``X`` (an unknown topic: all-zero topic columns)."""
        n = X.shape[0]
        member_ids, update_ids, topics = (np.asarray(a).astype(np.int64, copy=False) for a in (member_ids, update_ids, topics))
        if not (member_ids.shape == update_ids.shape == topics.shape == (n,)):
            raise SchemaError(
                f"GLMix P(skip): member_id, update_id and topic must have one entry per row of the {n}-row feature matrix, "
                f"got {member_ids.shape}, {update_ids.shape}, {topics.shape}"
            )
        f = self.features
        out = []
        if "member" in f:
            member_X = np.hstack([X[:, self._type_cols], (topics[:, None] == self.topics[None, :]).astype(np.float64)])
            out.append(EffectDesign("member", "member_id", member_ids, member_X, tuple(f["member"])))
        if "update" in f:
            out.append(EffectDesign("update", "update_id", update_ids, np.ones((n, 1)), tuple(f["update"])))
        return out

    def effect(
        self, X: np.ndarray, member_ids: np.ndarray, update_ids: np.ndarray, topics: np.ndarray, world: str | None = None
    ) -> np.ndarray:
        """The random-effect logit of each row, shape (n_rows,), to add to the P(skip) head's logit."""
        return self.model.random_effect(self.designs(X, member_ids, update_ids, topics), world)

    def save(self, directory: Path) -> None:
        """Write the random effects (``glmix.json`` and ``<block>.npz``, :mod:`ranking.glmix_io`) into ``directory``."""
        self.model.save(directory)


def profiles_fingerprint(profiles: pl.DataFrame) -> str | None:
    """The world fingerprint of a member profile snapshot (None when it lacks the columns the fingerprint hashes)."""
    if not all(c in profiles.columns for c in ("member_id", "connections", "tenure_days")):
        return None
    return world_fingerprint(profiles)


def _days(frame: pl.DataFrame) -> list[str]:
    lo, hi = int(frame["day"].min()), int(frame["day"].max())  # type: ignore[arg-type]
    return [(dt.date(1970, 1, 1) + dt.timedelta(days=d)).isoformat() for d in (lo, hi)]


def _metrics(y: np.ndarray, logit: np.ndarray, background: float) -> dict[str, float]:
    m = binary_metrics(y, 1.0 / (1.0 + np.exp(-logit)), background=background)
    return {"auc": m["auc"], "ne": m["ne"], "log_loss": log_loss(y, logit), "calibration": m["calibration"]}


def fit_pskip_glmix(
    train: pl.DataFrame,
    offset_train: np.ndarray,
    test: pl.DataFrame,
    offset_test: np.ndarray,
    updates: pl.DataFrame | pl.LazyFrame,
    members: pl.DataFrame | pl.LazyFrame,
    feature_set: FeatureSet,
    config: PskipGlmixConfig | None = None,
    seed: int | None = None,
) -> tuple[PskipGlmix, dict[str, Any]]:
    """Fit GLMix random effects over the P(skip) head's logit on ``train``; score it on ``test`` beside the head.

    Parameters
    ----------
    train, test : polars.DataFrame
        Training-frame rows (``day``, ``skip``, ``member_id``, ``update_id``, ``type_*``): the
        model's training days and its held-out (later) days.
    offset_train, offset_test : ndarray
        The P(skip) head's logit of those rows.
    updates, members : polars frames
        The logs' updates (``update_id``, ``topic``) and members (the world fingerprint).
    feature_set : FeatureSet
    config : PskipGlmixConfig, optional
    seed : int, optional
        The model's seed, recorded (the fit itself draws nothing).

    Returns
    -------
    PskipGlmix, and the ``metadata.json`` record of the fit (blocks, prior
    variances, the choice's table, held-out AUC / NE / log loss of both).
    """
    cfg = config or PskipGlmixConfig()
    upd = updates.lazy().select("update_id", "topic").collect()
    topics = sorted(int(t) for t in upd["topic"].unique().drop_nulls().to_list())
    last_train = int(train["day"].max())  # type: ignore[arg-type]
    cut = (train["day"] <= last_train - cfg.valid_days).to_numpy()
    check_selection_split(int(cut.sum()), int((~cut).sum()), cfg.valid_days)
    y_tr = train["skip"].to_numpy().astype(np.float64)
    y_te = test["skip"].to_numpy().astype(np.float64)

    def designs(frame: pl.DataFrame) -> list[EffectDesign]:
        return [d for d in glmix_designs(frame, upd, topics, UPDATE_FEATURES) if d.name in cfg.blocks]

    def part(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[EffectDesign]]:
        return y_tr[rows], offset_train[rows], designs(train.filter(pl.Series(rows)))

    chosen, table = select_prior_variances(part(cut), part(~cut), cfg.grid, cfg.glmix)
    world = world_fingerprint(members)
    model = GlmixModel(chosen).fit(y_tr, offset_train, designs(train), world)
    pskip = PskipGlmix(model, topics, feature_set, cfg.blocks)
    selection = {
        "fit_days": _days(train.filter(pl.Series(cut))),
        "valid_days": _days(train.filter(pl.Series(~cut))),
        "n_fit": int(cut.sum()),
        "n_valid": int((~cut).sum()),
    }
    held_out = held_out_record(model, designs(test), y_te, offset_test, _days(test) if test.height else None, float(y_tr.mean()), seed)
    return pskip, pskip_record(pskip, cfg, chosen, table, selection, held_out)


def check_selection_split(n_fit: int, n_valid: int, valid_days: int) -> None:
    """The one-line error when ``valid_days`` leaves no fit or no validation rows (both engines)."""
    if n_fit == 0 or n_valid == 0:
        raise ConfigError(
            f"GLMix P(skip): valid_days={valid_days} leaves {n_fit} fit and {n_valid} validation rows "
            f"of the {n_fit + n_valid} training rows; both must be non-empty (more training days, or fewer valid_days)"
        )


def held_out_record(
    model: GlmixModel,
    test_designs: Sequence[EffectDesign],
    y_test: np.ndarray,
    offset_test: np.ndarray,
    test_days: list[str] | None,
    rate: float,
    seed: int | None,
) -> dict[str, Any]:
    """``pskip.held_out``: AUC, NE, log loss and calibration of the head and of GLMix on the held-out rows."""
    n = int(y_test.size)
    logit_test = model.decision_function(offset_test, test_designs)
    return {
        "split": "by time: fitted on the training days, scored on the model's held-out days",
        "test_days": test_days,
        "n_test": n,
        "seed": seed,
        "global": _metrics(y_test, offset_test, rate) if n else None,
        "glmix": _metrics(y_test, logit_test, rate) if n else None,
    }


def pskip_record(
    pskip: PskipGlmix,
    cfg: PskipGlmixConfig,
    chosen: GlmixConfig,
    table: list[dict[str, Any]],
    selection: dict[str, Any],
    held_out: dict[str, Any],
) -> dict[str, Any]:
    """``metadata.json``'s ``pskip`` entry of a fit (``selection``: fit/valid days and rows; both engines)."""
    model = pskip.model
    return {
        "model": "glmix",
        "fixed_effect": "the skip head's logit (heads/skip), not refitted",
        "directory": GLMIX_DIR,
        "topics": pskip.topics.tolist(),
        "block_names": list(pskip.blocks),
        "blocks": [
            {"name": b.name, "entity": b.entity, "features": list(b.features), "prior_var": b.prior_var, "n_entities": int(b.ids.size)}
            for b in model.blocks_.values()
        ],
        "config": {**asdict(cfg.glmix), "prior_var": [[n, v] for n, v in chosen.prior_var if n in cfg.blocks]},
        "world": model.world_,
        "selection": {"grid": list(cfg.grid), **selection, "table": table},
        "held_out": held_out,
    }


def load_pskip_glmix(directory: Path, record: dict[str, Any], feature_set: FeatureSet) -> PskipGlmix:
    """The random effects of a model directory's ``glmix/``, refused unless their blocks and features are the expected ones.

    Raises
    ------
    IncompatibleModelError
        No or an unreadable ``glmix/``, a malformed ``pskip`` record, or
        blocks/features other than the library's for the recorded topics; the
        message names the file.
    """
    path = directory / GLMIX_DIR
    try:
        topics = [int(t) for t in record["topics"]]
        blocks = tuple(str(b) for b in record.get("block_names", BLOCKS))
        if not blocks or not set(blocks) <= set(BLOCKS):
            raise ValueError(f"block_names {list(blocks)} must be some of {list(BLOCKS)}")
    except (KeyError, TypeError, ValueError) as exc:
        raise IncompatibleModelError(f"{directory / 'metadata.json'}: malformed pskip record ({type(exc).__name__}: {exc})") from None
    model = load_glmix(path)
    pskip = PskipGlmix(model, topics, feature_set, blocks)
    have = {n: list(b.features) for n, b in model.blocks_.items()}
    if have != pskip.features:
        raise IncompatibleModelError(
            f"{path / 'glmix.json'}: random effects with blocks and features {have}, this library serves {pskip.features} "
            "for the model's topics; retrain the model"
        )
    return pskip
