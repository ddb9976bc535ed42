"""The input side of every interval: judgments as integer codes over a ``Layout`` (who rated what), the batch
result type, and the conventions every family shares (the tie convention, the target population, defaults).

Pure numbers over numpy arrays and pandas DataFrames: no Django, no ORM, no request (DESIGN.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse

# The one tie convention: a tie scores ½ for each model, so s = π_A + ½·π_tie (DESIGN.md §4), as a draw scores
# half a point in chess.
TIE_CONVENTION = "ties_half"
TIE_CONVENTION_LABEL = "a tie scores ½ for each model: s = share A + ½·share tie"
TARGET_POPULATION = "prompts of the set, raters of the pool"
CHOICES = ("A", "tie", "B")
SCORE_OF_CHOICE = np.array([1.0, 0.5, 0.0])
OUTCOMES = ("s", "A", "tie", "B")
# The report's outcomes from bootstrapped sums of [1(A), 1(tie), count]: s = A + ½·tie, A, tie, B = n − A − tie.
REPORT_TRANSFORM = np.array([[1.0, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, -1.0, 1.0]])

DEFAULT_LEVEL = 0.95
DEFAULT_B = 2000
DEFAULT_SEED = 5

# The precision flag marks a cell that cannot tell s = 50% from 60% (a 95% half-width above 10 points) or whose
# interval rests on fewer than 5 degrees of freedom (its SE's own relative error, about 1/sqrt(2·df), above 30%).
# It reads the interval itself, not a count of prompts: on a DrawBench-shaped study with 25 raters per category a
# 7-prompt category is flagged and the 38-prompt one is not.
LOW_PRECISION_HALF_WIDTH = 0.10
LOW_PRECISION_MIN_DF = 5.0

REQUIRED_COLUMNS = ("prompt_id", "category", "rater_id", "choice")


# --------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Layout:
    """Who rated what: the cluster structure of N judgments, shared by every outcome column.

    Prompts are numbered category by category (``prompt_category`` is non-decreasing), so that a category's
    prompts are one contiguous slice.
    """

    prompt: np.ndarray  # (N,) prompt index
    rater: np.ndarray  # (N,) rater index
    prompt_category: np.ndarray  # (P,) category index of each prompt, non-decreasing
    n_raters: int
    category_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.prompt.shape != self.rater.shape or self.prompt.ndim != 1:
            raise ValueError("Layout: prompt and rater must be 1-d arrays of the same length.")
        if self.prompt.size == 0:
            raise ValueError("Layout: no judgments.")
        if np.any(np.diff(self.prompt_category) < 0):
            raise ValueError("Layout: prompts must be numbered category by category.")
        if np.unique(self.prompt_category).size != int(self.prompt_category[-1]) + 1:
            raise ValueError("Layout: every category index from 0 up must have at least one prompt.")
        if np.bincount(self.prompt, minlength=self.prompt_category.size).min() == 0:
            raise ValueError("Layout: every prompt must have at least one judgment.")

    @property
    def n(self) -> int:
        return int(self.prompt.size)

    @property
    def n_prompts(self) -> int:
        return int(self.prompt_category.size)

    @property
    def n_categories(self) -> int:
        return int(self.prompt_category[-1]) + 1

    @cached_property
    def category_bounds(self) -> np.ndarray:
        """(C+1,) prompt index where each category starts, then P."""
        return np.searchsorted(self.prompt_category, np.arange(self.n_categories + 1))

    @cached_property
    def judgment_category(self) -> np.ndarray:
        return self.prompt_category[self.prompt]

    @cached_property
    def judgments_per_category(self) -> np.ndarray:
        return np.bincount(self.judgment_category, minlength=self.n_categories).astype(float)

    @cached_property
    def prompts_per_category(self) -> np.ndarray:
        return np.diff(self.category_bounds).astype(float)

    @cached_property
    def category_T(self) -> sparse.csr_matrix:
        return _indicator_T(self.judgment_category, self.n_categories)

    @cached_property
    def prompt_T(self) -> sparse.csr_matrix:
        return _indicator_T(self.prompt, self.n_prompts)

    @cached_property
    def prompt_category_T(self) -> sparse.csr_matrix:
        return _indicator_T(self.prompt_category, self.n_categories)

    @cached_property
    def _rater_category(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Groups of (rater, category): judgment → group, group → rater, group → category."""
        key = self.rater.astype(np.int64) * self.n_categories + self.judgment_category
        inverse, groups = _group_codes(key)
        return inverse, groups // self.n_categories, groups % self.n_categories

    @cached_property
    def rater_category_T(self) -> sparse.csr_matrix:
        inverse, group_rater, _ = self._rater_category
        return _indicator_T(inverse, group_rater.size)

    @cached_property
    def rater_group_category_T(self) -> sparse.csr_matrix:
        _, _, group_category = self._rater_category
        return _indicator_T(group_category, self.n_categories)

    @cached_property
    def raters_per_category(self) -> np.ndarray:
        _, _, group_category = self._rater_category
        return np.bincount(group_category, minlength=self.n_categories).astype(float)

    @cached_property
    def raters_in_category(self) -> list[np.ndarray]:
        """For each category, the indices of the raters who rated in it."""
        _, group_rater, group_category = self._rater_category
        return [group_rater[group_category == c] for c in range(self.n_categories)]

    @cached_property
    def rater_group_rater_T(self) -> sparse.csr_matrix:
        _, group_rater, _ = self._rater_category
        return _indicator_T(group_rater, self.n_raters)

    @cached_property
    def raters_present(self) -> int:
        return int(np.count_nonzero(np.bincount(self.rater, minlength=self.n_raters)))

    @cached_property
    def raters_nested(self) -> bool:
        """True when every rater rates in one category only (the paper's design): raters are then strata-bound."""
        return int(self.raters_per_category.sum()) == self.raters_present

    @cached_property
    def prompt_sizes(self) -> np.ndarray:
        return np.bincount(self.prompt, minlength=self.n_prompts).astype(float)

    @cached_property
    def rater_group_sizes(self) -> np.ndarray:
        """Judgments per (rater, category) group."""
        inverse, group_rater, _ = self._rater_category
        return np.bincount(inverse, minlength=group_rater.size).astype(float)

    @cached_property
    def rater_sizes(self) -> np.ndarray:
        """Judgments per rater (raters without judgments count 1, harmlessly: their totals are 0)."""
        return np.maximum(np.bincount(self.rater, minlength=self.n_raters), 1).astype(float)

    @cached_property
    def concentration(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per category, f = Σ size²/N² for prompts, raters (within category) and prompt × rater cells."""
        n2 = self.judgments_per_category**2
        _, group_rater, group_category = self._rater_category
        cell_inverse, cell_category = self._cells
        cell_sizes = np.bincount(cell_inverse, minlength=cell_category.size).astype(float)
        f_prompt = np.bincount(self.prompt_category, weights=self.prompt_sizes**2, minlength=self.n_categories)
        f_rater = np.bincount(group_category, weights=self.rater_group_sizes**2, minlength=self.n_categories)
        f_cell = np.bincount(cell_category, weights=cell_sizes**2, minlength=self.n_categories)
        return f_prompt / n2, f_rater / n2, f_cell / n2

    @cached_property
    def pooled_moment_weights(self) -> np.ndarray | None:
        """(3,) weights w of the overall N²·Var = w·(S_p, S_r, S_j) for raters pooled across categories: unbiased
        for prompt, rater and judgment components whatever the layout (method of moments), or None where the
        layout does not identify it (then the balanced correction is used).

        S_K, the sums of squared residual totals per prompt, rater (over the pool) and prompt × rater cell, on
        residuals from category means, have E[S_K] = Σ_L G[K, L]·σ²_L with G[K, L] = ‖Z_Kᵀ(I − H)Z_L‖² (Z the
        indicators, H the projection on category means, L over the prompt, rater and judgment components), and the
        estimate's N²·Var is Σ_L h_L·σ²_L with h = (Σ n_p², Σ n_r², N); so Gᵀw = h (least squares where prompts or
        cells are singletons and two sums coincide). bench/cluster_variance.py measures it against the balanced
        correction on designs whose raters span categories.
        """
        # Each entry in closed form from the counts (O(N), no N × N product): per prompt n_p, per rater and
        # category n_rc, per cell n_j, per category N_c; A_KL = Z_KᵀZ_L, B_K = Z_KᵀC; the entry is
        # ‖A_KL‖² − 2 Σ_c Σ_kl A_kl·B_K[k, c]·B_L[l, c] / N_c + Σ_cc' (B_KᵀB_K)_cc'·(B_LᵀB_L)_cc' / (N_c·N_c').
        N_c = self.judgments_per_category
        n_p, p_cat = self.prompt_sizes, self.prompt_category
        _, group_rater, group_cat = self._rater_category
        n_rc = self.rater_group_sizes
        cell_of, cell_cat = self._cells
        cells, _ = self._cell_keys
        n_j = np.bincount(cell_of, minlength=cell_cat.size).astype(float)
        cell_prompt, cell_rater = cells // self.n_raters, cells % self.n_raters
        # n_rc of each cell's own (rater, category), and Σ over a category of its clusters' squared sizes.
        group_key = group_rater.astype(np.int64) * self.n_categories + group_cat
        order = np.argsort(group_key)
        cell_group = order[
            np.searchsorted(group_key[order], cell_rater.astype(np.int64) * self.n_categories + cell_cat)
        ]
        sq_p = np.bincount(p_cat, weights=n_p**2, minlength=self.n_categories)
        sq_j = np.bincount(cell_cat, weights=n_j**2, minlength=self.n_categories)
        rater_table = sparse.csr_matrix((n_rc, (group_rater, group_cat)), shape=(self.n_raters, self.n_categories))
        rater_gram = np.asarray((rater_table.T @ rater_table).todense())  # (B_rᵀB_r)_cc': Σ_r n_rc·n_rc'
        sq_r = np.diag(rater_gram)
        n_r = np.bincount(group_rater, weights=n_rc, minlength=self.n_raters)
        cells_sq = float(np.sum(n_j**2))
        G = np.empty((3, 3))
        G[0, 0] = np.sum(n_p**2) - 2 * np.sum(n_p**3 / N_c[p_cat]) + np.sum(sq_p**2 / N_c**2)
        G[0, 1] = (
            cells_sq
            - 2 * np.sum(n_j * n_p[cell_prompt] * n_rc[cell_group] / N_c[cell_cat])
            + np.sum(sq_p * sq_r / N_c**2)
        )
        G[1, 1] = (
            np.sum(n_r**2)
            - 2 * np.sum(n_r[group_rater] * n_rc**2 / N_c[group_cat])
            + np.sum(rater_gram**2 / np.outer(N_c, N_c))
        )
        G[2, 0] = cells_sq - 2 * np.sum(n_j**2 * n_p[cell_prompt] / N_c[cell_cat]) + np.sum(sq_j * sq_p / N_c**2)
        G[2, 1] = cells_sq - 2 * np.sum(n_j**2 * n_rc[cell_group] / N_c[cell_cat]) + np.sum(sq_j * sq_r / N_c**2)
        G[1, 0] = G[0, 1]
        G[:, 2] = self.n - np.array([np.sum(sq_p / N_c), np.sum(sq_r / N_c), np.sum(sq_j / N_c)])
        h = np.array([np.sum(self.prompt_sizes**2), self.pool_concentration * self.n**2, float(self.n)])
        weights, *_ = np.linalg.lstsq(G.T, h, rcond=None)
        if not np.all(np.isfinite(weights)) or np.linalg.norm(G.T @ weights - h) > 1e-8 * np.linalg.norm(h):
            return None
        return weights

    @cached_property
    def pool_concentration(self) -> float:
        """f = Σ size²/N² over the raters of the pool (all categories together)."""
        sizes = np.bincount(self.rater, minlength=self.n_raters).astype(float)
        return float((sizes**2).sum() / self.n**2)

    @cached_property
    def _cell_keys(self) -> tuple[np.ndarray, np.ndarray]:
        key = self.prompt.astype(np.int64) * self.n_raters + self.rater
        inverse, cells = _group_codes(key)
        return cells, inverse

    @cached_property
    def _cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Prompt × rater cells: judgment → cell, cell → category."""
        cells, inverse = self._cell_keys
        return inverse, self.prompt_category[cells // self.n_raters]

    @cached_property
    def cells_of_category(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per category, its occupied cells: (cell indices, their prompt, their rater)."""
        cells, _ = self._cell_keys
        _, cell_category = self._cells
        out = []
        for c in range(self.n_categories):
            index = np.flatnonzero(cell_category == c)
            out.append((index, cells[index] // self.n_raters, cells[index] % self.n_raters))
        return out

    @cached_property
    def cell_T(self) -> sparse.csr_matrix:
        inverse, cell_category = self._cells
        return _indicator_T(inverse, cell_category.size)

    @cached_property
    def cell_category_T(self) -> sparse.csr_matrix:
        _, cell_category = self._cells
        return _indicator_T(cell_category, self.n_categories)

    @cached_property
    def cells_per_category(self) -> np.ndarray:
        _, cell_category = self._cells
        return np.bincount(cell_category, minlength=self.n_categories).astype(float)

    @cached_property
    def dense_blocks(self) -> list[tuple[slice, np.ndarray | None, sparse.csr_matrix]]:
        """Dense prompt × rater blocks covering every judgment: (prompts, raters or None for all, indicator).

        Raters nested in categories: one block per category with its own raters. Otherwise one block of all prompts
        and all raters, so that the rater weights enter one GEMM. ``indicator @ Y`` gives the block's cell sums,
        row-major (prompt, rater).
        """
        if not self.raters_nested:
            cell = self.prompt.astype(np.int64) * self.n_raters + self.rater
            block = sparse.csr_matrix(
                (np.ones(self.n), (cell, np.arange(self.n))), shape=(self.n_prompts * self.n_raters, self.n)
            )
            return [(slice(0, self.n_prompts), None, block)]
        blocks = []
        raters_local = np.full(self.n_raters, -1, dtype=np.int64)
        for c in range(self.n_categories):
            start, stop = self.category_bounds[c], self.category_bounds[c + 1]
            raters = self.raters_in_category[c]
            raters_local[:] = -1
            raters_local[raters] = np.arange(raters.size)
            rows = np.flatnonzero(self.judgment_category == c)
            cell = (self.prompt[rows] - start) * raters.size + raters_local[self.rater[rows]]
            block = sparse.csr_matrix((np.ones(rows.size), (cell, rows)), shape=((stop - start) * raters.size, self.n))
            blocks.append((slice(int(start), int(stop)), raters, block))
        return blocks

    @property
    def dense_cells(self) -> int:
        """Cells of the dense blocks (prompt × rater), occupied or not."""
        if not self.raters_nested:
            return self.n_prompts * self.n_raters
        return int((self.prompts_per_category * self.raters_per_category).sum())

    def scope_counts(self) -> dict[str, np.ndarray]:
        """Judgments, prompts and raters of each scope: index 0 is overall, 1..C the categories."""
        return {
            "n": np.concatenate([[self.n], self.judgments_per_category]),
            "n_prompts": np.concatenate([[self.n_prompts], self.prompts_per_category]),
            "n_raters": np.concatenate([[self.raters_present], self.raters_per_category]),
        }


def _group_codes(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code of each element, the distinct keys): hash-based, faster than sorting for large N."""
    codes, keys = pd.factorize(key)
    return codes.astype(np.intp), np.asarray(keys)


def _indicator_T(codes: np.ndarray, n_groups: int) -> sparse.csr_matrix:
    """(groups × N) 0/1 matrix: ``_indicator_T(codes, G) @ Y`` sums the rows of Y by group."""
    n = codes.size
    return sparse.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_groups, n))


@dataclass(frozen=True)
class JudgmentArrays:
    """A validated judgments frame as integer codes, ready for the batch functions. Factorise once, subset often."""

    layout: Layout
    choice: np.ndarray  # (N,) 0 = A, 1 = tie, 2 = B
    prompt_ids: np.ndarray  # (P,) original prompt ids, in layout order
    rater_ids: np.ndarray  # (R,) original rater ids, in layout order
    left_is_a: np.ndarray | None = None  # (N,) bool, when the frame has the column
    response_time_ms: np.ndarray | None = None  # (N,) float, when the frame has the column
    question: object = None

    @property
    def score(self) -> np.ndarray:
        return SCORE_OF_CHOICE[self.choice]

    def outcome_matrix(self) -> np.ndarray:
        """(N, 4): the score y, then the indicators of A, tie and B (``OUTCOMES``)."""
        return outcome_matrix(self.choice)

    def subset(self, mask: np.ndarray, *, question: object = None) -> JudgmentArrays:
        """The judgments where ``mask`` holds, with prompts, raters and categories renumbered to those present."""
        layout = self.layout
        prompt, rater = layout.prompt[mask], layout.rater[mask]
        if prompt.size == 0:
            raise ValueError("No judgments left in this subset.")
        prompt_present = np.bincount(prompt, minlength=layout.n_prompts) > 0
        rater_present = np.bincount(rater, minlength=layout.n_raters) > 0
        prompt_category = layout.prompt_category[prompt_present]
        category_present = np.bincount(prompt_category, minlength=layout.n_categories) > 0
        names = np.array(layout.category_names, dtype=object)
        sub = Layout(
            prompt=(np.cumsum(prompt_present) - 1)[prompt],
            rater=(np.cumsum(rater_present) - 1)[rater],
            prompt_category=(np.cumsum(category_present) - 1)[prompt_category],
            n_raters=int(rater_present.sum()),
            category_names=tuple(names[category_present]) if names.size else (),
        )
        return JudgmentArrays(
            layout=sub,
            choice=self.choice[mask],
            prompt_ids=self.prompt_ids[prompt_present],
            rater_ids=self.rater_ids[rater_present],
            left_is_a=None if self.left_is_a is None else self.left_is_a[mask],
            response_time_ms=None if self.response_time_ms is None else self.response_time_ms[mask],
            question=self.question if question is None else question,
        )


def outcome_matrix(choice: np.ndarray) -> np.ndarray:
    """(N, 4) columns y = A + ½·tie, 1[A], 1[tie], 1[B] from choice codes 0/1/2."""
    indicators = np.zeros((choice.size, 3))
    indicators[np.arange(choice.size), choice] = 1.0
    return np.column_stack([SCORE_OF_CHOICE[choice], indicators])


def choice_codes(choices: pd.Series | np.ndarray) -> np.ndarray:
    """Choice labels to codes 0 (A), 1 (tie), 2 (B); a clear error names the first bad row."""
    values = pd.Series(choices)
    codes = pd.Index(CHOICES).get_indexer(values)
    bad = np.flatnonzero(codes < 0)
    if bad.size:
        row, value = _plain(values.index[bad[0]]), _plain(values.iloc[bad[0]])
        raise ValueError(
            f"Column 'choice', row {row!r}: {value!r} is not one of A, tie, B ({bad.size} bad row(s) in all)."
        )
    return codes.astype(np.intp)


def _plain(value: object) -> object:
    """A numpy scalar as its Python value, for readable error messages."""
    return value.item() if isinstance(value, np.generic) else value


def _factorize(frame: pd.DataFrame, column: str, sort: bool = False) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(frame[column], sort=sort)
    if (codes < 0).any():
        row = _plain(frame.index[np.flatnonzero(codes < 0)[0]])
        raise ValueError(f"Column {column!r}, row {row!r}: missing value.")
    return codes.astype(np.intp), np.asarray(uniques)


def judgment_arrays(frame: pd.DataFrame) -> JudgmentArrays:
    """Validate a judgments frame and turn it into a ``Layout`` plus choice codes (all questions together).

    Categories are ordered by name; prompts are numbered category by category in order of first appearance.
    ``left_is_a`` and ``response_time_ms`` are carried along when present.
    """
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"Judgments frame lacks column(s) {', '.join(missing)}; needs {', '.join(REQUIRED_COLUMNS)}.")
    if frame.empty:
        raise ValueError("Judgments frame has no rows.")
    choice = choice_codes(frame["choice"])
    prompt_codes, prompt_ids = _factorize(frame, "prompt_id")
    category_codes, category_names = _factorize(frame, "category", sort=True)
    rater_codes, rater_ids = _factorize(frame, "rater_id")

    prompt_category = np.full(prompt_ids.size, -1, dtype=np.intp)
    prompt_category[prompt_codes] = category_codes
    inconsistent = prompt_category[prompt_codes] != category_codes
    if inconsistent.any():
        row = np.flatnonzero(inconsistent)[0]
        prompt = _plain(frame["prompt_id"].iloc[row])
        first, second = _plain(frame["category"].iloc[row]), _plain(category_names[prompt_category[prompt_codes[row]]])
        raise ValueError(
            f"Row {_plain(frame.index[row])!r}: prompt {prompt!r} appears in more than one category "
            f"({first!r} and {second!r})."
        )
    order = np.argsort(prompt_category, kind="stable")
    renumber = np.empty_like(order)
    renumber[order] = np.arange(order.size)
    layout = Layout(
        prompt=renumber[prompt_codes],
        rater=rater_codes,
        prompt_category=prompt_category[order],
        n_raters=int(rater_ids.size),
        category_names=tuple(str(name) for name in category_names),
    )
    left_is_a = None
    if "left_is_a" in frame.columns:
        if frame["left_is_a"].isna().any():
            row = frame.index[frame["left_is_a"].isna().to_numpy()][0]
            raise ValueError(f"Column 'left_is_a', row {row!r}: missing value.")
        left_is_a = frame["left_is_a"].to_numpy(dtype=bool)
    times = frame["response_time_ms"].to_numpy(dtype=float) if "response_time_ms" in frame.columns else None
    return JudgmentArrays(
        layout=layout,
        choice=choice,
        prompt_ids=prompt_ids[order],
        rater_ids=rater_ids,
        left_is_a=left_is_a,
        response_time_ms=times,
    )


def judgment_arrays_by_question(frame: pd.DataFrame) -> list[JudgmentArrays]:
    """One ``JudgmentArrays`` per question (order of appearance); the whole frame when there is no ``question``."""
    arrays = judgment_arrays(frame)
    if "question" not in frame.columns:
        return [arrays]
    codes, questions = _factorize(frame, "question")
    if questions.size == 1:
        return [replace(arrays, question=questions[0])]
    return [arrays.subset(codes == index, question=question) for index, question in enumerate(questions)]


# ---------------------------------------------------------------------------------------- batch intervals


@dataclass(frozen=True)
class BatchIntervals:
    """Intervals for every scope × outcome column: arrays of shape (1 + C, K), scope 0 overall."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    method: str
    level: float
    B: int | None = None
    seed: int | None = None
    se: np.ndarray | None = None
    df: np.ndarray | None = None
    n_eff: np.ndarray | None = None  # design-effect-adjusted effective n behind a score interval


def _as_columns(Y: np.ndarray) -> np.ndarray:
    Y = np.asarray(Y, dtype=float)
    return Y[:, None] if Y.ndim == 1 else Y


def _scope_means(Y: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(1 + C, K) means per scope and the (C, K) category means."""
    category_sums = layout.category_T @ Y
    category_means = category_sums / layout.judgments_per_category[:, None]
    overall = category_sums.sum(axis=0, keepdims=True) / layout.n
    return np.vstack([overall, category_means]), category_means
