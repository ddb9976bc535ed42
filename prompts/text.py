"""Characters a person cannot see in a prompt: invisible-only text, zero-width characters and bidi controls.

A prompt (or category) made only of zero-width, format and blank characters looks empty to a rater but is not empty
to a string comparison, so the loaders refuse it. Bidi controls (Unicode's explicit embeddings, overrides and
isolates, and the directional marks) can make a caption display in another order than the model read it ("Trojan
Source", CVE-2021-42574); they are legitimate in right-to-left text, so a prompt that has them loads, marked: its
metadata lists them under ``BIDI_METADATA_KEY`` and the load reports a warning with its line.
"""

import unicodedata

# https://www.unicode.org/reports/tr9/#Explicit_Directional_Embeddings and the implicit marks (LRM, RLM, ALM).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Letters that render as blank space although Unicode does not class them as spaces (Hangul fillers, braille blank).
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
BIDI_METADATA_KEY = "bidi_controls"


def is_invisible(char: str) -> bool:
    """Zero-width and other format characters (Cf: U+200B, U+FEFF, U+2060, bidi controls...), spaces and separators,
    control characters, and the blank letters."""
    return char.isspace() or char in BLANK_LETTERS or unicodedata.category(char) in ("Cf", "Cc", "Zs", "Zl", "Zp")


def visible_text(text: str) -> str:
    """``text`` without its invisible characters: "" when a person would see nothing."""
    return "".join(char for char in text if not is_invisible(char))


def describe(char: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``."""
    return f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}"


def invisible_characters(text: str) -> list[str]:
    """The distinct invisible characters of ``text`` other than the plain space, described, in order of appearance."""
    return [describe(char) for char in dict.fromkeys(text) if char != " " and is_invisible(char)]


def bidi_controls(text: str) -> list[str]:
    """The distinct bidi controls of ``text``, described, in order of appearance."""
    return [describe(char) for char in dict.fromkeys(text) if char in BIDI_CONTROLS]
