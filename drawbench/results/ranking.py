"""More than two models: Bradley–Terry (ties as half) and Davidson (1970) by maximum likelihood, with the
prompt-cluster bootstrap for intervals, ranks from interval overlap, and the pairwise table (DESIGN.md §4).

Both models are multinomial logits on each pair (i, j) of evaluated models, with strengths β (log π):

- Bradley–Terry, ties as half: outcomes (i, j) with logits (β_i, β_j) and counts (wins_i + ½·ties, wins_j + ½·ties),
  so P(i ≻ j) = σ(β_i − β_j) and E[y] = P(A) + ½·P(tie) is modelled directly.
- Davidson: outcomes (i, j, tie) with logits (β_i, β_j, log ν + (β_i + β_j)/2), i.e.
  P(i ≻ j) = π_i / (π_i + π_j + ν·sqrt(π_i·π_j)) and P(tie) = ν·sqrt(π_i·π_j) / (same).

The log-likelihood is concave in (β, log ν): the point estimate uses ``scipy.optimize.minimize`` (trust-exact,
analytic gradient and Hessian); the B bootstrap refits run as one vectorised Newton iteration over all resamples at
once (warm-started at the point estimate, with step halving), never a Python loop per resample. The first model's
strength is fixed at 0 while fitting; results are reported sum-to-zero.

Input: a judgments frame with ``model_a``, ``model_b``, ``choice`` (model space), ``prompt_id``, ``category``;
``rater_id`` too for the pairwise table's intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize, special

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
    start: np.ndarray, outcomes: np.ndarray, jac: np.ndarray, max_iter: int = 100, tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray]:
    """Maximise every resample's log-likelihood at once: damped Newton with step halving. Returns (params, ok)."""
    params = start.copy()
    value, gradient, hessian = _loglik(params, outcomes, jac)
    active = np.ones(params.shape[0], dtype=bool)
    ridge = 1e-12 * np.eye(params.shape[1])
    for _ in range(max_iter):
        if not active.any():
            break
        step = np.linalg.solve(-(hessian[active] - ridge), gradient[active][..., None])[..., 0]
        scale = np.ones(step.shape[0])
        index = np.flatnonzero(active)
        for _ in range(40):
            trial = params[index] + scale[:, None] * step
            trial_value, _, _ = _loglik(trial, outcomes[index], jac, derivatives=False)
            worse = trial_value < value[index] - 1e-12 * np.abs(value[index])
            if not worse.any():
                break
            scale = np.where(worse, scale / 2, scale)
        params[index] = params[index] + scale[:, None] * step
        value[index], gradient[index], hessian[index] = _loglik(params[index], outcomes[index], jac)
        active[index] = np.abs(scale[:, None] * step).max(axis=1) > tol
    return params, ~active


def _fit_one(outcomes: np.ndarray, jac: np.ndarray) -> optimize.OptimizeResult:
    """Maximum likelihood with scipy (trust-exact); the objective is per judgment so that tolerances mean the same
    at any study size. ``fun`` is the mean negative log-likelihood."""
    n_par = jac.shape[-1]
    scale = 1.0 / outcomes.sum()

    def negative(params):
        value, gradient, _ = _loglik(params[None, :], outcomes[None], jac)
        return -value[0] * scale, -gradient[0] * scale

    def negative_hessian(params):
        return -_loglik(params[None, :], outcomes[None], jac)[2][0] * scale

    return optimize.minimize(
        negative, np.zeros(n_par), jac=True, hess=negative_hessian, method="trust-exact", options={"gtol": 1e-9}
    )


@dataclass(frozen=True)
class Ranking:
    """A fitted pair model with bootstrap intervals: ``table`` has one row per model, best first."""

    model: PairModel
    table: pd.DataFrame  # model, strength, low, high, rank, rank_low, rank_high
    tie_parameter: float | None  # Davidson's ν
    tie_parameter_low: float | None
    tie_parameter_high: float | None
    log_likelihood: float
    level: float
    B: int
    seed: int
    converged_resamples: int
    method: str = "prompt_bootstrap_stratified"
    tie_convention: str = TIE_CONVENTION
    target: str = TARGET_POPULATION

    def predicted_score(self, model_i: str, model_j: str) -> float:
        """The fitted s of model_i against model_j (ties as half)."""
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


def _require_finite_fit(folded: PairCounts, model: PairModel) -> None:
    """The maximum-likelihood strengths are finite only when every model can be reached from every other by
    "scored against" steps (a win, or a tie, which counts half to each side): Zermelo's condition, i.e. a strongly
    connected graph. Otherwise some models beat the others outright (perfect separation) and their strength runs
    off to infinity. Davidson's tie parameter needs ties and decisive judgments both."""
    totals = folded.counts.sum(axis=0)  # (pairs, 3): wins of the first, ties, wins of the second
    n = len(folded.models)
    scored = np.zeros((n, n), dtype=bool)
    for (i, j), (first, ties, second) in zip(folded.pairs, totals, strict=True):
        scored[i, j] |= first + ties > 0
        scored[j, i] |= second + ties > 0
    reach = scored | np.eye(n, dtype=bool)
    for _ in range(max(1, int(np.ceil(np.log2(n))) + 1)):
        reach = reach | ((reach.astype(np.int64) @ reach.astype(np.int64)) > 0)
    if not reach.all():
        i, j = np.argwhere(~reach)[0]
        raise ValueError(
            f"{model} strengths do not exist: {folded.models[i]} never wins or ties, directly or through other models, "
            f"against {folded.models[j]} (perfect separation)."
        )
    if model == "davidson":
        ties, decisive = totals[:, 1].sum(), totals[:, [0, 2]].sum()
        if ties == 0 or decisive == 0:
            raise ValueError("Davidson's tie parameter needs both ties and decisive judgments.")


def _ranks(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks from interval overlap: 1 + models surely better; best and worst ranks compatible with the intervals."""
    surely_better = (low[None, :] > high[:, None]).sum(axis=1)
    surely_worse = (high[None, :] < low[:, None]).sum(axis=1)
    return 1 + surely_better, 1 + surely_better, low.size - surely_worse


def model_ranking(
    frame: pd.DataFrame,
    model: PairModel = "bradley_terry",
    *,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
) -> Ranking:
    """Fit ``model`` by maximum likelihood; percentile intervals from the prompt-cluster bootstrap (prompts
    resampled within category with all their judgments), ranks from interval overlap.

    The intervals reflect prompt sampling only: where raters carry model preferences of their own (few raters
    rating many comparisons) they are too narrow, as ``prompt_bootstrap`` is for s; read them beside the
    pairwise table, whose intervals use the two-way default.

    ``rank`` is 1 + the number of models whose interval lies wholly above this one's; ``rank_low`` / ``rank_high``
    are the best and worst ranks the intervals allow.
    """
    folded = pair_counts(frame)
    _require_connected(folded)
    _require_finite_fit(folded, model)
    jac = _design(folded.pairs, len(folded.models), model)
    outcomes = _outcome_counts(folded.counts.sum(axis=0), model)
    fit = _fit_one(outcomes, jac)
    if not fit.success:
        raise ValueError(f"{model} fit did not converge: {fit.message}")
    layout = Layout(
        prompt=np.arange(folded.prompt_category.size),
        rater=np.zeros(folded.prompt_category.size, dtype=np.intp),
        prompt_category=folded.prompt_category,
        n_raters=1,
    )
    weights = prompt_weights(layout, B, np.random.default_rng(seed))  # (P, B)
    per_prompt = _outcome_counts(folded.counts, model)  # (P, pairs, outcomes)
    resampled = np.einsum("pb,pqo->bqo", weights, per_prompt)
    params, converged = _newton_batch(np.repeat(fit.x[None, :], B, axis=0), resampled, jac)

    n_models = len(folded.models)
    strengths = np.concatenate([[0.0], fit.x[: n_models - 1]])
    boot = np.hstack([np.zeros((B, 1)), params[:, : n_models - 1]])
    strengths -= strengths.mean()
    boot -= boot.mean(axis=1, keepdims=True)
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
        }
    )
    table = table.sort_values(["rank", "strength"], ascending=[True, False], ignore_index=True)
    nu = nu_low = nu_high = None
    if model == "davidson":
        nu = float(np.exp(fit.x[-1]))
        nu_low, nu_high = (float(v) for v in np.exp(np.quantile(params[:, -1], [alpha, 1 - alpha])))
    return Ranking(
        model=model,
        table=table,
        tie_parameter=nu,
        tie_parameter_low=nu_low,
        tie_parameter_high=nu_high,
        log_likelihood=float(-fit.fun * outcomes.sum()),
        level=level,
        B=B,
        seed=seed,
        converged_resamples=int(converged.sum()),
    )


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
