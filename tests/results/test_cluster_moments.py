"""The overall two-way variance where raters span categories: the method-of-moments weights make the estimate's
expectation exact for prompt, rater and judgment components, on any layout. Checked against the definition
(G[K, L] = ‖Z_Kᵀ(I − H)Z_L‖², computed densely here), not against the closed form the code uses."""

import numpy as np
import pytest

from drawbench.results.intervals.cluster import two_way_cluster_batch
from drawbench.results.intervals.core import Layout


def _indicator(index: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((index.size, n))
    out[np.arange(index.size), index] = 1.0
    return out


def _random_layout(seed: int) -> Layout:
    """Unbalanced: 3-5 categories of 2-6 prompts, 1-4 judgments per prompt, raters drawn from a pool of 6-15 that
    span categories, some prompt × rater cells rated twice."""
    rng = np.random.default_rng(seed)
    per_category = rng.integers(2, 7, size=rng.integers(3, 6))
    prompt_category = np.repeat(np.arange(per_category.size), per_category)
    prompt = np.repeat(np.arange(prompt_category.size), rng.integers(1, 5, size=prompt_category.size))
    n_raters = int(rng.integers(6, 16))
    rater = rng.integers(0, n_raters, size=prompt.size)
    present = np.unique(rater)
    return Layout(
        prompt=prompt,
        rater=np.searchsorted(present, rater),
        prompt_category=prompt_category,
        n_raters=present.size,
    )


def _dense_G(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    C = _indicator(layout.judgment_category, layout.n_categories)
    H = C @ np.linalg.pinv(C)
    centre = np.eye(layout.n) - H
    Zp, Zr = _indicator(layout.prompt, layout.n_prompts), _indicator(layout.rater, layout.n_raters)
    cells = np.unique(layout.prompt * (layout.n_raters + 1) + layout.rater, return_inverse=True)[1]
    Zj = _indicator(cells, int(cells.max()) + 1)
    G = np.array([[np.sum((Zk.T @ centre @ Zl) ** 2) for Zl in (Zp, Zr, np.eye(layout.n))] for Zk in (Zp, Zr, Zj)])
    h = np.array([np.sum(Zp.sum(axis=0) ** 2), np.sum(Zr.sum(axis=0) ** 2), layout.n])
    return G, h


@pytest.mark.parametrize("seed", range(12))
def test_the_weights_make_the_overall_variance_exact_for_each_component(seed):
    layout = _random_layout(seed)
    if layout.raters_nested:
        pytest.skip("raters nested in categories take the per-category path")
    weights = layout.pooled_moment_weights
    G, h = _dense_G(layout)
    assert weights is not None
    # E[w·S] = w·G·σ² must equal h·σ² for every σ²: one equation per component.
    np.testing.assert_allclose(G.T @ weights, h, rtol=1e-9, atol=1e-9)


def test_the_default_interval_uses_them_and_is_unbiased_where_the_old_correction_was_not():
    # bench/ppi.py's DrawBench-like design in small: raters from a pool, a few judgments each, across 4 categories.
    rng = np.random.default_rng(5)
    prompt_category = np.repeat(np.arange(4), 12)
    prompt = np.repeat(np.arange(48), 2)
    layout = Layout(prompt=prompt, rater=rng.integers(0, 24, size=96), prompt_category=prompt_category, n_raters=24)
    assert not layout.raters_nested
    K = 40_000
    # Rater effects and noise, the components the category centring hid from the old correction.
    Y = rng.normal(size=(24, K))[layout.rater] + rng.normal(size=(96, K))
    fit = two_way_cluster_batch(Y, layout, bounds="wald")
    ratio = np.mean(fit.se[0] ** 2) / fit.estimate[0].var()
    # Monte-Carlo sd of the ratio at K = 40,000 is about 0.01.
    assert abs(ratio - 1) < 0.035, ratio
