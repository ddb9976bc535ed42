"""A simulator of preference studies with known truth, to calibrate the interval methods (DESIGN.md §4).

Judgments follow an ordered logit in model space. For prompt p, rater r and side x (+1 when model A is shown on
the left, −1 otherwise, at random):

    η = effect + category offset + u_p + v_r + left_bias·x,   u_p ~ N(0, prompt_sd²),  v_r ~ N(0, rater_sd²)
    latent = η + logistic noise;  A if latent > τ,  B if latent < −τ,  tie otherwise.

τ is solved so that the population tie rate equals ``tie_rate``. The target of every interval is the population
score s = E[P(A) + ½·P(tie)] over prompts drawn like each category's (categories weighted by their sizes), raters
drawn like the pool's, and randomised sides (so the left bias averages out): with z ~ N(0, 1),
s = Σ_c w_c·E_z,x[½(σ(η − τ) + σ(η + τ))], η = effect + offset_c + z·sqrt(prompt_sd² + rater_sd²) + left_bias·x,
computed by Gauss–Hermite quadrature.

Assignment designs, as the platform runs them:
  ``per_category``  the paper's: ``raters_per_category`` raters per category, each rating every prompt of it;
  ``few_raters``    a pool of ``n_raters`` raters, each rating every prompt;
  ``random``        a pool of ``n_raters`` raters, ``ratings_per_prompt`` distinct raters drawn for each prompt.

R studies are generated at once as the columns of an (N judgments × R) matrix on one layout (for ``random`` a new
assignment per chunk of studies) and go through the same batch interval code as a real report.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from drawbench.results.intervals import DEFAULT_METHOD, Method, interval_batch, t_quantile
from drawbench.results.intervals.bootstrap import permutation_pvalues_batch
from drawbench.results.intervals.cluster import Bounds, Correction, DfRule, two_way_cluster_batch
from drawbench.results.intervals.core import CHOICES, DEFAULT_B, DEFAULT_LEVEL, SCORE_OF_CHOICE, Layout
from prompts import DRAWBENCH_CATEGORY_COUNTS

# DrawBench's category sizes are stated once, in the prompt-set loader (Imagen paper, Table A.1).
DRAWBENCH_CATEGORIES: tuple[tuple[str, int], ...] = tuple(DRAWBENCH_CATEGORY_COUNTS.items())
SIMULATION_SEED = 5
Design = Literal["per_category", "few_raters", "random"]
_HERMITE_NODES, _HERMITE_WEIGHTS = np.polynomial.hermite_e.hermegauss(96)
_HERMITE_WEIGHTS = _HERMITE_WEIGHTS / _HERMITE_WEIGHTS.sum()
# Judgments per chunk of simulated studies: bounds memory (a few arrays of this many float64) whatever R is.
CHUNK_JUDGMENTS = 1_000_000


@dataclass(frozen=True)
class Scenario:
    """One simulated study design with its true parameters (logit scale)."""

    name: str = "drawbench"
    design: Design = "per_category"
    prompt_sd: float = 1.0
    rater_sd: float = 0.5
    tie_rate: float = 0.3
    left_bias: float = 0.2
    effect: float = 0.0
    raters_per_category: int = 25
    n_raters: int = 10
    ratings_per_prompt: int = 5
    categories: tuple[tuple[str, int], ...] = DRAWBENCH_CATEGORIES
    # Category offsets spread evenly over [−spread, spread] in category order: fixed strata, not random.
    category_spread: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.tie_rate < 1:
            raise ValueError(f"Scenario {self.name!r}: tie_rate must lie in [0, 1), got {self.tie_rate}.")
        if self.design not in ("per_category", "few_raters", "random"):
            raise ValueError(f"Scenario {self.name!r}: unknown design {self.design!r}.")
        if self.design == "random" and self.ratings_per_prompt > self.n_raters:
            raise ValueError(f"Scenario {self.name!r}: ratings_per_prompt exceeds the pool of {self.n_raters}.")

    @property
    def category_sizes(self) -> np.ndarray:
        return np.array([size for _, size in self.categories])

    @property
    def category_offsets(self) -> np.ndarray:
        count = len(self.categories)
        return self.category_spread * (np.linspace(-1.0, 1.0, count) if count > 1 else np.zeros(1))


# The calibration grid (fixed before any coverage was measured): prompt effects, rater effects including few raters
# who each rate many prompts, tie rates 0.1-0.5, category effects, a large effect, and A-vs-A.
SCENARIO_GRID: tuple[Scenario, ...] = (
    Scenario(name="drawbench_prompt_only", rater_sd=0.0, effect=0.5),
    Scenario(name="drawbench_prompt_rater", effect=0.5),
    Scenario(name="drawbench_strong_raters", rater_sd=1.0, effect=0.5),
    Scenario(name="drawbench_ties_0.1", tie_rate=0.1, effect=0.5),
    Scenario(name="drawbench_ties_0.5", tie_rate=0.5, effect=0.5),
    Scenario(name="drawbench_category_effects", category_spread=1.0, effect=0.5),
    Scenario(name="drawbench_large_effect", effect=1.5),
    Scenario(name="drawbench_a_vs_a", effect=0.0),
    Scenario(name="few_raters_10", design="few_raters", n_raters=10, effect=0.5),
    Scenario(name="few_raters_5", design="few_raters", n_raters=5, effect=0.5),
    Scenario(name="few_raters_no_rater_effect", design="few_raters", n_raters=10, rater_sd=0.0, effect=0.5),
    Scenario(name="random_pool_60_k5", design="random", n_raters=60, ratings_per_prompt=5, effect=0.5),
)
# The edges (issue 15): a preference so strong that whole categories come out all A (zero-width intervals before the
# score interval), and small pilots whose Satterthwaite degrees of freedom collapse (the df floor's evidence).
# DrawBench's 7-prompt category under random assignment is ``random_pool_60_k5``'s Rare Words.
EDGE_GRID: tuple[Scenario, ...] = (
    Scenario(
        name="boundary_near_all_a",
        raters_per_category=5,
        categories=(("X", 10), ("Y", 10)),
        effect=4.0,
        tie_rate=0.1,
    ),
    Scenario(
        name="pilot_10_prompts_4_raters", design="few_raters", n_raters=4, categories=(("X", 5), ("Y", 5)), effect=0.5
    ),
    Scenario(name="pilot_12_prompts_3_raters", design="few_raters", n_raters=3, categories=(("X", 12),), effect=0.5),
    Scenario(
        name="pilot_20_prompts_random_8",
        design="random",
        n_raters=8,
        ratings_per_prompt=3,
        categories=(("X", 10), ("Y", 10)),
        effect=0.5,
    ),
    Scenario(name="pilot_8_prompts_per_category", raters_per_category=5, categories=(("X", 4), ("Y", 4)), effect=0.5),
)


@dataclass(frozen=True)
class TrueShares:
    """Population shares of a scenario, overall and per category."""

    share_a: float
    share_tie: float
    share_b: float
    s: float
    category_s: tuple[float, ...] = field(default=())


def _population_probabilities(scenario: Scenario, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(C,) population P(A) and P(B) per category, integrating prompt and rater effects and the side."""
    sd = np.hypot(scenario.prompt_sd, scenario.rater_sd)
    base = scenario.effect + scenario.category_offsets[:, None, None]
    eta = base + sd * _HERMITE_NODES[None, :, None] + scenario.left_bias * np.array([-1.0, 1.0])[None, None, :]
    weights = _HERMITE_WEIGHTS[None, :, None] * 0.5
    p_a = (special.expit(eta - threshold) * weights).sum(axis=(1, 2))
    p_b = (special.expit(-eta - threshold) * weights).sum(axis=(1, 2))
    return p_a, p_b


def tie_threshold(scenario: Scenario) -> float:
    """τ ≥ 0 such that the population tie rate equals ``scenario.tie_rate``."""
    if scenario.tie_rate == 0:
        return 0.0
    sizes = scenario.category_sizes / scenario.category_sizes.sum()

    def excess(threshold: float) -> float:
        p_a, p_b = _population_probabilities(scenario, threshold)
        return float(((1 - p_a - p_b) * sizes).sum()) - scenario.tie_rate

    return float(optimize.brentq(excess, 0.0, 50.0, xtol=1e-12))


def true_shares(scenario: Scenario) -> TrueShares:
    """The population shares and s (the target of every interval), overall and per category."""
    p_a, p_b = _population_probabilities(scenario, tie_threshold(scenario))
    sizes = scenario.category_sizes / scenario.category_sizes.sum()
    category_s = p_a + 0.5 * (1 - p_a - p_b)
    share_a, share_b = float((p_a * sizes).sum()), float((p_b * sizes).sum())
    return TrueShares(
        share_a=share_a,
        share_tie=1 - share_a - share_b,
        share_b=share_b,
        s=float((category_s * sizes).sum()),
        category_s=tuple(float(v) for v in category_s),
    )


def effect_for_score(scenario: Scenario, s: float) -> float:
    """The logit ``effect`` that gives the scenario a population score of ``s`` (ties held at ``tie_rate``)."""
    if not 0 < s < 1:
        raise ValueError(f"Target score must lie strictly between 0 and 1, got {s}.")
    return float(optimize.brentq(lambda e: true_shares(replace(scenario, effect=e)).s - s, -30.0, 30.0, xtol=1e-10))


def scenario_layout(scenario: Scenario, rng: np.random.Generator) -> Layout:
    """Who rates what under the scenario's design (random draws only for the ``random`` design)."""
    sizes = scenario.category_sizes
    prompt_category = np.repeat(np.arange(sizes.size), sizes)
    n_prompts = int(sizes.sum())
    names = tuple(name for name, _ in scenario.categories)
    if scenario.design == "per_category":
        per = scenario.raters_per_category
        prompt = np.repeat(np.arange(n_prompts), per)
        rater = prompt_category[prompt] * per + np.tile(np.arange(per), n_prompts)
        n_raters = per * sizes.size
    elif scenario.design == "few_raters":
        prompt = np.repeat(np.arange(n_prompts), scenario.n_raters)
        rater = np.tile(np.arange(scenario.n_raters), n_prompts)
        n_raters = scenario.n_raters
    else:
        k = scenario.ratings_per_prompt
        keys = rng.random((n_prompts, scenario.n_raters))
        chosen = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < scenario.n_raters else np.argsort(keys, axis=1)
        prompt = np.repeat(np.arange(n_prompts), k)
        rater = chosen.ravel()
        n_raters = scenario.n_raters
    return Layout(prompt=prompt, rater=rater, prompt_category=prompt_category, n_raters=n_raters, category_names=names)


def simulate_choices(
    scenario: Scenario,
    layout: Layout,
    R: int,
    rng: np.random.Generator,
    threshold: float | None = None,
    left_is_a: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """R studies on one layout: choice codes (N, R) int8 (0 A, 1 tie, 2 B) and left_is_a (N, R) bool.

    Sides are drawn at random per judgment unless ``left_is_a`` (N,) fixes the display for every study.
    """
    threshold = tie_threshold(scenario) if threshold is None else threshold
    prompt_effect = rng.normal(0.0, scenario.prompt_sd, size=(layout.n_prompts, R))
    rater_effect = rng.normal(0.0, scenario.rater_sd, size=(layout.n_raters, R))
    if left_is_a is None:
        left_is_a = rng.random((layout.n, R)) < 0.5
    else:
        left_is_a = np.broadcast_to(np.asarray(left_is_a, dtype=bool)[:, None], (layout.n, R))
    offset = (scenario.effect + scenario.category_offsets[layout.judgment_category])[:, None]
    latent = prompt_effect[layout.prompt]
    latent += rater_effect[layout.rater]
    latent += offset
    latent += np.where(left_is_a, scenario.left_bias, -scenario.left_bias)
    latent += rng.logistic(size=(layout.n, R))
    choice = np.ones((layout.n, R), dtype=np.int8)
    choice[latent > threshold] = 0
    choice[latent < -threshold] = 2
    return choice, left_is_a


def simulate_judgments(
    scenario: Scenario, seed: int = SIMULATION_SEED, questions: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """One simulated study as a judgments frame (the report's input convention).

    With ``questions``, every comparison is answered once per question, on the same display (side), with
    independent effects per question. Response times: a log-normal median per rater around 9 s, spread 0.5.
    """
    rng = np.random.default_rng(seed)
    layout = scenario_layout(scenario, rng)
    threshold = tie_threshold(scenario)
    names = np.array([name for name, _ in scenario.categories], dtype=object)
    left_is_a = rng.random(layout.n) < 0.5
    rater_median = np.exp(rng.normal(np.log(9000.0), 0.3, size=layout.n_raters))
    frames = []
    for question in questions or (None,):
        choice, _ = simulate_choices(scenario, layout, 1, rng, threshold, left_is_a=left_is_a)
        frame = pd.DataFrame(
            {
                "prompt_id": layout.prompt + 1,
                "category": names[layout.judgment_category],
                "rater_id": layout.rater + 1,
                "choice": np.array(CHOICES, dtype=object)[choice[:, 0]],
                "left_is_a": left_is_a,
                "response_time_ms": np.round(
                    rater_median[layout.rater] * np.exp(rng.normal(0.0, 0.5, size=layout.n))
                ).astype(np.int64),
            }
        )
        if question is not None:
            frame.insert(0, "question", question)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def simulate_pairwise(
    strengths: dict[str, float],
    *,
    model: Literal["bradley_terry", "davidson"] = "bradley_terry",
    tie_parameter: float = 0.5,
    tie_share: float = 0.2,
    n_prompts: int = 200,
    judgments_per_pair: int = 5,
    seed: int = SIMULATION_SEED,
) -> pd.DataFrame:
    """Judgments of every pair of models on every prompt (categories as DrawBench's, scaled) with known truth.

    ``davidson``: P(i ≻ j) ∝ π_i, P(tie) ∝ ν·sqrt(π_i·π_j) with π = exp(strength), ν = ``tie_parameter``.
    ``bradley_terry``: a tie with probability ``tie_share``, else i wins with the probability p that makes
    P(i ≻ j) + ½·P(tie) = σ(β_i − β_j) (needs tie_share/2 ≤ σ ≤ 1 − tie_share/2). Sides are random.
    """
    rng = np.random.default_rng(seed)
    names = list(strengths)
    categories = _scaled_categories(n_prompts)
    category_of_prompt = np.repeat([name for name, _ in categories], [size for _, size in categories])
    rows = []
    for index_i, first in enumerate(names):
        for second in names[index_i + 1 :]:
            d = strengths[first] - strengths[second]
            if model == "davidson":
                weights = np.array([np.exp(d / 2), tie_parameter, np.exp(-d / 2)])
                probabilities = weights / weights.sum()
            else:
                target = special.expit(d)
                win = (target - tie_share / 2) / (1 - tie_share)
                if not 0 <= win <= 1:
                    raise ValueError(f"tie_share {tie_share} is too large for the pair {first!r}, {second!r}.")
                probabilities = np.array([(1 - tie_share) * win, tie_share, (1 - tie_share) * (1 - win)])
            size = n_prompts * judgments_per_pair
            choice = rng.choice(3, size=size, p=probabilities)
            rows.append(
                pd.DataFrame(
                    {
                        "prompt_id": np.repeat(np.arange(1, n_prompts + 1), judgments_per_pair),
                        "category": np.repeat(category_of_prompt, judgments_per_pair),
                        "rater_id": rng.integers(1, 51, size=size),
                        "model_a": first,
                        "model_b": second,
                        "choice": np.array(CHOICES, dtype=object)[choice],
                        "left_is_a": rng.random(size) < 0.5,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


# ----------------------------------------------------------------------------------------------- coverage


@dataclass(frozen=True)
class CoverageResult:
    """How often a method's interval covered the true s over R simulated studies."""

    method: str
    scenario: str
    R: int
    seed: int
    level: float
    B: int | None
    truth: float
    coverage: float
    mc_se: float
    mean_width: float
    mean_estimate: float
    category_coverage: tuple[float, ...]
    category_names: tuple[str, ...]
    zero_width: int = 0  # intervals (any scope) of zero width: a valid interval on finite data never has one
    mean_df: float = float("nan")


def _scenario_stream(scenario: Scenario, seed: int) -> np.random.SeedSequence:
    """An independent stream per (seed, scenario name): adding a scenario never changes another's draws."""
    return np.random.SeedSequence([seed, zlib.crc32(scenario.name.encode())])


def _chunks(scenario: Scenario, R: int, seed: int):
    """Yield (layout, choices (N, r), left_is_a, rng) for chunks of studies adding up to R."""
    stream = _scenario_stream(scenario, seed)
    threshold = tie_threshold(scenario)
    layout_rng = np.random.default_rng(stream.spawn(1)[0])
    layout = scenario_layout(scenario, layout_rng)
    per_chunk = max(1, CHUNK_JUDGMENTS // layout.n)
    done = 0
    for child in stream.spawn((R + per_chunk - 1) // per_chunk):
        rng = np.random.default_rng(child)
        if scenario.design == "random" and done:
            layout = scenario_layout(scenario, rng)
        size = min(per_chunk, R - done)
        choice, left_is_a = simulate_choices(scenario, layout, size, rng, threshold)
        yield layout, choice, left_is_a, rng
        done += size


def coverage(
    method: Method,
    scenario: Scenario,
    R: int = 2000,
    seed: int = SIMULATION_SEED,
    *,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    df_rule: DfRule = "floored",
    correction: Correction = "balanced",
    bounds: Bounds = "score",
    progress: Callable[[int], object] | None = None,
) -> CoverageResult:
    """Coverage of ``method``'s interval for s over R simulated studies, overall and per category.

    Bootstrap methods draw one set of B resamples per chunk of studies and apply it to every study of the chunk
    (each study is still bootstrapped with a fixed, valid resample set; studies stay independent given it).
    ``progress`` is called with the number of studies of each chunk done (a progress bar's ``update``).
    """
    truth = true_shares(scenario)
    category_truth = np.array(truth.category_s)
    scope_truth = np.concatenate([[truth.s], category_truth])[:, None]
    covered = np.zeros(scope_truth.size)
    width = estimate = df_sum = 0.0
    zero_width = 0
    for layout, choice, _, rng in _chunks(scenario, R, seed):
        result = interval_batch(
            method,
            SCORE_OF_CHOICE[choice],
            layout,
            level=level,
            B=B,
            seed=rng,
            df_rule=df_rule,
            correction=correction,
            bounds=bounds,
        )
        covered += ((result.low <= scope_truth) & (scope_truth <= result.high)).sum(axis=1)
        width += float((result.high[0] - result.low[0]).sum())
        zero_width += int((result.high - result.low <= 0).sum())
        df_sum += float(result.df[0].sum()) if result.df is not None else float("nan")
        estimate += float(result.estimate[0].sum())
        if progress is not None:
            progress(choice.shape[1])
    rate = covered / R
    return CoverageResult(
        method=method,
        scenario=scenario.name,
        R=R,
        seed=seed,
        level=level,
        B=B if "bootstrap" in method else None,
        truth=truth.s,
        coverage=float(rate[0]),
        mc_se=float(np.sqrt(rate[0] * (1 - rate[0]) / R)),
        mean_width=width / R,
        mean_estimate=estimate / R,
        category_coverage=tuple(float(v) for v in rate[1:]),
        category_names=tuple(name for name, _ in scenario.categories),
        zero_width=zero_width,
        mean_df=df_sum / R,
    )


def coverage_table(
    methods: tuple[Method, ...] = (DEFAULT_METHOD, "prompt_bootstrap", "prompt_bootstrap_bca", "two_way_bootstrap"),
    scenarios: tuple[Scenario, ...] = SCENARIO_GRID,
    R: int = 2000,
    seed: int = SIMULATION_SEED,
    *,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
) -> pd.DataFrame:
    """One row per scenario × method: coverage, its Monte-Carlo error, mean width, bias, worst category."""
    rows = []
    for scenario in scenarios:
        for method in methods:
            result = coverage(method, scenario, R, seed, level=level, B=B)
            rows.append(
                {
                    "scenario": scenario.name,
                    "method": method,
                    "coverage": result.coverage,
                    "mc_se": result.mc_se,
                    "mean_width": result.mean_width,
                    "bias": result.mean_estimate - result.truth,
                    "truth": result.truth,
                    "worst_category_coverage": min(result.category_coverage),
                    "R": R,
                    "B": result.B,
                    "seed": seed,
                }
            )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RejectionResult:
    """How often a test of s = ½ rejected over R simulated A-vs-A studies."""

    method: str
    scenario: str
    R: int
    seed: int
    level: float
    B: int | None
    rejection_rate: float
    mc_se: float


def a_vs_a_rejection_rate(
    method: Method | Literal["permutation"] = DEFAULT_METHOD,
    scenario: Scenario | None = None,
    R: int = 2000,
    seed: int = SIMULATION_SEED,
    *,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
) -> RejectionResult:
    """Share of A-vs-A studies (true s = ½) whose interval excludes ½, or whose permutation p-value < 1 − level.

    The default scenario is the DrawBench design with identical models: effect 0, prompt effects (the two sets of
    samples differ), no model-space rater effects (a rater cannot prefer one of two identical models), left bias.
    """
    scenario = scenario or Scenario(name="a_vs_a", rater_sd=0.0)
    if scenario.effect != 0 or scenario.category_spread != 0:
        raise ValueError(f"Scenario {scenario.name!r} is not an A-vs-A study: effect and category_spread must be 0.")
    rejected = 0
    for layout, choice, _, rng in _chunks(scenario, R, seed):
        y = SCORE_OF_CHOICE[choice]
        if method == "permutation":
            rejected += int((permutation_pvalues_batch(y, layout, B=B, seed=rng) < 1 - level).sum())
        else:
            result = interval_batch(method, y, layout, level=level, B=B, seed=rng)
            rejected += int(((result.low[0] > 0.5) | (result.high[0] < 0.5)).sum())
    rate = rejected / R
    return RejectionResult(
        method=method,
        scenario=scenario.name,
        R=R,
        seed=seed,
        level=level,
        B=B if method == "permutation" or "bootstrap" in method else None,
        rejection_rate=rate,
        mc_se=float(np.sqrt(max(rate * (1 - rate), 1e-12) / R)),
    )


# -------------------------------------------------------------------------------------------------- power


@dataclass(frozen=True)
class PowerResult:
    """What a design can detect: the minimum detectable difference in s at ``target_power``, and the power at
    ``effect`` when one is given (both for a two-sided test of s = ½ by the default interval)."""

    n_prompts: int
    raters: int
    design: str
    ratings_per_prompt: int
    level: float
    target_power: float
    se: float
    df: float
    min_detectable_difference: float
    effect: float | None
    power: float | None
    R: int
    seed: int


def _scaled_categories(n_prompts: int) -> tuple[tuple[str, int], ...]:
    """DrawBench's categories scaled to ``n_prompts`` (largest remainder); one stratum below 11 prompts."""
    if n_prompts < len(DRAWBENCH_CATEGORIES):
        return (("all", n_prompts),)
    sizes = np.array([size for _, size in DRAWBENCH_CATEGORIES], dtype=float)
    raw = sizes / sizes.sum() * n_prompts
    counts = np.maximum(np.floor(raw).astype(int), 1)
    order = np.argsort(-(raw - np.floor(raw)))
    for index in order[: n_prompts - counts.sum()]:
        counts[index] += 1
    return tuple((name, int(count)) for (name, _), count in zip(DRAWBENCH_CATEGORIES, counts, strict=True))


def power_scenario(
    n_prompts: int,
    raters: int,
    *,
    design: Design = "per_category",
    ratings_per_prompt: int = 5,
    prompt_sd: float = 1.0,
    rater_sd: float = 0.5,
    tie_rate: float = 0.3,
    left_bias: float = 0.2,
    effect: float = 0.0,
) -> Scenario:
    """The scenario of a planned study: DrawBench's categories scaled to ``n_prompts``; ``raters`` is raters per
    category for ``per_category`` and the pool size otherwise."""
    if n_prompts < 2 or raters < 1:
        raise ValueError(f"Power needs at least 2 prompts and 1 rater, got {n_prompts} prompts, {raters} raters.")
    return Scenario(
        name=f"power_{design}_{n_prompts}_{raters}",
        design=design,
        prompt_sd=prompt_sd,
        rater_sd=rater_sd,
        tie_rate=tie_rate,
        left_bias=left_bias,
        effect=effect,
        raters_per_category=raters,
        n_raters=raters,
        ratings_per_prompt=min(ratings_per_prompt, raters),
        categories=_scaled_categories(n_prompts),
    )


def judgments_per_study(scenario: Scenario) -> int:
    """Judgments of one simulated study of ``scenario`` (one question)."""
    n_prompts = int(scenario.category_sizes.sum())
    if scenario.design == "per_category":
        return n_prompts * scenario.raters_per_category
    if scenario.design == "few_raters":
        return n_prompts * scenario.n_raters
    return n_prompts * scenario.ratings_per_prompt


def power(
    n_prompts: int,
    raters: int,
    effect: float | None = None,
    *,
    design: Design = "per_category",
    ratings_per_prompt: int = 5,
    prompt_sd: float = 1.0,
    rater_sd: float = 0.5,
    tie_rate: float = 0.3,
    left_bias: float = 0.2,
    level: float = DEFAULT_LEVEL,
    target_power: float = 0.8,
    R: int = 1000,
    seed: int = SIMULATION_SEED,
    progress: Callable[[int], object] | None = None,
) -> PowerResult:
    """ "With this many raters and prompts, what difference in s can I detect?"

    ``raters`` means raters per category for ``per_category`` and the pool size otherwise. The standard error
    of ŝ is the spread of ŝ over R simulated null studies (and the df the mean of the default interval's), so
    MDD = (t_{1−α/2} + t_{power})·SE. ``effect`` (a difference in s from ½) adds a simulated power at that effect.
    ``progress`` is called with the number of studies of each chunk done.
    """
    scenario = power_scenario(
        n_prompts,
        raters,
        design=design,
        ratings_per_prompt=ratings_per_prompt,
        prompt_sd=prompt_sd,
        rater_sd=rater_sd,
        tie_rate=tie_rate,
        left_bias=left_bias,
    )
    estimates, dfs = [], []
    for layout, choice, _, _ in _chunks(scenario, R, seed):
        result = two_way_cluster_batch(SCORE_OF_CHOICE[choice], layout, level=level)
        estimates.append(result.estimate[0])
        dfs.append(result.df[0])
        if progress is not None:
            progress(choice.shape[1])
    se = float(np.concatenate(estimates).std(ddof=1))
    df = float(np.concatenate(dfs).mean())
    mdd = (t_quantile(level, df) + t_quantile(2 * target_power - 1, df)) * se
    achieved = None
    if effect is not None:
        shifted = replace(scenario, name=scenario.name + "_effect", effect=effect_for_score(scenario, 0.5 + effect))
        rejected = 0
        for layout, choice, _, _ in _chunks(shifted, R, seed):
            result = two_way_cluster_batch(SCORE_OF_CHOICE[choice], layout, level=level)
            rejected += int(((result.low[0] > 0.5) | (result.high[0] < 0.5)).sum())
            if progress is not None:
                progress(choice.shape[1])
        achieved = rejected / R
    return PowerResult(
        n_prompts=n_prompts,
        raters=raters,
        design=design,
        ratings_per_prompt=scenario.ratings_per_prompt,
        level=level,
        target_power=target_power,
        se=se,
        df=df,
        min_detectable_difference=float(mdd),
        effect=effect,
        power=achieved,
        R=R,
        seed=seed,
    )


def t_test_power(difference: np.ndarray | float, se: float, df: float, level: float = DEFAULT_LEVEL) -> np.ndarray:
    """Power of the two-sided t test of s = ½ at a true difference ``difference`` from ½: the noncentral t with
    noncentrality difference / se beyond ±t_{1−α/2}."""
    critical = t_quantile(level, df)
    shift = np.asarray(difference, dtype=float) / se
    return stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift)


@dataclass(frozen=True)
class PowerCurve:
    """A planned study's minimum detectable difference and its power curve, from the default interval's own
    standard error averaged over R simulated null studies."""

    n_prompts: int
    raters: int
    design: str
    ratings_per_prompt: int
    n_judgments: int
    level: float
    target_power: float
    se: float
    df: float
    min_detectable_difference: float
    differences: tuple[float, ...]
    powers: tuple[float, ...]
    R: int
    seed: int


# Judgments × studies that a power curve simulates at most: R shrinks for large designs, so that a page answers
# in about a second; the curve's standard error averages R estimates, each already precise, so a small R suffices.
POWER_CURVE_BUDGET = 12_000_000
POWER_CURVE_R = (40, 400)


def power_curve(
    n_prompts: int,
    raters: int,
    *,
    design: Design = "per_category",
    ratings_per_prompt: int = 5,
    prompt_sd: float = 1.0,
    rater_sd: float = 0.5,
    tie_rate: float = 0.3,
    left_bias: float = 0.2,
    level: float = DEFAULT_LEVEL,
    target_power: float = 0.8,
    R: int | None = None,
    seed: int = SIMULATION_SEED,
    points: int = 41,
) -> PowerCurve:
    """Minimum detectable difference at ``target_power`` and the power at ``points`` differences from 0 to twice it.

    Fast by construction: R null studies (by default as many as ``POWER_CURVE_BUDGET`` allows, within
    ``POWER_CURVE_R``) go through the vectorised default interval once; SE² is the mean of its variance estimates
    (unbiased in a balanced design) and df the mean of its degrees of freedom; power is then analytic
    (``t_test_power``), and MDD = (t_{1−α/2} + t_{power})·SE as in ``power``.
    """
    scenario = power_scenario(
        n_prompts,
        raters,
        design=design,
        ratings_per_prompt=ratings_per_prompt,
        prompt_sd=prompt_sd,
        rater_sd=rater_sd,
        tie_rate=tie_rate,
        left_bias=left_bias,
    )
    n_judgments = judgments_per_study(scenario)
    if R is None:
        R = int(np.clip(POWER_CURVE_BUDGET // n_judgments, *POWER_CURVE_R))
    variances, dfs = [], []
    for layout, choice, _, _ in _chunks(scenario, R, seed):
        result = two_way_cluster_batch(SCORE_OF_CHOICE[choice], layout, level=level)
        variances.append(result.se[0] ** 2)
        dfs.append(result.df[0])
    se = float(np.sqrt(np.nanmean(np.concatenate(variances))))
    df = float(np.nanmean(np.concatenate(dfs)))
    mdd = float((t_quantile(level, df) + t_quantile(2 * target_power - 1, df)) * se)
    differences = np.linspace(0.0, min(2 * mdd, 0.5), points)
    return PowerCurve(
        n_prompts=n_prompts,
        raters=raters,
        design=design,
        ratings_per_prompt=scenario.ratings_per_prompt,
        n_judgments=n_judgments,
        level=level,
        target_power=target_power,
        se=se,
        df=df,
        min_detectable_difference=mdd,
        differences=tuple(float(d) for d in differences),
        powers=tuple(float(p) for p in t_test_power(differences, se, df, level)),
        R=R,
        seed=seed,
    )
