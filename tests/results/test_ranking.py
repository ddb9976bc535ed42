"""More than two models (drawbench.results.ranking): parameter recovery from simulated data with known truth,
the vectorised bootstrap refits against scipy, ranks from overlap, and the pairwise table."""

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from drawbench.results import ranking as rk
from drawbench.results import simulate as sim

STRENGTHS = {"imagen": 1.0, "parti": 0.6, "sd": 0.0, "dalle": -0.4}


def centred(strengths):
    mean = np.mean(list(strengths.values()))
    return {name: value - mean for name, value in strengths.items()}


@pytest.fixture(scope="module")
def bradley_terry_data():
    return sim.simulate_pairwise(STRENGTHS, model="bradley_terry", tie_share=0.2, n_prompts=200, seed=21)


@pytest.fixture(scope="module")
def davidson_data():
    return sim.simulate_pairwise(STRENGTHS, model="davidson", tie_parameter=0.7, n_prompts=200, seed=22)


def test_bradley_terry_recovers_known_strengths(bradley_terry_data):
    ranking = rk.model_ranking(bradley_terry_data, "bradley_terry", B=500)
    table = ranking.table.set_index("model")
    truth = centred(STRENGTHS)
    for name, value in truth.items():
        half_width = (table.loc[name, "high"] - table.loc[name, "low"]) / 2
        assert table.loc[name, "strength"] == pytest.approx(value, abs=2 * half_width)
    assert list(ranking.table["model"]) == ["imagen", "parti", "sd", "dalle"]
    assert list(ranking.table["rank"]) == [1, 2, 3, 4]
    assert ranking.converged_resamples == 500
    assert ranking.tie_parameter is None


def test_davidson_recovers_known_strengths_and_tie_parameter(davidson_data):
    ranking = rk.model_ranking(davidson_data, "davidson", B=500)
    table = ranking.table.set_index("model")
    for name, value in centred(STRENGTHS).items():
        half_width = (table.loc[name, "high"] - table.loc[name, "low"]) / 2
        assert table.loc[name, "strength"] == pytest.approx(value, abs=2 * half_width)
    assert ranking.tie_parameter_low < 0.7 < ranking.tie_parameter_high
    assert ranking.tie_parameter == pytest.approx(0.7, abs=0.08)


@pytest.mark.parametrize("model", ["bradley_terry", "davidson"])
def test_vectorised_newton_refit_equals_the_scipy_fit(davidson_data, model):
    folded = rk.pair_counts(davidson_data)
    jac = rk._design(folded.pairs, len(folded.models), model)
    outcomes = rk._outcome_counts(folded.counts.sum(axis=0), model)

    def negative(params):
        value, gradient, hessian = rk._loglik(params[None, :], outcomes[None], jac)
        return -value[0], -gradient[0]

    scipy_fit = optimize.minimize(negative, np.zeros(jac.shape[-1]), jac=True, method="BFGS", options={"gtol": 1e-8})
    # Start the batched Newton far from the optimum, on three copies of the data with different scales.
    batch = np.stack([outcomes, 2 * outcomes, 0.5 * outcomes])
    params, converged = rk._newton_batch(np.zeros((3, jac.shape[-1])), batch, jac)
    assert converged.all()
    for row in params:
        np.testing.assert_allclose(row, scipy_fit.x, atol=1e-6)


def test_fitted_score_of_a_pair_follows_the_data(bradley_terry_data):
    ranking = rk.model_ranking(bradley_terry_data, "bradley_terry", B=200)
    table = rk.pairwise_table(bradley_terry_data, rankings=(ranking,), B=200)
    row = table[(table["model_a"] == "dalle") & (table["model_b"] == "imagen")].iloc[0]
    assert row["low"] <= row["s_bradley_terry"] <= row["high"]
    assert row["s"] < 0.5


def test_ranks_come_from_interval_overlap():
    low = np.array([0.9, 0.5, 0.45, -1.0])
    high = np.array([1.1, 0.8, 0.95, -0.5])
    # Only the first model's interval lies wholly above the second's; the third overlaps the first and second.
    rank, best, worst = rk._ranks(low, high)
    assert list(rank) == [1, 2, 1, 4]
    assert list(best) == list(rank)
    assert list(worst) == [2, 3, 3, 4]


def test_pairwise_table_flips_judgments_stored_in_the_other_order():
    rows = [
        ("b", "a", "A", 1, "c", 1),  # b preferred: for the pair (a, b) that is a "B"
        ("a", "b", "A", 2, "c", 1),
        ("a", "b", "tie", 3, "c", 2),
        ("b", "a", "B", 4, "c", 2),  # a preferred
    ]
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "choice", "prompt_id", "category", "rater_id"])
    table = rk.pairwise_table(frame, method="wilson")
    row = table.iloc[0]
    assert (row["model_a"], row["model_b"]) == ("a", "b")
    assert (row["count_A"], row["count_tie"], row["count_B"]) == (2, 1, 1)
    assert row["s"] == pytest.approx(2.5 / 4)


def test_pair_counts_reject_a_model_against_itself():
    frame = pd.DataFrame([("a", "a", "A", 1, "c")], columns=["model_a", "model_b", "choice", "prompt_id", "category"])
    with pytest.raises(ValueError, match="model_a and model_b are the same model"):
        rk.pair_counts(frame)


def test_ranking_refuses_models_that_are_never_compared():
    rows = [("a", "b", "A", 1, "c"), ("c", "d", "B", 2, "c")]
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "choice", "prompt_id", "category"])
    with pytest.raises(ValueError, match="Models c, d are never compared, directly or not, with a"):
        rk.model_ranking(frame, B=10)


@pytest.mark.parametrize("model", ["bradley_terry", "davidson"])
def test_ranking_of_a_model_that_never_wins_or_ties_falls_back_to_the_penalised_fit_and_names_it(model):
    # c loses every judgment: its maximum-likelihood strength is minus infinity (perfect separation).
    rows = [("a", "b", choice, p, "c") for p, choice in enumerate(["A", "B", "tie", "A"])]
    rows += [(winner, "c", "A", p, "c") for winner in ("a", "b") for p in range(4)]
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "choice", "prompt_id", "category"])
    ranking = rk.model_ranking(frame, model, B=10)
    assert ranking.penalised
    assert "c never wins or ties, directly or through other models, against a" in ranking.penalty_reason
    assert list(ranking.table["model"])[-1] == "c" and np.isfinite(ranking.table[["low", "high"]]).all(axis=None)


def test_a_tie_lets_a_model_that_never_wins_be_ranked_by_bradley_terry():
    rows = [("a", "b", choice, p, "c") for p, choice in enumerate(["A", "B", "tie", "A"])]
    rows += [(winner, "c", "A", p, "c") for winner in ("a", "b") for p in range(4)] + [("a", "c", "tie", 9, "c")]
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "choice", "prompt_id", "category"])
    table = rk.model_ranking(frame, B=50).table
    assert list(table["model"])[-1] == "c" and np.isfinite(table["strength"]).all()


@pytest.mark.parametrize("choices", [["tie"] * 6, ["A", "B"] * 3])
def test_davidson_without_both_ties_and_decisive_judgments_is_penalised_and_says_why(choices):
    rows = [
        (a, b, choice, p, "c") for (a, b) in (("a", "b"), ("b", "c"), ("a", "c")) for p, choice in enumerate(choices)
    ]
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "choice", "prompt_id", "category"])
    ranking = rk.model_ranking(frame, "davidson", B=10)
    assert ranking.penalised and "needs both ties and decisive judgments" in ranking.penalty_reason
    assert 0 < ranking.tie_parameter < np.inf


def _null_frame(rng: np.random.Generator) -> pd.DataFrame:
    """Equal strengths on a random connected graph of 3-5 models: the data sets that broke the trust-exact fit."""
    k = int(rng.integers(3, 6))
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    while True:
        chosen = [pair for pair in pairs if rng.random() < 0.6]
        reached = {0}
        for _ in range(k):
            reached |= {m for pair in chosen if reached & set(pair) for m in pair}
        if len(reached) == k:
            break
    rows = []
    for i, j in chosen:
        n = int(rng.integers(5, 60))
        prompts = rng.integers(0, 30, size=n)
        for choice, prompt in zip(rng.choice(["A", "tie", "B"], size=n, p=[0.4, 0.2, 0.4]), prompts, strict=True):
            rows.append((f"m{i}", f"m{j}", choice, int(prompt), "X" if prompt < 15 else "Y"))
    return pd.DataFrame(rows, columns=["model_a", "model_b", "choice", "prompt_id", "category"])


@pytest.mark.slow
def test_a_thousand_random_null_data_sets_fit_without_a_single_failure():
    rng = np.random.default_rng(15)
    failures = []
    for index in range(1000):
        frame = _null_frame(rng)
        for model in ("bradley_terry", "davidson"):
            try:
                ranking = rk.model_ranking(frame, model, B=10, audit=False)
            except ValueError as exc:  # pragma: no cover - the failure this test exists to catch
                failures.append((index, model, str(exc)))
                continue
            folded = rk.pair_counts(frame)
            exists = rk._mle_exists(folded.counts.sum(axis=0)[None], folded.pairs, len(folded.models), model)[0]
            if ranking.penalised == exists or ranking.converged_resamples != 10:
                failures.append((index, model, ranking.penalised, ranking.converged_resamples))
    assert failures == []


@pytest.mark.parametrize("model", ["bradley_terry", "davidson"])
def test_the_null_counts_that_trust_exact_could_not_fit_have_a_converged_mle(model):
    # Issue 15's example: pairs (0, 1), (0, 2), (1, 2) with counts (first wins, ties, second wins).
    counts = {(0, 1): (16, 20, 12), (0, 2): (18, 11, 19), (1, 2): (15, 13, 20)}
    rows = []
    for (i, j), per_kind in counts.items():
        for choice, count in zip(("A", "tie", "B"), per_kind, strict=True):
            rows += [(f"m{i}", f"m{j}", choice, p, "c") for p in range(count)]
    frame = pd.DataFrame(rows, columns=["model_a", "model_b", "choice", "prompt_id", "category"])
    ranking = rk.model_ranking(frame, model, B=200)
    assert not ranking.penalised and ranking.converged_resamples == 200
    folded = rk.pair_counts(frame)
    jac = rk._design(folded.pairs, 3, model)
    outcomes = rk._outcome_counts(folded.counts.sum(axis=0), model)
    params, _ = rk._fit_one(outcomes, jac)
    _, gradient, _ = rk._loglik(params[None], outcomes[None], jac)
    assert np.abs(gradient).max() < 1e-8 * outcomes.sum()


def _issue_repro() -> pd.DataFrame:
    rows = []

    def add(a, b, c, p):
        rows.append(
            dict(model_a=a, model_b=b, choice=c, prompt_id=p, category="C" if p < 10 else "D", rater_id=f"r{p % 3}")
        )

    for p in range(20):
        add("a", "b", "A" if p % 2 else "B", p)
        add("a", "c", "A", p)
        add("b", "c", "A", p)
    add("c", "a", "A", 0)
    add("c", "b", "tie", 1)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("model", ["bradley_terry", "davidson"])
def test_interval_ends_come_from_fits_never_from_an_iteration_cap(model):
    # Issue 15's repro: resamples that drop prompt 0 (c's only win) or prompt 1 have no finite MLE. They are refitted
    # penalised; every interval end is then one of the B fitted values of a converged fit.
    frame = _issue_repro()
    ranking = rk.model_ranking(frame, model, B=2000)
    assert ranking.converged_resamples == 2000
    assert 0 < ranking.separated_resamples < 2000
    table = ranking.table.set_index("model")
    assert table.loc["c", "low"] > -6 and max(table.loc["a", "high"], table.loc["b", "high"]) < 4
    assert list(table["tier"]) == [1, 1, 2]


def test_fragility_audit_counts_are_confirmed_by_refitting_the_frame_without_them():
    frame = _issue_repro()
    ranking = rk.model_ranking(frame, "bradley_terry", B=50)
    audit = ranking.fragility.set_index(["audit", "model_above", "model_below"])
    row = audit.loc[("adjacent", "b", "a")]
    # b leads a by one decisive judgment (10 b wins against 10 a wins, plus the tie against c): one removal flips.
    assert row["n_to_flip"] == 1 and row["removed"] == "1 × b over a"
    drop = frame.index[(frame["model_a"] == "a") & (frame["model_b"] == "b") & (frame["choice"] == "B")][:1]
    refit = rk.model_ranking(frame.drop(index=drop), "bradley_terry", B=10, audit=False).table
    assert list(refit["model"])[:2] == ["a", "b"]
    far = audit.loc[("adjacent", "a", "c")]
    assert far["n_to_flip"] > 10 * row["n_to_flip"]
    assert rk.winner_fragility(ranking.fragility)["n_to_flip"] == 1


def _frame_of_counts(counts: dict[tuple[str, str], tuple[int, int, int]]) -> pd.DataFrame:
    """(first wins, ties, second wins) per pair, one prompt per judgment."""
    rows, prompt = [], 0
    for (a, b), per_kind in counts.items():
        for choice, count in zip(("A", "tie", "B"), per_kind, strict=True):
            for _ in range(count):
                rows.append((a, b, choice, prompt, "c"))
                prompt += 1
    return pd.DataFrame(rows, columns=["model_a", "model_b", "choice", "prompt_id", "category"])


def test_davidson_whose_decisive_judgments_never_contradict_has_no_finite_fit_and_says_so():
    # Wins one way beside ties on every pair with decisive judgments: ν and the gaps can grow together, so the
    # likelihood only approaches its saturated value (a fit "converged" there with ν = 7.6e9 and strengths ±43).
    frame = _frame_of_counts({("m0", "m2"): (0, 2, 0), ("m0", "m3"): (1, 3, 0), ("m1", "m2"): (1, 3, 0)})
    ranking = rk.model_ranking(frame, "davidson", B=200)
    assert ranking.penalised and "decisive judgments both ways" in ranking.penalty_reason
    assert ranking.tie_parameter < 100 and np.abs(ranking.table[["strength", "low", "high"]]).max(axis=None) < 10
    # One contradicting pair (wins both ways) or a cycle of one-way wins makes the maximum finite again.
    assert not rk.model_ranking(_frame_of_counts({("a", "b"): (5, 3, 1)}), "davidson", B=20).penalised
    cycle = {("a", "b"): (2, 1, 0), ("b", "c"): (2, 0, 0), ("c", "a"): (2, 0, 0)}
    assert not rk.model_ranking(_frame_of_counts(cycle), "davidson", B=20).penalised


@pytest.mark.parametrize("model", ["bradley_terry", "davidson"])
def test_mle_exists_exactly_where_the_unpenalised_fit_stays_finite(model):
    """_mle_exists against the likelihood itself on 600 small random data sets (2-4 models, 0-4 judgments of each
    kind per pair): where it says a finite maximum exists, Newton converges to modest strengths; where it says not,
    the log-likelihood climbs to within 1e-6 of its saturated value (every pair's observed shares), which no finite
    parameters reach when some pair's shares are not those of the model's family."""
    rng = np.random.default_rng(3)
    disagreements = []
    for index in range(600):
        k = int(rng.integers(2, 5))
        pairs = np.array([(i, j) for i in range(k) for j in range(i + 1, k)])
        totals = rng.integers(0, 5, size=(len(pairs), 3)) * (rng.random((len(pairs), 3)) < 0.5)
        keep = totals.sum(axis=1) > 0
        pairs, totals = pairs[keep], totals[keep]
        if len(pairs) == 0 or not np.isin(np.arange(k), pairs).all():
            continue
        exists = rk._mle_exists(totals[None].astype(float), pairs, k, model)[0]
        if not rk._reach(totals[None], pairs, k)[0].all():
            continue  # perfect separation: covered by the tests above
        jac = rk._design(pairs, k, model)
        outcomes = rk._outcome_counts(totals.astype(float), model)
        params, converged = rk._newton_batch(np.zeros((1, jac.shape[-1])), outcomes[None], jac, max_iter=400)
        value, _, _ = rk._loglik(params, outcomes[None], jac, derivatives=False)
        shares = outcomes / outcomes.sum(axis=1, keepdims=True)
        saturated = float((outcomes * np.log(np.where(outcomes > 0, shares, 1.0))).sum())
        finite = bool(converged[0]) and np.abs(params).max() < 15
        if exists != finite:
            disagreements.append((index, totals.tolist(), exists, finite, float(value[0]) - saturated))
    assert disagreements == []


def test_models_with_identical_records_share_rank_and_tier():
    ranking = rk.model_ranking(_frame_of_counts({("a", "b"): (0, 10, 0)}), "davidson", B=50)
    assert ranking.penalised  # all ties: no decisive judgment for ν
    assert set(ranking.table["rank"]) == {1} and set(ranking.table["tier"]) == {1}
    assert (ranking.fragility["n_to_flip"] == 0).all()
