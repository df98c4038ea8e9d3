"""Conditional regressions E[target | action]: better than the constant mean on held-out days.

Quality world: 2,000 members x 14 days, seed 0 (tests/ranking/ranking_worlds.py); the last 3 days are held out.
"""

from __future__ import annotations

import numpy as np
import pytest

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
