"""Conditional regressions E[target | action]: better than the constant mean on held-out days.

Quality world: 2,000 members x 14 days, seed 0 (tests/ranking/ranking_worlds.py); the last 3 days are held out.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from dwellrank_logs.errors import ConfigError
from ranking.regressors import ActionRegressor, poisson_deviance
from tests.ranking.ranking_worlds import split, xy


@pytest.mark.parametrize(("target", "action"), [("downstream", "react"), ("downstream", "share"), ("dwell", None)])
def test_regressions_beat_the_constant_mean(target, action):
    """E[target | action] by LightGBM Poisson on the rows where the action happened (all rows for
    dwell) must have a lower held-out Poisson deviance than the training mean (the closed-form
    best constant)."""
    train, test = split("dwell")
    if action is not None:
        train, test = train.filter(train[action]), test.filter(test[action])
    X_tr, y_tr = xy(train, "dwell", target)
    X_te, y_te = xy(test, "dwell", target)
    reg = ActionRegressor().fit(X_tr, y_tr, seed=0)
    assert reg.booster_ is not None and reg.constant_ == pytest.approx(y_tr.mean())
    assert poisson_deviance(y_te, reg.predict(X_te)) < 0.97 * poisson_deviance(y_te, np.full(y_te.size, y_tr.mean()))


@pytest.mark.parametrize(
    ("y", "counts"),
    [
        ([1.0, -3.0, 2.0, -1.0], "0 non-finite and 2 negative of 4 rows, min -3"),
        ([1.0, np.nan, np.inf], "2 non-finite and 0 negative of 3 rows"),
    ],
)
def test_bad_targets_are_refused_naming_the_target(y: list[float], counts: str) -> None:
    X = np.zeros((len(y), 2))
    with pytest.raises(ConfigError, match=r"^regression target 'downstream_virals' must be finite and >= 0: " + re.escape(counts) + "$"):
        ActionRegressor().fit(X, np.array(y), target="downstream_virals")
