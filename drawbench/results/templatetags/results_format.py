"""Template filters for the results pages: shares and scores as percentages, undefined values as a dash."""

from django import template

register = template.Library()


@register.filter
def percent(value: float | None, digits: int = 1) -> str:
    """0.58333 → "58.3%"; None (no judgments) → "—"."""
    if value is None:
        return "—"
    return f"{100 * value:.{int(digits)}f}%"


@register.filter
def percent_number(value: float | None, digits: int = 1) -> str:
    """0.58333 → "58.3", for intervals printed beside a percentage."""
    if value is None:
        return "—"
    return f"{100 * value:.{int(digits)}f}"


@register.filter
def add_half(value: float | None) -> float | None:
    """A difference in s from ½ as the score itself: 0.043 → 0.543."""
    return None if value is None else value + 0.5


@register.filter
def number(value: float | None, digits: int = 3) -> str:
    """A plain number with ``digits`` decimals; None (undefined) → "—"."""
    if value is None:
        return "—"
    return f"{value:.{int(digits)}f}"
