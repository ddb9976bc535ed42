"""Benchmark: the bias of the two-way cluster-robust variance where raters span categories (strata): the balanced
correction alone (the default until 2026-12-04) against the default's method-of-moments weighting of the same sums.

On bench/ppi.py's human designs (DrawBench: 200 prompts × 2 comparisons; PartiPrompts: 400 of 1,632 prompts, one
comparison each; 100 raters in a pool, categories as strata), answers are Gaussian components: a prompt effect, a
rater effect, judgment noise, each alone and mixed. For each, over K simulated studies, it prints E[SE²] / Var(ŝ) of

- ``balanced``: ``two_way_cluster_batch`` with the balanced correction alone (``Layout.pooled_moment_weights``
  withheld), overall scope;
- ``default``: ``two_way_cluster_batch`` as it is, overall scope;
- ``moments``: computed here from the definition, V̂ = w·(S_p, S_r, S_j), the sums of squared residual totals per
  prompt, per rater (over the pool) and
  per prompt × rater cell, with w solving Gᵀw = h for G[K, L] = ‖Z_Kᵀ(I − H)Z_L‖² (H: the category means; L over
  the prompt, rater and judgment components) and h = (Σ n_p², Σ n_r², N): unbiased for each component whatever the
  layout (least squares where prompts are singletons and the prompt and cell sums coincide).

1.000 is unbiased; below it, intervals too narrow. Prints figures only.

    .venv/bin/python bench/cluster_variance.py [--K 20000] [--seed 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ppi as ppi_bench  # noqa: E402

from drawbench.results.intervals.cluster import two_way_cluster_batch  # noqa: E402
from drawbench.results.intervals.core import Layout  # noqa: E402
from drawbench.results.intervals.ppi import _labeled_layout, ppi_layout  # noqa: E402

COMPONENTS = {"noise": (0.0, 0.0, 1.0), "rater": (0.0, 1.0, 0.0), "prompt": (1.0, 0.0, 0.0), "mix": (0.5, 0.4, 1.0)}


def _indicator(index: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((index.size, n))
    out[np.arange(index.size), index] = 1.0
    return out


def _centred(Z: np.ndarray, Zc: np.ndarray) -> np.ndarray:
    """(I − H) Z: Z's rows less their category's mean (Zc: judgments × categories indicator)."""
    return Z - Zc @ ((Zc.T @ Z) / Zc.sum(axis=0)[:, None])


def _without_moments(layout: Layout) -> Layout:
    """The same layout with the moments' weights withheld: the balanced correction alone."""
    bare = Layout(layout.prompt, layout.rater, layout.prompt_category, layout.n_raters)
    bare.__dict__["pooled_moment_weights"] = None  # a cached_property: this value is what it returns
    return bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--K", type=int, default=20_000, help="Simulated studies per design and component mix.")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"E[SE²] / Var(ŝ) over {args.K} simulated studies (1.000: unbiased)")
    print(f"{'design':12s} {'answers':8s} {'balanced':>8s} {'default':>8s} {'moments':>8s}")
    for shape in ("drawbench", "partiprompts"):
        design = ppi_bench.design_for(shape, 1, rng)
        full = ppi_layout(
            design.prompt_category,
            design.comparison_prompt[: design.n],
            design.rater,
            design.comparison_prompt[design.n :],
        )
        layout = _labeled_layout(full, design.n)
        n = design.n
        Zc = _indicator(layout.judgment_category, layout.n_categories)
        Zp, Zr = _indicator(layout.prompt, layout.n_prompts), _indicator(layout.rater, layout.n_raters)
        cells = np.unique(layout.prompt * (layout.n_raters + 1) + layout.rater, return_inverse=True)[1]
        Zj = _indicator(cells, int(cells.max()) + 1)
        totals = (Zp, Zr, Zj)
        components = (Zp, Zr, np.eye(n))
        G = np.array([[np.sum((Zk.T @ _centred(Zl, Zc)) ** 2) for Zl in components] for Zk in totals])
        h = np.array([np.sum(Zp.sum(axis=0) ** 2), np.sum(Zr.sum(axis=0) ** 2), n])
        weights = np.linalg.lstsq(G.T, h, rcond=None)[0]
        for name, (sd_prompt, sd_rater, sd_noise) in COMPONENTS.items():
            Y = (
                sd_prompt * rng.normal(size=(layout.n_prompts, args.K))[layout.prompt]
                + sd_rater * rng.normal(size=(layout.n_raters, args.K))[layout.rater]
                + sd_noise * rng.normal(size=(n, args.K))
            )
            residuals = _centred(Y, Zc)
            sums = np.stack([np.sum((Zk.T @ residuals) ** 2, axis=0) for Zk in totals])
            moments = weights @ sums / n**2
            fit = two_way_cluster_batch(Y, layout, bounds="wald")
            balanced = two_way_cluster_batch(Y, _without_moments(layout), bounds="wald")
            spread = fit.estimate[0].var()
            print(
                f"{shape:12s} {name:8s} {np.nanmean(balanced.se[0] ** 2) / spread:8.3f}"
                f" {np.nanmean(fit.se[0] ** 2) / spread:8.3f} {moments.mean() / spread:8.3f}",
                flush=True,
            )
        print(f"{shape:12s} moments weights (S_p, S_r, S_j): {np.round(weights, 3).tolist()}")


if __name__ == "__main__":
    main()
