"""Benchmark: the stratified prompt-cluster BCa bootstrap, ours (``intervals.bootstrap.prompt_bootstrap_batch``) against
``scipy.stats.bootstrap(method="BCa")`` (issue 15: a hand-written computation stays only where a figure shows why).

scipy can do the stratified cluster bootstrap: one sample per category holding that category's prompt indices
(``paired=False`` resamples each category on its own), and a statistic that turns resampled prompt indices into the
ratio of judgment sums to judgment counts. So the bounds agree, within Monte-Carlo error. What scipy cannot do is
many statistics from one resample: it takes one call per scope (the overall score and each category's) and per
study, where ours computes every scope of every study from one matrix product per category. The results page asks
for 12 scopes per question and pair; the calibration simulator for 12 scopes × hundreds of studies.

Prints: for one DrawBench-shaped study, both bounds per scope and the largest difference; then the seconds for
``--studies`` studies, both ways; the last line is ``scipy / ours time = X``. Prints figures only.

    .venv/bin/python bench/bca.py [--B 2000] [--studies 100] [--seed 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drawbench.results.intervals import bootstrap, core  # noqa: E402
from prompts import DRAWBENCH_CATEGORY_COUNTS  # noqa: E402


def drawbench_study(rng: np.random.Generator, K: int) -> tuple[core.Layout, np.ndarray]:
    """200 prompts in DrawBench's 11 categories, 2-8 judgments each, K studies (columns) of 0/½/1 answers."""
    sizes_by_category = np.array(list(DRAWBENCH_CATEGORY_COUNTS.values()))
    prompt_category = np.repeat(np.arange(sizes_by_category.size), sizes_by_category)
    P = prompt_category.size
    sizes = rng.integers(2, 9, size=P)
    prompt = np.repeat(np.arange(P), sizes)
    quality = rng.normal(0.3, 1.0, size=(P, K))[prompt] + rng.logistic(size=(prompt.size, K))
    Y = np.where(quality > 0.6, 1.0, np.where(quality < -0.6, 0.0, 0.5))
    layout = core.Layout(
        prompt=prompt, rater=np.arange(prompt.size), prompt_category=prompt_category, n_raters=prompt.size
    )
    return layout, Y


def scipy_bca(layout: core.Layout, y: np.ndarray, B: int, seed: int) -> np.ndarray:
    """(1 + C, 2) BCa bounds of every scope of one study, one scipy call per scope."""
    sums = layout.prompt_T @ y
    counts = layout.prompt_sizes
    rng = np.random.default_rng(seed)

    def ratio(*indices, axis=-1):
        chosen = [np.asarray(index, dtype=np.intp) for index in indices]
        return sum(sums[i].sum(axis=axis) for i in chosen) / sum(counts[i].sum(axis=axis) for i in chosen)

    per_category = [np.flatnonzero(layout.prompt_category == c).astype(float) for c in range(layout.n_categories)]
    scopes = [tuple(per_category)] + [(indices,) for indices in per_category]
    bounds = []
    for data in scopes:
        result = stats.bootstrap(
            data, ratio, paired=False, vectorized=True, method="BCa", n_resamples=B, rng=rng, batch=B
        )
        bounds.append((result.confidence_interval.low, result.confidence_interval.high))
    return np.array(bounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--B", type=int, default=2000)
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    layout, Y = drawbench_study(np.random.default_rng(args.seed), args.studies)
    ours = bootstrap.prompt_bootstrap_batch(Y[:, :1], layout, B=20_000, seed=args.seed, bca=True)
    theirs = scipy_bca(layout, Y[:, 0], 20_000, args.seed)
    names = ["overall", *DRAWBENCH_CATEGORY_COUNTS]
    print(f"one DrawBench-shaped study ({layout.n} judgments), B = 20,000: 95% BCa bounds, ours and scipy's")
    for index, name in enumerate(names):
        print(
            f"  {name:22s} ours [{ours.low[index, 0]:.4f}, {ours.high[index, 0]:.4f}]"
            f"  scipy [{theirs[index, 0]:.4f}, {theirs[index, 1]:.4f}]"
        )
    difference = np.abs(np.column_stack([ours.low[:, 0], ours.high[:, 0]]) - theirs).max()
    print(f"largest difference of a bound: {difference:.4f} (Monte-Carlo error of a bound at B = 20,000: ~0.002-0.01)")

    start = time.perf_counter()
    bootstrap.prompt_bootstrap_batch(Y[:, :1], layout, B=args.B, seed=args.seed, bca=True)
    one_ours = time.perf_counter() - start
    start = time.perf_counter()
    scipy_bca(layout, Y[:, 0], args.B, args.seed)
    one_scipy = time.perf_counter() - start
    print(f"one study, {1 + layout.n_categories} scopes, B = {args.B}: ours {one_ours:.3f} s, scipy {one_scipy:.3f} s")

    start = time.perf_counter()
    bootstrap.prompt_bootstrap_batch(Y, layout, B=args.B, seed=args.seed, bca=True)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for k in range(args.studies):
        scipy_bca(layout, Y[:, k], args.B, args.seed + k)
    scipy_seconds = time.perf_counter() - start
    print(
        f"{args.studies} studies x {1 + layout.n_categories} scopes, B = {args.B}: ours {ours_seconds:.2f} s"
        f" (one call), scipy {scipy_seconds:.2f} s ({args.studies * (1 + layout.n_categories)} calls)"
    )
    print(f"scipy / ours time = {scipy_seconds / ours_seconds:.1f}")


if __name__ == "__main__":
    main()
