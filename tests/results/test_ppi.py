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


def test_a_useless_judge_gets_a_weight_near_zero_and_costs_almost_nothing():
    Y, F, layout, n = simulated(0.0, 8, K=300)
    result = ppi_batch(Y, F, layout, n)
    assert np.mean(result.lam[0] == 0) > 0.5  # shrunk to exactly zero in most studies
    assert np.mean(result.se[0] ** 2) / np.mean(result.human_se[0] ** 2) == pytest.approx(1.0, abs=0.01)


def test_a_good_judge_covering_more_sets_narrows_the_interval_towards_the_limit():
    Y, F, layout, n = simulated(0.9, 8, K=300)
    result = ppi_batch(Y, F, layout, n)
    gain = np.mean(result.human_se[0] ** 2) / np.mean(result.se[0] ** 2)
    # Share of answer variance between comparisons: Var(g) / Var(y) for a Bernoulli answer with mean g.
    rng = np.random.default_rng(0)
    g = special.expit(rng.normal(0.3, 1.0, size=1_000_000))
    share = g.var() / (g.mean() * (1 - g.mean()))
    limit = ppi_gain_limit(share, 0.9, 8 * n, n)
    assert 1.05 < gain <= limit * 1.02
    assert gain >= 0.85 * limit


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
