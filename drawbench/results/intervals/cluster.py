"""Two-way cluster-robust variance (Cameron, Gelbach & Miller 2011) for judgments clustered by prompt and rater,
with categories as strata, and its Welch–Satterthwaite degrees of freedom."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from drawbench.results.intervals.core import DEFAULT_LEVEL, BatchIntervals, Layout, _as_columns, _scope_means
from drawbench.results.intervals.score import effective_n_bounds

DfRule = Literal["floored", "satterthwaite", "min"]
Bounds = Literal["score", "wald"]
Correction = Literal["balanced", "cgm"]


def _stratum_correction(groups: np.ndarray) -> np.ndarray:
    """g/(g−1) per stratum; a stratum with one cluster carries no estimable variance (0)."""
    groups = np.asarray(groups, dtype=float)
    return np.divide(groups, groups - 1, out=np.zeros_like(groups), where=groups > 1)


def _satterthwaite(parts: Sequence[tuple[np.ndarray, np.ndarray | float]]) -> np.ndarray:
    """Welch–Satterthwaite degrees of freedom of a sum of independent variance parts (value, df)."""
    total = sum(value for value, _ in parts)
    denominator = sum(
        np.divide(value**2, df, out=np.zeros_like(value), where=np.broadcast_to(df, value.shape) > 0)
        for value, df in parts
    )
    return np.divide(total**2, denominator, out=np.full_like(total, np.inf), where=denominator > 0)


@dataclass(frozen=True)
class _ClusterSquares:
    """Sums of squared residual totals per category: S (totals²) and SS (totals²/size), shape (C, K)."""

    s_prompt: np.ndarray
    ss_prompt: np.ndarray
    s_rater: np.ndarray
    ss_rater: np.ndarray
    s_cell: np.ndarray
    rater_totals: np.ndarray  # (G_rater_category, K)


def _cluster_squares(residual: np.ndarray, layout: Layout) -> _ClusterSquares:
    prompt_totals = layout.prompt_T @ residual
    group_totals = layout.rater_category_T @ residual
    cell_totals = layout.cell_T @ residual
    prompt_squares = prompt_totals**2
    group_squares = group_totals**2
    return _ClusterSquares(
        s_prompt=layout.prompt_category_T @ prompt_squares,
        ss_prompt=layout.prompt_category_T @ (prompt_squares / layout.prompt_sizes[:, None]),
        s_rater=layout.rater_group_category_T @ group_squares,
        ss_rater=layout.rater_group_category_T @ (group_squares / layout.rater_group_sizes[:, None]),
        s_cell=layout.cell_category_T @ cell_totals**2,
        rater_totals=group_totals,
    )


def _fold_remainder(
    prompt_part: np.ndarray, rater_part: np.ndarray, remainder: np.ndarray, n, prompts, raters
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Place the remainder SS_p + SS_r − S_j for the degrees of freedom: (prompt, rater, remainder parts, its df).

    Where prompts and raters cross (N − P − R + 1 ≥ min(P, R) − 1) it is minus the interaction, with df
    N − P − R + 1. Where they barely do (each rater rating once, say) it is a prompt-level sum of squares when
    P ≤ R, a rater-level one otherwise, and joins that part rather than pose as independent information.
    ``prompt_part`` may carry a leading strata axis; the remainder is then shared in proportion.
    """
    n, prompts, raters = (np.asarray(v, dtype=float) for v in (n, prompts, raters))
    crossed = n - prompts - raters + 1 >= np.minimum(prompts, raters) - 1
    to_prompts = ~crossed & (prompts <= raters)
    to_raters = ~crossed & (prompts > raters)
    if prompt_part.ndim > remainder.ndim:
        total = prompt_part.sum(axis=0)
        share = np.divide(prompt_part, total, out=np.full_like(prompt_part, 1 / len(prompt_part)), where=total != 0)
        prompt_part = prompt_part + np.where(to_prompts, remainder, 0.0) * share
    else:
        prompt_part = prompt_part + np.where(to_prompts, remainder, 0.0)
    rater_part = rater_part + np.where(to_raters, remainder, 0.0)
    remainder = np.where(crossed, remainder, 0.0)
    return prompt_part, rater_part, remainder, np.maximum(n - prompts - raters + 1, 1.0)


def _balanced_two_way(
    squares: _ClusterSquares, layout: Layout
) -> tuple[np.ndarray, list[list[tuple[np.ndarray, np.ndarray | float]]]]:
    """N²·Var per scope (1 + C, K) and, per scope, its variance parts for the degrees of freedom.

    For one category (a stratum) with residuals from its mean, S_p, S_r and S_j the sums of squared residual totals
    per prompt, per rater and per prompt × rater cell, and f_x = Σ size²/N² per cluster kind:

        E[S_p + S_r − S_j] = (1 − f_p − f_r + f_j) · N²·Var(ŝ)

    exactly for a balanced crossed design with one judgment per cell (f_p = 1/P, f_r = 1/R, f_j = 1/N: the factor is
    (1 − 1/P)(1 − 1/R)) and approximately otherwise, whatever the effects' distribution, as long as judgments that
    share neither prompt nor rater are uncorrelated. The plain CGM corrections (each S times g/(g − 1)) assume each
    component dominates the variance; with few raters rating every prompt, rater totals lose the prompt effects and
    CGM falls short by about 1/R of the prompt part. Raters nested in categories: overall = Σ categories. Raters
    across categories: the overall rater totals carry the same identity with f_r over the pool, and each category's
    own centring costs f_p,c − f_j,c of its variance, added back from the category's estimate.

    The parts for Welch–Satterthwaite follow the crossed ANOVA: prompts S_p − SS_p (df P − 1), raters
    S_r − SS_r (df R − 1), minus the interaction S_j − SS_p − SS_r (see ``_fold_remainder``), all divided by
    the factor.
    """
    f_p, f_r, f_j = layout.concentration
    P_c, R_c, N_c = layout.prompts_per_category, layout.raters_per_category, layout.judgments_per_category
    # A stratum with a single prompt has no within-stratum prompt variation to estimate from: it contributes
    # nothing (as when strata are collapsed) and its own interval is NaN; one rater leaves only the prompt part.
    several_prompts = (P_c >= 2)[:, None]
    crossed = several_prompts & (R_c >= 2)[:, None]
    factor = (1 - f_p - f_r + f_j)[:, None]
    zeros = np.zeros_like(squares.s_prompt)
    one_way_prompt = np.divide(squares.s_prompt, (1 - f_p)[:, None], out=zeros.copy(), where=several_prompts)
    one_way_rater = np.divide(squares.s_rater, (1 - f_r)[:, None], out=zeros.copy(), where=crossed & (factor > 0))
    raw = squares.s_prompt + squares.s_rater - squares.s_cell
    safe_factor = np.where(crossed & (factor > 0), factor, 1.0)
    per_category = np.where(crossed, raw / safe_factor, one_way_prompt)
    per_category = np.where(per_category > 0, per_category, np.maximum(one_way_prompt, one_way_rater))

    prompt_part = np.where(crossed, (squares.s_prompt - squares.ss_prompt) / safe_factor, per_category)
    rater_part = np.where(crossed, (squares.s_rater - squares.ss_rater) / safe_factor, 0.0)
    remainder = np.where(crossed, (squares.ss_prompt + squares.ss_rater - squares.s_cell) / safe_factor, 0.0)
    prompt_part, rater_part, remainder, remainder_df = _fold_remainder(
        prompt_part, rater_part, remainder, N_c[:, None], P_c[:, None], R_c[:, None]
    )
    category_parts = [
        [(prompt_part[c], P_c[c] - 1), (rater_part[c], R_c[c] - 1), (remainder[c], remainder_df[c])]
        for c in range(layout.n_categories)
    ]

    if layout.raters_nested or layout.raters_present < 2:
        # One rater in all (who carries no estimable rater variance) leaves each category its one-way prompt part.
        overall = per_category.sum(axis=0)
        overall_parts = [part for parts in category_parts for part in parts]
    else:
        rater_totals = layout.rater_group_rater_T @ squares.rater_totals
        s_rater = (rater_totals**2).sum(axis=0)
        ss_rater = (rater_totals**2 / layout.rater_sizes[:, None]).sum(axis=0)
        n_raters = layout.raters_present
        keep = 1 - layout.pool_concentration
        s_cell = squares.s_cell.sum(axis=0)
        ss_prompt = squares.ss_prompt.sum(axis=0)
        centring = ((f_p - f_j)[:, None] * per_category).sum(axis=0)
        balanced = (squares.s_prompt.sum(axis=0) + s_rater - s_cell + centring) / keep
        weights = layout.pooled_moment_weights
        # The method of moments where the layout identifies it (exact for each component; the balanced form above
        # runs 2-6% low when raters span categories, as category centring takes part of their totals' variance);
        # the Satterthwaite parts below keep their shares of the total.
        overall = balanced if weights is None else weights @ np.stack([squares.s_prompt.sum(axis=0), s_rater, s_cell])
        fallback = np.maximum(one_way_prompt.sum(axis=0), s_rater / keep)
        overall = np.where((overall > 0) & (n_raters >= 2), overall, fallback)
        rescale = np.divide(overall, balanced, out=np.ones_like(overall), where=balanced > 0)
        prompt_parts, rater_part, remainder, remainder_df = _fold_remainder(
            (squares.s_prompt - squares.ss_prompt) / keep,
            (s_rater - ss_rater) / keep,
            (ss_prompt + ss_rater - s_cell) / keep,
            layout.n,
            layout.n_prompts,
            n_raters,
        )
        overall_parts = [(prompt_parts[c] * rescale, P_c[c] - 1) for c in range(len(P_c))]
        overall_parts += [(rater_part * rescale, n_raters - 1), (remainder * rescale, remainder_df)]
    return np.vstack([overall, per_category]), [overall_parts, *category_parts]


def _cgm_two_way(
    squares: _ClusterSquares, layout: Layout
) -> tuple[np.ndarray, list[list[tuple[np.ndarray, np.ndarray | float]]]]:
    """N²·Var per scope with the plain CGM corrections: g/(g − 1) per stratum for prompts, raters and cells.

    Parts for the degrees of freedom: the prompt strata and the rater part net of the cell part.
    """
    P_c, R_c = layout.prompts_per_category, layout.raters_per_category
    v_prompt = _stratum_correction(P_c)[:, None] * squares.s_prompt
    v_rater = _stratum_correction(R_c)[:, None] * squares.s_rater
    v_cell = _stratum_correction(layout.cells_per_category)[:, None] * squares.s_cell
    category_parts = [
        [(v_prompt[c], P_c[c] - 1), (np.maximum(v_rater[c] - v_cell[c], 0.0), R_c[c] - 1)]
        for c in range(layout.n_categories)
    ]
    if layout.raters_nested:
        v_rater_overall = v_rater.sum(axis=0)
        overall_parts = [part for parts in category_parts for part in parts]
    else:
        rater_totals = layout.rater_group_rater_T @ squares.rater_totals
        n_raters = layout.raters_present
        v_rater_overall = _stratum_correction(np.array([n_raters]))[0] * (rater_totals**2).sum(axis=0)
        overall_parts = [(v_prompt[c], P_c[c] - 1) for c in range(len(P_c))]
        overall_parts.append((np.maximum(v_rater_overall - v_cell.sum(axis=0), 0.0), n_raters - 1))
    v_p = np.vstack([v_prompt.sum(axis=0), v_prompt])
    v_r = np.vstack([v_rater_overall, v_rater])
    v_j = np.vstack([v_cell.sum(axis=0), v_cell])
    total = v_p + v_r - v_j
    return np.where(total > 0, total, np.maximum(v_p, v_r)), [overall_parts, *category_parts]


def cluster_df_floor(layout: Layout) -> np.ndarray:
    """(1 + C,) the small-cluster floor of the degrees of freedom: min(prompts − strata, raters − 1) per scope.

    The classical rule for G clusters is G − 1 (G − H with H strata); with two cluster dimensions, the scarcer one.
    Welch–Satterthwaite falls below it when one stratum or part dominates the variance, and with a handful of
    clusters collapses to 1–2 (an interval of [0, 1]); the floor stops the collapse. Coverage with and without it is
    measured in ``simulate.SMALL_PILOT_GRID`` (README, Statistics).
    """
    counts = layout.scope_counts()
    strata = np.concatenate([[layout.n_categories], np.ones(layout.n_categories)])
    return np.maximum(np.minimum(counts["n_prompts"] - strata, counts["n_raters"] - 1), 1.0)


def iid_variance(Y: np.ndarray, layout: Layout) -> np.ndarray:
    """(1 + C, K) the variance each scope's estimate would have were its judgments independent: s_c²/n_c per
    category (s_c² the judgments' own unbiased variance), Σ_c (n_c/n)²·s_c²/n_c overall (categories are strata)."""
    Y = _as_columns(Y)
    _, category_means = _scope_means(Y, layout)
    sums_of_squares = layout.category_T @ (Y - category_means[layout.judgment_category]) ** 2
    n_c = layout.judgments_per_category[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_category = np.where(n_c > 1, sums_of_squares / ((n_c - 1) * n_c), 0.0)
    overall = ((n_c / layout.n) ** 2 * per_category).sum(axis=0, keepdims=True)
    return np.vstack([overall, per_category])


def two_way_cluster_batch(
    Y: np.ndarray,
    layout: Layout,
    *,
    level: float = DEFAULT_LEVEL,
    reference: Literal["t", "normal"] = "t",
    df_rule: DfRule = "floored",
    correction: Correction = "balanced",
    bounds: Bounds = "score",
) -> BatchIntervals:
    """Two-way cluster-robust intervals (Cameron, Gelbach & Miller 2011) for every scope and column of Y.

    V = (V_prompt + V_rater − V_judgment) / n² on residuals from category means (categories are strata of fixed
    size), prompts clustered within their category, raters within their category when nested in categories and
    over the pool otherwise, judgment cells (prompt × rater) within category.

    ``correction``: ``balanced`` (the default) scales the combination by its exact expectation in a balanced crossed
    design (see ``_balanced_two_way``); ``cgm`` uses g/(g − 1) per component as CGM do. A non-positive combination
    falls back to the larger one-way variance.

    Reference: ``t`` with ``df_rule`` ``floored`` (the default: Welch–Satterthwaite over the variance parts, never
    below ``cluster_df_floor``), ``satterthwaite`` (unfloored: with few raters who carry real effects it falls to
    about raters − 1, with none it rises to the prompts' df) or ``min`` (min(prompts, raters) − 1); or ``normal``.

    ``bounds``: ``score`` (the default, for columns in [0, 1]) is the score interval on the design-effect-adjusted
    effective n (``score.effective_n_bounds``): it respects the boundary and is never zero width; ``wald`` is
    estimate ± quantile·SE, clipped to [0, 1] (for columns that are not bounded means, e.g. PPI's rectified terms).
    The SE is NaN where it is undefined: no variation observed in the scope (all A, all ties), or one prompt.
    """
    Y = _as_columns(Y)
    estimate, category_means = _scope_means(Y, layout)
    squares = _cluster_squares(Y - category_means[layout.judgment_category], layout)
    if correction == "balanced":
        scaled, parts = _balanced_two_way(squares, layout)
    elif correction == "cgm":
        scaled, parts = _cgm_two_way(squares, layout)
    else:
        raise ValueError(f"Unknown correction {correction!r}; expected 'balanced' or 'cgm'.")
    counts = layout.scope_counts()
    variance = scaled / counts["n"][:, None] ** 2

    floor = cluster_df_floor(layout)[:, None]
    if reference == "normal":
        df = np.full_like(variance, np.inf)
    elif df_rule == "min":
        df = np.broadcast_to((np.minimum(counts["n_prompts"], counts["n_raters"]) - 1)[:, None], variance.shape)
        df = np.maximum(df.astype(float), 1.0)
    elif df_rule in ("satterthwaite", "floored"):
        df = np.maximum(np.vstack([_satterthwaite(scope_parts) for scope_parts in parts]), 1.0)
        if df_rule == "floored":
            df = np.maximum(df, floor)
        # No variance part observed (no variation): the Satterthwaite ratio is 0/0; the floor is all there is.
        df = np.where(np.isfinite(df) | (variance > 0), df, floor)
    else:
        raise ValueError(f"Unknown df rule {df_rule!r}; expected 'floored', 'satterthwaite' or 'min'.")

    se = np.sqrt(variance)
    too_few = (counts["n_prompts"] < 2)[:, None]
    if bounds == "score":
        n_floor = np.minimum(counts["n_prompts"], counts["n_raters"])[:, None]
        low, high, n_eff = effective_n_bounds(estimate, se, n_floor, df, level, iid_variance=iid_variance(Y, layout))
    elif bounds == "wald":
        quantile = stats.t.ppf(0.5 + level / 2, df)
        low, high = np.clip(estimate - quantile * se, 0.0, 1.0), np.clip(estimate + quantile * se, 0.0, 1.0)
        n_eff = None
    else:
        raise ValueError(f"Unknown bounds {bounds!r}; expected 'score' or 'wald'.")
    low = np.where(too_few, np.nan, low)
    high = np.where(too_few, np.nan, high)
    se = np.where(too_few | (se <= 0), np.nan, se)
    name = "two_way_cluster_t" if reference == "t" else "two_way_cluster_normal"
    return BatchIntervals(estimate=estimate, low=low, high=high, method=name, level=level, se=se, df=df, n_eff=n_eff)
