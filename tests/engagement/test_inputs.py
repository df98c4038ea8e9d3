"""The member split and the scaled model inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dwellrank_logs.errors import DwellrankError
from engagement import split_members
from engagement.inputs import Scaler, make_tensors


def test_split_is_a_partition_of_80_10_10() -> None:
    s = split_members(1000, np.random.default_rng(0))
    assert (s.train.size, s.val.size, s.test.size) == (800, 100, 100)
    assert np.array_equal(np.sort(np.concatenate([s.train, s.val, s.test])), np.arange(1000))
    again = split_members(1000, np.random.default_rng(0))
    assert np.array_equal(s.test, again.test)


def test_too_few_members_for_the_split() -> None:
    with pytest.raises(DwellrankError, match=r"at least 20 members.*got 7"):
        split_members(7, np.random.default_rng(0))


def test_scaler_uses_only_valid_steps(eng_data) -> None:
    s = Scaler.fit(eng_data)
    t = make_tensors(eng_data, s)
    pad = torch.arange(t["ctx"].shape[1])[None, :] >= t["lengths"][:, None]
    assert float(t["ctx"][pad].abs().sum()) == 0.0
    valid = ~pad
    np.testing.assert_allclose(t["ctx"][valid].mean(0).numpy()[:4], 0.0, atol=1e-4)


def test_scaler_round_trips_through_its_dict(eng_data) -> None:
    s = Scaler.fit(eng_data)
    back = Scaler.from_dict(s.to_dict())
    for part in s.mean:
        np.testing.assert_array_equal(back.mean[part], s.mean[part])
        np.testing.assert_array_equal(back.std[part], s.std[part])
