"""More than two models: Bradley–Terry (ties as half) and Davidson (1970) by maximum likelihood, with the
prompt-cluster bootstrap for intervals, ranks from interval overlap, and the pairwise table (DESIGN.md §4).

Both models are multinomial logits on each pair (i, j) of evaluated models, with strengths β (log π):

- Bradley–Terry, ties as half: outcomes (i, j) with logits (β_i, β_j) and counts (wins_i + ½·ties, wins_j + ½·ties),
  so P(i ≻ j) = σ(β_i − β_j) and E[y] = P(A) + ½·P(tie) is modelled directly.
- Davidson: outcomes (i, j, tie) with logits (β_i, β_j, log ν + (β_i + β_j)/2), i.e.
  P(i ≻ j) = π_i / (π_i + π_j + ν·sqrt(π_i·π_j)) and P(tie) = ν·sqrt(π_i·π_j) / (same).

The log-likelihood is concave in (β, log ν), strictly where a finite maximum exists (Zermelo's condition, checked
exactly by ``_mle_exists``): the point estimate and the B bootstrap refits run as one vectorised Newton iteration
with a backtracking line search (``_newton_batch``), never a Python loop per resample, and converge wherever that
maximum exists. Data or resamples without one get the penalised fit (``_penalised``: one virtual judgment per pair),
and the page says so. The first model's strength is fixed at 0 while fitting; results are reported sum-to-zero.
Tiers and a fragility audit (``fragility_audit``) say how robust the order is.

Input: a judgments frame with ``model_a``, ``model_b``, ``choice`` (model space), ``prompt_id``, ``category``;
``rater_id`` too for the pairwise table's intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import special

from drawbench.results.intervals import DEFAULT_METHOD, Method, preference_interval
from drawbench.results.intervals.bootstrap import prompt_weights
from drawbench.results.intervals.core import (
    DEFAULT_B,
    DEFAULT_LEVEL,
    DEFAULT_SEED,
    TARGET_POPULATION,
    TIE_CONVENTION,
    Layout,
    choice_codes,
)

PairModel = Literal["bradley_terry", "davidson"]


@dataclass(frozen=True)
class PairCounts:
    """Judgments folded to pairs (i < j by model index): counts (prompts, pairs, 3) of i wins, ties, j wins."""

    models: tuple[str, ...]
    pairs: np.ndarray  # (n_pairs, 2) model indices, i < j
    counts: np.ndarray  # (P, n_pairs, 3)
    prompt_category: np.ndarray  # (P,)


def pair_counts(frame: pd.DataFrame) -> PairCounts:
    """Fold a judgments frame into per-prompt counts per unordered pair of models."""
    missing = [c for c in ("model_a", "model_b", "choice", "prompt_id", "category") if c not in frame.columns]
    if missing:
        raise ValueError(f"Judgments frame lacks column(s) {', '.join(missing)} needed for a ranking.")
    same = (frame["model_a"] == frame["model_b"]).to_numpy()
    if same.any():
        row = frame.index[same][0]
        raise ValueError(f"Row {row!r}: model_a and model_b are the same model ({frame['model_a'].loc[row]!r}).")
    models = np.array(sorted(set(frame["model_a"]) | set(frame["model_b"])), dtype=object)
    if models.size < 2:
        raise ValueError("A ranking needs at least two models.")
    a = np.searchsorted(models, frame["model_a"].to_numpy(dtype=object))
    b = np.searchsorted(models, frame["model_b"].to_numpy(dtype=object))
    choice = choice_codes(frame["choice"])
    swapped = a > b
    low, high = np.minimum(a, b), np.maximum(a, b)
    # In the pair's own orientation (low model first), a choice of "A" for a swapped row is a win for the high one.
    outcome = np.where(swapped & (choice != 1), 2 - choice, choice)
    pair_key = low * models.size + high
    pair_codes, pair_keys = pd.factorize(pair_key, sort=True)
    pairs = np.column_stack([pair_keys // models.size, pair_keys % models.size])
    category_codes, _ = pd.factorize(frame["category"], sort=True)
    prompt_codes, _ = pd.factorize(frame["prompt_id"])
    n_prompts = int(prompt_codes.max()) + 1
    prompt_category = np.zeros(n_prompts, dtype=np.intp)
    prompt_category[prompt_codes] = category_codes
    order = np.argsort(prompt_category, kind="stable")
    renumber = np.empty_like(order)
    renumber[order] = np.arange(order.size)
    prompt = renumber[prompt_codes]
    flat = (prompt * pairs.shape[0] + pair_codes) * 3 + outcome
    counts = np.bincount(flat, minlength=n_prompts * pairs.shape[0] * 3).reshape(n_prompts, pairs.shape[0], 3)
    return PairCounts(
        models=tuple(str(m) for m in models),
        pairs=pairs,
        counts=counts.astype(float),
        prompt_category=prompt_category[order],
    )


def _design(pairs: np.ndarray, n_models: int, model: PairModel) -> np.ndarray:
    """(n_pairs, outcomes, parameters) Jacobian from the free parameters to each pair's logits.

    Free parameters: β_1..β_{K−1} (β_0 = 0), then log ν for Davidson.
    """
    n_pairs = pairs.shape[0]
    n_out = 2 if model == "bradley_terry" else 3
    n_par = n_models - 1 + (model == "davidson")
    jac = np.zeros((n_pairs, n_out, n_models + 1))
    rows = np.arange(n_pairs)
    jac[rows, 0, pairs[:, 0]] = 1.0
    jac[rows, 1, pairs[:, 1]] = 1.0
    if model == "davidson":
        jac[rows, 2, pairs[:, 0]] = 0.5
        jac[rows, 2, pairs[:, 1]] = 0.5
        jac[:, 2, n_models] = 1.0
    return jac[:, :, 1 : 1 + n_par]


def _outcome_counts(counts: np.ndarray, model: PairModel) -> np.ndarray:
    """(..., n_pairs, outcomes): Bradley–Terry splits ties half to each side."""
    if model == "bradley_terry":
        half = 0.5 * counts[..., 1]
        return np.stack([counts[..., 0] + half, counts[..., 2] + half], axis=-1)
    return counts[..., [0, 2, 1]]


def _loglik(params: np.ndarray, outcomes: np.ndarray, jac: np.ndarray, derivatives: bool = True):
    """Log-likelihood (batch,), gradient (batch, q) and Hessian (batch, q, q) for params (batch, q)."""
    logits = np.einsum("poq,bq->bpo", jac, params)
    log_norm = special.logsumexp(logits, axis=-1, keepdims=True)
    totals = outcomes.sum(axis=-1, keepdims=True)
    value = (outcomes * (logits - log_norm)).sum(axis=(1, 2))
    if not derivatives:
        return value, None, None
    prob = np.exp(logits - log_norm)
    gradient = np.einsum("bpo,poq->bq", outcomes - totals * prob, jac)
    # −n·(diag p − p pᵀ) per pair, mapped through the Jacobian.
    weighted = totals * prob
    jp = np.einsum("bpo,poq->bpq", prob, jac)
    hessian = -np.einsum("bpo,poq,por->bqr", weighted, jac, jac) + np.einsum("bp,bpq,bpr->bqr", totals[..., 0], jp, jp)
    return value, gradient, hessian


def _newton_batch(
    start: np.ndarray, outcomes: np.ndarray, jac: np.ndarray, max_iter: int = 200, tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray]:
    """Maximise every resample's log-likelihood at once: Newton with a backtracking line search on a concave
    objective. Returns (params, converged): converged where the gradient per judgment fell below ``tol``.

    Where a finite maximum exists (``_mle_exists``) the log-likelihood is strictly concave on the free parameters,
    so Newton's direction always ascends and the line search makes it converge, quadratically near the optimum.
    """
    params = start.astype(float).copy()
    value, gradient, hessian = _loglik(params, outcomes, jac)
    scale_per_judgment = 1.0 / np.maximum(outcomes.sum(axis=(1, 2)), 1e-300)
    converged = np.abs(gradient).max(axis=1) * scale_per_judgment <= tol
    ridge = 1e-12 * np.eye(params.shape[1])
    for _ in range(max_iter):
        active = np.flatnonzero(~converged)
        if active.size == 0:
            break
        step = np.linalg.solve(-(hessian[active] - ridge), gradient[active][..., None])[..., 0]
        scale = np.ones(active.size)
        for _ in range(60):
            trial = params[active] + scale[:, None] * step
            trial_value, _, _ = _loglik(trial, outcomes[active], jac, derivatives=False)
            worse = trial_value < value[active] - 1e-13 * np.abs(value[active])
            if not worse.any():
                break
            scale = np.where(worse, scale / 2, scale)
        params[active] = params[active] + scale[:, None] * step
        value[active], gradient[active], hessian[active] = _loglik(params[active], outcomes[active], jac)
        small_gradient = np.abs(gradient[active]).max(axis=1) * scale_per_judgment[active] <= tol
        # A step too small to change anything in float64 is a converged step too (the gradient is then at its floor).
        stalled = np.abs(scale[:, None] * step).max(axis=1) <= 1e-14 * (1 + np.abs(params[active]).max(axis=1))
        converged[active] = small_gradient | stalled
    return params, converged


def _mle_exists(totals: np.ndarray, pairs: np.ndarray, n_models: int, model: PairModel) -> np.ndarray:
    """(batch,) whether the maximum-likelihood estimate is finite, for pair totals (batch, pairs, 3) of i wins, ties,
    j wins: Zermelo's condition (every model reaches every other by "scored against" steps, a tie counting both
    ways), and for Davidson at least one tie and ``_davidson_unbounded`` false.

    Both models are multinomial logits, whose maximum is finite exactly when no direction of the parameters raises
    every observed outcome's logit against the others' (no separation: Albert & Anderson 1984)."""
    reach = _reach(totals, pairs, n_models)
    exists = reach.all(axis=(1, 2))
    if model == "davidson":
        exists &= (totals[..., 1].sum(axis=1) > 0) & ~_davidson_unbounded(totals, pairs, n_models)
    return exists


def _davidson_unbounded(totals: np.ndarray, pairs: np.ndarray, n_models: int) -> np.ndarray:
    """(batch,) whether Davidson's likelihood rises without bound along a direction with log ν growing.

    Relative to a tie, a win of i over j has logit (β_i − β_j)/2 − log ν. Raise log ν by ½ and move the strengths
    by x: every observed outcome's logit gains on the others' exactly when, per pair (Δ = x_i − x_j), a win of i
    gives Δ ≥ 1, a win of j gives Δ ≤ −1 and a tie gives |Δ| ≤ 1. Such x exists iff this system of difference
    constraints has no negative cycle (Bellman 1958): a cycle of pairs whose decisive judgments contradict each
    other (at its simplest, one pair with wins both ways). Without one, ν and the strength gaps grow together and
    the fit only approaches the saturated likelihood (e.g. pairs with wins one way and ties beside them)."""
    batch = totals.shape[0]
    # weight[i, j]: the bound w in x_j − x_i ≤ w (an edge i → j); a win of i gives −1, a tie +1, nothing ∞.
    weight = np.full((batch, n_models, n_models), np.inf)
    i, j = pairs[:, 0], pairs[:, 1]
    ties = totals[..., 1] > 0
    weight[:, i, j] = np.where(totals[..., 0] > 0, -1.0, np.where(ties, 1.0, np.inf))
    weight[:, j, i] = np.where(totals[..., 2] > 0, -1.0, np.where(ties, 1.0, np.inf))
    distance = np.minimum(weight, np.where(np.eye(n_models, dtype=bool), 0.0, np.inf))
    for k in range(n_models):  # Floyd–Warshall, every resample at once
        distance = np.minimum(distance, distance[:, :, k, None] + distance[:, None, k, :])
    negative_cycle = (np.diagonal(distance, axis1=1, axis2=2) < 0).any(axis=1)
    return ~negative_cycle


# The penalised fit (stated on the page): one virtual judgment per compared pair, spread evenly over its outcomes
# (Bradley–Terry: half a win each way, i.e. one virtual tie; Davidson: a third each of win, tie, loss). It makes
# every estimate finite and moves a fit with a finite maximum by O(1/n) per pair.
VIRTUAL_JUDGMENTS_PER_PAIR = 1.0


def _penalised(outcomes: np.ndarray) -> np.ndarray:
    """Outcome counts (..., pairs, outcomes) with the virtual judgments added to every pair."""
    return outcomes + VIRTUAL_JUDGMENTS_PER_PAIR / outcomes.shape[-1]


def _fit_one(outcomes: np.ndarray, jac: np.ndarray) -> tuple[np.ndarray, bool]:
    """Maximum likelihood of one data set (pairs, outcomes) by ``_newton_batch`` from zero: (params, converged)."""
    params, converged = _newton_batch(np.zeros((1, jac.shape[-1])), outcomes[None], jac)
    return params[0], bool(converged[0])


@dataclass(frozen=True)
class Ranking:
    """A fitted pair model with bootstrap intervals: ``table`` has one row per model, best first.

    ``table``: model, strength, low, high, rank, rank_low, rank_high, tier. ``fragility``: one row per audited
    comparison (the winner against each challenger, then each adjacent pair): how many judgments, removed, flip it.
    """

    model: PairModel
    table: pd.DataFrame
    tie_parameter: float | None  # Davidson's ν
    tie_parameter_low: float | None
    tie_parameter_high: float | None
    log_likelihood: float
    level: float
    B: int
    seed: int
    converged_resamples: int
    separated_resamples: int = 0  # resamples without a finite MLE, refitted penalised (``_penalised``)
    penalised: bool = False  # the point estimate itself is penalised: the data have no finite MLE
    penalty_reason: str | None = None
    fragility: pd.DataFrame | None = None
    method: str = "prompt_bootstrap_stratified"
    tie_convention: str = TIE_CONVENTION
    target: str = TARGET_POPULATION

    def predicted_score(self, model_i: str, model_j: str) -> float:
        """The fitted s of model_i against model_j (a tie scores ½)."""
        strengths = dict(zip(self.table["model"], self.table["strength"], strict=True))
        d = strengths[model_i] - strengths[model_j]
        if self.model == "bradley_terry":
            return float(special.expit(d))
        nu = self.tie_parameter
        win_i, win_j, tie = np.exp(d / 2), np.exp(-d / 2), nu
        return float((win_i + tie / 2) / (win_i + win_j + tie))


def _require_connected(folded: PairCounts) -> None:
    """Strengths are comparable only within a connected graph of compared pairs."""
    group = list(range(len(folded.models)))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i, j in folded.pairs:
        group[root(int(i))] = root(int(j))
    roots = {root(i) for i in range(len(folded.models))}
    if len(roots) > 1:
        apart = sorted({folded.models[i] for i in range(len(folded.models)) if root(i) != root(0)})
        raise ValueError(f"Models {', '.join(apart)} are never compared, directly or not, with {folded.models[0]}.")


def _reach(totals: np.ndarray, pairs: np.ndarray, n_models: int) -> np.ndarray:
    """(batch, n, n) whether model i reaches model j by "scored against" steps (a win, or a tie both ways)."""
    scored = np.zeros((totals.shape[0], n_models, n_models), dtype=bool)
    scored[:, pairs[:, 0], pairs[:, 1]] = totals[..., 0] + totals[..., 1] > 0
    scored[:, pairs[:, 1], pairs[:, 0]] = totals[..., 2] + totals[..., 1] > 0
    reach = scored | np.eye(n_models, dtype=bool)
    for _ in range(max(1, int(np.ceil(np.log2(n_models))) + 1)):
        reach = reach | (np.einsum("bij,bjk->bik", reach.astype(np.int64), reach.astype(np.int64)) > 0)
    return reach


def _separation_reason(folded: PairCounts, model: PairModel) -> str:
    """Why the data have no finite MLE, in words (for the page)."""
    totals = folded.counts.sum(axis=0)
    reach = _reach(totals[None], folded.pairs, len(folded.models))[0]
    if not reach.all():
        i, j = np.argwhere(~reach)[0]
        return (
            f"{folded.models[i]} never wins or ties, directly or through other models, against {folded.models[j]} "
            "(perfect separation)"
        )
    if folded.counts[..., 1].sum() == 0 or folded.counts[..., [0, 2]].sum() == 0:
        return "Davidson's tie parameter needs both ties and decisive judgments"
    return (
        "no pair of models, directly or around a cycle of pairs, has decisive judgments both ways, so Davidson's tie "
        "parameter and the strength gaps grow without bound together"
    )


# Strengths are log-odds of order 1: interval ends closer than this are equal (models with identical records fit to
# ±1e-15, not to 0).
SEPARATION_TOLERANCE = 1e-9


def _ranks(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks from interval overlap: 1 + models surely better; best and worst ranks compatible with the intervals."""
    surely_better = (low[None, :] > high[:, None] + SEPARATION_TOLERANCE).sum(axis=1)
    surely_worse = (high[None, :] < low[:, None] - SEPARATION_TOLERANCE).sum(axis=1)
    return 1 + surely_better, 1 + surely_better, low.size - surely_worse


def _tiers(strength: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Tiers from interval overlap, best first: walking down by strength, a model opens a new tier when its interval
    lies wholly below the interval of the first model of the current tier; otherwise it shares that tier."""
    order = np.argsort(-strength, kind="stable")
    tiers = np.empty(strength.size, dtype=np.int64)
    tier, leader = 1, order[0]
    for index in order:
        if high[index] < low[leader] - SEPARATION_TOLERANCE:
            tier, leader = tier + 1, index
        tiers[index] = tier
    return tiers


def _strengths(params: np.ndarray, n_models: int) -> np.ndarray:
    """Sum-to-zero strengths (..., n_models) from free parameters (β_0 = 0)."""
    beta = np.concatenate([np.zeros(params.shape[:-1] + (1,)), params[..., : n_models - 1]], axis=-1)
    return beta - beta.mean(axis=-1, keepdims=True)


def model_ranking(
    frame: pd.DataFrame,
    model: PairModel = "bradley_terry",
    *,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
    audit: bool = True,
) -> Ranking:
    """Fit ``model`` by maximum likelihood; percentile intervals from the prompt-cluster bootstrap (prompts
    resampled within category with all their judgments), ranks and tiers from interval overlap, and (``audit``) the
    fragility audit (``fragility``).

    Where the data have no finite MLE (``_mle_exists``: a model that never wins or ties against the others, or
    Davidson without ties or without decisive judgments that contradict each other) the fit falls back to the
    penalised likelihood (``VIRTUAL_JUDGMENTS_PER_PAIR``) and says so (``penalised``, ``penalty_reason``). A
    bootstrap resample without a finite MLE gets the same penalised fit (``separated_resamples`` counts them), so
    every interval end is a fitted value, never an iteration cap.

    The intervals reflect prompt sampling only: where raters carry model preferences of their own (few raters
    rating many comparisons) they are too narrow, as ``prompt_bootstrap`` is for s; read them beside the
    pairwise table, whose intervals use the two-way default.

    ``rank`` is 1 + the number of models whose interval lies wholly above this one's; ``rank_low`` / ``rank_high``
    are the best and worst ranks the intervals allow; ``tier`` groups models by the leader rule of ``_tiers``.
    """
    folded = pair_counts(frame)
    _require_connected(folded)
    n_models = len(folded.models)
    jac = _design(folded.pairs, n_models, model)
    totals = folded.counts.sum(axis=0)
    outcomes = _outcome_counts(totals, model)
    exists = bool(_mle_exists(totals[None], folded.pairs, n_models, model)[0])
    fitted_outcomes = outcomes if exists else _penalised(outcomes)
    params, converged = _fit_one(fitted_outcomes, jac)
    if not converged:
        raise ValueError(f"{model} fit did not converge.")  # not reached on well-posed data: see _newton_batch
    layout = Layout(
        prompt=np.arange(folded.prompt_category.size),
        rater=np.zeros(folded.prompt_category.size, dtype=np.intp),
        prompt_category=folded.prompt_category,
        n_raters=1,
    )
    weights = prompt_weights(layout, B, np.random.default_rng(seed))  # (P, B)
    resampled_totals = np.einsum("pb,pqo->bqo", weights, folded.counts)
    resample_exists = _mle_exists(resampled_totals, folded.pairs, n_models, model)
    resampled = _outcome_counts(resampled_totals, model)
    resampled = np.where(resample_exists[:, None, None], resampled, _penalised(resampled))
    boot_params, boot_converged = _newton_batch(np.repeat(params[None, :], B, axis=0), resampled, jac)

    strengths = _strengths(params, n_models)
    boot = _strengths(boot_params, n_models)
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha], axis=0)
    rank, rank_low, rank_high = _ranks(low, high)
    table = pd.DataFrame(
        {
            "model": folded.models,
            "strength": strengths,
            "low": low,
            "high": high,
            "rank": rank,
            "rank_low": rank_low,
            "rank_high": rank_high,
            "tier": _tiers(strengths, low, high),
        }
    )
    table = table.sort_values(["rank", "strength"], ascending=[True, False], ignore_index=True)
    nu = nu_low = nu_high = None
    if model == "davidson":
        nu = float(np.exp(params[-1]))
        nu_low, nu_high = (float(v) for v in np.exp(np.quantile(boot_params[:, -1], [alpha, 1 - alpha])))
    value, _, _ = _loglik(params[None], outcomes[None], jac, derivatives=False)
    fragility = fragility_audit(folded, model, params, exists) if audit else None
    return Ranking(
        model=model,
        table=table,
        tie_parameter=nu,
        tie_parameter_low=nu_low,
        tie_parameter_high=nu_high,
        log_likelihood=float(value[0]),
        level=level,
        B=B,
        seed=seed,
        converged_resamples=int(boot_converged.sum()),
        separated_resamples=int((~resample_exists).sum()),
        penalised=not exists,
        penalty_reason=None if exists else _separation_reason(folded, model),
        fragility=fragility,
    )


# ------------------------------------------------------------------------------------------------ fragility


def _judgment_scores(jac: np.ndarray, params: np.ndarray, model: PairModel) -> np.ndarray:
    """(pairs, 3, q) gradient of one judgment's log-likelihood by its kind (i wins, tie, j wins) at ``params``."""
    logits = np.einsum("poq,q->po", jac, params)
    prob = special.softmax(logits, axis=-1)
    n_out = jac.shape[1]
    per_outcome = np.einsum("pko,poq->pkq", np.eye(n_out)[None] - prob[:, None, :], jac)  # (pairs, outcome, q)
    if model == "bradley_terry":
        # Outcomes (i, j); a tie is half of each.
        return np.stack([per_outcome[:, 0], 0.5 * (per_outcome[:, 0] + per_outcome[:, 1]), per_outcome[:, 1]], axis=1)
    # Davidson outcomes (i, j, tie) → kinds (i wins, tie, j wins).
    return per_outcome[:, [0, 2, 1]]


def _gap(params: np.ndarray, n_models: int, i: int, j: int) -> float:
    beta = np.concatenate([[0.0], params[: n_models - 1]])
    return float(beta[i] - beta[j])


def _refit_gap(
    totals: np.ndarray, folded: PairCounts, model: PairModel, jac: np.ndarray, start: np.ndarray, i: int, j: int
) -> float:
    """β_i − β_j refitted on pair totals (pairs, 3), penalised where the MLE does not exist."""
    outcomes = _outcome_counts(totals, model)
    if not _mle_exists(totals[None], folded.pairs, len(folded.models), model)[0]:
        outcomes = _penalised(outcomes)
    params, _ = _newton_batch(start[None], outcomes[None], jac)
    return _gap(params[0], len(folded.models), i, j)


def _flip_count(
    folded: PairCounts, model: PairModel, jac: np.ndarray, params: np.ndarray, i: int, j: int
) -> tuple[int | None, int | None, np.ndarray | None]:
    """Judgments whose removal reverses β_i > β_j (strictly, after the refit): (approximate count, confirmed count,
    the removed judgments as pair totals (pairs, 3), or None when no removal flips it); 0 where the two are tied.

    Approximate maximum-influence perturbation (Broderick, Giordano & Meager 2020): removing one judgment of kind k
    on pair p moves the parameters by about H⁻¹·g_pk (H the log-likelihood's Hessian, g_pk that judgment's score),
    so the gap β_i − β_j by about aᵀH⁻¹g_pk. Judgments are removed most harmful first until the linear prediction
    crosses zero; the count is then confirmed by refitting, searching along the same order for the fewest removals
    whose refit reverses the order (bisection between a removal count that does not flip and one that does).
    """
    totals = folded.counts.sum(axis=0)
    if _gap(params, len(folded.models), i, j) <= SEPARATION_TOLERANCE:
        return 0, 0, np.zeros_like(totals)  # tied already (identical records): the order is not the data's
    outcomes = _outcome_counts(totals, model)
    exists = _mle_exists(totals[None], folded.pairs, len(folded.models), model)[0]
    _, _, hessian = _loglik(params[None], (outcomes if exists else _penalised(outcomes))[None], jac)
    a = np.zeros(params.size)
    if i > 0:
        a[i - 1] += 1.0
    if j > 0:
        a[j - 1] -= 1.0
    direction = np.linalg.solve(hessian[0] - 1e-12 * np.eye(params.size), a)  # H⁻¹a
    effect = np.einsum("pkq,q->pk", _judgment_scores(jac, params, model), direction)  # Δgap per removal
    gap = _gap(params, len(folded.models), i, j)
    order = np.argsort(effect, axis=None, kind="stable")
    harmful = order[effect.ravel()[order] < 0]
    available = totals.ravel()[harmful]
    cumulative_effect = np.cumsum(available * effect.ravel()[harmful])
    cumulative_count = np.cumsum(available)
    total_available = int(cumulative_count[-1]) if harmful.size else 0
    if total_available == 0:
        return None, None, None
    reaching = np.flatnonzero(cumulative_effect <= -gap)
    if reaching.size:
        cell = reaching[0]
        before_effect = cumulative_effect[cell - 1] if cell else 0.0
        before_count = cumulative_count[cell - 1] if cell else 0.0
        per = effect.ravel()[harmful[cell]]
        approximate = int(before_count + np.ceil((-gap - before_effect) / per - 1e-9))
    else:
        approximate = None

    def removed(m: int) -> np.ndarray:
        """Pair totals with the first m judgments of the harmful order removed."""
        take = np.clip(m - (cumulative_count - available), 0, available)
        out = totals.ravel().copy()
        out[harmful] -= take
        return out.reshape(totals.shape)

    def flips(m: int) -> bool:
        return _refit_gap(removed(m), folded, model, jac, params, i, j) < 0

    high = max(1, approximate or 1)
    while not flips(high):
        if high >= total_available:
            return approximate, None, None
        high = min(2 * high, total_available)
    low = 0
    while high - low > 1:
        middle = (low + high) // 2
        if flips(middle):
            high = middle
        else:
            low = middle
    return approximate, high, totals - removed(high)


def fragility_audit(folded: PairCounts, model: PairModel, params: np.ndarray, exists: bool = True) -> pd.DataFrame:
    """The fewest judgments whose removal flips the winner (against each challenger) and each adjacent pair of the
    fitted order: one row per audited comparison, with the approximate (influence) and confirmed (refit) counts and
    the confirmed count as a share of all judgments."""
    n_models = len(folded.models)
    jac = _design(folded.pairs, n_models, model)
    strengths = _strengths(params, n_models)
    order = np.argsort(-strengths, kind="stable")
    n_judgments = int(folded.counts.sum())
    audited = [("winner", int(order[0]), int(challenger)) for challenger in order[1:]]
    audited += [("adjacent", int(order[r]), int(order[r + 1])) for r in range(n_models - 1)]
    rows = []
    kinds = ("{0} over {1}", "tie {0}–{1}", "{1} over {0}")
    for kind, better, worse in audited:
        approximate, confirmed, removed = _flip_count(folded, model, jac, params, better, worse)
        described = []
        if removed is not None:
            for (first, second), counts in zip(folded.pairs, removed, strict=True):
                for label, count in zip(kinds, counts, strict=True):
                    if count > 0:
                        names = folded.models[first], folded.models[second]
                        described.append(f"{count:g} × {label.format(*names)}")
        rows.append(
            {
                "audit": kind,
                "model_above": folded.models[better],
                "model_below": folded.models[worse],
                "gap": float(strengths[better] - strengths[worse]),
                "n_to_flip_approximate": approximate,
                "n_to_flip": confirmed,
                "share_to_flip": None if confirmed is None else confirmed / n_judgments,
                "n_judgments": n_judgments,
                "removed": "; ".join(described),
            }
        )
    return pd.DataFrame(rows)


def winner_fragility(fragility: pd.DataFrame) -> dict | None:
    """The winner's weakest point: the challenger that the fewest removed judgments put on top (None if none)."""
    winner = fragility[(fragility["audit"] == "winner") & fragility["n_to_flip"].notna()]
    if winner.empty:
        return None
    row = winner.loc[winner["n_to_flip"].astype(float).idxmin()]
    return {key: (value.item() if isinstance(value, np.generic) else value) for key, value in row.items()}


def pairwise_table(
    frame: pd.DataFrame,
    *,
    method: Method = DEFAULT_METHOD,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
    rankings: tuple[Ranking, ...] = (),
) -> pd.DataFrame:
    """One row per pair of models (in name order): counts, shares, s of the first against the second with the
    ``method`` interval on that pair's judgments, and each given ranking's fitted s beside it."""
    folded = pair_counts(frame)
    models = np.array(folded.models, dtype=object)
    a = frame["model_a"].to_numpy(dtype=object)
    b = frame["model_b"].to_numpy(dtype=object)
    rows = []
    for i, j in folded.pairs:
        first, second = models[i], models[j]
        forward = (a == first) & (b == second)
        backward = (a == second) & (b == first)
        part = frame[forward | backward].copy()
        flip = backward[forward | backward]
        part["choice"] = np.where(flip, part["choice"].map({"A": "B", "B": "A", "tie": "tie"}), part["choice"])
        counts = np.bincount(choice_codes(part["choice"]), minlength=3)
        interval = preference_interval(part, method, level=level, B=B, seed=seed)
        row = {
            "model_a": first,
            "model_b": second,
            "n": int(counts.sum()),
            "count_A": int(counts[0]),
            "count_tie": int(counts[1]),
            "count_B": int(counts[2]),
            "s": interval.estimate,
            "low": interval.low,
            "high": interval.high,
            "method": interval.method,
            "level": level,
            "low_precision": interval.low_precision,
            "tie_convention": TIE_CONVENTION,
        }
        for ranking in rankings:
            row[f"s_{ranking.model}"] = ranking.predicted_score(first, second)
        rows.append(row)
    return pd.DataFrame(rows)
