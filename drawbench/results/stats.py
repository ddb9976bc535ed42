"""A study's results as the page, the charts and the exports show them: the pure statistics of ``intervals``,
``agreement`` and ``ranking`` applied to a judgments frame, one row per question × pair of models × scope.

No ORM, no request. A judgments frame has one row per judgment with the columns ``choice`` ("A", "B" or "tie", in
model space: "A" prefers the comparison's ``model_a``), ``question``, ``model_a``, ``model_b``, ``category``,
``prompt_id`` and ``rater_id``; optionally ``prompt_position`` (orders the categories), ``model_left`` (which model
was shown on the left: gives the position bias) and ``response_time_ms``.

For each scope (a question, a pair of models, overall or one category) a row reports:

- the counts and shares of A, tie and B, each share with an interval;
- the preference score s = share_A + ½·share_tie (a tie scores ½ for each model), with its interval by a named method
  (``intervals.METHODS``; the default ``two_way_cluster_t`` is the one calibrated by simulation), and everything
  needed to reproduce and read it: method, level, B and seed (None for analytic methods), standard error,
  degrees of freedom and target population;
- the decisive win rate A / (A + B), secondary;
- a precision flag: a 95% half-width above 10 points or fewer than 5 degrees of freedom;
- agreement: Krippendorff's α (nominal and ordinal, A < tie < B) and raw agreement over the scope's prompts;
- position bias: P(choose the left set | decisive judgment) with its two-way cluster-robust interval.

Alongside: a Bradley–Terry / Davidson ranking for three models or more (``ranking_tables``) and per-rater
diagnostics (``rater_table``).
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

import numpy as np
import pandas as pd

from drawbench.results import agreement, intervals, judges, ranking
from drawbench.results.intervals import cluster as interval_cluster
from drawbench.results.intervals import core as interval_core
from drawbench.results.intervals import ppi as interval_ppi
from drawbench.results.intervals import score as interval_score

DEFAULT_INTERVAL_METHOD: intervals.Method = intervals.DEFAULT_METHOD
DEFAULT_LEVEL = interval_core.DEFAULT_LEVEL
DEFAULT_B = interval_core.DEFAULT_B
DEFAULT_SEED = interval_core.DEFAULT_SEED
LOW_PRECISION_HALF_WIDTH = interval_core.LOW_PRECISION_HALF_WIDTH
LOW_PRECISION_MIN_DF = interval_core.LOW_PRECISION_MIN_DF
TARGET_POPULATION = interval_core.TARGET_POPULATION
TIE_CONVENTION = interval_core.TIE_CONVENTION
TIE_CONVENTION_LABEL = interval_core.TIE_CONVENTION_LABEL
CHOICES = interval_core.CHOICES
SCOPE_OVERALL = "overall"
SCOPE_CATEGORY = "category"
POSITION_BIAS_METHOD = "two_way_cluster_t"
RATER_LEFT_METHOD = "wilson_prompt_clustered"
RANKING_MIN_MODELS = 3
PAIR_MODELS: tuple[ranking.PairModel, ...] = ("bradley_terry", "davidson")
FlaggedRaters = Literal["excluded", "included"]

# Every method a result can be asked for, in the order a page offers them, with what a reader needs to know.
INTERVAL_METHODS: dict[str, str] = {
    "two_way_cluster_t": (
        "score interval on the design-effect-adjusted effective n, from a two-way cluster-robust variance over "
        "prompts and raters (categories as strata) with a Student-t reference (df floored at min(prompts − strata, "
        "raters − 1)): the default, calibrated by simulation (95% intervals cover 94.3-95.2% overall and at least "
        "94.8% per category over 12 scenarios; conservative on small pilots)"
    ),
    "prompt_bootstrap": "prompt-cluster bootstrap stratified by category, percentile (too narrow when raters differ)",
    "prompt_bootstrap_bca": "prompt-cluster bootstrap stratified by category, BCa (too narrow when raters differ)",
    "two_way_bootstrap": "two-way bootstrap over prompts and raters (Owen 2007), percentile: conservative",
    "two_way_cluster_normal": "two-way cluster-robust variance with a normal reference",
    "wilson": (
        "Wilson score interval: the reference for independent judgments only. Judgments cluster by prompt and "
        "rater, so it is too narrow for a study"
    ),
    "goodman": (
        "Goodman's simultaneous intervals for the three shares (Wilson for s): the reference for independent "
        "judgments only"
    ),
}
PAGE_METHODS = ("two_way_cluster_t", "prompt_bootstrap", "prompt_bootstrap_bca", "two_way_bootstrap", "wilson")
PAIR_MODEL_LABELS = {
    "bradley_terry": "Bradley–Terry (a tie scores ½ for each model)",
    "davidson": "Davidson (an explicit tie parameter ν)",
}


def method_check(method: str) -> None:
    if method not in intervals.METHODS:
        raise ValueError(f"Unknown interval method {method!r}; known methods: {', '.join(intervals.METHODS)}.")


def method_uses_resamples(method: str) -> bool:
    return method in intervals.BOOTSTRAP_METHODS


def wilson_interval(successes: float, n: int, *, confidence: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """Wilson score interval for a proportion p̂ = successes / n (Wilson 1927; Agresti & Coull 1998), by
    statsmodels' ``proportion_confint``. ``successes`` may be fractional (a score with ties as half)."""
    if n <= 0:
        raise ValueError(f"Wilson interval needs at least one observation, got n={n}.")
    if not 0 <= successes <= n:
        raise ValueError(f"Wilson interval needs 0 <= successes <= n, got successes={successes}, n={n}.")
    if not 0 < confidence < 1:
        raise ValueError(f"Confidence must lie strictly between 0 and 1, got {confidence}.")
    low, high = interval_score.wilson_bounds(np.array(successes / n), np.array(float(n)), confidence)
    return float(low), float(high)


def _number(value: Any) -> float | None:
    """A float for export, None where the statistic is undefined (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def pairs_orient(frame: pd.DataFrame) -> pd.DataFrame:
    """Put every judgment of a pair of models in one orientation, flipping A and B where needed.

    A pair's orientation is the one most of its judgments already have (ties broken by model names), so that in
    a two-model study nothing is flipped. Returns a copy; ``model_a`` / ``model_b`` / ``choice`` are rewritten
    (``model_left`` is what was displayed and stays).
    """
    if frame.empty:
        return frame.copy()
    a = frame["model_a"].to_numpy(dtype=object)
    b = frame["model_b"].to_numpy(dtype=object)
    swapped = a > b
    first = np.where(swapped, b, a)
    second = np.where(swapped, a, b)
    orientation: dict[tuple[str, str], bool] = {}
    keys = pd.DataFrame({"first": first, "second": second, "swapped": swapped})
    for (lo, hi), group in keys.groupby(["first", "second"], sort=True):
        n_swapped = int(group["swapped"].sum())
        # True: the pair reads (hi, lo), i.e. most judgments have model_a = hi.
        orientation[(lo, hi)] = n_swapped > len(group) - n_swapped
    pair_reversed = np.fromiter((orientation[(lo, hi)] for lo, hi in zip(first, second, strict=True)), dtype=bool)
    flip = swapped != pair_reversed
    out = frame.copy()
    out["model_a"] = np.where(pair_reversed, second, first)
    out["model_b"] = np.where(pair_reversed, first, second)
    out["choice"] = np.where(flip, frame["choice"].map({"A": "B", "B": "A", "tie": "tie"}), frame["choice"])
    return out


def _with_left_is_a(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``left_is_a`` (model A's set was on the left) where the frame says what was displayed."""
    if "model_left" not in frame.columns or "left_is_a" in frame.columns:
        return frame
    return frame.assign(left_is_a=(frame["model_left"] == frame["model_a"]).to_numpy(dtype=bool))


def _category_order(frame: pd.DataFrame) -> list[str]:
    if "prompt_position" in frame:
        return list(frame.groupby("category")["prompt_position"].min().sort_values(kind="stable").index)
    return sorted(frame["category"].unique())


def _scope_agreement(arrays: interval_core.JudgmentArrays) -> list[dict[str, Any]]:
    """α nominal and ordinal, raw agreement and pairable units per scope (overall, then each category): the units
    are the prompts (one question, one pair of models); None where a statistic is undefined."""
    layout = arrays.layout
    table = np.bincount(layout.prompt * 3 + arrays.choice, minlength=layout.n_prompts * 3).reshape(-1, 3)
    bounds = layout.category_bounds
    tables = [table] + [table[bounds[c] : bounds[c + 1]] for c in range(layout.n_categories)]
    out = []
    for part in tables:
        values: dict[str, Any] = {"agreement_units": int((part.sum(axis=1) >= 2).sum())}
        for name, compute in (
            ("alpha_nominal", lambda t: agreement.krippendorff_alpha_from_counts(t, "nominal")),
            ("alpha_ordinal", lambda t: agreement.krippendorff_alpha_from_counts(t, "ordinal")),
            ("raw_agreement", agreement.raw_agreement_from_counts),
        ):
            try:
                values[name] = _number(compute(part))
            except ValueError:
                # Undefined: no prompt rated twice, or every pairable answer the same.
                values[name] = None
        out.append(values)
    return out


def _scope_position_bias(arrays: interval_core.JudgmentArrays, level: float) -> list[dict[str, Any]]:
    """P(left | decisive) per scope (overall, then each category) with the two-way cluster-robust t interval."""
    n_scopes = 1 + arrays.layout.n_categories
    empty = {"n_decisive": 0, "left_rate": None, "left_rate_low": None, "left_rate_high": None}
    if arrays.left_is_a is None:
        return [dict(empty) for _ in range(n_scopes)]
    decisive, left = agreement.chose_left(arrays)
    per_category = np.bincount(arrays.layout.judgment_category[decisive], minlength=arrays.layout.n_categories)
    out = [dict(empty, n_decisive=int(count)) for count in [decisive.sum(), *per_category]]
    if not decisive.any():
        return out
    sub = arrays.subset(decisive)
    result = interval_cluster.two_way_cluster_batch(left[decisive].astype(float), sub.layout, level=level)
    names = arrays.layout.category_names
    index_of = {name: 1 + index for index, name in enumerate(names)}
    targets = [0] + [index_of[name] for name in sub.layout.category_names]
    for source, target in enumerate(targets):
        out[target].update(
            left_rate=_number(result.estimate[source, 0]),
            left_rate_low=_number(result.low[source, 0]),
            left_rate_high=_number(result.high[source, 0]),
        )
    return out


def pair_rows(
    part: pd.DataFrame,
    *,
    method: str = DEFAULT_INTERVAL_METHOD,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
) -> list[dict[str, Any]]:
    """The rows of one question × pair of models: overall, then each category (prompt order when known).

    ``part`` holds that question's judgments of that pair, in one orientation.
    """
    method_check(method)
    arrays = interval_core.judgment_arrays(_with_left_is_a(part))
    computed = intervals.preference_rows(arrays, [method], level=level, B=B, seed=seed)
    agreements = _scope_agreement(arrays)
    biases = _scope_position_bias(arrays, level)
    names = [None, *arrays.layout.category_names]
    uses_b = method_uses_resamples(method)
    by_category: dict[str | None, dict[str, Any]] = {}
    for name, row, agreed, bias in zip(names, computed, agreements, biases, strict=True):
        n = int(row["n"])
        count_a, count_tie, count_b = row["count_A"], row["count_tie"], row["count_B"]
        by_category[name] = {
            "scope": SCOPE_OVERALL if name is None else SCOPE_CATEGORY,
            "category": name,
            "n": n,
            "n_prompts": int(row["n_prompts"]),
            "n_raters": int(row["n_raters"]),
            "count_a": count_a,
            "count_tie": count_tie,
            "count_b": count_b,
            # From the counts, so that shares and s are exactly what anyone recounts from the judgments.
            "share_a": count_a / n,
            "share_tie": count_tie / n,
            "share_b": count_b / n,
            "share_a_ci_low": _number(row["share_A_low"]),
            "share_a_ci_high": _number(row["share_A_high"]),
            "share_tie_ci_low": _number(row["share_tie_low"]),
            "share_tie_ci_high": _number(row["share_tie_high"]),
            "share_b_ci_low": _number(row["share_B_low"]),
            "share_b_ci_high": _number(row["share_B_high"]),
            "score": (count_a + count_tie / 2) / n,
            "ci_low": _number(row["low"]),
            "ci_high": _number(row["high"]),
            "se": _number(row["se"]),
            "df": _number(row["df"]),
            "n_eff": _number(row["n_eff"]),
            "method": method,
            "level": level,
            "B": B if uses_b else None,
            "seed": seed if uses_b else None,
            "target": TARGET_POPULATION,
            "tie_convention": TIE_CONVENTION,
            "decisive_win_rate": count_a / (count_a + count_b) if count_a + count_b else None,
            "low_precision": bool(row["low_precision"]),
            **agreed,
            **bias,
            "left_rate_method": POSITION_BIAS_METHOD if bias["left_rate"] is not None else None,
        }
    order = [category for category in _category_order(part) if category in by_category]
    return [by_category[None]] + [by_category[category] for category in order]


def preference_table(
    frame: pd.DataFrame,
    *,
    questions: list[str] | None = None,
    method: str = DEFAULT_INTERVAL_METHOD,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
) -> list[dict[str, Any]]:
    """One row per (question, pair of models, scope): overall first, then each category.

    Questions come in the order of ``questions`` (then any others, by name), pairs by model names, categories
    by their first prompt position (the benchmark's own order) when ``prompt_position`` is present.
    """
    method_check(method)
    if frame.empty:
        return []
    oriented = pairs_orient(frame)
    order = list(questions or [])
    order += sorted(set(oriented["question"].unique()) - set(order))
    rows: list[dict[str, Any]] = []
    for question in order:
        by_question = oriented[oriented["question"] == question]
        if by_question.empty:
            continue
        for (model_a, model_b), pair in by_question.groupby(["model_a", "model_b"], sort=True):
            key = {"question": question, "model_a": model_a, "model_b": model_b}
            for row in pair_rows(pair, method=method, level=level, B=B, seed=seed):
                rows.append({**key, **row})
    return rows


def ranking_tables(
    frame: pd.DataFrame,
    *,
    questions: list[str] | None = None,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
) -> list[dict[str, Any]]:
    """Per question with at least three models: Bradley–Terry and Davidson fits (strengths, percentile intervals
    from the prompt-cluster bootstrap, ranks from interval overlap) and each pair's fitted s.

    Each entry: question, models, fits ({pair model: {"rows", "tie_parameter", ..., "error"}}). A fit that cannot
    be made (models never compared, no convergence) carries its ``error`` instead of rows.
    """
    if frame.empty:
        return []
    order = list(questions or [])
    order += sorted(set(frame["question"].unique()) - set(order))
    out = []
    for question in order:
        part = frame[frame["question"] == question]
        models = sorted(set(part["model_a"]) | set(part["model_b"]))
        if len(models) < RANKING_MIN_MODELS:
            continue
        fits: dict[str, dict[str, Any]] = {}
        for pair_model in PAIR_MODELS:
            try:
                fitted = ranking.model_ranking(part, pair_model, level=level, B=B, seed=seed)
            except (ValueError, np.linalg.LinAlgError) as exc:
                fits[pair_model] = {"error": str(exc), "rows": []}
                continue
            fits[pair_model] = {
                "error": None,
                "label": PAIR_MODEL_LABELS[pair_model],
                "fit": fitted,
                "rows": [
                    {
                        "evaluated_model": row.model,
                        "strength": float(row.strength),
                        "strength_low": float(row.low),
                        "strength_high": float(row.high),
                        "rank": int(row.rank),
                        "rank_low": int(row.rank_low),
                        "rank_high": int(row.rank_high),
                        "tier": int(row.tier),
                        **_adjacent_fragility(fitted, row.model),
                    }
                    for row in fitted.table.itertuples()
                ],
                "penalised": fitted.penalised,
                "penalty_reason": fitted.penalty_reason,
                "separated_resamples": fitted.separated_resamples,
                "fragility": _fragility_rows(fitted),
                "winner_fragility": ranking.winner_fragility(fitted.fragility),
                "tie_parameter": fitted.tie_parameter,
                "tie_parameter_low": fitted.tie_parameter_low,
                "tie_parameter_high": fitted.tie_parameter_high,
                "method": fitted.method,
                "level": fitted.level,
                "B": fitted.B,
                "seed": fitted.seed,
                "converged_resamples": fitted.converged_resamples,
            }
        out.append({"question": question, "models": models, "fits": fits})
    return out


def _fragility_rows(fitted: ranking.Ranking) -> list[dict[str, Any]]:
    """The fragility audit as plain rows (None where no removal flips the comparison)."""
    if fitted.fragility is None:
        return []
    rows = []
    for row in fitted.fragility.to_dict("records"):
        rows.append(
            {
                key: (None if value is None or (isinstance(value, float) and math.isnan(value)) else value)
                for key, value in row.items()
            }
        )
    for row in rows:
        for key in ("n_to_flip", "n_to_flip_approximate", "n_judgments"):
            if row[key] is not None:
                row[key] = int(row[key])
    return rows


def _adjacent_fragility(fitted: ranking.Ranking, model: str) -> dict[str, Any]:
    """For a model's ranking row: the judgments whose removal puts the next model below it above it."""
    rows = [row for row in _fragility_rows(fitted) if row["audit"] == "adjacent" and row["model_above"] == model]
    if not rows:
        return {"n_to_flip_next": None, "share_to_flip_next": None}
    return {"n_to_flip_next": rows[0]["n_to_flip"], "share_to_flip_next": rows[0]["share_to_flip"]}


def ranking_rows(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``ranking_tables`` flattened for export: one row per question × pair model × evaluated model."""
    rows = []
    for table in tables:
        for pair_model, fit in table["fits"].items():
            for row in fit["rows"]:
                rows.append(
                    {
                        "question": table["question"],
                        "pair_model": pair_model,
                        **row,
                        "tie_parameter": fit["tie_parameter"],
                        "tie_parameter_low": fit["tie_parameter_low"],
                        "tie_parameter_high": fit["tie_parameter_high"],
                        "penalised": fit["penalised"],
                        "separated_resamples": fit["separated_resamples"],
                        "method": fit["method"],
                        "level": fit["level"],
                        "B": fit["B"],
                        "seed": fit["seed"],
                        "target": TARGET_POPULATION,
                        "tie_convention": TIE_CONVENTION,
                    }
                )
    return rows


def fitted_score(table: dict[str, Any], pair_model: str, model_a: str, model_b: str) -> float | None:
    """The s of ``model_a`` against ``model_b`` predicted by a fit of ``ranking_tables``; None without the fit."""
    fit = table["fits"].get(pair_model)
    if not fit or fit["error"] or model_a not in table["models"] or model_b not in table["models"]:
        return None
    return fit["fit"].predicted_score(model_a, model_b)


def rater_table(frame: pd.DataFrame, *, level: float = DEFAULT_LEVEL) -> list[dict[str, Any]]:
    """One row per rater (all questions and pairs together), most judgments first: n, tie rate, left-side rate
    P(left | decisive) with a Wilson interval on the prompt-clustered effective n, median response time, and
    ``flagged`` where the frame has ``rater_flagged``."""
    if frame.empty:
        return []
    framed = _with_left_is_a(frame)
    if "left_is_a" not in framed.columns:
        raise ValueError("Judgments frame lacks column 'model_left' (which model was shown on the left).")
    table = agreement.rater_diagnostics(framed, level=level)
    if "rater_flagged" in frame.columns:
        flagged = frame.groupby("rater_id")["rater_flagged"].any()
        table["flagged"] = table["rater_id"].map(flagged).fillna(False).astype(bool)
    else:
        table["flagged"] = False
    table = table.sort_values(["n", "rater_id"], ascending=[False, True], kind="stable")
    rows = []
    for row in table.to_dict("records"):
        rows.append(
            {
                "rater_id": str(row["rater_id"]),
                "flagged": bool(row["flagged"]),
                "n": int(row["n"]),
                "n_decisive": int(row["n_decisive"]),
                "tie_rate": _number(row["tie_rate"]),
                "left_rate": _number(row["left_rate"]),
                "left_low": _number(row["left_low"]),
                "left_high": _number(row["left_high"]),
                "left_method": RATER_LEFT_METHOD,
                "median_response_ms": _number(row.get("median_response_ms")),
                "level": level,
            }
        )
    return rows


def study_position_bias(frame: pd.DataFrame, *, level: float = DEFAULT_LEVEL) -> dict[str, Any] | None:
    """P(left | decisive) over every question and pair, with its two-way cluster-robust interval; None without
    decisive judgments or display sides."""
    framed = _with_left_is_a(frame)
    if frame.empty or "left_is_a" not in framed.columns:
        return None
    try:
        bias = agreement.position_bias(framed, level=level)
    except ValueError:
        return None
    return {
        "estimate": bias.estimate,
        "low": _number(bias.low),
        "high": _number(bias.high),
        "n_decisive": bias.n_decisive,
        "n_prompts": bias.n_prompts,
        "n_raters": bias.n_raters,
        "method": bias.method,
        "level": bias.level,
    }


# The rankings' paragraph of ``methods_text``. The tier sentence states ``ranking._tiers`` (a leader rule, not
# "overlapping intervals share a tier"); the intervals' blind spot is ``ranking.model_ranking``'s own caveat.
RANKING_METHODS = (
    "Rankings of three or more models are Bradley–Terry fits (Bradley & Terry 1952; a tie counts as half a win) and "
    "fits of Davidson's tie model (Davidson 1970) by maximum likelihood, with percentile intervals from a "
    "prompt-cluster bootstrap stratified by category (B = {B}, seed {seed}); a resample without a finite maximum "
    "(Zermelo 1929) is refitted with one virtual judgment per pair. These intervals reflect prompt sampling only: "
    "raters are not resampled, so where raters carry model preferences of their own (few raters rating many "
    "comparisons) they are too narrow. Tiers follow a leader rule: walking down the models by strength, a model "
    "opens a new tier when its interval lies wholly below the interval of the first model of the current tier, and "
    "otherwise joins that tier (so two models of one tier may have disjoint intervals, and a model may overlap one "
    "of the tier above). The fragility audit counts the fewest judgments whose removal reverses an order, by "
    "approximate maximum-influence perturbation (Broderick, Giordano & Meager 2020) confirmed by refitting."
)


def methods_text(results: dict[str, Any]) -> str:
    """The methods paragraph of a study's results, with citations: estimator, interval, clusters, strata, df,
    exclusions, rankings. Shown on the results page and written into the bundle."""
    level = round(100 * results["level"])
    exclusions = (
        "Judgments flagged as excluded were "
        + ("included" if results["include_excluded"] else "left out")
        + "; judgments of raters flagged by quality control were "
        + ("left out" if results["exclude_flagged_raters"] else "kept")
        + f" ({results['n_judgments']} judgments used)."
    )
    interval = {
        "two_way_cluster_t": (
            f"{level}% intervals are score intervals on the design-effect-adjusted effective sample size (Kish 1965; "
            "Korn & Graubard 1998), with the variance from a two-way cluster-robust estimator over prompts and "
            "raters (Cameron, Gelbach & Miller 2011) on residuals from category means, categories as strata "
            "(its sums of squares weighted by the method of moments so that it is unbiased for prompt, rater and "
            "judgment components of the design at hand) and never below the judgments' own variance over n (no "
            "design effect below 1 is credited), "
            "and a Student-t reference whose degrees of freedom are Welch–Satterthwaite's over the variance "
            "components, floored at min(prompts − strata, raters − 1). Where no variation is observed the "
            "effective n is min(prompts, raters) and the standard error is reported as undefined."
        ),
    }.get(
        results["method"],
        f"{level}% intervals by {results['method']}: {results['method_label']}"
        + (f" (B = {results['B']}, seed {results['seed']})." if results.get("B") else "."),
    )
    return (
        "Each judgment compares two sets of images of one prompt and answers A, tie or B. The preference score is "
        "s = share A + ½·share tie (a tie counts as half a win for each model, as a draw scores half a point in "
        "chess), reported with all three shares overall and per prompt category. "
        f"{interval} {exclusions} {RANKING_METHODS.format(B=results['ranking_B'], seed=results['ranking_seed'])} "
        f"Target population: {results['target']}."
    )


PPI_METHOD = interval_ppi.PPI_METHOD
PPI_CASE_BEYOND = "beyond"
PPI_CASE_SAME = "same"


def _displayed_sets(part: pd.DataFrame) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Model A's and model B's displayed sample ids per judgment (in model space, from the display sides)."""
    left = [tuple(json.loads(ids)) for ids in part["left_sample_ids"]]
    right = [tuple(json.loads(ids)) for ids in part["right_sample_ids"]]
    a_left = (part["model_left"] == part["model_a"]).to_numpy()
    sets_a = [lt if flag else rt for lt, rt, flag in zip(left, right, a_left, strict=True)]
    sets_b = [rt if flag else lt for lt, rt, flag in zip(left, right, a_left, strict=True)]
    return sets_a, sets_b


def ppi_pair(
    part: pd.DataFrame, sets: pd.DataFrame, scores: dict[int, float], *, level: float = DEFAULT_LEVEL
) -> dict[str, Any]:
    """PPI++ for one question × pair of models (``part``: its judgments in one orientation, with display sides and
    sample ids) with a judge's per-sample ``scores`` and the study's sample ``sets`` (``selectors.study_judge_inputs``).

    Each human judgment's judge score is ``judges.comparison_score`` of the two sets it showed; the judge-only
    comparisons are every prompt's pairs of complete sample sets (set k of model A against set k of model B).
    ``case`` says whether the judge covers comparisons beyond those humans rated (``beyond``) or only the same ones
    (``same``: PPI can save almost nothing there). ``error`` instead of numbers where PPI cannot run.
    """
    model_a, model_b = part["model_a"].iloc[0], part["model_b"].iloc[0]
    base = {"model_a": model_a, "model_b": model_b, "n": len(part), "method": PPI_METHOD, "level": level}
    if "left_sample_ids" not in part.columns:
        return {**base, "error": "the judgments carry no displayed sample ids"}
    sets_a, sets_b = _displayed_sets(part)
    missing = {i for ids in (*sets_a, *sets_b) for i in ids if i not in scores}
    if any(not ids for ids in (*sets_a, *sets_b)) or missing:
        return {**base, "error": "the judge has not scored every displayed sample"}
    f_labeled = np.array(
        [
            judges.comparison_score([scores[i] for i in a], [scores[i] for i in b])
            for a, b in zip(sets_a, sets_b, strict=True)
        ]
    )
    own = sets[sets["model"].isin([model_a, model_b])]
    pivot = own.pivot_table(
        index=["prompt_id", "category", "set_index"], columns="model", values="sample_ids", aggfunc="first"
    )
    if model_a not in pivot.columns or model_b not in pivot.columns:
        return {**base, "error": "no complete sample sets of both models"}
    pivot = pivot.dropna(subset=[model_a, model_b]).reset_index()
    pivot = pivot[pivot["category"].isin(set(part["category"]))]
    scored = np.array(
        [all(i in scores for i in (*a, *b)) for a, b in zip(pivot[model_a], pivot[model_b], strict=True)], dtype=bool
    )
    pivot = pivot[scored] if len(pivot) else pivot
    f_unlabeled = np.array(
        [
            judges.comparison_score([scores[i] for i in a], [scores[i] for i in b])
            for a, b in zip(pivot[model_a], pivot[model_b], strict=True)
        ]
    )
    shown = {(p, frozenset(a), frozenset(b)) for p, a, b in zip(part["prompt_id"], sets_a, sets_b, strict=True)}
    beyond = sum(
        (p, frozenset(a), frozenset(b)) not in shown
        for p, a, b in zip(pivot["prompt_id"], pivot[model_a], pivot[model_b], strict=True)
    )
    categories = sorted(set(part["category"]))
    category_index = {name: index for index, name in enumerate(categories)}
    prompts = pd.concat([part[["prompt_id", "category"]], pivot[["prompt_id", "category"]]]).drop_duplicates(
        "prompt_id"
    )
    prompts = prompts.assign(code=prompts["category"].map(category_index)).sort_values(["code", "prompt_id"])
    prompt_index = dict(zip(prompts["prompt_id"], range(len(prompts)), strict=True))
    rater_codes, _ = pd.factorize(part["rater_id"])
    layout = interval_ppi.ppi_layout(
        prompts["code"].to_numpy(),
        part["prompt_id"].map(prompt_index).to_numpy(),
        rater_codes,
        pivot["prompt_id"].map(prompt_index).to_numpy(),
        tuple(categories),
    )
    y = interval_core.SCORE_OF_CHOICE[interval_core.choice_codes(part["choice"])]
    result = interval_ppi.ppi_batch(y, np.concatenate([f_labeled, f_unlabeled]), layout, len(part), level=level)
    human_se, ppi_se = float(result.human_se[0, 0]), float(result.se[0, 0])
    gain = human_se**2 / ppi_se**2 if math.isfinite(human_se) and math.isfinite(ppi_se) and ppi_se > 0 else None
    return {
        **base,
        "error": None,
        "N": int(len(pivot)),
        "N_beyond": int(beyond),
        "case": PPI_CASE_BEYOND if beyond else PPI_CASE_SAME,
        "human_s": float(result.human_estimate[0, 0]),
        "human_se": _number(human_se),
        "human_ci_low": _number(result.human_low[0, 0]),
        "human_ci_high": _number(result.human_high[0, 0]),
        # A score lies in [0, 1]; a correction can carry PPI's estimate past the boundary (a strong judge on all-A
        # answers): it is reported at the boundary, inside its interval.
        "s": min(max(float(result.estimate[0, 0]), 0.0), 1.0),
        "ci_low": _number(result.low[0, 0]),
        "ci_high": _number(result.high[0, 0]),
        "se": _number(ppi_se),
        "df": _number(result.df[0, 0]),
        "lam": float(result.lam_study[0]),
        "gain": gain,
        "agreement": float(result.agreement[0]),
    }


def ppi_tables(
    frame: pd.DataFrame,
    judge_inputs: dict[str, Any],
    *,
    questions: list[str] | None = None,
    level: float = DEFAULT_LEVEL,
) -> list[dict[str, Any]]:
    """PPI++ beside human-only for every stored judge × its question × pair of models: one entry per judge and
    question, {"judge", "question", "rows": [``ppi_pair``]}; empty without judge scores."""
    if frame.empty or not judge_inputs.get("scores"):
        return []
    oriented = pairs_orient(frame)
    out = []
    order = list(questions or [])
    for (judge, question), scores in sorted(
        judge_inputs["scores"].items(),
        key=lambda item: (order.index(item[0][1]) if item[0][1] in order else 99, item[0]),
    ):
        part = oriented[oriented["question"] == question]
        if part.empty:
            continue
        rows = [
            ppi_pair(pair, judge_inputs["sets"], scores, level=level)
            for _, pair in part.groupby(["model_a", "model_b"], sort=True)
        ]
        out.append({"judge": judge, "question": question, "rows": rows})
    return out
