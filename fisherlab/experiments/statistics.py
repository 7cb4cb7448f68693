"""Uncertainty behind every verdict: effect sizes, 95 % intervals and p-values.

Two kinds of evidence back the reproduction's claims, and each gets the
method that fits how it was sampled:

* **Attack accuracy** is a mean of 0/1 outcomes, one per reconstruction,
  nested in seeds (each seed trains its own models). :func:`paired_difference`
  compares two arms of the same seeds (e.g. full fine-tuning against freezing
  four layers). The effect is the mean over seeds of the within-seed
  difference in accuracy, averaged over strata such as boundaries. Its
  interval comes from a two-level percentile bootstrap that resamples the
  seeds, then the reconstructions inside every (seed, arm, stratum) cell, so
  that it carries both the training randomness between seeds and the
  sampling noise of a finite set of reconstructions. The p-value is the
  bootstrap's two-sided one, ``2 min(P*(d <= 0), P*(d >= 0))``, so that the
  interval excludes 0 exactly when ``p < 0.05``.
  :func:`accuracy_level` is the same bootstrap for one arm's accuracy
  (an interval, no test).
* **One number per seed** (the Fisher depth of C1, the dominated share of
  C6a) has nothing finer to resample: :func:`seed_level` gives the mean, a
  Student-t interval over seeds and the one-sample t-test's p-value.

:func:`verdict` turns an :class:`Estimate` into words from its interval, not
from sign counts: **holds** when the 95 % interval lies above 0 (the claimed
direction), **reversed** when it lies below, **inconclusive** when it
covers 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from fisherlab.data.chance import wilson_interval
from fisherlab.errors import FisherlabError

LEVEL = 0.95
"""Coverage of every interval."""

BOOTSTRAP_REPLICATES = 4000
"""Replicates of the two-level bootstrap."""

__all__ = [
    "Estimate",
    "accuracy_level",
    "proportion_difference",
    "paired_difference",
    "per_seed_differences",
    "seed_level",
    "student_t_cdf",
    "student_t_quantile",
    "verdict",
]


@dataclass(frozen=True)
class Estimate:
    """An effect with its 95 % interval.

    Attributes:
        effect: The point estimate (claimed direction positive).
        low: Lower end of the interval.
        high: Upper end of the interval.
        p_value: Two-sided p-value for "no effect".
        method: How the interval was made (``"bootstrap"`` or ``"t"``).
        n_seeds: Seeds behind it.
        n_units: Reconstructions behind it (``0`` for seed-level numbers).
    """

    effect: float
    low: float
    high: float
    p_value: float
    method: str
    n_seeds: int
    n_units: int = 0

    def to_dict(self) -> dict[str, float | int | str]:
        """The fields by name."""
        return asdict(self)

    def describe(self, fmt: str = "{:+.3f}") -> str:
        """``effect [low, high], p = ..`` for tables."""
        if math.isnan(self.effect):
            return "n/a"
        if math.isnan(self.low):
            return f"{fmt.format(self.effect)} (no interval from {self.n_seeds} seed)"
        interval = f"{fmt.format(self.effect)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"
        if math.isnan(self.p_value):  # a level, not a test
            return interval
        p = "p < 0.001" if self.p_value < 0.001 else f"p = {self.p_value:.3f}"
        return f"{interval}, {p}"


NOT_AVAILABLE = Estimate(math.nan, math.nan, math.nan, math.nan, "none", 0, 0)
"""The estimate of a claim whose numbers are missing."""


def verdict(estimate: Estimate) -> str:
    """Words for an estimate, from its interval (module docs).

    Example:
        >>> verdict(Estimate(0.2, 0.05, 0.35, 0.01, "t", 5))
        'holds'
        >>> verdict(Estimate(0.1, -0.05, 0.25, 0.2, "t", 5))
        'inconclusive'
        >>> verdict(Estimate(-0.2, -0.3, -0.1, 0.001, "t", 5))
        'reversed'
    """
    if any(math.isnan(v) for v in (estimate.effect, estimate.low, estimate.high)):
        return "inconclusive (no numbers)"
    if estimate.low > 0:
        return "holds"
    if estimate.high < 0:
        return "reversed"
    return "inconclusive"


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) (continued fraction, Lentz)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h / a


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom.

    Example:
        >>> round(student_t_cdf(2.0, 4), 6)
        0.941942
    """
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (bisection on :func:`student_t_cdf`).

    Example:
        >>> round(student_t_quantile(0.975, 4), 4)
        2.7764
    """
    low, high = -1e3, 1e3
    for _ in range(200):
        mid = (low + high) / 2
        if student_t_cdf(mid, df) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def seed_level(values: Sequence[float]) -> Estimate:
    """Mean of one number per seed, with a t interval and the one-sample t-test.

    Args:
        values: One number per seed (claimed direction positive).

    Returns:
        The estimate; with one seed or a NaN the interval is NaN.

    Example:
        >>> e = seed_level([0.1, 0.2, 0.3, 0.4, 0.5])
        >>> round(e.effect, 3), round(e.low, 3), round(e.high, 3), round(e.p_value, 4)
        (0.3, 0.104, 0.496, 0.0132)
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0 or np.isnan(x).any():
        return Estimate(math.nan, math.nan, math.nan, math.nan, "t", n)
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, math.nan, "t", n)
    se = float(x.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        p = 0.0 if mean != 0 else 1.0
        return Estimate(mean, mean, mean, p, "t", n)
    half = student_t_quantile(0.5 + LEVEL / 2, n - 1) * se
    p = 2 * (1 - student_t_cdf(abs(mean) / se, n - 1))
    return Estimate(mean, mean - half, mean + half, p, "t", n)


def _cells(
    rows: pd.DataFrame, arm: str, arms: tuple[str, str], strata: Sequence[str], value: str
) -> tuple[list, dict]:
    """Outcomes by seed, then (arm, stratum); only seeds and strata both arms have."""
    seeds, cells = [], {}
    for seed, s in rows.groupby("seed", sort=True):
        by = {}
        for key, g in s.groupby([arm, *strata], sort=True):
            key = key if isinstance(key, tuple) else (key,)
            by[key] = g[value].to_numpy(dtype=float)
        strata_a = {k[1:] for k in by if k[0] == arms[0]}
        strata_b = {k[1:] for k in by if k[0] == arms[1]}
        shared = sorted(strata_a & strata_b)
        if shared:
            seeds.append(seed)
            cells[seed] = [(by[(arms[0], *st)], by[(arms[1], *st)]) for st in shared]
    return seeds, cells


def _checked_cells(
    rows: pd.DataFrame, arm: str, arms: tuple, strata: Sequence[str], value: str
) -> tuple[list, dict]:
    missing = [c for c in ("seed", arm, *strata, value) if c not in rows.columns]
    if missing:
        raise FisherlabError(f"the reconstructions lack the columns {missing}")
    return _cells(rows, arm, arms, strata, value)


def _difference(cells: list) -> float:
    """Mean over strata of mean(a) - mean(b)."""
    return float(np.mean([a.mean() - b.mean() for a, b in cells]))


def per_seed_differences(
    rows: pd.DataFrame,
    arm: str,
    arms: tuple,
    *,
    strata: Sequence[str] = (),
    value: str = "correct_top1",
) -> list[float]:
    """Per seed with both arms, the mean over shared strata of ``arms[0]`` - ``arms[1]``.

    The numbers whose mean is :func:`paired_difference`'s effect (same arguments).
    """
    seeds, cells = _checked_cells(rows, arm, arms, strata, value)
    return [_difference(cells[s]) for s in seeds]


def paired_difference(
    rows: pd.DataFrame,
    arm: str,
    arms: tuple[str, str],
    *,
    strata: Sequence[str] = (),
    value: str = "correct_top1",
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
) -> Estimate:
    """Mean accuracy of ``arms[0]`` minus ``arms[1]``, paired by seed (module docs).

    Args:
        rows: One row per reconstruction, with ``seed``, ``arm``, the
            ``strata`` columns and ``value``.
        arm: The column that names the arm.
        arms: The two arms, ``(a, b)``; the effect is ``a - b``.
        strata: Columns inside which ``a`` and ``b`` are compared (e.g.
            ``("boundary",)``); their differences are averaged.
        value: The 0/1 (or real) outcome per reconstruction.
        replicates: Bootstrap replicates.
        seed: Seed of the bootstrap's generator.

    Returns:
        The estimate (``NOT_AVAILABLE`` when no seed has both arms).

    Raises:
        FisherlabError: When a column is missing.

    Example:
        >>> rows = pd.DataFrame({"seed": [0] * 4 + [1] * 4, "arm": ["a", "a", "b", "b"] * 2,
        ...                      "correct_top1": [1, 1, 0, 1, 1, 0, 0, 0]})
        >>> round(paired_difference(rows, "arm", ("a", "b")).effect, 3)  # (0.5 + 0.5) / 2
        0.5
    """
    seeds, cells = _checked_cells(rows, arm, arms, strata, value)
    if not seeds:
        return NOT_AVAILABLE
    effect = float(np.mean([_difference(cells[s]) for s in seeds]))
    rng = np.random.default_rng(seed)
    n_seeds = len(seeds)
    draws = np.empty(replicates)
    for r in range(replicates):
        picked = rng.integers(0, n_seeds, n_seeds)
        diffs = []
        for i in picked:
            d = [
                a[rng.integers(0, len(a), len(a))].mean()
                - b[rng.integers(0, len(b), len(b))].mean()
                for a, b in cells[seeds[i]]
            ]
            diffs.append(np.mean(d))
        draws[r] = np.mean(diffs)
    low, high = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    p = min(1.0, 2 * min(np.mean(draws <= 0), np.mean(draws >= 0)))
    p = max(p, 1.0 / replicates)
    units = int(sum(len(a) + len(b) for s in seeds for a, b in cells[s]))
    return Estimate(effect, float(low), float(high), float(p), "bootstrap", n_seeds, units)


def accuracy_level(
    rows: pd.DataFrame,
    *,
    value: str = "correct_top1",
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
) -> Estimate:
    """One arm's mean accuracy over seeds, with the two-level bootstrap interval (module docs).

    The mean is that of the per-seed means; the interval resamples the
    seeds, then the reconstructions inside each. With one seed it is the
    bootstrap over reconstructions alone. There is no null hypothesis, so
    ``p_value`` is NaN.

    Args:
        rows: One row per reconstruction, with ``seed`` and ``value``.
        value: The 0/1 (or real) outcome per reconstruction.
        replicates: Bootstrap replicates.
        seed: Seed of the bootstrap's generator.

    Returns:
        The estimate (``NOT_AVAILABLE`` for no rows).

    Raises:
        FisherlabError: When a column is missing.

    Example:
        >>> rows = pd.DataFrame({"seed": [0, 0, 1, 1], "correct_top1": [1, 1, 1, 0]})
        >>> accuracy_level(rows).effect  # (1.0 + 0.5) / 2
        0.75
    """
    missing = [c for c in ("seed", value) if c not in rows.columns]
    if missing:
        raise FisherlabError(f"the reconstructions lack the columns {missing}")
    groups = [g[value].to_numpy(dtype=float) for _, g in rows.groupby("seed", sort=True)]
    if not groups:
        return NOT_AVAILABLE
    effect = float(np.mean([g.mean() for g in groups]))
    rng = np.random.default_rng(seed)
    draws = np.empty(replicates)
    for r in range(replicates):
        picked = rng.integers(0, len(groups), len(groups))
        draws[r] = np.mean(
            [groups[i][rng.integers(0, len(groups[i]), len(groups[i]))].mean() for i in picked]
        )
    low, high = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    units = int(sum(len(g) for g in groups))
    return Estimate(effect, float(low), float(high), math.nan, "bootstrap", len(groups), units)


def proportion_difference(p1: float, n1: int, p2: float, n2: int) -> Estimate:
    """``p1 - p2`` of two independent proportions, with Newcombe's hybrid score interval.

    For runs summarised by one accuracy and its count (``fisherlab compare``):
    the interval combines the two Wilson score intervals (Newcombe 1998,
    method 10), and the p-value is the two-proportion z-test's (pooled).

    Args:
        p1: First proportion, measured on ``n1`` items.
        n1: Its count (> 0).
        p2: Second proportion, on ``n2`` items.
        n2: Its count (> 0).

    Returns:
        The estimate (``method="newcombe"``, ``n_units = n1 + n2``).

    Example:
        >>> e = proportion_difference(0.6, 100, 0.4, 100)
        >>> round(e.low, 4), round(e.high, 4)
        (0.0614, 0.3281)
    """
    l1, u1 = wilson_interval(p1 * n1, n1)
    l2, u2 = wilson_interval(p2 * n2, n2)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        p = 1.0 if d == 0 else 0.0
    else:
        p = math.erfc(abs(d) / se / math.sqrt(2))
    return Estimate(d, low, high, p, "newcombe", 0, n1 + n2)
