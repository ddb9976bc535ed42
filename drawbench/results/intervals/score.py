"""Score-type intervals for proportions and bounded means: Wilson, Goodman, and the boundary-respecting score
interval on a design-effect-adjusted effective sample size."""

from __future__ import annotations

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import multinomial_proportions_confint, proportion_confint

from drawbench.results.intervals.core import DEFAULT_LEVEL, BatchIntervals, Layout, _as_columns, _scope_means


def wilson_bounds(p: np.ndarray, n: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for proportions p over n independent trials (Wilson 1927), by statsmodels'
    ``proportion_confint``; p may be a score with ties as ½ (p·n successes, fractional)."""
    p = np.asarray(p, dtype=float)
    n = np.broadcast_to(np.asarray(n, dtype=float), p.shape)
    low, high = proportion_confint(p * n, n, alpha=1 - level, method="wilson")
    return np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)


def goodman_bounds(counts: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Goodman's (1965) simultaneous intervals for the k shares of a multinomial, by statsmodels'
    ``multinomial_proportions_confint``; counts has k on its last axis."""
    counts = np.asarray(counts, dtype=float)
    flat = counts.reshape(-1, counts.shape[-1])
    bounds = np.array([multinomial_proportions_confint(row, alpha=1 - level, method="goodman") for row in flat])
    return bounds[..., 0].reshape(counts.shape), bounds[..., 1].reshape(counts.shape)


def wilson_batch(Y: np.ndarray, layout: Layout, *, level: float = DEFAULT_LEVEL) -> BatchIntervals:
    """Wilson intervals per scope and column, each judgment an independent trial (reference only)."""
    Y = _as_columns(Y)
    estimate, _ = _scope_means(Y, layout)
    n = layout.scope_counts()["n"][:, None]
    low, high = wilson_bounds(estimate, n, level)
    return BatchIntervals(estimate=estimate, low=low, high=high, method="wilson", level=level)


def effective_n_bounds(
    estimate: np.ndarray,
    se: np.ndarray,
    n_floor: np.ndarray,
    df: np.ndarray,
    level: float,
    iid_variance: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score interval for a clustered mean in [0, 1] on its effective sample size: (low, high, n_eff).

    The design effect of a clustered estimate p̂ with standard error SE is deff = p̂(1 − p̂) / (n·SE²), and its
    effective n is n_eff = n / deff = p̂(1 − p̂) / SE² (Kish 1965; Korn & Graubard 1998 for the interval, Dean &
    Pagano 2015 for its small-sample coverage). The interval is Wilson's on n_eff with the Student-t quantile of
    ``df`` in place of z, which is Korn and Graubard's degrees-of-freedom adjustment n_eff·(z/t)² written out.

    A design effect below 1 is not believed: SE² is floored at ``iid_variance``, the estimate's variance were its
    judgments independent, from their own spread (``cluster.iid_variance``). Flooring at p̂(1 − p̂)/n instead (n_eff
    capped at n) is conservative for a score y ∈ {0, ½, 1}: with ties the judgments vary less than 0/1 answers would
    (30% ties: about 0.7·p̂(1 − p̂)), and where clustering was mild that cap widened the interval to 0.97 coverage.
    With the floor, n_eff on the p̂(1 − p̂) scale may exceed n.

    Where no variation is observed (all A, all B, all ties: SE = 0) the design effect is not estimable; n_eff is then
    ``n_floor`` (the scope's min(prompts, raters): as if every judgment of a prompt, or of a rater, agreed), so the
    interval is never zero width on finite data. Away from the boundary it is p̂ ± t·SE to first order.
    """
    p = np.clip(np.asarray(estimate, dtype=float), 0.0, 1.0)
    se = np.asarray(se, dtype=float)
    spread = p * (1 - p)
    n_floor = np.broadcast_to(np.maximum(np.asarray(n_floor, dtype=float), 1.0), p.shape)
    observed = (se > 0) & (spread > 0)
    floor = np.broadcast_to(np.asarray(iid_variance, dtype=float), p.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(observed, spread / np.maximum(np.where(observed, se, 1.0) ** 2, floor), n_floor)
    # Wilson's interval with the t quantile is statsmodels' Wilson at the level whose normal quantile that t is.
    q = stats.t.ppf(0.5 + level / 2, df)
    low, high = proportion_confint(p * n_eff, n_eff, alpha=2 * stats.norm.sf(q), method="wilson")
    # At p̂ = 0 or 1 the Wilson bound is the boundary itself (statsmodels' arithmetic leaves it 1e-16 inside).
    low, high = np.where(p == 0, 0.0, low), np.where(p == 1, 1.0, high)
    return np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0), n_eff
