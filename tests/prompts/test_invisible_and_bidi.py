"""Prompts a person cannot read as the model reads them: invisible-only prompts and categories are refused with
their file and line; bidi controls load, marked in the prompt's metadata and reported as a warning with the line."""

import json

import pytest

from prompts import PromptFileError, load_custom, load_drawbench
from prompts.text import BIDI_METADATA_KEY, bidi_controls, visible_text

ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"]
# Blank letters (not whitespace to Python) and no-break spaces (stripped as whitespace: "empty value").
BLANK = ["\u3164", "\u2800", "\u00a0\u200b", "\u3000\ufeff", "\u202f\u2060"]
BIDI = {"\u202e": "U+202E RIGHT-TO-LEFT OVERRIDE", "\u2067": "U+2067 RIGHT-TO-LEFT ISOLATE", "\u200f": "U+200F"}


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("invisible", ["".join(ZERO_WIDTH), "\u200b \u200b", *ZERO_WIDTH, *BLANK, "\u202e\u202c"])
def test_a_prompt_with_no_visible_character_is_refused_with_its_file_and_line(tmp_path, invisible):
    path = write(tmp_path, "mine.csv", f'prompt,category\nA red car.,Colors\n"{invisible}",Colors\n')

    with pytest.raises(PromptFileError) as caught:
        load_custom(path, slug="mine")

    assert (caught.value.line, caught.value.column) == (3, "prompt")
    assert caught.value.message.startswith("mine.csv, line 3, column 'prompt': the prompt has no visible character")
    assert "U+" in caught.value.problem


def test_an_invisible_prompt_in_jsonl_names_its_line_and_field(tmp_path):
    lines = [{"prompt": "A red car.", "category": "Colors"}, {"prompt": "\u200b\u2060", "category": "Colors"}]
    path = write(tmp_path, "mine.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")

    with pytest.raises(PromptFileError) as caught:
        load_custom(path, slug="mine")

    assert caught.value.line == 2 and caught.value.field == "prompt"
    assert "U+200B ZERO WIDTH SPACE" in caught.value.problem and "U+2060 WORD JOINER" in caught.value.problem


def test_an_invisible_category_is_refused_too(tmp_path):
    path = write(tmp_path, "drawbench.csv", "prompt,category\nA red car.,Colors\nA blue car.,\u200b\u200d\n")

    with pytest.raises(PromptFileError) as caught:
        load_drawbench(path=path)

    assert (caught.value.line, caught.value.column) == (3, "category")
    assert "no visible character" in caught.value.problem


def test_a_visible_prompt_keeps_its_zero_width_characters_exactly(tmp_path):
    path = write(tmp_path, "mine.csv", "prompt,category\nA red\u200bcar.,Colors\n")

    loaded = load_custom(path, slug="mine")

    assert loaded.records[0].text == "A red\u200bcar."
    assert BIDI_METADATA_KEY not in loaded.records[0].metadata


def test_a_prompt_with_bidi_controls_loads_marked_with_a_warning_naming_its_line(tmp_path):
    text = "A sign that says \u202eTIXE\u202c on a door."
    path = write(tmp_path, "mine.csv", f"prompt,category\nA red car.,Colors\n{text},Text\n")

    loaded = load_custom(path, slug="mine")

    marked = loaded.records[1]
    assert marked.text == text
    assert marked.metadata[BIDI_METADATA_KEY] == ["U+202E RIGHT-TO-LEFT OVERRIDE", "U+202C POP DIRECTIONAL FORMATTING"]
    assert BIDI_METADATA_KEY not in loaded.records[0].metadata
    [warning] = loaded.warnings
    assert warning.startswith("mine.csv, line 3: prompt ") and "U+202E RIGHT-TO-LEFT OVERRIDE" in warning


def test_right_to_left_text_without_controls_is_not_marked(tmp_path):
    path = write(tmp_path, "mine.csv", "prompt,category\nשלט שאומר שלום,Text\nلافتة مكتوب عليها مرحبا,Text\n")

    loaded = load_custom(path, slug="mine")

    assert [r.metadata for r in loaded.records] == [{}, {}]
    assert loaded.warnings == ()


@pytest.mark.parametrize("char,described", BIDI.items())
def test_bidi_controls_are_named_by_code_point(char, described):
    assert bidi_controls(f"a{char}b{char}")[0].startswith(described)


def test_visible_text_drops_only_what_cannot_be_seen():
    assert visible_text("\u200bA\u00a0red\u2060 car\u3164.") == "Aredcar."
