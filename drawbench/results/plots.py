"""The results chart, in the style of the Imagen paper's Figure 3, drawn server-side with matplotlib's Agg backend.

One horizontal bar per row, stacked: the share preferring model A, the share indifferent, the share preferring
model B; a black marker with an error bar gives the preference score s = A + ½·tie (the marker falls inside the tie
segment by construction) and its interval by the results' method; a dashed line marks 50%. ``scope="overall"``
draws one row per question (× pair of models); ``scope="categories"`` draws one panel per question with a row per
category (Fig. A.15). ``power_figure`` draws the power page's curve.

Figures are built with ``matplotlib.figure.Figure`` directly, never pyplot, so no global state is shared between
requests; importing this module does not import torch.
"""

import io
from typing import Any, Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from drawbench.results.simulate import PowerCurve

COLOR_A = "#2b5c9e"
COLOR_TIE = "#c9cdd3"
COLOR_B = "#e0893a"
FONT_SIZE = 8.5
# Room for a right-hand "n=10,000" label at FONT_SIZE − 1.5 beside each panel.
N_LABEL_GAP_INCHES = 0.75
Scope = Literal["overall", "categories"]


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def _draw_bars(ax, rows: list[dict[str, Any]], labels: list[str]) -> None:
    positions = list(range(len(rows)))[::-1]
    for y, row in zip(positions, rows, strict=True):
        left = 0.0
        for share, color, text_color in (
            (row["share_a"], COLOR_A, "white"),
            (row["share_tie"], COLOR_TIE, "#333333"),
            (row["share_b"], COLOR_B, "white"),
        ):
            ax.barh(y, share, left=left, height=0.62, color=color, edgecolor="white", linewidth=0.6)
            if share >= 0.08:
                ax.text(
                    left + share / 2, y + 0.16, _percent(share), ha="center", va="center",
                    fontsize=FONT_SIZE - 1, color=text_color,
                )  # fmt: skip
            left += share
        if row["ci_low"] is not None and row["ci_high"] is not None:
            ax.errorbar(
                row["score"], y - 0.12,
                xerr=[[row["score"] - row["ci_low"]], [row["ci_high"] - row["score"]]],
                fmt="D", markersize=3.5, color="black", ecolor="black", elinewidth=1.0, capsize=2.5,
            )  # fmt: skip
        else:
            # No interval (a scope resting on a single prompt): the score alone, hollow.
            ax.plot(row["score"], y - 0.12, "D", markersize=3.5, markerfacecolor="white", markeredgecolor="black")
        ax.text(
            1.015, y, f"n={row['n']:,}", transform=ax.get_yaxis_transform(), ha="left", va="center",
            fontsize=FONT_SIZE - 1.5, color="#555555",
        )  # fmt: skip
    ax.axvline(0.5, color="#444444", linestyle=(0, (3, 2)), linewidth=0.8, zorder=0)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_yticks(positions, labels, fontsize=FONT_SIZE)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25", "50", "75", "100"], fontsize=FONT_SIZE - 0.5)
    ax.set_xlabel("Preference rate (%)", fontsize=FONT_SIZE)
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def _legend(fig: Figure, results: dict[str, Any], pairs: list[tuple[str, str]]) -> None:
    if len(pairs) == 1:
        model_a, model_b = pairs[0]
        names = (f"Prefer {model_a} (A)", f"Prefer {model_b} (B)")
    else:
        names = ("Prefer the first-named model (A)", "Prefer the second-named model (B)")
    level = f"{100 * results['level']:.0f}%"
    handles = [
        Patch(color=COLOR_A, label=names[0]),
        Patch(color=COLOR_TIE, label="Indifferent"),
        Patch(color=COLOR_B, label=names[1]),
        Line2D([], [], color="black", marker="D", markersize=3.5, linewidth=1.0,
               label=f"s = A + ½·tie (a tie scores ½), {level} CI: {_method_legend(results)}"),
    ]  # fmt: skip
    fig.legend(
        handles=handles, loc="upper center", ncol=2, frameon=False, fontsize=FONT_SIZE - 0.5,
        bbox_to_anchor=(0.5, 1.0), handlelength=1.4, columnspacing=1.6,
    )  # fmt: skip


def _method_legend(results: dict[str, Any]) -> str:
    """The interval method as a legend names it: with B and seed for a bootstrap."""
    if results.get("B"):
        return f"{results['method']}, B = {results['B']:,}, seed {results['seed']}"
    return results["method"]


def _low_precision_mark(row: dict[str, Any]) -> str:
    return " †" if row["low_precision"] else ""


def _footnote(fig: Figure, results: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    if any(row["low_precision"] for row in rows):
        fig.text(
            0.01, 0.005,
            f"† low precision: half-width above {100 * results['low_precision_half_width']:.0f} points "
            f"or under {results['low_precision_min_df']:.0f} df",
            fontsize=FONT_SIZE - 1.5, color="#555555",
        )  # fmt: skip


def preference_figure(results: dict[str, Any], *, scope: Scope = "overall") -> Figure:
    """The chart of ``results`` (the dict of ``selectors.study_results``)."""
    if scope not in ("overall", "categories"):
        raise ValueError(f"Unknown chart scope {scope!r}; expected 'overall' or 'categories'.")
    questions = results["questions"]
    if not questions:
        fig = Figure(figsize=(6.3, 1.6))
        fig.text(0.5, 0.5, "No judgments yet.", ha="center", va="center", fontsize=FONT_SIZE + 1, color="#555555")
        return fig
    pairs = list(dict.fromkeys((p["model_a"], p["model_b"]) for q in questions for p in q["pairs"]))
    several_pairs = len(pairs) > 1

    if scope == "overall":
        rows, labels = [], []
        for question in questions:
            for pair in question["pairs"]:
                rows.append(pair["overall"])
                name = question["question"].capitalize() + _low_precision_mark(pair["overall"])
                labels.append(f"{name}\n{pair['model_a']} vs {pair['model_b']}" if several_pairs else name)
        height = 0.95 + 0.42 * len(rows)
        fig = Figure(figsize=(6.3, height))
        ax = fig.add_subplot()
        fig.subplots_adjust(left=0.25 if several_pairs else 0.14, right=0.9, top=1 - 0.5 / height, bottom=0.45 / height)
        _draw_bars(ax, rows, labels)
        _legend(fig, results, pairs)
        _footnote(fig, results, rows)
        return fig

    panels: list[tuple[list[dict[str, Any]], list[str], list[int]]] = []
    for question in questions:
        rows, labels, separators = [], [], []
        for pair in question["pairs"]:
            if rows:
                separators.append(len(rows))
            title = f"{pair['model_a']} vs {pair['model_b']}: all prompts" if several_pairs else "All prompts"
            rows.append(pair["overall"])
            labels.append(title + _low_precision_mark(pair["overall"]))
            separators.append(len(rows))
            for row in pair["categories"]:
                rows.append(row)
                labels.append(row["category"] + _low_precision_mark(row))
        panels.append((rows, labels, separators))
    n_rows = max(len(rows) for rows, _, _ in panels)
    height = 1.45 + 0.3 * n_rows
    fig = Figure(figsize=(3.4 * len(questions) + 1.2, height))
    axes = fig.subplots(1, len(questions), squeeze=False)[0]
    for index, (ax, question, (rows, labels, separators)) in enumerate(zip(axes, questions, panels, strict=True)):
        _draw_bars(ax, rows, labels)
        for before in separators:
            # Rows are drawn top-down from y = len(rows) - 1: a rule above row ``before``, i.e. under each
            # pair's "all prompts" row and between pairs.
            ax.axhline(len(rows) - before - 0.5, color="#888888", linewidth=0.6)
        ax.set_title(question["question"].capitalize(), fontsize=FONT_SIZE + 0.5, fontweight="bold")
        if index:
            ax.tick_params(axis="y", labelleft=False)
    # The "n=…" labels sit right of each panel: leave them a fixed gap in inches, whatever the number of panels,
    # so that a panel never paints over its left neighbour's labels.
    width = fig.get_figwidth()
    left, right = 0.2, 0.93
    n_panels = len(questions)
    panel_width = (width * (right - left) - (n_panels - 1) * N_LABEL_GAP_INCHES) / n_panels
    fig.subplots_adjust(
        left=left, right=right, top=1 - 0.8 / height, bottom=0.5 / height, wspace=N_LABEL_GAP_INCHES / panel_width
    )
    _legend(fig, results, pairs)
    _footnote(fig, results, [row for rows, _, _ in panels for row in rows])
    return fig


def power_figure(curve: PowerCurve) -> Figure:
    """Power of the two-sided test of s = ½ against the true difference in s, with the minimum detectable
    difference at the target power marked."""
    fig = Figure(figsize=(5.2, 2.9))
    ax = fig.add_subplot()
    differences = 100 * np.asarray(curve.differences)
    ax.plot(differences, curve.powers, color=COLOR_A, linewidth=1.6)
    ax.axhline(curve.target_power, color="#888888", linestyle=(0, (3, 2)), linewidth=0.8)
    mdd = 100 * curve.min_detectable_difference
    ax.axvline(mdd, color=COLOR_B, linewidth=1.0)
    ax.annotate(
        f"MDD {mdd:.1f} points", (mdd, 0.05), xytext=(4, 0), textcoords="offset points",
        fontsize=FONT_SIZE - 0.5, color="#333333",
    )  # fmt: skip
    ax.set_xlim(0, differences[-1])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("True difference in s from 50% (percentage points)", fontsize=FONT_SIZE)
    ax.set_ylabel("Power", fontsize=FONT_SIZE)
    ax.tick_params(labelsize=FONT_SIZE - 0.5)
    ax.set_title(
        f"{100 * curve.level:.0f}% two-sided test, default interval; {100 * curve.target_power:.0f}% power line",
        fontsize=FONT_SIZE,
    )
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


def figure_bytes(fig: Figure, fmt: Literal["svg", "png"]) -> bytes:
    """SVG (without a date in its metadata) or a 200 dpi PNG, cropped to what is drawn."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    if fmt == "svg":
        fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.05)
    elif fmt == "png":
        fig.savefig(buffer, format="png", dpi=200, bbox_inches="tight", pad_inches=0.05)
    else:
        raise ValueError(f"Unknown chart format {fmt!r}; expected 'svg' or 'png'.")
    return buffer.getvalue()
