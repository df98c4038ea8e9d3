"""The feed value function and its validated weights.

    score = sum_a w_a * P(a) * (1 + alpha_a * E[downstream | a] + beta_a * E[upstream | a])
            - lambda * P(skip)
            [+ w_long * P(dwell > T_long) + w_dwell * E[dwell]]      (optional, 0 by default)

over the click/viral actions ``a`` in (click, react, comment, share), as in the
post: the skip penalty is proportional to P(skip).  Weights live in a small
JSON file (``weights.json`` in a model directory), validated on load.

Default weights (:func:`default_weights`) follow one stated rule on the
training rows' predictions:

1. ``alpha_a = 0.5 / mean(E[downstream | a])`` and ``beta_a = 0.5 / mean(E[upstream | a])``:
   on average the network effects of an action are worth half the action
   itself, each (0 when the mean is 0);
2. ``w_a`` makes every action term average ``1 / 4`` (equal shares, positive
   part averaging 1), the rule of X's open-sourced heavy ranker;
3. ``lambda = (1 / 4) / mean(P(skip))``: the skip penalty averages as much as
   one action term;
4. the optional long-dwell and expected-dwell weights are 0.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.io import write_json
from dwellrank_logs.schema import ACTIONS

__all__ = [
    "ValueWeights",
    "default_weights",
    "load_weights",
    "needed_predictions",
    "save_weights",
    "value_function",
]


def _per_action(name: str, value: Any, source: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: '{name}' must map each action ({', '.join(ACTIONS)}) to a number, got {value!r}")
    unknown = sorted(set(value) - set(ACTIONS))
    missing = [a for a in ACTIONS if a not in value]
    if unknown or missing:
        raise ConfigError(
            f"{source}: '{name}' must have exactly the keys {', '.join(ACTIONS)}; missing {missing or 'none'}, unknown {unknown or 'none'}"
        )
    out = {}
    for a in ACTIONS:
        v = value[a]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"{source}: '{name}.{a}' must be a finite number >= 0, got {v!r}")
        out[a] = float(v)
    return out


@dataclass(frozen=True)
class ValueWeights:
    """Weights of the value function.

    Parameters
    ----------
    w : mapping action -> float >= 0
        Weight of P(a).
    alpha : mapping action -> float >= 0
        Weight of E[downstream | a] (per downstream click/viral).
    beta : mapping action -> float >= 0
        Weight of E[upstream | a] (per unit of upstream value).
    skip_penalty : float >= 0
        lambda, the weight of P(skip); 0 gives an engagement-only ranker.
    long_dwell : float >= 0
        Weight of P(long dwell) = P(dwell_s > T_long) (the post's "what's next"); 0 by default.
    dwell : float >= 0
        Weight of E[dwell], per second of expected on-feed dwell; 0 by default.
    rule : str
        How the weights were chosen (free text, kept in the file).
    source : str
        Where they came from, named in error messages.
    """

    w: Mapping[str, float]
    alpha: Mapping[str, float]
    beta: Mapping[str, float]
    skip_penalty: float = 0.0
    long_dwell: float = 0.0
    dwell: float = 0.0
    rule: str = "user"
    source: str = field(default="ValueWeights", compare=False)

    def __post_init__(self) -> None:
        for name in ("w", "alpha", "beta"):
            object.__setattr__(self, name, _per_action(name, getattr(self, name), self.source))
        for name in ("skip_penalty", "long_dwell", "dwell"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{self.source}: '{name}' must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, name, float(v))

    def engagement_only(self) -> ValueWeights:
        """The same click/viral weights without the skip penalty (lambda = 0)."""
        return replace(self, skip_penalty=0.0, rule=f"{self.rule}; skip penalty removed (engagement-only)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "w": dict(self.w),
            "alpha": dict(self.alpha),
            "beta": dict(self.beta),
            "skip_penalty": self.skip_penalty,
            "long_dwell": self.long_dwell,
            "dwell": self.dwell,
            "rule": self.rule,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "weights") -> ValueWeights:
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{source}: weights must be a JSON object, got {type(doc).__name__}")
        unknown = sorted(set(doc) - {"w", "alpha", "beta", "skip_penalty", "long_dwell", "dwell", "rule"})
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; expected w, alpha, beta, skip_penalty, long_dwell, dwell, rule")
        for key in ("w", "alpha", "beta", "skip_penalty"):
            if key not in doc:
                raise ConfigError(f"{source}: missing key '{key}'")
        return cls(
            w=doc["w"],
            alpha=doc["alpha"],
            beta=doc["beta"],
            skip_penalty=doc["skip_penalty"],
            long_dwell=doc.get("long_dwell", 0.0),
            dwell=doc.get("dwell", 0.0),
            rule=str(doc.get("rule", "user")),
            source=source,
        )


def load_weights(path: str | os.PathLike[str]) -> ValueWeights:
    """Read and validate a weights JSON file (raises :class:`ConfigError` naming the file and key)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such weights file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return ValueWeights.from_dict(doc, source=str(p))


def save_weights(weights: ValueWeights, path: str | os.PathLike[str]) -> None:
    """Write ``weights`` as JSON, atomically."""
    write_json(path, weights.to_dict())


def _col(preds: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return np.asarray(preds[name], dtype=np.float64)
    except KeyError:
        raise ConfigError(f"value_function needs prediction '{name}'; got {', '.join(preds)}") from None


def value_function(preds: Mapping[str, np.ndarray], weights: ValueWeights) -> np.ndarray:
    """Score of each row, shape (n_rows,); higher ranks first.

    Parameters
    ----------
    preds : mapping name -> ndarray, shape (n_rows,)
        ``p_<a>`` (probabilities), ``down_<a>``/``up_<a>`` (conditional
        expectations, >= 0) for each action, and ``p_skip`` (needed only when
        the skip penalty is non-zero).
    weights : ValueWeights
    """
    n = len(next(iter(preds.values()))) if preds else 0
    score = np.zeros(n)
    for a in ACTIONS:
        if not weights.w[a]:
            continue
        term: float | np.ndarray = 1.0
        if weights.alpha[a]:
            term = term + weights.alpha[a] * _col(preds, f"down_{a}")
        if weights.beta[a]:
            term = term + weights.beta[a] * _col(preds, f"up_{a}")
        score += weights.w[a] * _col(preds, f"p_{a}") * term
    if weights.skip_penalty:
        score -= weights.skip_penalty * _col(preds, "p_skip")
    if weights.long_dwell:
        score += weights.long_dwell * _col(preds, "p_long_dwell")
    if weights.dwell:
        score += weights.dwell * _col(preds, "dwell")
    return score


def needed_predictions(weights: ValueWeights) -> tuple[str, ...]:
    """The prediction columns :func:`value_function` reads under ``weights`` (others need not be computed)."""
    out = []
    for a in ACTIONS:
        if weights.w[a]:
            out.append(f"p_{a}")
            if weights.alpha[a]:
                out.append(f"down_{a}")
            if weights.beta[a]:
                out.append(f"up_{a}")
    for weight, name in ((weights.skip_penalty, "p_skip"), (weights.long_dwell, "p_long_dwell"), (weights.dwell, "dwell")):
        if weight:
            out.append(name)
    return tuple(out)


def default_weights(preds: Mapping[str, np.ndarray]) -> ValueWeights:
    """Weights by the equal-share rule of the module docstring, from training-row predictions."""
    n_actions = len(ACTIONS)
    w, alpha, beta = {}, {}, {}
    for a in ACTIONS:
        down, up = float(np.mean(_col(preds, f"down_{a}"))), float(np.mean(_col(preds, f"up_{a}")))
        alpha[a] = 0.5 / down if down > 0 else 0.0
        beta[a] = 0.5 / up if up > 0 else 0.0
        term = _col(preds, f"p_{a}") * (1.0 + alpha[a] * _col(preds, f"down_{a}") + beta[a] * _col(preds, f"up_{a}"))
        mean = float(np.mean(term))
        w[a] = (1.0 / n_actions) / mean if mean > 0 else 0.0
    p_skip = float(np.mean(_col(preds, "p_skip")))
    lam = (1.0 / n_actions) / p_skip if p_skip > 0 else 0.0
    rule = (
        "equal shares: alpha_a, beta_a make network effects average half of each action; "
        "w_a makes each action term average 1/4; lambda makes the skip penalty average 1/4"
    )
    return ValueWeights(w=w, alpha=alpha, beta=beta, skip_penalty=lam, rule=rule, source="default_weights")
