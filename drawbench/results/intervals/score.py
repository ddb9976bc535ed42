"""Score-type intervals for proportions and bounded means: Wilson, Goodman, and the boundary-respecting score
interval on a design-effect-adjusted effective sample size."""

from __future__ import annotations

import numpy as np
from scipy import stats

from drawbench.results.intervals.core import DEFAULT_LEVEL, BatchIntervals, Layout, _as_columns, _scope_means


def wilson_bounds(p: np.ndarray, n: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for proportions p over n independent trials (vectorised)."""
    z = stats.norm.ppf(0.5 + level / 2)
    p = np.asarray(p, dtype=float)
    n = np.asarray(n, dtype=float)
    denominator = 1 + z**2 / n
    center = (p + z**2 / (2 * n)) / denominator
    half = z * np.sqrt(np.maximum(p * (1 - p), 0.0) / n + z**2 / (4 * n**2)) / denominator
    return np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)


def goodman_bounds(counts: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Goodman's (1965) simultaneous intervals for the k shares of a multinomial; counts has k on its last axis.

    With A = χ²₁ quantile at 1 − (1 − level)/k: (A + 2nᵢ ± sqrt(A·(A + 4nᵢ(N − nᵢ)/N))) / (2(N + A)).
    """
    counts = np.asarray(counts, dtype=float)
    k = counts.shape[-1]
    a = stats.chi2.ppf(1 - (1 - level) / k, 1)
    total = counts.sum(axis=-1, keepdims=True)
    root = np.sqrt(a * (a + 4 * counts * (total - counts) / total))
    return (a + 2 * counts - root) / (2 * (total + a)), (a + 2 * counts + root) / (2 * (total + a))


def wilson_batch(Y: np.ndarray, layout: Layout, *, level: float = DEFAULT_LEVEL) -> BatchIntervals:
    """Wilson intervals per scope and column, each judgment an independent trial (reference only)."""
    Y = _as_columns(Y)
    estimate, _ = _scope_means(Y, layout)
    n = layout.scope_counts()["n"][:, None]
    low, high = wilson_bounds(estimate, n, level)
    return BatchIntervals(estimate=estimate, low=low, high=high, method="wilson", level=level)
