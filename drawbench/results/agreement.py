"""Agreement between raters and position bias, in model space (DESIGN.md §4). Pure numbers: no Django.

- Krippendorff's α from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"),
  nominal, ordinal (A < tie < B) and interval; raw pairwise agreement.
- Per rater: judgments, tie rate, left-side rate P(left | decisive) with an interval clustered by prompt, median
  response time.
- Position bias: P(choose the left set | decisive) overall, with the two-way cluster-robust interval of
  ``drawbench.results.intervals`` (prompts and raters as clusters, categories as strata).

A unit of agreement is one thing rated by several raters: a (question, prompt, model pair) where those columns exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from drawbench.results.intervals.cluster import two_way_cluster_batch
from drawbench.results.intervals.core import (
    DEFAULT_LEVEL,
    TARGET_POPULATION,
    JudgmentArrays,
    choice_codes,
    judgment_arrays,
)
from drawbench.results.intervals.score import wilson_bounds

Level = Literal["nominal", "ordinal", "interval"]
UNIT_COLUMNS = ("question", "prompt_id", "model_a", "model_b")


# ------------------------------------------------------------------------------------------ Krippendorff


def coincidence_matrix(value_counts: np.ndarray) -> np.ndarray:
    """(V, V) coincidences o_ck = Σ_u (n_uc·n_uk − [c = k]·n_uc) / (m_u − 1) over units with m_u ≥ 2 values.

    ``value_counts`` is (units, V): how many coders gave each value to each unit.
    """
    counts = np.asarray(value_counts, dtype=float)
    pairable = counts.sum(axis=1)
    counts = counts[pairable >= 2]
    scale = 1.0 / (counts.sum(axis=1) - 1)
    weighted = counts * scale[:, None]
    return weighted.T @ counts - np.diag(weighted.sum(axis=0))


def _distances(level: Level, marginals: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(V, V) squared distances δ²_ck of Krippendorff's metric for ``level``."""
    size = marginals.size
    if level == "nominal":
        return 1.0 - np.eye(size)
    if level == "ordinal":
        # δ²_ck = (Σ_{g=c..k} n_g − (n_c + n_k)/2)², ranks in the given order.
        cumulative = np.concatenate([[0.0], np.cumsum(marginals)])
        low = np.minimum.outer(np.arange(size), np.arange(size))
        high = np.maximum.outer(np.arange(size), np.arange(size))
        between = cumulative[high + 1] - cumulative[low]
        return (between - (marginals[:, None] + marginals[None, :]) / 2) ** 2
    if level == "interval":
        return np.subtract.outer(values, values) ** 2
    raise ValueError(f"Unknown level of measurement {level!r}; expected nominal, ordinal or interval.")


def krippendorff_alpha_from_counts(
    value_counts: np.ndarray, level: Level = "nominal", values: np.ndarray | None = None
) -> float:
    """α = 1 − D_o/D_e from a (units, V) table of value counts; columns in the value order (ordinal, interval).

    ``values`` are the numeric values of the columns for the interval metric (default 0, 1, 2, ...).
    """
    coincidences = coincidence_matrix(value_counts)
    marginals = coincidences.sum(axis=1)
    total = marginals.sum()
    if total < 2:
        raise ValueError("Krippendorff's alpha needs at least one unit rated by two or more raters.")
    numeric = np.arange(marginals.size, dtype=float) if values is None else np.asarray(values, dtype=float)
    distance = _distances(level, marginals, numeric)
    observed = (coincidences * distance).sum() / total
    expected = (np.outer(marginals, marginals) * distance).sum() / (total * (total - 1))
    if expected == 0:
        raise ValueError("Krippendorff's alpha is undefined: every pairable value is the same.")
    return float(1 - observed / expected)


def krippendorff_alpha(
    units: np.ndarray | pd.Series,
    values: np.ndarray | pd.Series,
    level: Level = "nominal",
    order: list | None = None,
) -> float:
    """Krippendorff's α from long data: one (unit, value) pair per coder's answer; missing answers are absent.

    ``order`` lists the possible values in their order (needed for ordinal and interval; numeric values for the
    interval metric); without it, the sorted distinct values.
    """
    unit_codes, _ = pd.factorize(pd.Series(units))
    if order is None:
        value_codes, uniques = pd.factorize(pd.Series(values), sort=True)
        numeric = np.asarray(uniques, dtype=float) if level == "interval" else None
    else:
        value_codes = pd.Index(order).get_indexer(pd.Series(values))
        if (value_codes < 0).any():
            bad = pd.Series(values)[value_codes < 0].iloc[0]
            raise ValueError(f"Value {bad!r} is not in the given order {order!r}.")
        numeric = np.asarray(order, dtype=float) if level == "interval" else None
    size = int(value_codes.max()) + 1 if order is None else len(order)
    table = np.bincount(unit_codes * size + value_codes, minlength=(unit_codes.max() + 1) * size)
    return krippendorff_alpha_from_counts(table.reshape(-1, size), level, numeric)


def _unit_codes(frame: pd.DataFrame) -> np.ndarray:
    columns = [column for column in UNIT_COLUMNS if column in frame.columns]
    if "prompt_id" not in columns:
        raise ValueError("Judgments frame lacks column 'prompt_id' (the unit of agreement).")
    if len(columns) == 1:
        return pd.factorize(frame["prompt_id"])[0]
    return frame.groupby(columns, sort=False, observed=True).ngroup().to_numpy()


def _choice_table(frame: pd.DataFrame) -> np.ndarray:
    """(units, 3) counts of A, tie, B per unit."""
    units = _unit_codes(frame)
    choice = choice_codes(frame["choice"])
    return np.bincount(units * 3 + choice, minlength=(units.max() + 1) * 3).reshape(-1, 3)


def judgment_alpha(frame: pd.DataFrame, level: Level = "nominal") -> float:
    """Krippendorff's α of a judgments frame in model space: values A < tie < B, units (question, prompt, pair)."""
    return krippendorff_alpha_from_counts(_choice_table(frame), level)


def raw_agreement(frame: pd.DataFrame) -> float:
    """Share of agreeing pairs among all pairs of judgments of the same unit: Σ n_uc(n_uc − 1) / Σ m_u(m_u − 1)."""
    return raw_agreement_from_counts(_choice_table(frame))


def raw_agreement_from_counts(table: np.ndarray) -> float:
    """Raw agreement from a (units, values) table of answer counts."""
    table = table.astype(float)
    m = table.sum(axis=1)
    pairs = (m * (m - 1)).sum()
    if pairs == 0:
        raise ValueError("Raw agreement needs at least one unit rated by two or more raters.")
    return float((table * (table - 1)).sum() / pairs)


# ------------------------------------------------------------------------------------------ position bias


def _arrays(frame: pd.DataFrame | JudgmentArrays) -> JudgmentArrays:
    return frame if isinstance(frame, JudgmentArrays) else judgment_arrays(frame)


def chose_left(arrays: JudgmentArrays) -> tuple[np.ndarray, np.ndarray]:
    """(decisive mask, chose-left indicator) from the choices and ``left_is_a``."""
    if arrays.left_is_a is None:
        raise ValueError("Judgments frame lacks column 'left_is_a' (which side model A was shown on).")
    return arrays.choice != 1, (arrays.choice == 0) == arrays.left_is_a


@dataclass(frozen=True)
class PositionBias:
    """P(choose the left set | decisive judgment), with its interval (½ means no position bias)."""

    estimate: float
    low: float
    high: float
    n_decisive: int
    n_prompts: int
    n_raters: int
    method: str
    level: float
    df: float
    target: str = TARGET_POPULATION


def position_bias(frame: pd.DataFrame | JudgmentArrays, *, level: float = DEFAULT_LEVEL) -> PositionBias:
    """Overall position bias with the two-way cluster-robust t interval over the decisive judgments."""
    arrays = _arrays(frame)
    decisive, left = chose_left(arrays)
    if not decisive.any():
        raise ValueError("Position bias needs at least one decisive (A or B) judgment.")
    sub = arrays.subset(decisive)
    result = two_way_cluster_batch(left[decisive].astype(float), sub.layout, level=level)
    return PositionBias(
        estimate=float(result.estimate[0, 0]),
        low=float(result.low[0, 0]),
        high=float(result.high[0, 0]),
        n_decisive=int(decisive.sum()),
        n_prompts=sub.layout.n_prompts,
        n_raters=sub.layout.raters_present,
        method=result.method,
        level=level,
        df=float(result.df[0, 0]),
    )


def _clustered_wilson(
    successes: np.ndarray, groups: np.ndarray, n_groups: int, clusters: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: share of successes and a Wilson interval on the design-effect-adjusted n.

    Within a group (a rater), judgments of one prompt (two questions) are correlated: the effective n is
    p(1 − p) / V with V the cluster-robust variance of the share (prompts as clusters), capped at n.
    """
    n = np.bincount(groups, minlength=n_groups).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.bincount(groups, weights=successes, minlength=n_groups) / n
    n_clusters = int(clusters.max()) + 1
    cluster_codes, cluster_keys = pd.factorize(groups.astype(np.int64) * n_clusters + clusters)
    cluster_group = (cluster_keys // n_clusters).astype(np.intp)
    residual_totals = np.bincount(cluster_codes, weights=successes - share[groups], minlength=cluster_keys.size)
    g = np.bincount(cluster_group, minlength=n_groups).astype(float)
    correction = np.divide(g, g - 1, out=np.zeros_like(g), where=g > 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = correction * np.bincount(cluster_group, weights=residual_totals**2, minlength=n_groups) / n**2
        ratio = np.divide(share * (1 - share), variance, out=n.copy(), where=variance > 0)
        low, high = wilson_bounds(share, np.maximum(np.minimum(ratio, n), 1.0), level)
    return share, low, high


def rater_diagnostics(frame: pd.DataFrame | JudgmentArrays, *, level: float = DEFAULT_LEVEL) -> pd.DataFrame:
    """One row per rater: n, n_decisive, tie_rate, left_rate = P(left | decisive) with left_low / left_high
    (Wilson on the prompt-clustered effective n; NaN without decisive judgments), median_response_ms (when
    response times are present)."""
    arrays = _arrays(frame)
    decisive, left = chose_left(arrays)
    raters = arrays.layout.rater
    n_raters = arrays.layout.n_raters
    n = np.bincount(raters, minlength=n_raters)
    ties = np.bincount(raters, weights=(arrays.choice == 1).astype(float), minlength=n_raters)
    if decisive.any():
        share, low, high = _clustered_wilson(
            left[decisive].astype(float), raters[decisive], n_raters, arrays.layout.prompt[decisive], level
        )
    else:
        share = low = high = np.full(n_raters, np.nan)
    out = pd.DataFrame(
        {
            "rater_id": arrays.rater_ids,
            "n": n,
            "n_decisive": n - ties.astype(int),
            "tie_rate": ties / n,
            "left_rate": share,
            "left_low": low,
            "left_high": high,
        }
    )
    if arrays.response_time_ms is not None:
        out["median_response_ms"] = pd.Series(arrays.response_time_ms).groupby(raters).median().to_numpy()
    return out


def agreement_summary(frame: pd.DataFrame | JudgmentArrays) -> dict[str, float]:
    """α nominal and ordinal, raw agreement and the number of pairable units.

    From a frame, units are (question, prompt, model pair); from ``JudgmentArrays`` (one question, one pair of
    models) units are its prompts.
    """
    if isinstance(frame, JudgmentArrays):
        units = frame.layout.prompt
        table = np.bincount(units * 3 + frame.choice, minlength=frame.layout.n_prompts * 3).reshape(-1, 3)
    else:
        table = _choice_table(frame)
    return {
        "alpha_nominal": krippendorff_alpha_from_counts(table, "nominal"),
        "alpha_ordinal": krippendorff_alpha_from_counts(table, "ordinal"),
        "raw_agreement": raw_agreement_from_counts(table),
        "units": int((table.sum(axis=1) >= 2).sum()),
    }
