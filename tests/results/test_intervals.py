"""Shares, s and their intervals (drawbench.results.intervals): hand-checkable cases and the vectorised bootstraps
checked against naive per-resample loops on the same resample weights."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from drawbench.results import intervals as iv
from drawbench.results import simulate as sim
from drawbench.results.intervals import bootstrap, cluster, core, score


def frame_of(rows):
    return pd.DataFrame(rows, columns=["prompt_id", "category", "rater_id", "choice"])


@pytest.fixture(scope="module")
def study():
    return sim.simulate_judgments(sim.Scenario(name="unit", effect=0.5), seed=11, questions=("fidelity", "alignment"))


def test_preference_shares_count_ties_as_half():
    frame = frame_of([(1, "c", 1, "A"), (1, "c", 2, "tie"), (2, "c", 1, "B"), (2, "c", 2, "A")])
    shares = iv.preference_shares(frame)
    assert (shares.count_a, shares.count_tie, shares.count_b) == (2, 1, 1)
    assert shares.s == pytest.approx((2 + 0.5) / 4)
    assert shares.decisive_win_rate == pytest.approx(2 / 3)
    assert shares.tie_convention == "ties_half"


def test_wilson_bounds_match_newcombe_1998_example():
    # Newcombe (1998), Statistics in Medicine 17:857, example 81/263: Wilson 0.2553 to 0.3662.
    low, high = score.wilson_bounds(np.array(81 / 263), np.array(263))
    assert (round(float(low), 4), round(float(high), 4)) == (0.2553, 0.3662)


def test_goodman_intervals_are_wilson_intervals_at_the_bonferroni_level():
    counts = np.array([57, 21, 22])
    low, high = score.goodman_bounds(counts, 0.95)
    w_low, w_high = score.wilson_bounds(counts / counts.sum(), counts.sum(), 1 - 0.05 / 3)
    np.testing.assert_allclose(low, w_low, rtol=1e-12)
    np.testing.assert_allclose(high, w_high, rtol=1e-12)


def test_judgment_arrays_reject_an_unknown_choice_naming_the_row():
    frame = frame_of([(1, "c", 1, "A"), (1, "c", 2, "left")])
    with pytest.raises(ValueError, match=r"Column 'choice', row 1: 'left' is not one of A, tie, B"):
        core.judgment_arrays(frame)


def test_judgment_arrays_reject_missing_columns_and_values():
    with pytest.raises(ValueError, match="lacks column\\(s\\) rater_id"):
        core.judgment_arrays(frame_of([(1, "c", 1, "A")]).drop(columns="rater_id"))
    with pytest.raises(ValueError, match="Column 'rater_id', row 1: missing value"):
        core.judgment_arrays(frame_of([(1, "c", 1, "A"), (1, "c", None, "B")]))


def test_judgment_arrays_reject_a_prompt_in_two_categories():
    frame = frame_of([(1, "Colors", 1, "A"), (1, "Counting", 2, "B")])
    with pytest.raises(ValueError, match="prompt 1 appears in more than one category"):
        core.judgment_arrays(frame)


def test_two_way_cluster_variance_reduces_to_the_stratified_prompt_cluster_variance_when_raters_rate_once():
    # Every judgment by its own rater: the rater and cell components cancel and V is the textbook stratified
    # cluster variance Σ_c n_c/(n_c − 1) Σ_p E_p² / N² (balanced: every prompt has 3 judgments).
    rng = np.random.default_rng(3)
    rows = []
    for category, n_prompts in (("a", 4), ("b", 6)):
        for p in range(n_prompts):
            for _ in range(3):
                rows.append((f"{category}{p}", category, len(rows), rng.choice(["A", "tie", "B"])))
    frame = frame_of(rows)
    result = iv.preference_interval(frame)
    y = frame["choice"].map({"A": 1.0, "tie": 0.5, "B": 0.0})
    residual = y - y.groupby(frame["category"]).transform("mean")
    totals = residual.groupby(frame["prompt_id"]).sum()
    category = frame.groupby("prompt_id")["category"].first()
    by_category = (totals**2).groupby(category).sum()
    sizes = category.value_counts()
    variance = (by_category * sizes / (sizes - 1)).sum() / len(frame) ** 2
    assert result.se == pytest.approx(np.sqrt(variance), rel=1e-12)
    # Degrees of freedom: the Satterthwaite blend of the two strata's 3 and 5, as for a one-way stratified variance,
    # then floored at min(prompts − strata, raters − 1) = 8, which it falls below here.
    parts = by_category * sizes / (sizes - 1)
    satterthwaite = parts.sum() ** 2 / (parts**2 / (sizes - 1)).sum()
    arrays = core.judgment_arrays(frame)
    unfloored = cluster.two_way_cluster_batch(arrays.score, arrays.layout, df_rule="satterthwaite")
    assert unfloored.df[0, 0] == pytest.approx(satterthwaite, rel=0.05)
    assert satterthwaite < 8
    assert result.df == 8


def test_two_way_cluster_variance_is_unbiased_in_a_balanced_crossed_design():
    # Fully crossed prompts × raters with additive effects: the balanced correction makes E[V̂] = Var(ŝ) exactly,
    # where plain CGM falls short by about 1/R of the prompt part (here R = 4 raters: 25%).
    rng = np.random.default_rng(4)
    P, R, studies = 30, 4, 4000
    prompt = np.repeat(np.arange(P), R)
    rater = np.tile(np.arange(R), P)
    layout = core.Layout(prompt=prompt, rater=rater, prompt_category=np.zeros(P, dtype=int), n_raters=R)
    a = rng.normal(0, 1.0, size=(P, studies))
    e = rng.normal(0, 0.5, size=(P * R, studies))
    Y = a[prompt] + e
    true_variance = 1.0 / P + 0.25 / (P * R)
    balanced = cluster.two_way_cluster_batch(Y, layout).se[0] ** 2
    cgm = cluster.two_way_cluster_batch(Y, layout, correction="cgm").se[0] ** 2
    assert balanced.mean() == pytest.approx(true_variance, rel=0.03)
    assert cgm.mean() < 0.85 * true_variance


def test_preference_report_has_a_row_per_question_scope_and_method(study):
    report = iv.preference_report(study, ["two_way_cluster_t", "wilson"], B=200)
    assert len(report) == 2 * 12 * 2
    first = report.iloc[0]
    assert (first["question"], first["scope"], first["method"]) == ("fidelity", "overall", "two_way_cluster_t")
    assert set(report["tie_convention"]) == {"ties_half"}
    assert set(report["target"]) == {"prompts of the set, raters of the pool"}
    overall = report[(report["scope"] == "overall") & (report["method"] == "two_way_cluster_t")]
    assert (overall["low"] < overall["s"]).all() and (overall["s"] < overall["high"]).all()
    assert np.allclose(overall[["share_A", "share_tie", "share_B"]].sum(axis=1), 1.0)
    assert np.allclose(overall["s"], overall["share_A"] + overall["share_tie"] / 2)


def test_preference_report_flags_exactly_the_cells_whose_interval_is_wide(study):
    report = iv.preference_report(study, "two_way_cluster_t")
    half_width = (report["high"] - report["low"]) / 2
    expected = (half_width > core.LOW_PRECISION_HALF_WIDTH) | (report["df"] < core.LOW_PRECISION_MIN_DF)
    assert (report["low_precision"] == expected).all()
    assert not report.loc[report["scope"] == "overall", "low_precision"].any()


def test_report_records_b_and_seed_for_bootstraps_only(study):
    report = iv.preference_report(study, ["prompt_bootstrap", "two_way_cluster_t"], B=300, seed=9)
    boot = report[report["method"] == "prompt_bootstrap"]
    analytic = report[report["method"] == "two_way_cluster_t"]
    assert set(boot["B"]) == {300} and set(boot["seed"]) == {9}
    assert analytic["B"].isna().all() and analytic["seed"].isna().all()


def test_bootstrap_is_reproducible_with_its_seed_and_changes_with_another(study):
    part = study[study["question"] == "fidelity"]
    first = iv.preference_interval(part, "prompt_bootstrap", B=300, seed=1)
    again = iv.preference_interval(part, "prompt_bootstrap", B=300, seed=1)
    other = iv.preference_interval(part, "prompt_bootstrap", B=300, seed=2)
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)


def _small_layout(design):
    scenario = sim.Scenario(
        name="small", design=design, n_raters=12, ratings_per_prompt=4, categories=(("a", 5), ("b", 8))
    )
    layout = sim.scenario_layout(scenario, np.random.default_rng(1))
    choice, _ = sim.simulate_choices(scenario, layout, 20, np.random.default_rng(2))
    return layout, choice


@pytest.mark.parametrize("design", ["per_category", "few_raters", "random"])
def test_prompt_bootstrap_equals_a_naive_loop_over_the_same_resamples(design):
    layout, choice = _small_layout(design)
    Y = core.SCORE_OF_CHOICE[choice]
    B = 60
    result = bootstrap.prompt_bootstrap_batch(Y, layout, B=B, seed=7, level=0.9)
    weights = bootstrap.prompt_weights(layout, B, np.random.default_rng(7))
    replicates = []
    for b in range(B):
        # The naive way: repeat each drawn prompt's judgments as often as it was drawn.
        drawn = [np.flatnonzero(layout.prompt == p).repeat(int(weights[p, b])) for p in range(layout.n_prompts)]
        rows = np.concatenate(drawn)
        replicates.append(Y[rows].mean(axis=0))
    low, high = np.quantile(np.array(replicates), [0.05, 0.95], axis=0)
    np.testing.assert_allclose(result.low[0], low, atol=1e-12)
    np.testing.assert_allclose(result.high[0], high, atol=1e-12)


@pytest.mark.parametrize("design", ["per_category", "few_raters", "random"])
@pytest.mark.parametrize("columns", [3, 20])
def test_two_way_bootstrap_equals_a_naive_product_weight_loop(design, columns):
    # 3 columns take the dense-block path, 20 the product-weights-on-cells path.
    layout, choice = _small_layout(design)
    Y = core.SCORE_OF_CHOICE[choice][:, :columns]
    B = 60
    result = bootstrap.two_way_bootstrap_batch(Y, layout, B=B, seed=7, level=0.9)
    rng = np.random.default_rng(7)
    w_prompt, w_rater = bootstrap.prompt_weights(layout, B, rng), bootstrap.rater_weights(layout, B, rng)
    replicates = []
    for b in range(B):
        weight = w_prompt[layout.prompt, b] * w_rater[layout.rater, b]
        replicates.append(weight @ Y / weight.sum())
    low, high = np.quantile(np.array(replicates), [0.05, 0.95], axis=0)
    np.testing.assert_allclose(result.low[0], low, atol=1e-12)
    np.testing.assert_allclose(result.high[0], high, atol=1e-12)


def test_report_bootstraps_derive_s_and_b_from_the_same_resamples(study):
    # The report bootstraps A, tie and counts (packed exactly) and derives s and B; an s-only run must agree.
    part = study[study["question"] == "alignment"]
    report = iv.preference_report(part, "two_way_bootstrap", B=400, seed=3, by_category=False)
    direct = iv.preference_interval(part, "two_way_bootstrap", B=400, seed=3)
    assert report.loc[0, "low"] == pytest.approx(direct.low, abs=1e-12)
    assert report.loc[0, "high"] == pytest.approx(direct.high, abs=1e-12)


def test_bca_shifts_the_percentile_interval_towards_the_skew():
    # A skewed statistic: most prompts near 0, a few prompts all A. BCa moves the interval up relative to the
    # percentile interval (positive acceleration), the classic behaviour.
    rows = []
    for p in range(40):
        choice = "A" if p % 10 == 0 else ("tie" if p % 3 == 0 else "B")
        rows += [(p, "c", r, choice) for r in range(5)]
    frame = frame_of(rows)
    percentile = iv.preference_interval(frame, "prompt_bootstrap", B=4000, seed=1)
    bca = iv.preference_interval(frame, "prompt_bootstrap_bca", B=4000, seed=1)
    assert bca.low > percentile.low and bca.high > percentile.high


def test_permutation_p_value_matches_full_enumeration_of_label_flips():
    rng = np.random.default_rng(5)
    rows = [(p, "c", r, rng.choice(["A", "A", "tie", "B"])) for p in range(8) for r in range(3)]
    frame = frame_of(rows)
    y = frame["choice"].map({"A": 1.0, "tie": 0.5, "B": 0.0}) - 0.5
    totals = y.groupby(frame["prompt_id"]).sum().to_numpy()
    observed = abs(totals.sum())
    flips = np.array(list(itertools.product([-1, 1], repeat=8)))
    exact = np.mean(np.abs(flips @ totals) >= observed - 1e-9)
    test = iv.permutation_test(frame, B=40_000, seed=2)
    assert test.p_value == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / 40_000) + 1e-4)


def test_low_precision_flag_uses_the_half_width_and_the_degrees_of_freedom():
    assert iv.low_precision(0.4, 0.61, 30) and iv.low_precision(0.45, 0.55, 4.5)
    assert iv.low_precision(np.nan, np.nan, None)
    assert not iv.low_precision(0.4, 0.6, 30) and not iv.low_precision(0.4, 0.6, None)


def test_t_quantile_is_normal_for_infinite_df():
    assert iv.t_quantile(0.95, float("inf")) == pytest.approx(stats.norm.ppf(0.975))
    assert iv.t_quantile(0.95, 4) == pytest.approx(stats.t.ppf(0.975, 4))


def test_default_interval_of_a_single_rater_across_categories_is_the_stratified_prompt_cluster_interval():
    # One rater rated everything: no rater variance can be estimated, so the default falls back to the stratified
    # one-way prompt-cluster variance Σ_c n_c/(n_c − 1) Σ_p E_p² / N² (here one judgment per prompt).
    rng = np.random.default_rng(8)
    frame = frame_of([(p, "a" if p < 10 else "b", "only", rng.choice(["A", "tie", "B"])) for p in range(20)])
    result = iv.preference_interval(frame)
    y = frame["choice"].map({"A": 1.0, "tie": 0.5, "B": 0.0})
    residual = y - y.groupby(frame["category"]).transform("mean")
    variance = ((residual**2).groupby(frame["category"]).sum() * 10 / 9).sum() / 20**2
    assert result.se == pytest.approx(np.sqrt(variance), rel=1e-12)
    assert 0 < result.low < result.estimate < result.high < 1


@pytest.mark.parametrize("columns", [3, 20])
def test_two_way_bootstrap_bounds_rest_on_the_non_empty_resamples_of_a_sparse_design(columns):
    # Three prompts, each rated twice by its own rater: a resample whose drawn raters never rated its drawn prompts
    # holds no judgment. Its replicate is undefined and the bounds are the quantiles of the others.
    prompt = np.repeat(np.arange(3), 2)
    rater = np.repeat(np.arange(3), 2)
    layout = core.Layout(prompt=prompt, rater=rater, prompt_category=np.zeros(3, dtype=int), n_raters=3)
    Y = np.random.default_rng(3).choice([0.0, 0.5, 1.0], size=(6, columns))
    B = 400
    result = bootstrap.two_way_bootstrap_batch(Y, layout, B=B, seed=4, level=0.9)
    rng = np.random.default_rng(4)
    w_prompt, w_rater = bootstrap.prompt_weights(layout, B, rng), bootstrap.rater_weights(layout, B, rng)
    replicates = []
    for b in range(B):
        weight = w_prompt[prompt, b] * w_rater[rater, b]
        if weight.sum() > 0:
            replicates.append(weight @ Y / weight.sum())
    assert 0 < len(replicates) < B
    low, high = np.quantile(np.array(replicates), [0.05, 0.95], axis=0)
    # Where the quantiles coincide the bootstrap has no interval to give: undefined, not zero width.
    spread = high > low
    assert spread.any()
    np.testing.assert_allclose(result.low[0][spread], low[spread], atol=1e-12)
    np.testing.assert_allclose(result.high[0][spread], high[spread], atol=1e-12)
    assert np.isnan(result.low[0][~spread]).all() and np.isnan(result.high[0][~spread]).all()
    replicate_sd = np.array(replicates).std(axis=0, ddof=1)
    assert (np.isfinite(result.se[0]) == (replicate_sd > 0)).all()


@pytest.mark.parametrize("method", ["prompt_bootstrap", "prompt_bootstrap_bca", "two_way_bootstrap"])
@pytest.mark.parametrize("answer", [1.0, 0.5])
def test_a_bootstrap_without_variation_gives_no_interval_rather_than_a_zero_width_one(method, answer):
    prompt = np.repeat(np.arange(12), 3)
    layout = core.Layout(
        prompt=prompt, rater=np.tile(np.arange(3), 12), prompt_category=np.zeros(12, dtype=int), n_raters=3
    )
    result = iv.interval_batch(method, np.full(prompt.size, answer), layout, B=200, seed=1)
    assert np.isnan(result.low).all() and np.isnan(result.high).all() and np.isnan(result.se).all()
    assert iv.low_precision(result.low[0, 0], result.high[0, 0])  # flagged, never shown as sound


def test_prompt_bootstrap_bca_agrees_with_scipys_bca_on_one_stratum():
    # scipy.stats.bootstrap can resample clusters within strata (one sample of prompt indices per category), but
    # only one statistic per call: every scope of every study a call of its own. Ours draws once for all of them,
    # 4x faster for one DrawBench study's 12 scopes and 8x for 100 studies (bench/bca.py), and the simulator needs
    # the latter; bench/bca.py also shows the stratified bounds agree within Monte-Carlo error. On one stratum both
    # are BCa and agree to half a point (B = 20,000: their Monte-Carlo error is about 0.1 point; the rest is our
    # acceleration from the prompts' influence, theirs from a leave-one-prompt-out jackknife, and the mid-rank bias
    # correction for tied resamples).
    rng = np.random.default_rng(8)
    P = 60
    sizes = rng.integers(2, 9, size=P)
    prompt = np.repeat(np.arange(P), sizes)
    quality = rng.normal(0.3, 1.0, size=P)[prompt]
    y = (rng.random(prompt.size) < 1 / (1 + np.exp(-quality))).astype(float)
    layout = core.Layout(
        prompt=prompt, rater=np.arange(prompt.size), prompt_category=np.zeros(P, dtype=int), n_raters=prompt.size
    )
    ours = bootstrap.prompt_bootstrap_batch(y, layout, B=20000, seed=3, bca=True)
    sums, counts = np.bincount(prompt, weights=y), sizes.astype(float)
    theirs = stats.bootstrap(
        (sums, counts),
        lambda s, c, axis=-1: s.sum(axis=axis) / c.sum(axis=axis),
        paired=True,
        vectorized=True,
        method="BCa",
        n_resamples=20000,
        rng=np.random.default_rng(4),
    ).confidence_interval
    assert ours.low[0, 0] == pytest.approx(theirs.low, abs=0.005)
    assert ours.high[0, 0] == pytest.approx(theirs.high, abs=0.005)
