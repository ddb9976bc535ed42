"""Benchmark: PPI++ with an automatic judge against human-only, on simulated studies shaped like DrawBench and like
PartiPrompts (issue 15; DESIGN.md §8).

Each simulated study: comparisons (a prompt with one pair of sample sets) with latent quality m = u_prompt + v_set;
one human judgment per rated comparison (ordered logit on m + rater effect + logistic noise, 30% ties), raters from
a pool of 100 each rating several comparisons (clustering by rater), several rated comparisons per prompt on
DrawBench (clustering by prompt). The judge scores every comparison, humans' and N more, with agreement ρ: its score
is ρ·z + sqrt(1 − ρ²)·noise, z the standardised mean human answer of the comparison. s is the share of the answer
variance that lies between comparisons, Var(E[y | comparison]) / Var(y).

The limit. For independent answers it is 1 / (1 − s·ρ²·N/(N + n)) (column "lim ind"). A judge cannot see rater
effects, and a rater who answers several comparisons repeats their own: that multiplies the human-only mean's
variance by the rater design effect d = 1 + ICC·(Σ k_r²/n − 1) (column "deff"; ICC the correlation of one rater's
answers on two comparisons, exact from the model, k_r the realised answers per rater) and leaves its between-comparison
part as it was. So the between-comparison share of the mean's variance, the s the bound needs, is s / d, and the limit
is 1 / (1 − (s/d)·ρ²·N/(N + n)) (column "limit"; ``ppi_gain_limit(..., design_effect=d)``): no λ can do better,
since the judge's score is independent of every rater. Without rater effects (RATER_SD = 0) d = 1 and the two agree.
The gain comes from the reported standard errors, so gain / limit carries their estimation error (λ̂ is tuned on the
data whose variance it reports): it can read a few thousandths above 1 where PPI is at the limit.

    DrawBench:    200 prompts; humans rate 2 sample sets per prompt (n = 400); the judge N/n·2 more sets per prompt.
    PartiPrompts: 1,632 prompts; humans rate 400 prompts (stratified by category); the judge N comparisons spread
                  over all 1,632 prompts.

Per cell: the human judgments needed for a ±3-point half-width, human-only and with PPI++ (the ratio is the gain),
the limit for this design, the rater design effect, the limit for independent answers, gain / limit, the gain
measured from the estimates' own spread, an oracle's (the best single λ for these studies, known in advance: what
the design allows) and the first over the second, and the coverage of both 95% intervals over R studies. The last
line is ``ppi gain / limit = R`` in the reference cell (DrawBench, ρ 0.8, s 0.35, N/n 8). Prints figures only.

    .venv/bin/python bench/ppi.py [--R 5000] [--shapes drawbench partiprompts] [--seed 15] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import optimize, special, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drawbench.results.intervals.ppi import ppi_batch, ppi_gain_limit, ppi_layout  # noqa: E402
from prompts import DRAWBENCH_CATEGORY_COUNTS, PARTIPROMPTS_CATEGORY_COUNTS  # noqa: E402

RHOS = (0.0, 0.5, 0.8, 0.95)
SHARES = (0.15, 0.35)
COVERAGE_RATIOS = (1, 8, 64)
REFERENCE = ("drawbench", 0.8, 0.35, 8)
N_HUMAN = 400
RATER_POOL = 100
RATER_SD = 0.5
TIE_RATE = 0.3
EFFECT = 0.4
# Of the latent comparison variance, the part shared by a prompt's sample sets. PartiPrompts: the pool is a sample of
# prompts, humans rate a quarter of it, and prompt effects are sampling noise. DrawBench: the target is the benchmark's
# own 200 prompts, all rated by humans, so their effects are part of the truth and only sample sets vary.
PROMPT_SHARE = {"drawbench": 0.0, "partiprompts": 0.3}
HALF_WIDTH = 0.03
CHUNK = 250
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(64)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


@dataclass(frozen=True)
class Truth:
    scale: float  # sd of the latent comparison quality m
    threshold: float
    theta: float  # population score E[y]
    g_grid: np.ndarray  # E[y | m] on M_GRID
    g_mean: float
    g_sd: float
    rater_icc: float  # Cov(y, y') of one rater's answers on two comparisons, over Var(y)


M_GRID = np.linspace(-12, 12, 2401)


def _answer_probabilities(eta: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    return special.expit(eta - threshold), special.expit(-eta - threshold)


def _conditional_score(m: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """E[y | m] and E[y² | m] over the rater effect and the logistic noise."""
    eta = EFFECT + m[:, None] + RATER_SD * _NODES[None, :]
    p_a, p_b = _answer_probabilities(eta, threshold)
    p_tie = 1 - p_a - p_b
    return (p_a + 0.5 * p_tie) @ _WEIGHTS, (p_a + 0.25 * p_tie) @ _WEIGHTS


def truth_for(share: float) -> Truth:
    """The latent scale and tie threshold that give a between-comparison share ``share`` and 30% ties."""

    def moments(scale: float, threshold: float) -> tuple[float, float, float, float]:
        m = scale * _NODES
        g, g2 = _conditional_score(m, threshold)
        eta = EFFECT + m[:, None] + RATER_SD * _NODES[None, :]
        p_a, p_b = _answer_probabilities(eta, threshold)
        tie = float(((1 - p_a - p_b) @ _WEIGHTS) @ _WEIGHTS)
        theta = float(g @ _WEIGHTS)
        var_y = float(g2 @ _WEIGHTS) - theta**2
        var_g = float((g**2) @ _WEIGHTS) - theta**2
        return theta, var_g / var_y, tie, var_g

    def threshold_for(scale: float) -> float:
        return optimize.brentq(lambda t: moments(scale, t)[2] - TIE_RATE, 0.0, 20.0)

    scale = optimize.brentq(lambda a: moments(a, threshold_for(a))[1] - share, 0.05, 20.0)
    threshold = threshold_for(scale)
    theta, share_found, _, var_g = moments(scale, threshold)
    g_grid, _ = _conditional_score(M_GRID, threshold)
    # A rater's mean answer over comparisons, E[y | w], and its variance across raters: what two answers of one rater
    # share beyond their comparisons.
    eta = EFFECT + scale * _NODES[None, :] + RATER_SD * _NODES[:, None]
    p_a, p_b = _answer_probabilities(eta, threshold)
    by_rater = (p_a + 0.5 * (1 - p_a - p_b)) @ _WEIGHTS
    var_rater = float((by_rater**2) @ _WEIGHTS) - float(by_rater @ _WEIGHTS) ** 2
    return Truth(scale, threshold, theta, g_grid, theta, float(np.sqrt(var_g)), var_rater / (var_g / share_found))


@dataclass(frozen=True)
class Design:
    """Who rates and scores what: comparison → prompt, and the human rows."""

    shape: str
    prompt_category: np.ndarray  # (P,)
    comparison_prompt: np.ndarray  # (n + N,) human-rated comparisons first
    n: int
    N: int
    rater: np.ndarray  # (n,) rater of each human judgment

    def design_effect(self, rater_icc: float) -> float:
        """Var of the human-only mean over Var(y)/n: each comparison is rated once, by a rater who answers k_r of
        them, so pairs of one rater's answers add ICC·(Σ k_r² / n − 1)."""
        k = np.bincount(self.rater)
        return 1.0 + rater_icc * (float((k**2).sum()) / self.n - 1.0)


def design_for(shape: str, ratio: int, rng: np.random.Generator) -> Design:
    counts = DRAWBENCH_CATEGORY_COUNTS if shape == "drawbench" else PARTIPROMPTS_CATEGORY_COUNTS
    sizes = np.array(list(counts.values()))
    prompt_category = np.repeat(np.arange(sizes.size), sizes)
    P = prompt_category.size
    if shape == "drawbench":
        per_prompt = N_HUMAN // P
        labeled = np.repeat(np.arange(P), per_prompt)
        unlabeled = np.repeat(np.arange(P), per_prompt * ratio)
    else:
        # Humans: N_HUMAN prompts stratified by category (largest remainders); the judge: every prompt, evenly.
        quota = sizes / sizes.sum() * N_HUMAN
        take = np.floor(quota).astype(int)
        take[np.argsort(quota - take)[::-1][: N_HUMAN - take.sum()]] += 1
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        labeled = np.concatenate(
            [start + rng.choice(size, t, replace=False) for start, size, t in zip(starts, sizes, take, strict=True)]
        )
        unlabeled = np.resize(rng.permutation(P), N_HUMAN * ratio)
    n, N = labeled.size, unlabeled.size
    return Design(
        shape, prompt_category, np.concatenate([labeled, unlabeled]), n, N, rng.integers(0, RATER_POOL, size=n)
    )


def simulate(truth: Truth, design: Design, rho: float, K: int, rng: np.random.Generator):
    """(Y (n, K) human scores, F (n + N, K) judge scores)."""
    P = design.prompt_category.size
    M = design.comparison_prompt.size
    share = PROMPT_SHARE[design.shape]
    u = rng.normal(0, truth.scale * np.sqrt(share), size=(P, K))
    v = rng.normal(0, truth.scale * np.sqrt(1 - share), size=(M, K))
    m = v
    if share > 0:
        m += u[design.comparison_prompt]
    # F = ρ·z + sqrt(1 − ρ²)·noise, z = (g − mean) / sd, computed in place (the judge-only rows are most of the time).
    noise = rng.normal(size=(M, K))
    noise *= np.sqrt(1 - rho**2)
    if rho > 0:
        F = np.interp(m, M_GRID, truth.g_grid)
        F -= truth.g_mean
        F *= rho / truth.g_sd
        F += noise
    else:
        F = noise
    w = rng.normal(0, RATER_SD, size=(RATER_POOL, K))
    eta = EFFECT + m[: design.n] + w[design.rater] + rng.logistic(size=(design.n, K))
    Y = np.where(eta > truth.threshold, 1.0, np.where(eta < -truth.threshold, 0.0, 0.5))
    return Y, F


def run_cell(shape: str, share: float, rho: float, ratio: int, R: int, seed: int, truth: Truth) -> dict:
    rng = np.random.default_rng([seed, zlib.crc32(repr((shape, share, rho, ratio)).encode())])
    design = design_for(shape, ratio, rng)
    layout = ppi_layout(
        design.prompt_category,
        design.comparison_prompt[: design.n],
        design.rater,
        design.comparison_prompt[design.n :],
    )
    se2_ppi = se2_human = covered_ppi = covered_human = 0.0
    estimates_ppi, estimates_human, judge_gaps = [], [], []
    category = layout.judgment_category
    labeled_category, judged_category = category[: design.n], category[design.n :]
    for start in range(0, R, CHUNK):
        K = min(CHUNK, R - start)
        Y, F = simulate(truth, design, rho, K, rng)
        result = ppi_batch(Y, F, layout, design.n)
        estimates_ppi.append(result.estimate[0])
        estimates_human.append(result.human_estimate[0])
        # The judge's gap between the human-rated and the judge-only comparisons, categories weighted as the estimate
        # weights them: the best fixed λ for these studies (an oracle's, from their spread) is Cov(ŝ, gap) / Var(gap).
        weights = result.n_labeled[1:] / result.n_labeled[0]
        judge_gaps.append(
            sum(
                w
                * (F[: design.n][labeled_category == c].mean(axis=0) - F[design.n :][judged_category == c].mean(axis=0))
                for c, w in enumerate(weights)
                if w > 0 and (judged_category == c).any()
            )
        )
        se2_ppi += float((result.se[0] ** 2).sum())
        se2_human += float((result.human_se[0] ** 2).sum())
        covered_ppi += float(((result.low[0] <= truth.theta) & (truth.theta <= result.high[0])).sum())
        covered_human += float(((result.human_low[0] <= truth.theta) & (truth.theta <= result.human_high[0])).sum())
    z = stats.norm.ppf(0.975)
    needed_human = design.n * se2_human / R * (z / HALF_WIDTH) ** 2
    needed_ppi = design.n * se2_ppi / R * (z / HALF_WIDTH) ** 2
    gain = needed_human / needed_ppi
    design_effect = design.design_effect(truth.rater_icc)
    limit = ppi_gain_limit(share, rho, design.N, design.n, design_effect)
    human, gaps = np.concatenate(estimates_human), np.concatenate(judge_gaps)
    covariance = np.cov(human, gaps)
    oracle = covariance[0, 0] - covariance[0, 1] ** 2 / covariance[1, 1] if covariance[1, 1] > 0 else covariance[0, 0]
    empirical_gain = float(np.var(human) / np.var(np.concatenate(estimates_ppi)))
    return {
        "shape": shape,
        "s": share,
        "rho": rho,
        "ratio": ratio,
        "needed_human": needed_human,
        "needed_ppi": needed_ppi,
        "gain": gain,
        "limit": limit,
        "design_effect": design_effect,
        "limit_independent": ppi_gain_limit(share, rho, design.N, design.n),
        "gain_over_limit": gain / limit,
        # The same ratio from the spread of the estimates themselves (no standard error involved): a check.
        "empirical_gain": empirical_gain,
        # What the best single λ, known in advance, gains on these very studies: the design's own reach. The limit
        # overstates it a little where the judge's comparisons share prompts (PartiPrompts at N/n 8 and 64: every
        # prompt of the pool judged many times over), whose effects no λ averages out of the population's score:
        # gain / limit 0.97-0.98 there, also with RATER_SD = 0.
        "oracle_gain": float(covariance[0, 0] / oracle),
        "empirical_over_oracle": empirical_gain * oracle / covariance[0, 0],
        "coverage_ppi": covered_ppi / R,
        "coverage_human": covered_human / R,
    }


def _run_cell(cell: tuple) -> dict:
    return run_cell(*cell)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 5,000: the coverage's Monte-Carlo se is then 0.003, so that 48 cells can be read against [0.935, 0.965] (at
    # 2,000, se 0.005, one cell of 48 falls outside by chance alone about as often as not).
    parser.add_argument("--R", type=int, default=5000, help="Simulated studies per cell.")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="Cells simulated at once (processes).")
    parser.add_argument("--shapes", nargs="+", default=["drawbench", "partiprompts"])
    args = parser.parse_args()
    print(f"PPI++ against human-only: R = {args.R} studies per cell, seed {args.seed}, n = {N_HUMAN} human judgments")
    print(f"human judgments needed for a ±{100 * HALF_WIDTH:.0f}-point 95% half-width; gain = human-only / PPI")
    header = (
        f"{'shape':12s} {'s':>5s} {'rho':>5s} {'N/n':>4s} {'n human':>8s} {'n PPI':>8s} {'gain':>6s} {'limit':>6s}"
        f" {'deff':>5s} {'lim ind':>7s} {'g/lim':>6s} {'emp gain':>8s} {'oracle':>6s} {'e/orc':>6s} {'cov PPI':>8s}"
        f" {'cov human':>9s}"
    )
    print(header)
    start = time.perf_counter()
    rows = []
    truths = {share: truth_for(share) for share in SHARES}
    cells = [
        (shape, share, rho, ratio, args.R, args.seed, truths[share])
        for shape in args.shapes
        for share in SHARES
        for rho in RHOS
        for ratio in COVERAGE_RATIOS
    ]
    # Each cell has its own seeded generator, so the figures do not depend on --jobs.
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for (shape, share, rho, ratio, *_), row in zip(cells, pool.map(_run_cell, cells), strict=True):
            rows.append(row)
            print(
                f"{shape:12s} {share:5.2f} {rho:5.2f} {ratio:4d} {row['needed_human']:8.0f}"
                f" {row['needed_ppi']:8.0f} {row['gain']:6.3f} {row['limit']:6.3f}"
                f" {row['design_effect']:5.3f} {row['limit_independent']:7.3f}"
                f" {row['gain_over_limit']:6.3f} {row['empirical_gain']:8.3f} {row['oracle_gain']:6.3f}"
                f" {row['empirical_over_oracle']:6.3f} {row['coverage_ppi']:8.4f}"
                f" {row['coverage_human']:9.4f}",
                flush=True,
            )
    coverages = [row["coverage_ppi"] for row in rows]
    at_zero = [row["gain"] for row in rows if row["rho"] == 0]
    print(
        f"PPI coverage over all cells: {min(coverages):.4f}-{max(coverages):.4f}"
        f" (Monte-Carlo se about {np.sqrt(0.0475 / args.R):.4f})"
    )
    print(f"gain at rho = 0 (a useless judge): {min(at_zero):.3f}-{max(at_zero):.3f}")
    reach = [row["empirical_over_oracle"] for row in rows if row["rho"] > 0]
    print(f"empirical gain / oracle's (rho > 0): {min(reach):.3f}-{max(reach):.3f}")
    judged = [row for row in rows if row["rho"] > 0]
    ratios = [row["gain_over_limit"] for row in judged]
    independent = [row["gain"] / row["limit_independent"] for row in judged]
    print(
        f"gain / limit (rho > 0): {min(ratios):.3f}-{max(ratios):.3f}, {sum(r >= 0.95 for r in ratios)} of"
        f" {len(ratios)} cells >= 0.95; against the limit for independent answers: {min(independent):.3f}-"
        f"{max(independent):.3f}"
    )
    print(f"seconds: {time.perf_counter() - start:.1f}")
    shape, rho, share, ratio = REFERENCE
    reference = next(
        (row for row in rows if (row["shape"], row["rho"], row["s"], row["ratio"]) == (shape, rho, share, ratio)), None
    )
    if reference is None:
        reference = run_cell(shape, share, rho, ratio, args.R, args.seed, truth_for(share))
    print(f"ppi gain / limit = {reference['gain_over_limit']:.3f}")


if __name__ == "__main__":
    main()
