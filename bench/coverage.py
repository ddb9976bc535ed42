"""Benchmark: coverage of the default preference interval at full R, on the calibration grid and at the edges
(issue 15; ``drawbench.results.simulate``). CI runs the same scenarios at R = 2,000 (tests/results/test_simulate.py);
this prints the full-R figures a closing note quotes.

For each scenario of ``SCENARIO_GRID`` (calibration: prompt and rater effects, few raters, ties, category effects,
A-vs-A, DrawBench's 7-prompt category under random assignment) and ``EDGE_GRID`` (a near-all-A study, small pilots):
the overall coverage of the 95% interval with its Monte-Carlo se, the worst category's, the number of zero-width
intervals, the mean width and df; then the A-vs-A rejection rate. The clipped t interval on the same variance
(``bounds="wald"``) is printed beside it where the score bounds were the fix: the edges and the 7-prompt category.
The last line is ``default interval coverage = LOW-HIGH``, over both grids. Prints figures only.

    .venv/bin/python bench/coverage.py [--R 20000] [--seed 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drawbench.results import simulate as sim  # noqa: E402
from drawbench.results.intervals import DEFAULT_METHOD  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--R", type=int, default=20_000, help="Simulated studies per scenario.")
    parser.add_argument("--seed", type=int, default=sim.SIMULATION_SEED)
    args = parser.parse_args()
    print(f"coverage of {DEFAULT_METHOD} (95%): R = {args.R} studies per scenario, seed {args.seed}")
    print(
        f"{'scenario':30s} {'grid':>11s} {'coverage':>8s} {'mc se':>6s} {'worst cat':>9s} {'zero w':>6s}"
        f" {'width':>6s} {'df':>6s} {'t: cover':>8s} {'t: worst':>8s} {'t: zero':>7s}"
    )
    start = time.perf_counter()
    grids = [("calibration", s) for s in sim.SCENARIO_GRID] + [("edge", s) for s in sim.EDGE_GRID]
    overall, worst = [], []
    with tqdm(total=args.R * len(grids), unit="study", file=sys.stderr, leave=False) as bar:
        for grid, scenario in grids:
            result = sim.coverage(DEFAULT_METHOD, scenario, args.R, args.seed, progress=bar.update)
            overall.append(result.coverage)
            worst.append(min(result.category_coverage))
            line = (
                f"{scenario.name:30s} {grid:>11s} {result.coverage:8.4f} {result.mc_se:6.4f} {worst[-1]:9.4f}"
                f" {result.zero_width:6d} {result.mean_width:6.3f} {result.mean_df:6.1f}"
            )
            if grid == "edge" or scenario.name == "random_pool_60_k5":
                wald = sim.coverage(DEFAULT_METHOD, scenario, args.R, args.seed, bounds="wald")
                line += f" {wald.coverage:8.4f} {min(wald.category_coverage):8.4f} {wald.zero_width:7d}"
            tqdm.write(line, file=sys.stdout)
    rejection = sim.a_vs_a_rejection_rate(DEFAULT_METHOD, R=args.R, seed=args.seed)
    print(f"A-vs-A rejects {100 * rejection.rejection_rate:.2f}% (Monte-Carlo se {100 * rejection.mc_se:.2f} points)")
    calibration = overall[: len(sim.SCENARIO_GRID)]
    print(
        f"calibration scenarios: {min(calibration):.4f}-{max(calibration):.4f}, every category >="
        f" {min(worst[: len(sim.SCENARIO_GRID)]):.4f}; edges: {min(overall[len(calibration) :]):.4f}-"
        f"{max(overall[len(calibration) :]):.4f}, every category >= {min(worst[len(calibration) :]):.4f}"
    )
    print(f"seconds: {time.perf_counter() - start:.1f}")
    print(f"default interval coverage = {min(overall):.4f}-{max(overall):.4f}")


if __name__ == "__main__":
    main()
