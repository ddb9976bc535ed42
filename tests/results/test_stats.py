"""The results table (drawbench.results.stats): counts, shares, s and their intervals by a named method with its
metadata, agreement and position bias per scope, Wilson as the reference, pair orientation."""

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, t

from drawbench.results import stats


def judgments(choices: str, **columns) -> pd.DataFrame:
    """A frame from a compact string: "AAT B" → A, A, tie, B (spaces ignored)."""
    mapping = {"A": "A", "T": "tie", "B": "B"}
    frame = pd.DataFrame({"choice": [mapping[c] for c in choices.replace(" ", "")]})
    for name, value in columns.items():
        frame[name] = value
    return frame


@pytest.mark.parametrize(("successes", "n"), [(8, 12), (0, 10), (10, 10), (81, 263), (1, 2), (37, 40), (500, 1000)])
def test_wilson_interval_matches_scipy_binomtest(successes, n):
    expected = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = stats.wilson_interval(successes, n)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I: 81/263 → 0.2553 to 0.3662; 0/10 → 0 to 0.2775.
    assert [round(x, 4) for x in stats.wilson_interval(81, 263)] == [0.2553, 0.3662]
    assert [round(x, 4) for x in stats.wilson_interval(0, 10)] == [0.0, 0.2775]


def test_wilson_interval_with_a_fractional_score_solves_the_wilson_equation():
    # The Wilson bounds are the two roots p of (p̂ − p)² = z²·p(1 − p)/n; check them for p̂ = 7.5 / 12.
    n, successes = 12, 7.5
    z = NormalDist().inv_cdf(0.975)
    p_hat = successes / n
    low, high = stats.wilson_interval(successes, n)
    for p in (low, high):
        assert (p_hat - p) ** 2 == pytest.approx(z * z * p * (1 - p) / n, rel=1e-12)
    assert low < p_hat < high


def test_wilson_interval_narrows_with_a_lower_confidence():
    low_95, high_95 = stats.wilson_interval(8, 12, confidence=0.95)
    low_80, high_80 = stats.wilson_interval(8, 12, confidence=0.80)
    expected = binomtest(8, 12).proportion_ci(confidence_level=0.80, method="wilson")
    assert (low_80, high_80) == pytest.approx((expected.low, expected.high), abs=1e-12)
    assert low_95 < low_80 and high_80 < high_95


@pytest.mark.parametrize(
    ("successes", "n", "message"),
    [(1, 0, "at least one observation"), (5, 4, "0 <= successes <= n"), (-1, 4, "0 <= successes <= n")],
)
def test_wilson_interval_rejects_impossible_counts(successes, n, message):
    with pytest.raises(ValueError, match=message):
        stats.wilson_interval(successes, n)


def study_frame(choices: str, **columns) -> pd.DataFrame:
    """One question, one pair of models, one category: ``judgments`` plus the columns a results table needs."""
    defaults = {"question": "fidelity", "model_a": "x@1", "model_b": "y@1", "category": "Colors"}
    return judgments(choices, **{**defaults, **columns})


def only_row(frame: pd.DataFrame, **options) -> dict:
    rows = stats.preference_table(frame, **options)
    assert [row["scope"] for row in rows] == ["overall", "category"]
    return rows[0]


def test_preference_table_of_seven_a_two_ties_three_b_counts_ties_as_half():
    row = only_row(study_frame("AAAAAAA TT BBB", prompt_id=range(12), rater_id=range(12)))
    assert (row["n"], row["count_a"], row["count_tie"], row["count_b"]) == (12, 7, 2, 3)
    assert (row["share_a"], row["share_tie"], row["share_b"]) == (7 / 12, 2 / 12, 3 / 12)
    assert row["score"] == (7 + 1) / 12
    assert row["decisive_win_rate"] == 7 / 10
    assert row["tie_convention"] == "ties_half"
    assert (row["n_prompts"], row["n_raters"]) == (12, 12)


def test_default_interval_of_independent_judgments_is_the_score_interval_on_the_t_statistic_of_the_mean_score():
    # Every judgment on its own prompt by its own rater: the two-way cluster-robust variance reduces to the sample
    # variance of the scores over n and its degrees of freedom to n − 1. The default interval is the score interval
    # on the effective n = s(1 − s)/SE²: the s whose t statistic, with that SE rescaled to s, is within t₁₁.
    frame = study_frame("AAAAAAA TT BBB", prompt_id=range(12), rater_id=range(12))
    row = only_row(frame)
    scores = frame["choice"].map({"A": 1.0, "tie": 0.5, "B": 0.0})
    se = scores.std(ddof=1) / math.sqrt(12)
    s = scores.mean()
    # The floor on SE² (the judgments' own variance over n, were they independent) is SE² itself here: with ties the
    # scores vary less than 0/1 answers, so n_eff exceeds n on the s(1 − s) scale and nothing caps it at n.
    n_eff = s * (1 - s) / se**2
    assert n_eff > 12
    quantile = t.ppf(0.975, 11)
    for bound in (row["ci_low"], row["ci_high"]):
        assert abs(bound - s) == pytest.approx(quantile * math.sqrt(bound * (1 - bound) / n_eff), rel=1e-9)
    assert row["ci_low"] < s < row["ci_high"]
    assert (row["se"], row["df"], row["n_eff"]) == pytest.approx((se, 11, n_eff))
    assert (row["method"], row["level"], row["B"], row["seed"]) == ("two_way_cluster_t", 0.95, None, None)
    assert row["target"] == "prompts of the set, raters of the pool"


def test_wilson_stays_available_as_the_reference_for_independent_judgments():
    row = only_row(study_frame("AAAAAAA TT BBB", prompt_id=range(12), rater_id="r1"), method="wilson")
    expected = binomtest(8, 12).proportion_ci(method="wilson")
    assert row["method"] == "wilson"
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.low, expected.high), abs=1e-12)
    for share, count in (("share_a", 7), ("share_tie", 2), ("share_b", 3)):
        expected_share = binomtest(count, 12).proportion_ci(method="wilson")
        assert (row[f"{share}_ci_low"], row[f"{share}_ci_high"]) == pytest.approx(
            (expected_share.low, expected_share.high), abs=1e-12
        )


def test_clustered_default_is_wider_than_wilson_when_prompts_carry_the_preference():
    # Five prompts, each answered identically by its four raters: the information is five prompts, not 20 judgments.
    frame = study_frame(
        "AAAA BBBB AAAA AAAA TTTT", prompt_id=[p for p in range(5) for _ in range(4)], rater_id=list(range(4)) * 5
    )
    default = only_row(frame)
    wilson = only_row(frame, method="wilson")
    assert default["score"] == wilson["score"] == (12 + 2) / 20
    # Four judgments per prompt that always agree carry one prompt's information: the effective n is the 5 prompts,
    # scaled by s(1 − s) over the prompts' score variance (ties make it smaller than s(1 − s)), not 20 judgments.
    prompt_scores = np.array([1.0, 0.0, 1.0, 1.0, 0.5])
    assert default["n_eff"] == pytest.approx(5 * 0.7 * 0.3 / prompt_scores.var(ddof=1))
    assert default["ci_high"] - default["ci_low"] > 1.5 * (wilson["ci_high"] - wilson["ci_low"])


@pytest.mark.parametrize("method", ["prompt_bootstrap", "prompt_bootstrap_bca", "two_way_bootstrap"])
def test_bootstrap_rows_record_their_resamples_and_seed_and_interval_the_shares_too(method):
    frame = study_frame("AATB" * 10, prompt_id=[p // 2 for p in range(40)], rater_id=[r % 4 for r in range(40)])
    row = only_row(frame, method=method, B=300, seed=9)
    assert (row["method"], row["B"], row["seed"], row["level"]) == (method, 300, 9, 0.95)
    assert row["ci_low"] <= row["score"] <= row["ci_high"]
    for share in ("share_a", "share_tie", "share_b"):
        assert row[f"{share}_ci_low"] <= row[share] <= row[f"{share}_ci_high"]
    assert only_row(frame, method=method, B=300, seed=9)["ci_low"] == row["ci_low"]


def test_precision_flag_reads_the_interval_not_the_number_of_prompts():
    def row_of(n_prompts: int, n_raters: int, pattern: str) -> dict:
        n = n_prompts * n_raters
        frame = study_frame(
            (pattern * n)[:n], prompt_id=[i // n_raters for i in range(n)], rater_id=[i % n_raters for i in range(n)]
        )
        return only_row(frame)

    # 30 prompts that agree within themselves (all judgments of a prompt alike): wide, flagged.
    wide = row_of(30, 10, "A" * 10 + "B" * 10)
    assert wide["low_precision"] is True and (wide["ci_high"] - wide["ci_low"]) / 2 > 0.10
    # 30 prompts with the preference spread evenly over them: narrow and sound, though under 40 prompts.
    sound = row_of(30, 10, "AABABAB")
    assert sound["low_precision"] is False and (sound["ci_high"] - sound["ci_low"]) / 2 < 0.10
    # Three raters: under 5 degrees of freedom, flagged whatever the width.
    few = row_of(60, 3, "AAB")
    assert few["df"] < 5 and few["low_precision"] is True


def test_preference_table_without_decisive_judgments_has_no_decisive_win_rate():
    row = only_row(study_frame("TTTT", prompt_id=[1, 1, 2, 2], rater_id=[1, 2, 1, 2]))
    assert row["score"] == 0.5
    assert row["decisive_win_rate"] is None


def test_preference_table_reports_no_interval_where_a_scope_rests_on_one_prompt():
    row = only_row(study_frame("AAB", prompt_id=1, rater_id=[1, 2, 3]))
    assert row["score"] == 2 / 3
    assert row["ci_low"] is None and row["ci_high"] is None


def test_preference_table_rejects_an_unknown_interval_method_naming_the_known_ones():
    with pytest.raises(ValueError, match="Unknown interval method 'bca'.*two_way_cluster_t.*wilson"):
        stats.preference_table(study_frame("AB", prompt_id=1, rater_id=1), method="bca")


def test_preference_table_rejects_choices_outside_model_space():
    frame = study_frame("AB", prompt_id=[1, 2], rater_id=1)
    frame.loc[1, "choice"] = "left"
    with pytest.raises(ValueError, match="'left'"):
        stats.preference_table(frame)


def test_preference_table_reports_agreement_and_position_bias_of_each_scope():
    # Two prompts, three raters each: prompt 1 all A, prompt 2 two B and a tie. Raw agreement: agreeing pairs
    # within a prompt (3 + 1) over all pairs within a prompt (3 + 3). Sides: judgments 1, 2, 4, 6 had A on the
    # left; of the five decisive ones (A, A, A, B, B) the left set was chosen in judgments 1, 2 and 5.
    frame = study_frame("AAA BBT", prompt_id=[1, 1, 1, 2, 2, 2], rater_id=[1, 2, 3, 1, 2, 3])
    frame["model_left"] = ["x@1", "x@1", "y@1", "x@1", "y@1", "x@1"]
    row = only_row(frame)
    assert row["raw_agreement"] == pytest.approx((3 + 1) / (3 + 3))
    assert row["agreement_units"] == 2
    assert row["n_decisive"] == 5
    assert row["left_rate"] == pytest.approx(3 / 5)
    assert row["left_rate_method"] == "two_way_cluster_t"
    assert row["alpha_nominal"] is not None and row["alpha_ordinal"] is not None


def test_pairs_orient_flips_judgments_of_the_minority_orientation():
    frame = pd.DataFrame(
        {
            "model_a": ["x@1", "x@1", "y@1"],
            "model_b": ["y@1", "y@1", "x@1"],
            "choice": ["A", "tie", "A"],
        }
    )
    oriented = stats.pairs_orient(frame)
    assert list(oriented["model_a"]) == ["x@1"] * 3
    assert list(oriented["model_b"]) == ["y@1"] * 3
    assert list(oriented["choice"]) == ["A", "tie", "B"]


def test_pairs_orient_keeps_a_single_orientation_even_against_name_order():
    frame = pd.DataFrame({"model_a": ["zeta@1", "zeta@1"], "model_b": ["alpha@1", "alpha@1"], "choice": ["A", "B"]})
    oriented = stats.pairs_orient(frame)
    assert list(oriented["model_a"]) == ["zeta@1", "zeta@1"]
    assert list(oriented["choice"]) == ["A", "B"]


def table_frame() -> pd.DataFrame:
    rows = []
    # Counting comes first in prompt order although it sorts after Colors by name.
    for question, category, position, choices in [
        ("alignment", "Counting", 1, "AAB"),
        ("alignment", "Colors", 5, "TT"),
        ("fidelity", "Counting", 1, "B"),
        ("fidelity", "Colors", 5, "AT"),
    ]:
        for choice in choices:
            rows.append(
                {
                    "question": question,
                    "category": category,
                    "prompt_id": position,
                    "prompt_position": position,
                    "rater_id": "r",
                    "model_a": "x@1",
                    "model_b": "y@1",
                    "choice": {"A": "A", "T": "tie", "B": "B"}[choice],
                }
            )
    return pd.DataFrame(rows)


def test_preference_table_lists_overall_then_categories_in_prompt_order_for_each_question_in_study_order():
    rows = stats.preference_table(table_frame(), questions=["fidelity", "alignment"])
    keys = [(row["question"], row["scope"], row["category"]) for row in rows]
    assert keys == [
        ("fidelity", "overall", None),
        ("fidelity", "category", "Counting"),
        ("fidelity", "category", "Colors"),
        ("alignment", "overall", None),
        ("alignment", "category", "Counting"),
        ("alignment", "category", "Colors"),
    ]
    fidelity = rows[0]
    assert (fidelity["n"], fidelity["count_a"], fidelity["count_tie"], fidelity["count_b"]) == (3, 1, 1, 1)
    assert fidelity["score"] == 1.5 / 3
    assert all(row["method"] == "two_way_cluster_t" and row["tie_convention"] == "ties_half" for row in rows)
    assert all(row["low_precision"] for row in rows)


def test_preference_table_of_an_empty_frame_is_empty():
    assert stats.preference_table(table_frame().iloc[0:0]) == []


def test_shares_of_every_row_sum_to_one():
    for row in stats.preference_table(table_frame()):
        assert math.isclose(row["share_a"] + row["share_tie"] + row["share_b"], 1.0)


@pytest.mark.parametrize("choices", ["AAAA AAAA AAAA", "TTTT TTTT TTTT", "AAAA BBBB"])
def test_boundary_studies_get_an_interval_of_positive_width_and_an_undefined_standard_error(choices):
    # All A, all ties, and a split where each prompt is unanimous and raters differ in nothing: no variation within
    # the clusters the variance is estimated from (SE 0 or undefined), yet the interval is never zero width.
    n = len(choices.replace(" ", ""))
    frame = study_frame(choices, prompt_id=[p // 4 for p in range(n)], rater_id=[p % 4 for p in range(n)])
    row = only_row(frame)
    assert row["ci_low"] < row["ci_high"]
    assert row["ci_low"] <= row["score"] <= row["ci_high"]
    if choices[0] != "T" and set(choices) != {"A", "B", " "}:
        assert row["ci_high"] == 1.0
    if len(set(choices.replace(" ", ""))) == 1:
        assert row["se"] is None
