"""Confidence intervals for accuracies measured on a finite set of images (pure math; no torch).

Both models see the same images, so their difference is a *paired* comparison: only the images on which
exactly one model is right carry information about it.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (nan, nan) without observations."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if successes == 0 else low), (1.0 if successes == n else high)  # exact at the ends, not 1 − 1e-16


def paired_difference_interval(both: int, only_first: int, only_second: int, neither: int,
                               z: float = Z95) -> tuple[float, float]:
    """95 % interval for accuracy(first) − accuracy(second) on the same images (Newcombe 1998, method 10).

    ``only_first`` counts images the first model gets right and the second wrong, and so on.
    """
    n = both + only_first + only_second + neither
    if n <= 0:
        return math.nan, math.nan
    p1, p2 = (both + only_first) / n, (both + only_second) / n
    l1, u1 = wilson_interval(both + only_first, n, z)
    l2, u2 = wilson_interval(both + only_second, n, z)
    marginals = (both + only_first) * (only_second + neither) * (both + only_second) * (only_first + neither)
    phi = (both * neither - only_first * only_second) / math.sqrt(marginals) if marginals else 0.0
    d = p1 - p2
    lower = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, d - lower), min(1.0, d + upper)


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value: how likely this many one-sided flips are if both models were equal."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)
