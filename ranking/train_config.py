"""The training options (:class:`TrainConfig`), validated; :func:`ranking.train.train_ranker` reads them.

Apart from :mod:`ranking.train` because options are added for their own
reasons (a weighting, GLMix, the dwell embeddings) while the driver stays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dwellrank_logs.errors import ConfigError
from ranking.features.catalogue import EMBEDDING_FEATURE_SETS, FeatureSet, get_feature_set
from ranking.features.embeddings import EmbeddingConfig
from ranking.glmix_pskip import PskipGlmixConfig
from ranking.heads import HeadConfig
from ranking.regressors import RegressorConfig
from ranking.weighting import check_dwell_weighting

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything :func:`train_ranker` needs besides the data.

    Parameters
    ----------
    feature_set : {"dwell", "base"}
    t_skip_s : float, seconds
        Threshold of the skip label and of the not-skipped features.
    t_long_s : float, seconds
        Threshold of the long-dwell label (> t_skip_s).
    seed : int
    holdout_days : int
        The last days of the log, held out for the report (>= 1); the model
        is fitted on the days before them.
    head, regressor : HeadConfig, RegressorConfig
    baselines : bool
        Fit LR-only and GBDT-only baselines for the report.
    skip_lift : bool
        With the dwell set, also fit a P(skip) head on the base set and report
        the AUC lift of the dwell features.
    click_weighting : {"none", "after_click_dwell"}
        Row weights of the P(click) head (:mod:`ranking.weighting`): ``none``
        weighs every row 1; ``after_click_dwell`` weighs each click by
        ``d / (d + click_dwell_half_s)`` of its after-click dwell ``d``,
        normalised to mean 1 over the clicks, so that click bounces count less.
        Needs the impressions' ``click_dwell_s`` (not in a Spark training frame).
    click_dwell_half_s : float, seconds
        The after-click dwell at which a click weighs half of a long read (> 0).
    pskip_glmix : bool
        Also fit GLMix random effects (per member on update type and topic, per
        update an intercept) over the P(skip) head's logit, served in P(skip)
        (:mod:`ranking.glmix_pskip`; polars engine, in-memory frame only).
    glmix_valid_days : int
        With ``pskip_glmix``: the last training days that choose the prior variances (>= 1).
    dwell_embeddings : bool
        Train on the ``dwell_emb`` feature set: the ``dwell`` set plus member x
        author and member x topic dwell-embedding features
        (:mod:`ranking.features.embeddings`; each row's from a refit on the days
        before its own), the vectors saved in the model's ``embeddings/``
        (polars engine, in-memory frame only; needs ``feature_set="dwell"``).
    embedding_author_rank, embedding_topic_rank : int
        With ``dwell_embeddings``: ranks of the two factorisations (>= 1).
    embedding_value : {"log_dwell", "log_count"}
        With ``dwell_embeddings``: a matrix entry, ``log1p`` of the pair's summed
        not-skipped dwell seconds or of their count.
    """

    feature_set: str = "dwell"
    t_skip_s: float = 2.5
    t_long_s: float = 10.0
    seed: int = 0
    holdout_days: int = 3
    head: HeadConfig = field(default_factory=HeadConfig)
    regressor: RegressorConfig = field(default_factory=RegressorConfig)
    baselines: bool = True
    skip_lift: bool = True
    click_weighting: str = "none"
    click_dwell_half_s: float = 10.0
    pskip_glmix: bool = False
    glmix_valid_days: int = 3
    dwell_embeddings: bool = False
    embedding_author_rank: int = 16
    embedding_topic_rank: int = 4
    embedding_value: str = "log_dwell"

    def __post_init__(self) -> None:
        get_feature_set(self.feature_set)
        t = self.t_skip_s
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ConfigError(f"t_skip_s must be a finite number of seconds > 0, got {t!r}")
        tl = self.t_long_s
        if isinstance(tl, bool) or not isinstance(tl, (int, float)) or not math.isfinite(tl) or tl <= t:
            raise ConfigError(f"t_long_s must be a finite number of seconds > t_skip_s ({t}), got {tl!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if isinstance(self.holdout_days, bool) or not isinstance(self.holdout_days, int) or self.holdout_days < 1:
            raise ConfigError(f"holdout_days must be an integer >= 1, got {self.holdout_days!r}")
        check_dwell_weighting(self.click_weighting, self.click_dwell_half_s)
        if not isinstance(self.pskip_glmix, bool):
            raise ConfigError(f"pskip_glmix must be True or False, got {self.pskip_glmix!r}")
        PskipGlmixConfig(valid_days=self.glmix_valid_days)  # validates glmix_valid_days
        if not isinstance(self.dwell_embeddings, bool):
            raise ConfigError(f"dwell_embeddings must be True or False, got {self.dwell_embeddings!r}")
        EmbeddingConfig(self.embedding_author_rank, self.embedding_topic_rank, self.embedding_value)  # validates them
        if self.dwell_embeddings and self.feature_set != "dwell":
            raise ConfigError(f"dwell_embeddings extends the 'dwell' feature set, got feature_set={self.feature_set!r}")

    @property
    def weighted(self) -> bool:
        """Whether any head is fitted with dwell weights."""
        return self.click_weighting != "none"

    @property
    def embedding_config(self) -> EmbeddingConfig:
        """The :class:`~ranking.features.embeddings.EmbeddingConfig` of the embedding options."""
        return EmbeddingConfig(author_rank=self.embedding_author_rank, topic_rank=self.embedding_topic_rank, value=self.embedding_value)

    @property
    def model_feature_set(self) -> FeatureSet:
        """The model's feature set: ``feature_set``'s, or ``dwell_emb`` with ``dwell_embeddings``."""
        return EMBEDDING_FEATURE_SETS["dwell_emb"] if self.dwell_embeddings else get_feature_set(self.feature_set)
