"""Cluster bootstraps of preference scores: the prompt bootstrap stratified by category (percentile, BCa), Owen's
(2007) two-way pigeonhole bootstrap, and the within-prompt label-permutation test.

Every bootstrap draws all B resamples at once as count matrices (B × prompts, B × raters) and reduces the data to
per-prompt (or per prompt × rater) sums first, so a resample costs a matrix product, never a Python iteration.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from drawbench.results.intervals.core import (
    DEFAULT_B,
    DEFAULT_LEVEL,
    DEFAULT_SEED,
    BatchIntervals,
    Layout,
    _as_columns,
)


def prompt_weights(layout: Layout, B: int, rng: np.random.Generator) -> np.ndarray:
    """(P, B) resample counts: in each resample, each category's prompts drawn with replacement, as many as it has."""
    return np.vstack([_multinomial_counts(rng, B, int(n_c)) for n_c in layout.prompts_per_category])


def rater_weights(layout: Layout, B: int, rng: np.random.Generator) -> np.ndarray:
    """(R, B) resample counts for raters: within category when raters are nested in categories, else pool-wide."""
    if layout.raters_nested:
        weights = np.zeros((layout.n_raters, B))
        for raters in layout.raters_in_category:
            weights[raters] = _multinomial_counts(rng, B, raters.size)
        return weights
    if layout.raters_present == layout.n_raters:
        return _multinomial_counts(rng, B, layout.n_raters)
    weights = np.zeros((layout.n_raters, B))
    present = np.unique(layout.rater)
    weights[present] = _multinomial_counts(rng, B, present.size)
    return weights


def _multinomial_counts(rng: np.random.Generator, B: int, n: int) -> np.ndarray:
    """(n, B) counts: column b holds how often each of n items came up in n draws with replacement.

    Counted resample by resample (each bincount lands in one contiguous block) and returned as a transposed view:
    BLAS reads it as is, and no 10-million-element copy is made for a large rater pool.
    """
    index_type = np.int32 if B * n < 2**31 else np.int64
    draws = rng.integers(0, n, size=(B, n), dtype=index_type)
    draws += (np.arange(B, dtype=index_type) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=B * n).reshape(B, n).astype(float).T


def _row_quantiles(sorted_values: np.ndarray, q: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantiles along the last axis over the first ``counts`` values of each row (the finite
    ones: NaN sorts last), q broadcast to the leading axes; NaN for a row without any."""
    last = np.maximum(counts - 1, 0)
    position = np.clip(q, 0.0, 1.0) * last
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, last)
    fraction = position - below
    lower = np.take_along_axis(sorted_values, below[..., None], axis=-1)[..., 0]
    upper = np.take_along_axis(sorted_values, above[..., None], axis=-1)[..., 0]
    return np.where(counts > 0, lower + fraction * (upper - lower), np.nan)


def _bootstrap_bounds(
    replicates: np.ndarray, estimate: np.ndarray, level: float, acceleration: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile (acceleration None) or BCa bounds from replicates of shape (..., B).

    A replicate is NaN where its resample holds no judgment of the scope (a two-way resample whose drawn raters
    never rated its drawn prompts, in a sparse design): the bounds rest on the others, i.e. on the bootstrap
    distribution given a non-empty resample.
    """
    alpha = (1 - level) / 2
    ordered = np.sort(replicates, axis=-1)
    counts = np.isfinite(replicates).sum(axis=-1)
    if acceleration is None:
        q_low = np.full(estimate.shape, alpha)
        q_high = np.full(estimate.shape, 1 - alpha)
    else:
        valid = np.maximum(counts, 1)
        # Mid-rank for replicates equal to the estimate: scores take few distinct values in small scopes.
        tolerance = 1e-12
        below = (replicates < estimate[..., None] - tolerance).sum(axis=-1)
        equal = (np.abs(replicates - estimate[..., None]) <= tolerance).sum(axis=-1)
        share = np.clip((below + 0.5 * equal) / valid, 0.5 / valid, 1 - 0.5 / valid)
        z0 = stats.norm.ppf(share)
        z = stats.norm.ppf([alpha, 1 - alpha])

        def adjusted(z_alpha: float) -> np.ndarray:
            shifted = z0 + z_alpha
            return stats.norm.cdf(z0 + shifted / (1 - acceleration * shifted))

        q_low, q_high = adjusted(z[0]), adjusted(z[1])
    return _row_quantiles(ordered, q_low, counts), _row_quantiles(ordered, q_high, counts)


def _undefined_where_degenerate(
    low: np.ndarray, high: np.ndarray, se: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bootstrap whose replicates do not spread (no variation in the scope, all A or all ties; or so little that
    the percentile bounds coincide) has no interval to give: NaN bounds, which the page shows as "—" and flags as
    low precision, rather than a zero-width claim of certainty; and no SE where every replicate is equal."""
    degenerate = ~(high > low)
    return np.where(degenerate, np.nan, low), np.where(degenerate, np.nan, high), np.where(se > 0, se, np.nan)


def _replicate_sd(replicates: np.ndarray) -> np.ndarray:
    """Standard deviation of the finite replicates along the last axis (NaN with fewer than two)."""
    finite = np.isfinite(replicates)
    counts = finite.sum(axis=-1)
    values = np.where(finite, replicates, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = values.sum(axis=-1) / counts
        squares = np.where(finite, (replicates - mean[..., None]) ** 2, 0.0).sum(axis=-1)
        return np.where(counts > 1, np.sqrt(squares / (counts - 1)), np.nan)


def _jackknife_acceleration(prompt_sums: np.ndarray, prompt_counts: np.ndarray, layout: Layout) -> np.ndarray:
    """BCa acceleration per scope and column from the prompts' empirical influence (stratified jackknife).

    For a ratio estimate ŝ = ΣS/ΣM, prompt p's influence is d_p = S_p − ŝ·M_p, centred within its category;
    a = Σd³ / (6·(Σd²)^{3/2}) over the scope's prompts.
    """
    C = layout.n_categories
    scope_a = np.empty((1 + C, prompt_sums.shape[1]))
    bounds = layout.category_bounds
    total = prompt_sums.sum(axis=0) / prompt_counts.sum()
    influence_overall = prompt_sums - total[None, :] * prompt_counts[:, None]
    for c in range(C):
        rows = slice(bounds[c], bounds[c + 1])
        d = influence_overall[rows]
        influence_overall[rows] = d - d.mean(axis=0)
        s_c = prompt_sums[rows].sum(axis=0) / prompt_counts[rows].sum()
        d_c = prompt_sums[rows] - s_c[None, :] * prompt_counts[rows, None]
        scope_a[c + 1] = _acceleration(d_c)
    scope_a[0] = _acceleration(influence_overall)
    return scope_a


def _acceleration(d: np.ndarray) -> np.ndarray:
    cube = (d**3).sum(axis=0)
    square = (d**2).sum(axis=0)
    return np.divide(cube, 6 * square**1.5, out=np.zeros_like(cube), where=square > 0)


def _category_ratio_replicates(numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    """Replicates (1 + C, K, B) from per-category bootstrap numerators (C, K, B) and denominators (C, 1 | K, B)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        # An empty resample (possible in the two-way bootstrap of a sparse design) gives NaN: see _bootstrap_bounds.
        overall = numerators.sum(axis=0, keepdims=True) / denominators.sum(axis=0, keepdims=True)
        per_category = numerators / denominators
    return np.concatenate([overall, per_category], axis=0)


def _transformed(transform: np.ndarray | None, numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    """Numerators of the reported outcomes: ``transform`` (K_out, K_in + 1) @ [numerators; denominator].

    Shares and s are linear in the judgments' indicators, so a report bootstraps only A, tie and the count and
    derives s = A + ½·tie and B = n − A − tie from the same resamples.
    """
    if transform is None:
        return numerators
    counts = np.broadcast_to(denominators, numerators.shape[:-2] + (1,) + numerators.shape[-1:])
    stacked = np.concatenate([numerators, counts], axis=-2)
    return np.einsum("ok,...kb->...ob", transform, stacked)


def _scope_estimates(prompt_sums: np.ndarray, prompt_counts: np.ndarray, layout: Layout) -> np.ndarray:
    """(1 + C, K) ratio estimates from per-prompt sums and counts."""
    sums = layout.prompt_category_T @ prompt_sums
    counts = layout.prompt_category_T @ prompt_counts
    overall = sums.sum(axis=0, keepdims=True) / counts.sum()
    return np.vstack([overall, sums / counts[:, None]])


def prompt_bootstrap_batch(
    Y: np.ndarray,
    layout: Layout,
    *,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    seed: int | np.random.Generator = DEFAULT_SEED,
    bca: bool = False,
    transform: np.ndarray | None = None,
) -> BatchIntervals:
    """Prompt-cluster bootstrap stratified by category, percentile or BCa, for every scope and column.

    Each resample draws, within each category, as many prompts as it has, with replacement, and keeps all their
    judgments; a resample's estimate is Σ_p w_p·S_p / Σ_p w_p·M_p with S_p, M_p the prompt's sum and count, so
    all B resamples are one (B × P) @ (P × K) product per category. ``transform``: see ``_transformed``.
    """
    Y = _as_columns(Y)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    weights = prompt_weights(layout, B, rng)
    prompt_sums = layout.prompt_T @ Y  # (P, K)
    prompt_counts = layout.prompt_sizes
    bounds = layout.category_bounds
    C = layout.n_categories
    numerators = np.empty((C, Y.shape[1], B))
    denominators = np.empty((C, 1, B))
    for c in range(C):
        rows = slice(bounds[c], bounds[c + 1])
        numerators[c] = prompt_sums[rows].T @ weights[rows]
        denominators[c, 0] = prompt_counts[rows] @ weights[rows]
    if transform is not None:
        numerators = _transformed(transform, numerators, denominators)
        prompt_sums = np.column_stack([prompt_sums, prompt_counts]) @ transform.T
    replicates = _category_ratio_replicates(numerators, denominators)
    estimate = _scope_estimates(prompt_sums, prompt_counts, layout)
    acceleration = _jackknife_acceleration(prompt_sums, prompt_counts, layout) if bca else None
    low, high, se = _undefined_where_degenerate(
        *_bootstrap_bounds(replicates, estimate, level, acceleration), _replicate_sd(replicates)
    )
    return BatchIntervals(
        estimate=estimate,
        low=low,
        high=high,
        method="prompt_bootstrap_bca" if bca else "prompt_bootstrap",
        level=level,
        B=B,
        seed=seed if isinstance(seed, int) else None,
        se=se,
    )


# Column count from which the two-way bootstrap switches to product weights on occupied cells, and their chunk size.
_MANY_COLUMNS = 16
_CELL_CHUNK = 4096
# Above this many prompt × rater cells (occupied or not) the dense blocks would not fit comfortably in memory.
_DENSE_CELL_LIMIT = 20_000_000


def _pack_columns(cells: np.ndarray, bound: float) -> tuple[np.ndarray, int, int] | None:
    """Pack K non-negative integer columns into float64 columns, ``fields`` per column at ``bits`` each, so that a
    GEMM with non-negative integer weights sums every field exactly; None when they are not integers or too large.

    Every partial sum of a field stays below 2^bits (``bound`` bounds them) and a float64 holds integers up to 2^53
    exactly, so fields never carry into each other and the packed product equals the K products.
    """
    if np.any(cells < 0) or np.any(cells != np.round(cells)):
        return None
    bits = max(int(np.ceil(np.log2(bound + 1))), 1)
    fields = 53 // bits
    if fields < 2:
        return None
    K = cells.shape[-1]
    columns = -(-K // fields)
    padded = np.zeros(cells.shape[:-1] + (columns * fields,))
    padded[..., :K] = cells
    scale = 2.0 ** (bits * np.arange(fields))
    packed = (padded.reshape(cells.shape[:-1] + (columns, fields)) * scale).sum(axis=-1)
    return packed, bits, fields


def _unpack_columns(packed: np.ndarray, bits: int, fields: int, K: int) -> np.ndarray:
    """Inverse of ``_pack_columns`` on (..., columns) sums: (..., K) fields, lowest bits first."""
    out = np.empty(packed.shape + (fields,))
    rest = packed
    for field in range(fields - 1, -1, -1):
        scale = 2.0 ** (bits * field)
        out[..., field] = np.floor(rest / scale)
        rest = rest - out[..., field] * scale
    return out.reshape(packed.shape[:-1] + (-1,))[..., :K]


def _rater_contracted(cells: np.ndarray, wr: np.ndarray, weight_max: float) -> np.ndarray:
    """(P, K, B) Σ_r cells[p, r, k]·wr[r, b] for cells (P, R, K) and wr (R, B): one GEMM.

    The report's cells are counts (of A, of ties, of judgments) and the weights resample counts, all integers:
    they are packed several to a float64 column (``_pack_columns``), which divides the GEMM's work by the number
    of fields and stays exact.
    """
    P, R, K = cells.shape
    B = wr.shape[1]
    bound = cells.sum(axis=1).max(initial=0.0) * weight_max
    packing = _pack_columns(cells, bound) if K > 1 else None
    if packing is None:
        stacked = np.ascontiguousarray(cells.transpose(0, 2, 1)).reshape(P * K, R)
        return (stacked @ wr).reshape(P, K, B)
    packed, bits, fields = packing
    columns = packed.shape[-1]
    stacked = np.ascontiguousarray(packed.transpose(0, 2, 1)).reshape(P * columns, R)
    partial = (stacked @ wr).reshape(P, columns, B)
    return _unpack_columns(partial.transpose(0, 2, 1), bits, fields, K).transpose(0, 2, 1)


def two_way_bootstrap_batch(
    Y: np.ndarray,
    layout: Layout,
    *,
    level: float = DEFAULT_LEVEL,
    B: int = DEFAULT_B,
    seed: int | np.random.Generator = DEFAULT_SEED,
    transform: np.ndarray | None = None,
) -> BatchIntervals:
    """Owen's (2007) pigeonhole bootstrap: judgment weight = prompt weight × rater weight; percentile bounds.

    A resample's numerator is Σ_p w_p Σ_r Y_c[p, r]·v_r over each category's prompt × rater cell sums Y_c. With
    many columns (simulated studies) the product weights w_p·v_r of the occupied cells form one (cells × B) matrix
    and a GEMM with the cell sums; with few (a report), dense prompt × rater blocks meet the rater weights in one
    GEMM (``_rater_contracted``) and the prompt weights elementwise.
    ``transform``: see ``_transformed``.
    """
    Y = _as_columns(Y)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    w_prompt = prompt_weights(layout, B, rng)
    w_rater = rater_weights(layout, B, rng)
    C = layout.n_categories
    K = Y.shape[1]
    numerators = np.zeros((C, K, B))
    denominators = np.zeros((C, 1, B))
    if K >= _MANY_COLUMNS or layout.dense_cells > _DENSE_CELL_LIMIT:
        cell_sums = layout.cell_T @ Y
        cell_counts = layout.cell_T @ np.ones(layout.n)
        for c, (cells, prompts, raters) in enumerate(layout.cells_of_category):
            for start in range(0, cells.size, _CELL_CHUNK):
                part = slice(start, start + _CELL_CHUNK)
                weights = w_prompt[prompts[part]] * w_rater[raters[part]]  # (cells, B)
                numerators[c] += cell_sums[cells[part]].T @ weights
                denominators[c, 0] += cell_counts[cells[part]] @ weights
    else:
        values = np.column_stack([Y, np.ones(layout.n)])
        weight_max = float(w_rater.max(initial=0.0))
        per_prompt = np.empty((layout.n_prompts, K + 1, B))
        for prompts, raters, block in layout.dense_blocks:
            n_raters = layout.n_raters if raters is None else raters.size
            cells = (block @ values).reshape(-1, n_raters, K + 1)
            per_prompt[prompts] = _rater_contracted(cells, w_rater if raters is None else w_rater[raters], weight_max)
        bounds = layout.category_bounds
        for c in range(C):
            rows = slice(bounds[c], bounds[c + 1])
            both = np.einsum("pkb,pb->kb", per_prompt[rows], w_prompt[rows])
            numerators[c], denominators[c, 0] = both[:K], both[K]
    prompt_sums = layout.prompt_T @ Y
    if transform is not None:
        numerators = _transformed(transform, numerators, denominators)
        prompt_sums = np.column_stack([prompt_sums, layout.prompt_sizes]) @ transform.T
    replicates = _category_ratio_replicates(numerators, denominators)
    estimate = _scope_estimates(prompt_sums, layout.prompt_sizes, layout)
    low, high, se = _undefined_where_degenerate(
        *_bootstrap_bounds(replicates, estimate, level, None), _replicate_sd(replicates)
    )
    return BatchIntervals(
        estimate=estimate,
        low=low,
        high=high,
        method="two_way_bootstrap",
        level=level,
        B=B,
        seed=seed if isinstance(seed, int) else None,
        se=se,
    )


def permutation_pvalues_batch(
    Y: np.ndarray, layout: Layout, *, B: int = DEFAULT_B, seed: int | np.random.Generator = DEFAULT_SEED
) -> np.ndarray:
    """Within-prompt label-permutation p-values (two-sided) of s = ½, overall, one per column of Y (scores).

    Swapping the A/B labels of all of a prompt's judgments turns y into 1 − y, so the statistic Σ(y − ½) becomes
    Σ_p ε_p·D_p with D_p the prompt's total of y − ½ and ε_p = ±1: all B sign vectors are one (B × P) @ (P × K).
    Exact when A and B are exchangeable within each prompt (an A-vs-A study: identical models).
    """
    Y = _as_columns(Y)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    prompt_totals = layout.prompt_T @ (Y - 0.5)
    signs = rng.integers(0, 2, size=(B, layout.n_prompts)) * 2.0 - 1.0
    permuted = signs @ prompt_totals
    observed = np.abs(prompt_totals.sum(axis=0))
    # A small tolerance so that permuted statistics equal to the observed one count as at least as extreme.
    extreme = (np.abs(permuted) >= observed[None, :] - 1e-9).sum(axis=0)
    return (1 + extreme) / (B + 1)
