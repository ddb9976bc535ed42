"""PPI++ (drawbench.results.intervals.ppi): exactly human-only at λ = 0, a useless judge costs nothing, a good judge
narrows the interval towards the limit, and the interval covers (small R here; bench/ppi.py gives full-R figures)."""

import numpy as np
import pytest
from scipy import special

from drawbench.results.intervals import cluster
from drawbench.results.intervals.ppi import _labeled_layout, ppi_batch, ppi_gain_limit, ppi_layout

N_PROMPTS, N_CATEGORIES, RATERS = 120, 4, 30


def simulated(rho: float, ratio: int, K: int, seed: int = 3):
    """K studies of one judgment per comparison, two rated sample sets per prompt, ``ratio``·2 judge-only sets per
    prompt; the judge's score correlates ρ with the comparison's mean answer. Returns (Y, F, layout, n)."""
    rng = np.random.default_rng(seed)
    prompt_category = np.repeat(np.arange(N_CATEGORIES), N_PROMPTS // N_CATEGORIES)
    labeled = np.repeat(np.arange(N_PROMPTS), 2)
    unlabeled = np.repeat(np.arange(N_PROMPTS), 2 * ratio)
    raters = rng.integers(0, RATERS, size=labeled.size)
    layout = ppi_layout(prompt_category, labeled, raters, unlabeled)
    n, M = labeled.size, labeled.size + unlabeled.size
    quality = rng.normal(0.3, 1.0, size=(M, K))
    g = special.expit(quality)  # a comparison's mean answer
    z = (g - g.mean()) / g.std()
    F = rho * z + np.sqrt(1 - rho**2) * rng.normal(size=(M, K))
    rater_effect = rng.normal(0, 0.5, size=(RATERS, K))
    Y = (rng.random((n, K)) < special.expit(quality[:n] + rater_effect[raters])).astype(float)
    return Y, F, layout, n


def test_lambda_zero_is_exactly_the_human_only_estimate_and_interval():
    Y, F, layout, n = simulated(0.8, 4, K=5)
    result = ppi_batch(Y, F, layout, n, lam=0.0)
    human = cluster.two_way_cluster_batch(Y, _labeled_layout(layout, n))
    np.testing.assert_allclose(result.estimate, human.estimate, rtol=0, atol=1e-15)
    np.testing.assert_allclose(result.se, human.se, rtol=1e-12)
    np.testing.assert_allclose(result.human_se, human.se, rtol=1e-12)
    # The interval too: the default's score interval on the effective n, not a Wald interval beside it.
    for low, high in ((result.low, result.high), (result.human_low, result.human_high)):
        np.testing.assert_allclose(low, human.low, rtol=1e-12)
        np.testing.assert_allclose(high, human.high, rtol=1e-12)


@pytest.mark.parametrize("answer", [1.0, 0.5, 0.0])
def test_without_any_variation_the_ppi_interval_is_never_zero_width_and_its_se_is_undefined(answer):
    """All answers A (or all ties, all B): as the human-only default, PPI shows no SE and an interval on
    min(prompts, raters) effective judgments, never [1, 1]; the judge gets no weight, there being nothing to agree
    with."""
    _, F, layout, n = simulated(0.9, 8, K=3)
    Y = np.full((n, 3), answer)
    result = ppi_batch(Y, F, layout, n)
    human = cluster.two_way_cluster_batch(Y, _labeled_layout(layout, n))
    assert np.isnan(result.se).all() and np.isnan(result.human_se).all()
    assert (result.lam == 0).all()
    assert (result.high - result.low > 0.01).all()
    assert (result.low <= answer).all() and (answer <= result.high).all()
    np.testing.assert_allclose(result.low, human.low, rtol=1e-12)
    np.testing.assert_allclose(result.high, human.high, rtol=1e-12)


def test_a_good_judge_narrows_the_score_interval_by_its_variance_ratio():
    Y, F, layout, n = simulated(0.9, 8, K=200)
    result = ppi_batch(Y, F, layout, n)
    width, human_width = result.high - result.low, result.human_high - result.human_low
    # Away from the boundary the score interval is p ± t·SE to first order: widths scale with the SEs.
    np.testing.assert_allclose(width[0] / human_width[0], result.se[0] / result.human_se[0], rtol=0.02)
    assert np.mean(width[0]) < 0.97 * np.mean(human_width[0])


def test_a_useless_judge_gets_a_weight_near_zero_and_costs_almost_nothing():
    Y, F, layout, n = simulated(0.0, 8, K=300)
    result = ppi_batch(Y, F, layout, n)
    assert np.mean(result.lam[0] == 0) > 0.5  # shrunk to exactly zero in most studies
    assert np.mean(result.se[0] ** 2) / np.mean(result.human_se[0] ** 2) == pytest.approx(1.0, abs=0.01)


def test_a_good_judge_covering_more_sets_narrows_the_interval_towards_the_limit():
    Y, F, layout, n = simulated(0.9, 8, K=300)
    result = ppi_batch(Y, F, layout, n)
    gain = np.mean(result.human_se[0] ** 2) / np.mean(result.se[0] ** 2)
    # The answer's mean given the comparison (g, over rater effects) and given the rater (h, over comparisons), by
    # quadrature: s = Var(g) / Var(y) and the rater ICC = Var(h) / Var(y), Var(y) = p(1 − p) for a 0/1 answer.
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    p = special.expit(0.3 + nodes[:, None] + 0.5 * nodes[None, :])  # quality × rater effect
    g, h = p @ weights, weights @ p
    mean = float(weights @ g)
    share = (float(weights @ g**2) - mean**2) / (mean * (1 - mean))
    icc = (float(weights @ h**2) - mean**2) / (mean * (1 - mean))
    per_rater = np.bincount(layout.rater[:n])
    design_effect = 1 + icc * (float((per_rater**2).sum()) / n - 1)
    limit = ppi_gain_limit(share, 0.9, 8 * n, n, design_effect=design_effect)
    assert limit < ppi_gain_limit(share, 0.9, 8 * n, n) - 0.02  # rater clustering costs the judge visibly here
    assert 1.05 < gain <= limit * 1.02
    assert gain >= 0.95 * limit
    # The agreement the page shows: the judgment-level correlation, whose square is one answer's s·ρ².
    assert np.mean(result.agreement**2) == pytest.approx(share * 0.81, rel=0.25)


@pytest.mark.slow
def test_ppi_interval_covers_with_a_good_judge():
    Y, F, layout, n = simulated(0.9, 8, K=800, seed=4)
    # The truth: the population mean answer, E[expit(quality + rater effect)] over both.
    rng = np.random.default_rng(1)
    truth = float(special.expit(rng.normal(0.3, 1.0, 4_000_000) + rng.normal(0, 0.5, 4_000_000)).mean())
    result = ppi_batch(Y, F, layout, n)
    covered = (result.low[0] <= truth) & (truth <= result.high[0])
    assert covered.mean() >= 0.92, covered.mean()


def test_gain_limit_formula():
    assert ppi_gain_limit(0.35, 0.8, 8, 1) == pytest.approx(1 / (1 - 0.35 * 0.64 * 8 / 9))
    assert ppi_gain_limit(0.35, 0.0, 64, 1) == 1.0
    assert ppi_gain_limit(0.35, 0.8, 8, 1, design_effect=1.4) == pytest.approx(1 / (1 - 0.25 * 0.64 * 8 / 9))


def test_with_rater_clustering_the_best_lambda_reaches_the_design_limit_and_not_the_independent_one():
    """y = g + w_rater + e, each comparison rated once, 40 raters answering 10 each: the rater design effect is
    1 + ICC·9 = 2.8. The best λ (known in closed form here) removes ρ² of the between-comparison part and nothing of
    the rater part, so its gain is the limit with s / design effect, far under the independent answers' limit."""
    K, n, ratio, rho = 3000, 400, 8, 0.9
    var_g, var_w, var_e = 1.0, 0.5, 1.0
    var_y = var_g + var_w + var_e
    share, icc, per_rater = var_g / var_y, var_w / var_y, 10
    design_effect = 1 + icc * (per_rater - 1)
    rng = np.random.default_rng(11)
    prompts = 200
    labeled = np.repeat(np.arange(prompts), n // prompts)
    unlabeled = np.repeat(np.arange(prompts), n * ratio // prompts)
    raters = rng.permutation(np.repeat(np.arange(n // per_rater), per_rater))
    layout = ppi_layout(np.repeat(np.arange(4), prompts // 4), labeled, raters, unlabeled)
    N = unlabeled.size
    g = rng.normal(0, np.sqrt(var_g), size=(n + N, K))
    F = rho * g / np.sqrt(var_g) + np.sqrt(1 - rho**2) * rng.normal(size=(n + N, K))
    w = rng.normal(0, np.sqrt(var_w), size=(n // per_rater, K))
    Y = g[:n] + w[raters] + rng.normal(0, np.sqrt(var_e), size=(n, K))
    best = rho * np.sqrt(var_g) * N / (N + n)  # Cov(ȳ, f̄_L) / Var(f̄_L − f̄_U)
    result = ppi_batch(Y, F, layout, n, lam=best)
    gain = np.var(result.human_estimate[0]) / np.var(result.estimate[0])
    limit = ppi_gain_limit(share, rho, N, n, design_effect=design_effect)
    independent = ppi_gain_limit(share, rho, N, n)
    assert limit == pytest.approx(1.115, abs=0.001) and independent == pytest.approx(1.405, abs=0.001)
    assert gain == pytest.approx(limit, rel=0.04)
    # The reported variances agree: the two-way clustered human-only variance sees the rater part.
    assert np.mean(result.human_se[0] ** 2) / np.mean(result.se[0] ** 2) == pytest.approx(limit, rel=0.03)


def test_a_category_whose_answers_show_no_variation_gets_no_judge_made_precision():
    """All A in one category (a small category with a strong preference): the judge's own variance is no measure of
    the human side's there. PPI's SE is undefined and its interval rests on min(prompts, raters) effective
    judgments, as the human-only one does, instead of λ²·V_bb alone (an interval a few points wide)."""
    Y, F, layout, n = simulated(0.9, 8, K=50)
    first = layout.judgment_category[:n] == 0
    Y = Y.copy()
    Y[first] = 1.0
    result = ppi_batch(Y, F, layout, n)
    assert np.isnan(result.se[1]).all() and np.isnan(result.human_se[1]).all()
    assert np.isfinite(result.se[0]).all()  # the overall score still varies
    width, human_width = (result.high - result.low)[1], (result.human_high - result.human_low)[1]
    assert (width > 0.1).all() and (width > 0.8 * human_width).all()


def test_the_interval_stays_in_zero_one_even_where_a_fixed_lambda_carries_the_estimate_past_it():
    Y, F, layout, n = simulated(0.9, 8, K=5)
    result = ppi_batch(np.ones_like(Y), F, layout, n, lam=0.7)
    assert ((0 <= result.low) & (result.low < result.high) & (result.high <= 1)).all()
    assert (np.clip(result.estimate, 0, 1) <= result.high).all()  # what the page reports (stats.ppi_pair clips)


def test_a_category_without_judge_only_comparisons_leaves_the_variance_as_honest_as_the_estimate():
    """Three categories, the first without any judge-only comparison: it gets no correction, so its judge scores
    must not lower the overall variance either (reported SE² was 0.89 of the estimate's spread)."""
    rng = np.random.default_rng(1)
    K, rated, new, m, R = 1500, [40, 40, 20], [0, 160, 80], 3, 30
    category = np.concatenate([np.repeat(np.arange(3), rated), np.repeat(np.arange(3), new)])
    order = np.argsort(category, kind="stable")
    is_rated = np.concatenate([np.ones(sum(rated), bool), np.zeros(sum(new), bool)])[order]
    prompt_category = category[order]
    labeled = np.repeat(np.flatnonzero(is_rated), m)
    unlabeled = np.flatnonzero(~is_rated)
    raters = rng.integers(0, R, labeled.size)
    layout = ppi_layout(prompt_category, labeled, raters, unlabeled)
    quality = rng.normal(0, 1, (prompt_category.size, K)) + np.array([0.0, 0.5, -0.5])[prompt_category][:, None]
    f = 0.95 * (quality - quality.mean(0)) + np.sqrt(1 - 0.95**2) * rng.normal(size=quality.shape)
    chance = special.expit(quality[labeled] + rng.normal(0, 0.5, (R, K))[raters])
    Y = (rng.random(chance.shape) < chance).astype(float)
    result = ppi_batch(Y, np.vstack([f[labeled], f[unlabeled]]), layout, labeled.size)
    assert result.n_unlabeled[1] == 0 and (result.lam[0] == 0).all() and (result.lam_study > 0).mean() > 0.9
    assert np.mean(result.se[0] ** 2) / np.var(result.estimate[0]) == pytest.approx(1.0, abs=0.06)


def test_a_useless_judge_gets_weight_in_about_five_percent_of_small_studies():
    """30 prompts, 5 raters, 3 ratings per comparison: the pre-test is t² above the 5% level of t on the human df
    (a bare t² > 4 let a pure-noise judge in 10-12% of such studies)."""
    rng = np.random.default_rng(4)
    K, prompts, raters, m = 2000, 30, 5, 3
    labeled = np.repeat(np.arange(prompts), m)
    rater = np.concatenate([rng.choice(raters, m, replace=False) for _ in range(prompts)])
    unlabeled = np.repeat(np.arange(prompts), 3)
    layout = ppi_layout(np.zeros(prompts, dtype=int), labeled, rater, unlabeled)
    quality = rng.normal(0.3, 1, (prompts, K))[labeled] + rng.normal(0, 0.5, (raters, K))[rater]
    Y = (rng.random(quality.shape) < special.expit(quality)).astype(float)
    F = rng.random((labeled.size + unlabeled.size, K))
    result = ppi_batch(Y, F, layout, labeled.size)
    assert np.mean(result.lam_study != 0) < 0.08
    assert np.var(result.estimate[0]) / np.var(result.human_estimate[0]) < 1.02
