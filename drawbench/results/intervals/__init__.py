"""Preference shares, the score s = π_A + ½·π_tie and their intervals, for judgments clustered by prompt and rater.

Pure numbers over numpy arrays and pandas DataFrames: no Django, no ORM, no request (DESIGN.md §4).

A judgments frame has one row per judgment with the columns ``prompt_id``, ``category``, ``rater_id``, ``choice``
("A", "tie" or "B", in model space), and optionally ``left_is_a``, ``response_time_ms`` and ``question``. The
score of a judgment is y = 1 for A, ½ for a tie, 0 for B; s is its mean (a tie scores ½ for each model).

Judgments are clustered twice: by prompt (every rater sees the same two sets of images for a prompt) and by rater
(a rater is lenient or strict with model A's style across prompts). Intervals:

- ``two_way_cluster_t`` (the default): the two-way cluster-robust variance of Cameron, Gelbach & Miller (2011),
  V = V_prompt + V_rater − V_judgment on residuals from category means, prompts as clusters within category strata,
  with n/(n−1) corrections per stratum, and a Student-t reference whose degrees of freedom come from a
  Welch–Satterthwaite combination of the prompt strata and the rater component net of the judgment component,
  floored at min(prompts − strata, raters − 1) (``cluster.cluster_df_floor``). The bounds are the score interval on
  the design-effect-adjusted effective n (``score.effective_n_bounds``): never zero width, inside [0, 1].
  Chosen on simulation evidence (``drawbench.results.simulate``; R = 20,000 per scenario: 0.943–0.952 overall and
  ≥ 0.948 in every category over the calibration grid, 7-prompt categories under random assignment included;
  conservative on small pilots and at the boundary), and analytic: one pass over the judgments.

Modules by family: ``core`` (inputs, layout, conventions), ``cluster`` (cluster-robust), ``bootstrap``, ``score``
(Wilson, Goodman, score intervals on an effective n), ``ppi`` (human and automatic judges together); this module
dispatches among them and builds the reported rows.
- ``two_way_cluster_normal``: the same variance with a normal reference (DESIGN.md's first measurement).
- ``prompt_bootstrap`` / ``prompt_bootstrap_bca``: prompts resampled within each category with all their
  judgments (percentile and BCa). Right when raters carry no effect; too narrow when they do.
- ``two_way_bootstrap``: Owen's (2007) pigeonhole bootstrap, product weights of a prompt resample (within category)
  and a rater resample (within category when every rater rates in one category only). Conservative: it counts the
  judgment-level noise twice.
- ``wilson`` (and ``goodman`` for the three shares jointly): the references for independent judgments.

Every bootstrap draws all B resamples at once as count matrices (B × prompts, B × raters) and reduces the data to
per-prompt (or per prompt × rater) sums first, so a resample costs a matrix product, never a Python iteration.

The batch functions (``*_batch``) take a matrix Y of shape (N judgments, K outcome columns) over one ``Layout`` and
return every scope (overall, then each category) for every column at once; the simulator runs thousands of
simulated studies as thousands of columns through the very same code as a real report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd
from scipy import stats

from drawbench.results.intervals.bootstrap import (
    permutation_pvalues_batch,
    prompt_bootstrap_batch,
    two_way_bootstrap_batch,
)
from drawbench.results.intervals.cluster import Bounds, Correction, DfRule, two_way_cluster_batch
from drawbench.results.intervals.core import (
    DEFAULT_B,
    DEFAULT_LEVEL,
    DEFAULT_SEED,
    LOW_PRECISION_HALF_WIDTH,
    LOW_PRECISION_MIN_DF,
    REPORT_TRANSFORM,
    TARGET_POPULATION,
    TIE_CONVENTION,
    BatchIntervals,
    JudgmentArrays,
    Layout,
    choice_codes,
    judgment_arrays,
    judgment_arrays_by_question,
)
from drawbench.results.intervals.score import goodman_bounds, wilson_batch

Method = Literal[
    "two_way_cluster_t",
    "two_way_cluster_normal",
    "prompt_bootstrap",
    "prompt_bootstrap_bca",
    "two_way_bootstrap",
    "wilson",
    "goodman",
]
METHODS: tuple[str, ...] = get_args(Method)
BOOTSTRAP_METHODS = ("prompt_bootstrap", "prompt_bootstrap_bca", "two_way_bootstrap")
DEFAULT_METHOD: Method = "two_way_cluster_t"


def interval_batch(
    method: Method,
    Y: np.ndarray,
    layout: Layout,
    *,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    seed: int | np.random.Generator = DEFAULT_SEED,
    df_rule: DfRule = "floored",
    correction: Correction = "balanced",
    transform: np.ndarray | None = None,
    bounds: Bounds = "score",
) -> BatchIntervals:
    """Dispatch to the batch function of ``method``; ``goodman`` gives Wilson's interval for s (Goodman's is for
    the three shares jointly). ``df_rule``, ``correction`` and ``bounds`` tune the two-way cluster methods
    (for calibration)."""
    if method == "two_way_cluster_t":
        return two_way_cluster_batch(Y, layout, level=level, df_rule=df_rule, correction=correction, bounds=bounds)
    if method == "two_way_cluster_normal":
        return two_way_cluster_batch(Y, layout, level=level, reference="normal", correction=correction, bounds=bounds)
    if method == "prompt_bootstrap":
        return prompt_bootstrap_batch(Y, layout, level=level, B=B, seed=seed, transform=transform)
    if method == "prompt_bootstrap_bca":
        return prompt_bootstrap_batch(Y, layout, level=level, B=B, seed=seed, bca=True, transform=transform)
    if method == "two_way_bootstrap":
        return two_way_bootstrap_batch(Y, layout, level=level, B=B, seed=seed, transform=transform)
    if method in ("wilson", "goodman"):
        return wilson_batch(Y, layout, level=level)
    raise ValueError(f"Unknown interval method {method!r}; known methods: {', '.join(METHODS)}.")


# ------------------------------------------------------------------------------------------- public results


@dataclass(frozen=True)
class PreferenceShares:
    """Counts and shares of A / tie / B, s (a tie scores ½) and the decisive win rate A / (A + B)."""

    n: int
    count_a: int
    count_tie: int
    count_b: int
    share_a: float
    share_tie: float
    share_b: float
    s: float
    decisive_win_rate: float | None
    tie_convention: str = TIE_CONVENTION


@dataclass(frozen=True)
class PreferenceInterval:
    """An interval for s with everything needed to reproduce and read it."""

    estimate: float
    low: float
    high: float
    method: str
    level: float
    B: int | None
    seed: int | None
    n: int
    n_prompts: int
    n_raters: int
    low_precision: bool
    se: float | None = None
    df: float | None = None
    target: str = TARGET_POPULATION
    tie_convention: str = TIE_CONVENTION


@dataclass(frozen=True)
class PermutationTest:
    """Within-prompt label-permutation test of A against B (null: the labels are exchangeable within a prompt)."""

    estimate: float
    p_value: float
    B: int
    seed: int
    n_prompts: int
    method: str = "within_prompt_label_permutation"
    null: str = "s = 1/2: A and B exchangeable within each prompt"
    tie_convention: str = TIE_CONVENTION


def preference_shares(frame: pd.DataFrame) -> PreferenceShares:
    """The three shares, s and the decisive win rate of a judgments frame (only ``choice`` is needed)."""
    counts = np.bincount(choice_codes(frame["choice"]), minlength=3)
    n = int(counts.sum())
    if n == 0:
        raise ValueError("Judgments frame has no rows.")
    decisive = counts[0] + counts[2]
    return PreferenceShares(
        n=n,
        count_a=int(counts[0]),
        count_tie=int(counts[1]),
        count_b=int(counts[2]),
        share_a=counts[0] / n,
        share_tie=counts[1] / n,
        share_b=counts[2] / n,
        s=(counts[0] + 0.5 * counts[1]) / n,
        decisive_win_rate=float(counts[0] / decisive) if decisive else None,
    )


def low_precision(low: object, high: object, df: object = None) -> np.ndarray | bool:
    """The precision flag: a half-width above ``LOW_PRECISION_HALF_WIDTH``, fewer than ``LOW_PRECISION_MIN_DF``
    degrees of freedom (when the method has them), or no interval at all."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    df = np.asarray(np.inf if df is None else df, dtype=float)
    wide = ~((high - low) / 2 <= LOW_PRECISION_HALF_WIDTH)
    return wide | (df < LOW_PRECISION_MIN_DF)


def preference_interval(
    frame: pd.DataFrame | JudgmentArrays,
    method: Method = DEFAULT_METHOD,
    *,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
) -> PreferenceInterval:
    """The interval for s over a whole judgments frame (categories as strata), by ``method``."""
    arrays = frame if isinstance(frame, JudgmentArrays) else judgment_arrays(frame)
    layout = arrays.layout
    result = interval_batch(method, arrays.score, layout, level=level, B=B, seed=seed)
    uses_b = method in BOOTSTRAP_METHODS
    return PreferenceInterval(
        estimate=float(result.estimate[0, 0]),
        low=float(result.low[0, 0]),
        high=float(result.high[0, 0]),
        method=method,
        level=level,
        B=B if uses_b else None,
        seed=seed if uses_b else None,
        n=layout.n,
        n_prompts=layout.n_prompts,
        n_raters=layout.raters_present,
        low_precision=bool(
            low_precision(result.low[0, 0], result.high[0, 0], None if result.df is None else result.df[0, 0])
        ),
        se=None if result.se is None else float(result.se[0, 0]),
        df=None if result.df is None else float(result.df[0, 0]),
    )


def permutation_test(
    frame: pd.DataFrame | JudgmentArrays, *, B: int = DEFAULT_B, seed: int = DEFAULT_SEED
) -> PermutationTest:
    """Within-prompt label-permutation test of s = ½ (two-sided), with B random label flips per prompt."""
    arrays = frame if isinstance(frame, JudgmentArrays) else judgment_arrays(frame)
    y = arrays.score
    p_value = permutation_pvalues_batch(y, arrays.layout, B=B, seed=seed)[0]
    return PermutationTest(
        estimate=float(y.mean()), p_value=float(p_value), B=B, seed=seed, n_prompts=arrays.layout.n_prompts
    )


def preference_rows(
    arrays: JudgmentArrays,
    methods: Sequence[Method],
    *,
    by_category: bool = True,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
) -> list[dict]:
    """The rows of ``preference_report`` for one question's arrays."""
    question = arrays.question
    layout = arrays.layout
    Y = arrays.outcome_matrix()
    counts = layout.scope_counts()
    choice_counts = np.vstack(
        [np.bincount(arrays.choice, minlength=3)]
        + [np.bincount(arrays.choice[layout.judgment_category == c], minlength=3) for c in range(layout.n_categories)]
    )
    scopes = ["overall", *layout.category_names] if by_category else ["overall"]
    rows = []
    for method in methods:
        if method in BOOTSTRAP_METHODS:
            indicators = Y[:, 1:3]
            result = interval_batch(method, indicators, layout, level=level, B=B, seed=seed, transform=REPORT_TRANSFORM)
        else:
            result = interval_batch(method, Y, layout, level=level, B=B, seed=seed)
        share_low, share_high = result.low[:, 1:], result.high[:, 1:]
        if method == "goodman":
            share_low, share_high = goodman_bounds(choice_counts, level)
        uses_b = method in BOOTSTRAP_METHODS
        for index, scope in enumerate(scopes):
            n = counts["n"][index]
            count_a, count_tie, count_b = (int(v) for v in choice_counts[index])
            decisive = count_a + count_b
            rows.append(
                {
                    "question": question,
                    "scope": scope,
                    "n": int(n),
                    "n_prompts": int(counts["n_prompts"][index]),
                    "n_raters": int(counts["n_raters"][index]),
                    "count_A": count_a,
                    "count_tie": count_tie,
                    "count_B": count_b,
                    "share_A": count_a / n,
                    "share_tie": count_tie / n,
                    "share_B": count_b / n,
                    "share_A_low": share_low[index, 0],
                    "share_A_high": share_high[index, 0],
                    "share_tie_low": share_low[index, 1],
                    "share_tie_high": share_high[index, 1],
                    "share_B_low": share_low[index, 2],
                    "share_B_high": share_high[index, 2],
                    "s": result.estimate[index, 0],
                    "low": result.low[index, 0],
                    "high": result.high[index, 0],
                    "se": np.nan if result.se is None else result.se[index, 0],
                    "df": np.nan if result.df is None else result.df[index, 0],
                    "n_eff": np.nan if result.n_eff is None else result.n_eff[index, 0],
                    "decisive_win_rate": count_a / decisive if decisive else np.nan,
                    "method": method,
                    "level": level,
                    "B": B if uses_b else None,
                    "seed": seed if uses_b else None,
                    "tie_convention": TIE_CONVENTION,
                    "target": TARGET_POPULATION,
                    "low_precision": bool(
                        low_precision(
                            result.low[index, 0],
                            result.high[index, 0],
                            None if result.df is None else result.df[index, 0],
                        )
                    ),
                }
            )
    return rows


def preference_report(
    frame: pd.DataFrame,
    method: Method | Sequence[Method] = DEFAULT_METHOD,
    by_category: bool = True,
    *,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """One tidy row per question × scope (overall, then each category) × method.

    Columns: question (None without a ``question`` column), scope, n, n_prompts, n_raters, count_A/tie/B,
    share_A/tie/B with _low/_high (same method; Goodman's simultaneous intervals for ``goodman``), s, low, high,
    se, df, decisive_win_rate, method, level, B, seed (None for analytic methods), tie_convention, target,
    low_precision. Each question is analysed on its own; categories are strata of every overall interval. The
    frame holds one pair of models (split a multi-model study by pair first, as ``ranking.pairwise_table`` does).
    """
    methods = [method] if isinstance(method, str) else list(method)
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"Unknown interval method {name!r}; known methods: {', '.join(METHODS)}.")
    rows: list[dict] = []
    for arrays in judgment_arrays_by_question(frame):
        rows += preference_rows(arrays, methods, by_category=by_category, level=level, B=B, seed=seed)
    return pd.DataFrame(rows)


def t_quantile(level: float, df: float) -> float:
    """Two-sided Student-t quantile of a confidence level (the normal one for infinite df)."""
    return float(stats.t.ppf(0.5 + level / 2, df))
