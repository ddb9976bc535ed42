"""Prediction-powered inference (PPI++) for the preference score: human judgments plus an automatic judge's scores,
with the variance clustered by prompt and rater as the human-only interval is, and categories as strata
(DESIGN.md §8).

With n_c human judgments y (and the judge's score f of the comparison each judges) and N_c further comparisons that
only the judge scores, in category c:

    θ̂_c = mean_L(y) − λ·(mean_L(f) − mean_U(f))

(PPI++: Angelopoulos, Duchi & Zrnic 2023; stratified as StratPPI, Fisch et al. 2024), and θ̂ = Σ_c w_c·θ̂_c with
w_c = n_c/n, the human-only score's own weights, so that λ = 0 gives exactly the human-only s. λ is PPI++'s
power-tuned weight, computed from prompt-clustered moments and cross-fitted over two halves of the prompts (Zrnic &
Candès 2024); it is kept only where the judge's agreement with the humans is significant. The variance is the
default two-way cluster-robust variance of the human side (``ppi_batch``) plus the judge-only mean's
prompt-clustered variance and their covariance through shared prompts (a judge shares prompts with the humans,
never raters), plus λ̂'s own sampling variance.

The limit (DESIGN.md §8): a judge sees no rater noise, so with s the share of the human-only variance that lies
between comparisons and ρ the judge's agreement, the variance falls at most by the factor 1 − s·ρ²·N/(N + n). For
independent answers s is the share of answer variance between comparisons; rater clustering lowers it by the rater
design effect (``ppi_gain_limit``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from drawbench.results.intervals.cluster import DfRule, iid_variance, two_way_cluster_batch
from drawbench.results.intervals.core import DEFAULT_LEVEL, Layout, _as_columns, _indicator_T
from drawbench.results.intervals.score import effective_n_bounds

PPI_METHOD = "ppi_plus_plus_two_way_cluster_t"
MIN_JUDGE_T2 = 4.0


@dataclass(frozen=True)
class PPIBatch:
    """PPI++ and human-only results for every scope (overall, then each category) × column: arrays (1 + C, K)."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    se: np.ndarray  # NaN where undefined (no variation observed), as the human-only default's
    df: np.ndarray
    lam: np.ndarray  # (C, K) power-tuned λ per category (0 where a category has no judge-only comparison)
    lam_study: np.ndarray  # (K,) the study's λ
    human_estimate: np.ndarray
    human_se: np.ndarray
    human_low: np.ndarray  # the human-only default interval of the same judgments (``two_way_cluster_batch``)
    human_high: np.ndarray
    n_labeled: np.ndarray  # (1 + C,) human judgments per scope
    n_unlabeled: np.ndarray  # (1 + C,) judge-only comparisons per scope
    # (K,) the judge's agreement with the humans: the correlation of answers and judge scores within categories
    # (judgment level; its square is s·ρ² for the answers' own share s). Descriptive: the gain it allows depends on
    # the design (DESIGN.md §8), and is read from ``se`` against ``human_se``.
    agreement: np.ndarray
    level: float
    method: str = PPI_METHOD


def ppi_layout(
    prompt_category: np.ndarray,
    labeled_prompt: np.ndarray,
    labeled_rater: np.ndarray,
    unlabeled_prompt: np.ndarray,
    category_names: tuple[str, ...] = (),
) -> Layout:
    """The layout of human judgments (prompt and rater indices) followed by judge-only comparisons (prompt indices),
    prompts numbered category by category (``prompt_category``); prompts without any row are left out. A judge-only
    row is its own rater (a judge carries no rater effect)."""
    labeled_prompt = np.asarray(labeled_prompt, dtype=np.intp)
    unlabeled_prompt = np.asarray(unlabeled_prompt, dtype=np.intp)
    labeled_rater = np.asarray(labeled_rater, dtype=np.intp)
    prompt = np.concatenate([labeled_prompt, unlabeled_prompt])
    prompt_category = np.asarray(prompt_category, dtype=np.intp)
    present = np.bincount(prompt, minlength=prompt_category.size) > 0
    n_raters = int(labeled_rater.max()) + 1
    return Layout(
        prompt=(np.cumsum(present) - 1)[prompt],
        rater=np.concatenate([labeled_rater, n_raters + np.arange(unlabeled_prompt.size)]),
        prompt_category=prompt_category[present],
        n_raters=n_raters + unlabeled_prompt.size,
        category_names=category_names,
    )


def _group_mean(values: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(groups, K) means of rows by group, and the counts."""
    counts = np.bincount(groups, minlength=n_groups).astype(float)
    sums = _indicator_T(groups, n_groups) @ values
    return sums / np.maximum(counts, 1)[:, None], counts


def _correction(groups: np.ndarray) -> np.ndarray:
    groups = np.asarray(groups, dtype=float)
    return np.divide(groups, groups - 1, out=np.zeros_like(groups), where=groups > 1)


def _raw_variance(Y: np.ndarray, layout: Layout, df_rule: DfRule) -> tuple[np.ndarray, np.ndarray]:
    """(variance, df) of the default two-way estimator per scope and column, 0 where undefined."""
    fit = two_way_cluster_batch(Y, layout, df_rule=df_rule, bounds="wald")
    return np.where(np.isfinite(fit.se), fit.se, 0.0) ** 2, fit.df


def _prompt_cross(
    first: np.ndarray, second: np.ndarray, prompt: np.ndarray, prompt_category: np.ndarray, C: int
) -> np.ndarray:
    """(C, K) Σ_p T1_p·T2_p per category with G/(G − 1), T the per-prompt totals of two (rows, K) arrays whose
    rows carry prompt indices ``prompt`` (a pair of arrays may come from different rows: pass them pre-summed)."""
    P = prompt_category.size
    totals_1 = _indicator_T(prompt[0], P) @ first
    totals_2 = _indicator_T(prompt[1], P) @ second
    present = np.zeros(P, dtype=bool)
    present[prompt[0]] = True
    present[prompt[1]] = True
    per_category = _correction(np.bincount(prompt_category[present], minlength=C))
    return per_category[:, None] * (_indicator_T(prompt_category, C) @ (totals_1 * totals_2))


def ppi_batch(
    Y: np.ndarray,
    F: np.ndarray,
    layout: Layout,
    n_labeled: int,
    *,
    level: float = DEFAULT_LEVEL,
    lam: float | np.ndarray | None = None,
    df_rule: DfRule = "floored",
) -> PPIBatch:
    """PPI++ over a ``ppi_layout``: rows 0..n_labeled−1 are human judgments (Y their scores, F the judge's score of
    each one's comparison), the rest judge-only comparisons (F only). Y is (n_labeled, K) or (n_labeled,), F
    (rows, K) or (rows,): K studies at once on one layout.

    θ̂ = Σ_c w_c·[mean_L(y − λ·f) + λ·mean_U(f)], and

        Var(θ̂) = Var_human − 2λ·V_ab + λ²·V_bb,
        V_ab = B(y, f_L) − C(y, f_U),   V_bb = V(f_L) + V(f_U) − 2·C(f_L, f_U),

    with V and B the default two-way variance of a human-side mean and its bilinear form (by polarisation, so that
    λ = 0 gives exactly the human-only variance), V(f_U) the prompt-clustered variance of the judge-only mean, and
    C the prompt-level covariances between human-side and judge-only means (they share prompts, never raters).
    ``lam`` None tunes one λ for the study (see the comments below: prompt-clustered moments, cross-fitted, kept only
    where significant and shrunk by ``MIN_JUDGE_T2``'s rule); λ̂'s own sampling variance is added. A fixed ``lam``
    (0: human-only) is used as given.
    Intervals: the human-only default's construction (``score.effective_n_bounds``: the score interval on the
    effective n, t on the human-only df), with its floor on the variance (the judgments' own, were they
    independent) scaled by Var_PPI / Var_human, so that λ = 0 gives exactly the human-only interval; it respects
    the boundary and is never zero width on finite data (no variation observed: SE undefined, the effective n
    falls to min(prompts, raters))."""
    Y = _as_columns(Y)
    F = _as_columns(F)
    K = max(Y.shape[1], F.shape[1])
    Y = np.broadcast_to(Y, (n_labeled, K))
    F = np.broadcast_to(F, (layout.n, K))
    C = layout.n_categories
    category = layout.judgment_category
    cat_l, cat_u = category[:n_labeled], category[n_labeled:]
    f_l, f_u = F[:n_labeled], F[n_labeled:]
    mean_y, n_c = _group_mean(Y, cat_l, C)
    if (n_c == 0).any():
        raise ValueError("PPI needs human judgments in every category (a stratum without any has no estimate).")
    mean_fl, _ = _group_mean(f_l, cat_l, C)
    mean_fu, N_c = _group_mean(f_u, cat_u, C)
    weights = n_c / n_c.sum()
    # A category without judge-only comparisons gets no correction (its estimate is its human mean), so its judge
    # scores must not enter the variance either: the overall variance counted a reduction the estimate never made
    # (reported SE² 0.89 of the estimate's real variance where one category had none).
    uncorrected = N_c[cat_l] == 0
    if uncorrected.any():
        f_l = np.where(uncorrected[:, None], mean_fl[cat_l], f_l)

    labeled_layout = _labeled_layout(layout, n_labeled)
    # The human-only interval, the default's (λ = 0 gives it exactly): its variance and df are PPI's starting point.
    human = two_way_cluster_batch(Y, labeled_layout, level=level, df_rule=df_rule)
    var_y, df = np.where(np.isfinite(human.se), human.se, 0.0) ** 2, human.df
    var_f, _ = _raw_variance(f_l, labeled_layout, df_rule)
    var_sum, _ = _raw_variance(Y + f_l, labeled_layout, df_rule)
    bilinear = (var_sum - var_y - var_f) / 2  # (1 + C, K)

    # Judge-only means and their prompt-level covariances with the human-side means, per category.
    prompt = layout.prompt
    judged = N_c[cat_u] > 0
    u_resid = np.where(judged[:, None], (f_u - mean_fu[cat_u]) / np.maximum(N_c[cat_u], 1)[:, None], 0.0)
    y_resid = (Y - mean_y[cat_l]) / n_c[cat_l][:, None]
    f_resid = (f_l - mean_fl[cat_l]) / n_c[cat_l][:, None]
    pc = layout.prompt_category
    pair_lu = (prompt[:n_labeled], prompt[n_labeled:])
    pair_uu = (prompt[n_labeled:], prompt[n_labeled:])
    var_u = _prompt_cross(u_resid, u_resid, pair_uu, pc, C)
    cov_yu = _prompt_cross(y_resid, u_resid, pair_lu, pc, C)
    cov_fu = _prompt_cross(f_resid, u_resid, pair_lu, pc, C)
    # Overall: prompts are nested in categories, so the judge-only terms add up with weights w_c².
    w2 = (weights**2)[:, None]
    v_ab = bilinear - np.vstack([(w2 * cov_yu).sum(axis=0, keepdims=True), cov_yu])
    v_bb = var_f + np.vstack([(w2 * (var_u - 2 * cov_fu)).sum(axis=0, keepdims=True), var_u - 2 * cov_fu])
    v_bb = np.maximum(v_bb, 0.0)

    # PPI++'s power-tuned λ (Angelopoulos, Duchi & Zrnic 2023) is Cov(y, f) / ((1 + n/N)·Var(f)) for independent
    # judgments. The fully clustered V_ab/V_bb would be optimal in theory, but it rests on the few rater clusters
    # and its noise costs more than it saves; so λ̂ is the ratio of prompt-clustered moments (below). Any λ keeps
    # the variance above valid; the judgment-level moments here give the evidence that the judge agrees at all.
    n_all, N_all = n_c.sum(), N_c.sum()
    cross = ((Y - mean_y[cat_l]) * (f_l - mean_fl[cat_l])).sum(axis=0) / max(n_all - C, 1)
    spread_l = ((f_l - mean_fl[cat_l]) ** 2).sum(axis=0)
    spread_u = ((f_u - mean_fu[cat_u]) ** 2).sum(axis=0)
    var_judge = (spread_l + spread_u) / max(n_all + N_all - 2 * C, 1)
    spread_y = ((Y - mean_y[cat_l]) ** 2).sum(axis=0) / max(n_all - C, 1)
    # The same ratio with prompt-clustered moments: the judge's covariance with the humans through shared prompts
    # counts (rater clusters add only noise to it: a judge has no rater), which the judgment-level ratio misses.
    w_rows = weights[category][:, None]
    a_rows = np.zeros((layout.n, K))
    b_rows = np.zeros((layout.n, K))
    a_rows[:n_labeled] = y_resid * w_rows[:n_labeled]
    b_rows[:n_labeled] = f_resid * w_rows[:n_labeled]
    b_rows[n_labeled:] = -u_resid * w_rows[n_labeled:]
    # Cross-fitted (Zrnic & Candès 2024): prompts fall in two fixed halves, and each half's rows get the λ tuned on
    # the other half. A λ tuned on the very rows it corrects moves with their errors; with a strong judge that
    # added about 6% to the estimate's variance in bench/ppi.py, unseen by the variance formula.
    P = layout.n_prompts
    by_prompt = _indicator_T(prompt, P)
    total_a = by_prompt @ a_rows
    total_b = by_prompt @ b_rows
    fold = np.random.default_rng(0).permutation(P) % 2
    other_ab = np.stack([(total_a * total_b)[fold != k].sum(axis=0) for k in (0, 1)])  # (2, K)
    other_bb = np.stack([(total_b**2)[fold != k].sum(axis=0) for k in (0, 1)])
    pooled_ab, pooled_bb = (total_a * total_b).sum(axis=0), (total_b**2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = np.where(pooled_bb > 0, pooled_ab / pooled_bb, 0.0)
        halves = np.where(other_bb > 0, other_ab / other_bb, pooled[None, :])
        tuned = np.where(np.isfinite(halves), halves, 0.0).mean(axis=0)
        r2 = np.where((var_judge > 0) & (spread_y > 0), cross**2 / (var_judge * spread_y), 0.0)
        # The evidence that the judge agrees with the humans at all: the t² of their covariance, the mean of the
        # centred products over its own two-way clustered standard error (referred to the clusters' df by the
        # threshold below). r²/(1 − r²)·df, the t² of independent judgments on as many as the df, throws away
        # every judgment but one per cluster: a judge of agreement 0.9 got no weight in 30% of small studies.
        product = (Y - mean_y[cat_l]) * (f_l - mean_fl[cat_l])
        var_product, _ = _raw_variance(product, labeled_layout, df_rule)
        t2 = np.where(var_product[0] > 0, product.mean(axis=0) ** 2 / var_product[0], 0.0)
        # And on the human judgments' effective n (n over the design effect): λ̂'s relative sampling variance.
        n_eff = np.where(var_y[0] > 0, spread_y / np.maximum(var_y[0], 1e-300), n_all)
        t2_fit = r2 / np.maximum(1 - r2, 1e-12) * np.minimum(n_eff, n_all)
    tuned = np.where(np.isfinite(tuned), tuned, 0.0)
    t2 = np.where(np.isfinite(t2), t2, 0.0)
    if lam is None:
        # λ is fitted on the data it corrects: with a useless judge its fitting noise alone would cut the reported
        # variance. So the judge gets a weight only when its agreement is clearly there (t² above the 5% level of
        # t on the human df, and above MIN_JUDGE_T2: with 5 raters a bare t² > 4 let a useless judge in 10–12% of
        # studies), shrunk by (1 − 1/t²) (a James–Stein rule); a real judge's λ is left nearly untouched.
        # λ̂'s own sampling variance, about λ²/t² on the effective n, times V_bb is added: the price of fitting it.
        threshold = np.maximum(MIN_JUDGE_T2, stats.t.ppf(0.975, df[0]) ** 2)
        with np.errstate(divide="ignore"):
            shrink = np.where(t2 > threshold, 1 - 1 / t2, 0.0)
        lam_all = tuned * shrink
        fitting = np.where(t2_fit > 0, 1 / np.maximum(t2_fit, 1e-300), 0.0)
        row_lam = np.where(np.isfinite(halves), halves, 0.0)[fold[prompt]] * shrink[None, :]  # (rows, K)
    else:
        lam_all = np.broadcast_to(np.asarray(lam, dtype=float), (K,)).copy()
        fitting = np.zeros(K)
        row_lam = np.broadcast_to(lam_all[None, :], (layout.n, K))
    if N_c.sum() == 0:
        lam_all, row_lam = np.zeros(K), np.zeros((layout.n, K))
    lam_c = np.where(N_c[:, None] > 0, lam_all[None, :], 0.0)
    lam_scope = np.vstack([lam_all[None, :], lam_c])

    variance = var_y - 2 * lam_scope * v_ab + lam_scope**2 * v_bb * (1 + fitting[None, :])
    variance = np.maximum(variance, 0.0)
    # θ̂_c = mean_L(y) − mean_L(λ_r·(f − m_c)) + mean_U(λ_r·(f − m_c)), m_c the judge's mean over both in c (so that
    # the judge's scale and offset never matter); with one λ it is mean_L(y) − λ·(mean_L(f) − mean_U(f)).
    centre, _ = _group_mean(F, category, C)
    corrected = row_lam * (F - centre[category])
    correction_l, _ = _group_mean(corrected[:n_labeled], cat_l, C)
    correction_u, _ = _group_mean(corrected[n_labeled:], cat_u, C)
    estimate_c = mean_y - np.where(N_c[:, None] > 0, correction_l - correction_u, 0.0)
    estimate = np.vstack([(weights[:, None] * estimate_c).sum(axis=0, keepdims=True), estimate_c])
    counts = labeled_layout.scope_counts()
    n_floor = np.minimum(counts["n_prompts"], counts["n_raters"])[:, None]
    too_few = (counts["n_prompts"] < 2)[:, None]
    independent = iid_variance(Y, labeled_layout)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((var_y > 0) & (variance > 0), variance / var_y, 1.0)
    # A scope whose human answers show no variation (all A in a small category) has no human-side variance to
    # rectify: PPI's variance there would be the judge's alone (λ²·V_bb), and its interval far too narrow (0.77
    # coverage where such a 7-prompt category came out all A). Its SE is undefined as the human-only one is, and its
    # interval rests on min(prompts, raters) effective judgments, around PPI's estimate.
    undefined = too_few | ~(var_y > 0) | ~(variance > 0)
    low, high, _ = effective_n_bounds(
        estimate,
        np.where(undefined, 0.0, np.sqrt(variance)),
        n_floor,
        df,
        level,
        iid_variance=independent * ratio,
    )
    return PPIBatch(
        estimate=estimate,
        low=np.where(too_few, np.nan, low),
        high=np.where(too_few, np.nan, high),
        se=np.where(undefined, np.nan, np.sqrt(variance)),
        df=df,
        lam=lam_c,
        lam_study=lam_all,
        human_estimate=human.estimate,
        human_se=human.se,
        human_low=human.low,
        human_high=human.high,
        n_labeled=np.concatenate([[n_c.sum()], n_c]),
        n_unlabeled=np.concatenate([[N_c.sum()], N_c]),
        agreement=np.where(r2 > 0, np.sign(cross) * np.sqrt(r2), 0.0),
        level=level,
    )


def _labeled_layout(layout: Layout, n_labeled: int) -> Layout:
    """The human judgments' own layout (the first rows of a ``ppi_layout``), prompts renumbered to those present."""
    prompt = layout.prompt[:n_labeled]
    rater_present = np.bincount(layout.rater[:n_labeled]) > 0
    present = np.bincount(prompt, minlength=layout.n_prompts) > 0
    categories = layout.prompt_category[present]
    category_present = np.bincount(categories, minlength=layout.n_categories) > 0
    return Layout(
        prompt=(np.cumsum(present) - 1)[prompt],
        rater=(np.cumsum(rater_present) - 1)[layout.rater[:n_labeled]],
        prompt_category=(np.cumsum(category_present) - 1)[categories],
        n_raters=int(rater_present.sum()),
    )


def ppi_gain_limit(s: float, rho: float, N: float, n: float, design_effect: float = 1.0) -> float:
    """The most PPI++ can save on a mean (DESIGN.md §8): 1 / (1 − s·ρ²·N/(N + n)), s the share of answer variance
    that lies between comparisons.

    The bound holds as written for independent answers. Where a rater answers several comparisons, the rater's own
    leaning is shared by them: it inflates the human-only mean's variance by ``design_effect`` (Var(ȳ) over
    Var(y)/n, for comparisons each rated once), and a judge, who sees no rater, can remove none of that. The share
    of the mean's variance that lies between comparisons is then s / design_effect, and that is the s of the bound:
    Var(θ̂) ≥ Var(ȳ) − ρ²·(s·Var(y)/n)·N/(N + n) for any single λ."""
    share = s / design_effect
    return 1.0 / (1.0 - share * rho**2 * N / (N + n))
