"""Chance level and the warnings that compare with it, against brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fisherlab.data.chance import (
    attack_warning,
    chance_level,
    natural_accuracy_warning,
    prior_warning,
    wilson_interval,
)
from fisherlab.errors import FisherlabError


def _wilson_by_inversion(k: int, n: int) -> tuple[float, float]:
    """The Wilson interval as the set of p whose score test does not reject (bisection)."""
    z = 1.959963984540054
    phat = k / n

    def rejects(p: float) -> bool:
        return abs(phat - p) > z * math.sqrt(p * (1 - p) / n)

    grid = np.linspace(1e-9, 1 - 1e-9, 200001)
    kept = [p for p in grid if not rejects(p)]
    return kept[0], kept[-1]


@pytest.mark.parametrize(("k", "n"), [(0, 10), (5, 10), (20, 100), (99, 100), (37, 50)])
def test_wilson_is_the_inverted_score_test(k, n):
    low, high = wilson_interval(k, n)
    ref_low, ref_high = _wilson_by_inversion(k, n)
    assert low == pytest.approx(ref_low, abs=2e-5)
    assert high == pytest.approx(ref_high, abs=2e-5)


def test_chance_and_its_errors():
    assert chance_level(10) == pytest.approx(0.1)
    with pytest.raises(FisherlabError):
        chance_level(0)
    with pytest.raises(FisherlabError):
        wilson_interval(1, 0)


def test_natural_accuracy_near_chance_at_the_stated_edge():
    # 5 classes: chance 0.2, edge 0.2 + 0.25 * 0.8 = 0.4
    assert natural_accuracy_warning(0.33, 5) is not None
    assert natural_accuracy_warning(0.399, 5) is not None
    assert natural_accuracy_warning(0.401, 5) is None
    assert "0.330" in natural_accuracy_warning(0.33, 5, "the target")


def test_attack_and_prior_warnings_follow_the_interval():
    # 24/100 with chance 0.2: the Wilson interval covers 0.2 -> a warning
    assert attack_warning(0.24, 100, 5) is not None
    # 40/100: interval [0.309, 0.498] excludes 0.2 -> no warning
    assert attack_warning(0.40, 100, 5) is None
    # below chance significantly also "no better than chance"
    assert attack_warning(0.0, 100, 5) is not None
    assert prior_warning(0.22, 50, 5) is not None
    assert prior_warning(0.9, 50, 5) is None
