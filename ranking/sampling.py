"""Fitting from a sample of the training frame: per-head negative downsampling, its recalibration, the memory budget.

He et al., "Practical Lessons from Predicting Clicks on Ads at Facebook"
(ADKDD 2014), section 6.3: keep every positive, keep negatives with rate
``w``, fit, and map a prediction ``p`` of the sampled model back to the full
data's scale with ``q = p / (p + (1 - p) / w)``.  Keeping positives with rate
``r_pos`` and negatives with rate ``r_neg`` multiplies the odds by
``r_pos / r_neg`` whatever the features, so the map is a constant shift of the
logit by ``log(r_neg / r_pos)`` (``log w`` in the paper's case), which a
logistic head folds into its intercept (:meth:`ranking.heads.GBDTLRHead.recalibrate`).

Per head, not on the skip label: the heads share one frame but not one
label, and the recalibration is exact only when a head's negatives are
kept with one rate whatever their features.  Sampling skipped impressions
would keep a click head's non-skipped negatives at rate 1 and its skipped
ones at ``w``, a rate that depends on the features through P(skip), which no
constant shift undoes.  So each head keeps all rows of its *rarer* label and
downsamples the other (for P(skip), at a skip rate near 0.74, the skips are
the majority and are downsampled); one uniform draw per row, shared by the
heads, nests their samples so that the rows kept for any head stay few.
Regressions (Poisson/Tweedie, no class imbalance to exploit) take a uniform
sample, and so does the held-out set when it alone would not fit; both are
recorded as such.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from dwellrank_logs.errors import ConfigError, DwellrankError

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "HeadSample",
    "ResourceError",
    "format_bytes",
    "logit_shift",
    "parse_memory",
    "plan_head",
    "recalibrate",
]

#: The default memory budget of ``train``: a fixed 8 GiB rather than a share of this machine's RAM, so the
#: same logs and seed give the same model on every machine (the sample, hence the model, follows the budget).
DEFAULT_MAX_MEMORY = 8 << 30

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class ResourceError(DwellrankError, MemoryError):
    """A job would need more memory than its budget allows (said before the memory is taken)."""


def parse_memory(text: str | int, name: str = "max_memory") -> int:
    """Bytes of a size such as ``8G``, ``512M``, ``1.5G``, ``8GiB`` or a plain number of bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        size = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", str(text).upper())
        if m is None:
            raise ConfigError(f"{name} must be a size such as 8G, 512M or a number of bytes, got {text!r}")
        size = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(size) or size < 1 << 20:
        raise ConfigError(f"{name} must be at least 1M, got {text!r}")
    return int(size)


def format_bytes(n: float) -> str:
    """``n`` bytes as a short size (``7.9G``, ``512M``)."""
    for unit in ("T", "G", "M", "K"):
        if n >= _UNITS[unit]:
            return f"{n / _UNITS[unit]:.1f}{unit}"
    return f"{int(n)}B"


def recalibrate(p: np.ndarray, rate_pos: float, rate_neg: float) -> np.ndarray:
    """P(label) on the full data from ``p`` of a model fitted on rows kept with these rates (He et al. 2014).

    With ``rate_pos = 1`` and ``rate_neg = w`` this is the paper's ``q = p / (p + (1 - p) / w)``.
    """
    p = np.asarray(p, dtype=np.float64)
    return p / (p + (1.0 - p) * (rate_pos / rate_neg))


def logit_shift(rate_pos: float, rate_neg: float) -> float:
    """What :func:`recalibrate` adds to the logit: ``log(rate_neg / rate_pos)``."""
    return math.log(rate_neg / rate_pos)


@dataclass(frozen=True)
class HeadSample:
    """How one head's training rows are sampled.

    Parameters
    ----------
    label : str
    method : {"none", "negative", "positive", "uniform"}
        ``negative``: every positive kept, negatives with ``rate_neg``;
        ``positive``: the mirror image (positives are the majority);
        ``uniform``: both with one rate (even the rarer label alone would not fit).
    rate_pos, rate_neg : float
        Keep rates of the rows with the label true and false.
    rows_before, positives_before : int
        The full training rows and their positives.
    """

    label: str
    method: str
    rate_pos: float
    rate_neg: float
    rows_before: int
    positives_before: int

    def keep(self, u: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Rows to keep given one uniform draw ``u`` in [0, 1) per row and the labels ``y``."""
        return np.where(y, u < self.rate_pos, u < self.rate_neg)

    @property
    def shift(self) -> float:
        """The recalibration's logit shift (0 without sampling or with uniform sampling)."""
        return logit_shift(self.rate_pos, self.rate_neg)

    def to_dict(self, rows_after: int, positives_after: int) -> dict[str, Any]:
        """The record in the model's metadata."""
        return {
            "method": self.method,
            "rate_pos": self.rate_pos,
            "rate_neg": self.rate_neg,
            "rows_before": self.rows_before,
            "rows_after": rows_after,
            "positives_before": self.positives_before,
            "positives_after": positives_after,
            "logit_shift": self.shift,
            "recalibration": "q = p / (p + (1 - p) * rate_pos / rate_neg)" if self.shift else None,
        }


def plan_head(label: str, rows: int, positives: int, max_rows: int, rate: float | None = None) -> HeadSample:
    """Keep rates of one head: all of its rarer label and as much of the other as ``max_rows`` allows.

    ``rate``, when given, is the majority label's keep rate (``--sample``) instead of one from ``max_rows``.
    """
    minority = min(positives, rows - positives)
    pos_is_rare = positives <= rows - positives
    if rate is None:
        if rows <= max_rows:
            return HeadSample(label, "none", 1.0, 1.0, rows, positives)
        if minority > max_rows // 2:  # the rarer label alone would fill the budget: sample both alike
            r = max_rows / rows
            return HeadSample(label, "uniform", r, r, rows, positives)
        rate = (max_rows - minority) / (rows - minority)
    if rate >= 1.0:
        return HeadSample(label, "none", 1.0, 1.0, rows, positives)
    if pos_is_rare:
        return HeadSample(label, "negative", 1.0, rate, rows, positives)
    return HeadSample(label, "positive", rate, 1.0, rows, positives)
