"""`load_prompts` with prompts a person cannot read as written: an invisible-only prompt stops the command with its
file and line and imports nothing; bidi controls load, marked in the stored metadata, with a warning."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from drawbench.catalog.models import Prompt, PromptSet
from prompts.text import BIDI_METADATA_KEY

pytestmark = pytest.mark.django_db


def load_csv(path) -> str:
    err = StringIO()
    call_command("load_prompts", "csv", "--path", str(path), "--slug", "mine", stdout=StringIO(), stderr=err)
    return err.getvalue()


def test_an_invisible_prompt_stops_the_load_with_file_and_line_and_nothing_is_imported(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("prompt,category\nA red car.,Colors\n\u200b\u200d\u2060,Colors\n", encoding="utf-8")

    with pytest.raises(CommandError, match=r"mine\.csv, line 3, column 'prompt': the prompt has no visible character"):
        load_csv(path)

    assert not PromptSet.objects.exists() and not Prompt.objects.exists()


def test_a_prompt_with_bidi_controls_is_stored_marked_and_the_command_warns(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("prompt,category\nA red car.,Colors\nA sign \u202eNEPO\u202c.,Text\n", encoding="utf-8")

    err = load_csv(path)

    marked = Prompt.objects.get(prompt_set__slug="mine", position=2)
    assert marked.text == "A sign \u202eNEPO\u202c."
    assert marked.metadata[BIDI_METADATA_KEY] == ["U+202E RIGHT-TO-LEFT OVERRIDE", "U+202C POP DIRECTIONAL FORMATTING"]
    assert Prompt.objects.get(prompt_set__slug="mine", position=1).metadata == {}
    assert "warning: mine.csv, line 3: prompt" in err and "bidi controls" in err
