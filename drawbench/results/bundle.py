"""A study's release bundle: everything a third party needs to recompute every number of its results.

``study_bundle`` returns the files (name → bytes); ``export_study --bundle DIR`` writes them. Every CSV is written
exactly as stored (no spreadsheet quoting), and each has a data dictionary (``NAME.dictionary.json``: every column's
dtype, whether it can be missing, what it means) carrying the pandas code that reads it back with those dtypes
(``READ_BUNDLE_CSV``): plain ``read_csv`` would read a category named "NA" as missing and an integer column with a
missing value (``seed`` of an imported sample) as float64.

Answers to control items (gold trials and practice items) are never judgments: they are in controls.csv, one row per
answer, under the raters' same pseudonymous ids, so that quality control's gold-accuracy flag can be recomputed.
"""

from __future__ import annotations

import datetime
import json
import platform
import tomllib
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from django.conf import settings
from rest_framework import serializers

from drawbench.catalog.models import Sample
from drawbench.results import stats
from drawbench.results.apis import (
    ISO_8601_UTC,
    StudyJudgmentListApi,
    StudyRankingApi,
    StudyResultsApi,
    _finite_or_null,
)
from drawbench.results.renderers import csv_bytes
from drawbench.results.selectors import (
    JUDGMENT_COLUMN_DESCRIPTIONS,
    JUDGMENT_COLUMNS,
    ranking_export_rows,
    study_results,
)
from drawbench.results.stats import methods_text
from drawbench.studies.models import ControlAnswer, Study

# The documented read code (README, every data dictionary): plain pandas, run as is by the bundle tests. Only an
# empty field of a column the dictionary marks nullable is missing; "NA", "null" or "nan" elsewhere stay text.
READ_BUNDLE_CSV = """import json

import pandas as pd


def read_bundle_csv(name):
    # NAME.csv of the bundle with every column's dtype, as NAME.dictionary.json describes it. pandas 3 (the
    # version is in software.json): its "str" dtype keeps a missing text field missing.
    columns = json.load(open(f"{name}.dictionary.json", encoding="utf-8"))["columns"]
    dtypes = {column["name"]: column["dtype"] for column in columns}
    dates = [column for column, dtype in dtypes.items() if dtype.startswith("datetime")]
    frame = pd.read_csv(
        f"{name}.csv",
        encoding="utf-8",
        dtype={column: ("object" if column in dates else dtype) for column, dtype in dtypes.items()},
        keep_default_na=False,  # a category or a prompt reading "NA" or "null" stays text
        na_values={column["name"]: [""] for column in columns if column["nullable"]},  # nothing else is missing
    )
    for column in dates:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame.astype(dtypes)
"""
SOFTWARE = ("django", "numpy", "scipy", "pandas", "statsmodels")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # a pandas dtype: int64, Int64 (an integer that can be missing), float64, bool, str, datetime64[…]
    nullable: bool
    description: str


@dataclass(frozen=True)
class CsvFile:
    """One CSV of the bundle: ``stem``.csv, described by ``stem``.dictionary.json; read into ``variable``."""

    stem: str
    variable: str
    columns: tuple[Column, ...]
    missing: str
    notes: str = ""  # what a reader must know beyond the columns (in the dictionary when set)

    @property
    def file(self) -> str:
        return f"{self.stem}.csv"

    @property
    def dictionary_file(self) -> str:
        return f"{self.stem}.dictionary.json"

    @property
    def header(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def read_code(self) -> str:
        return f'{READ_BUNDLE_CSV}\n\n{self.variable} = read_bundle_csv("{self.stem}")\n'

    def dictionary(self) -> dict[str, Any]:
        dictionary = {
            "file": self.file,
            "encoding": "utf-8",
            "columns": [asdict(column) for column in self.columns],
            "missing": self.missing,
        }
        if self.notes:
            dictionary["notes"] = self.notes
        return dictionary | {"read_with_pandas": self.read_code}


# results.csv columns without help text on the API's serializer (the others are described by their help text).
RESULT_COLUMN_DESCRIPTIONS: dict[str, str] = {
    "study_id": "The study.",
    "question": "The question answered (fidelity, alignment).",
    "scope": "overall (every prompt) or category (the prompts of one category).",
    "n_prompts": "Prompts with at least one judgment in this row.",
    "n_raters": "Raters with at least one judgment in this row.",
    "count_a": "Judgments preferring model_a.",
    "count_tie": "Ties.",
    "count_b": "Judgments preferring model_b.",
    "share_a": "count_a / n.",
    "share_tie": "count_tie / n.",
    "share_b": "count_b / n.",
    "share_a_ci_high": "Upper end of the interval of share_a.",
    "share_tie_ci_low": "Lower end of the interval of share_tie.",
    "share_tie_ci_high": "Upper end of the interval of share_tie.",
    "share_b_ci_low": "Lower end of the interval of share_b.",
    "share_b_ci_high": "Upper end of the interval of share_b.",
    "ci_high": "Upper end of the interval of s.",
    "left_rate_low": "Lower end of the interval of left_rate.",
    "left_rate_high": "Upper end of the interval of left_rate.",
}


def _serializer_dtype(name: str, field: serializers.Field) -> str:
    if isinstance(field, serializers.BooleanField):
        return "bool"
    if isinstance(field, serializers.IntegerField):
        return "Int64" if field.allow_null else "int64"
    if isinstance(field, serializers.FloatField):
        return "float64"
    if isinstance(field, serializers.CharField | serializers.ChoiceField):
        return "str"
    raise TypeError(f"results.csv column {name!r}: no pandas dtype for a {type(field).__name__}.")


def _results_columns() -> tuple[Column, ...]:
    """From the results API's serializer, the one source of the columns, their types and their help text."""
    fields = StudyResultsApi.OutputSerializer().fields
    return tuple(
        Column(
            name,
            _serializer_dtype(name, fields[name]),
            bool(fields[name].allow_null),
            str(fields[name].help_text or RESULT_COLUMN_DESCRIPTIONS[name]),
        )
        for name in StudyResultsApi.header()
    )


# Control answers are never judgments (ControlAnswer, not Judgment): judgments.csv's flags for them are false in every
# row by construction, and a reader has to be told where those answers are.
CONTROLS_ARE_NOT_JUDGMENTS = (
    "False in every row by construction: answers to gold trials and practice items (control items) are never "
    "judgments; they are in controls.csv."
)
JUDGMENTS = CsvFile(
    stem="judgments",
    variable="judgments",
    columns=tuple(
        Column(
            name,
            dtype,
            name == "shown_at",
            {
                "is_gold": f"A silent gold trial (control item). {CONTROLS_ARE_NOT_JUDGMENTS}",
                "is_practice": f"A labelled practice item. {CONTROLS_ARE_NOT_JUDGMENTS}",
            }.get(name, JUDGMENT_COLUMN_DESCRIPTIONS[name]),
        )
        for name, dtype in JUDGMENT_COLUMNS.items()
    ),
    missing="An empty field is missing (shown_at only); every other field is always present.",
    notes="One row per judgment of a comparison. Answers to control items (silent gold trials and labelled "
    "practice items) are never judgments and are not here (is_gold and is_practice are false in every row): they "
    "are in controls.csv, under the same rater_id, with what quality control flags a rater by. rater_flagged is "
    "the flag as stored when the bundle was written (any reason: failed gold trials, one answer to everything, too "
    "fast).",
)
RESULTS = CsvFile(
    stem="results",
    variable="results",
    columns=_results_columns(),
    missing="An empty field of a nullable column is missing (category of an overall row, an undefined interval "
    "or standard error, B and seed of an analytic method); every other field is always present.",
)
PROMPTS = CsvFile(
    stem="prompts",
    variable="prompts",
    columns=(
        Column("id", "int64", False, "The prompt (prompt_id in judgments.csv and samples.csv)."),
        Column("position", "int64", False, "1-based position of the prompt in its prompt set's original order."),
        Column("category", "str", False, "The prompt's category (a stratum of every interval)."),
        Column("text", "str", False, "The prompt's text, as shown to the rater."),
    ),
    missing="No field is ever missing.",
)
SAMPLES = CsvFile(
    stem="samples",
    variable="samples",
    columns=(
        Column("sample_id", "int64", False, "The sample (the ids in left_sample_ids / right_sample_ids)."),
        Column("model", "str", False, "The evaluated model that made it, name@version."),
        Column("prompt_id", "int64", False, "The prompt it was made for."),
        Column("index", "int64", False, "0-based index among this model's samples of this prompt."),
        Column("seed", "Int64", True, "Generation seed; missing for a sample imported from elsewhere."),
        Column("sha256", "str", False, "sha256 of the image file's bytes, hex."),
        Column("width", "int64", False, "Image width, pixels."),
        Column("height", "int64", False, "Image height, pixels."),
        Column("file", "str", False, "The image's path in the site's media storage (named by its content hash)."),
    ),
    missing="An empty field is missing (seed only); every other field is always present.",
)
CONTROLS = CsvFile(
    stem="controls",
    variable="controls",
    columns=(
        Column("study_id", "int64", False, "The study."),
        Column("control_answer_id", "int64", False, "The answer (immutable)."),
        Column(
            "rater_id",
            "str",
            False,
            "Pseudonymous rater id, the same as rater_id in judgments.csv (a random public token; never the crowd "
            "platform's id).",
        ),
        Column(
            "assignment_id",
            "int64",
            False,
            "The control item served to the rater (the questions of one item share it); never a comparison's.",
        ),
        Column(
            "is_gold",
            "bool",
            False,
            "A silent gold trial, served among the comparisons unlabelled: counted by quality control.",
        ),
        Column(
            "is_practice",
            "bool",
            False,
            "A labelled practice item, served first with feedback: never counted by quality control.",
        ),
        Column(
            "gold_trial_id",
            "int64",
            False,
            "The control item (a gold trial; a practice item is a gold trial shown labelled).",
        ),
        Column(
            "gold_trial_kind",
            "str",
            False,
            "identical (one set twice: tie expected on every question), mismatch (the caption's set against a set "
            "made for another prompt: the caption's set expected on alignment) or degraded (a set against a blurred, "
            "noised copy of itself: the clean set expected on fidelity).",
        ),
        Column("prompt_id", "int64", False, "The prompt whose text was the caption (prompts.csv)."),
        Column(
            "reference_on_left",
            "bool",
            False,
            "The set the expected answer prefers (the caption's, the clean one) was shown on the left.",
        ),
        Column("question", "str", False, "The question answered (fidelity, alignment)."),
        Column(
            "choice",
            "str",
            False,
            "The answer as displayed: left, right or tie (a control item has no model A or B).",
        ),
        Column(
            "expected",
            "str",
            True,
            "The answer a careful rater gives, as displayed; missing where any answer is acceptable (mismatch on "
            "fidelity, degraded on alignment).",
        ),
        Column("correct", "boolean", True, "choice equals expected; missing where expected is."),
        Column("response_time_ms", "int64", False, "Response time measured in the rater's browser, milliseconds."),
        Column("served_at", "datetime64[us, UTC]", False, "Server time the item was claimed for the rater, UTC."),
        Column(
            "shown_at",
            "datetime64[us, UTC]",
            True,
            "Server time the item was first shown to the rater, UTC; empty where not recorded.",
        ),
        Column(
            "answered_at",
            "datetime64[us, UTC]",
            False,
            "Server time the answer was recorded, UTC (the item's completion: created_at of a judgment).",
        ),
    ),
    missing="An empty field is missing (expected, correct and shown_at only); every other field is always present.",
    notes="One row per answer to a question of a control item: silent gold trials (is_gold) and labelled practice "
    "items (is_practice); these are never judgments. Quality control's gold accuracy of a rater is the share of "
    "correct answers among their rows with is_gold true and correct not missing; it flags the rater (reason "
    "failed_gold, one of those behind rater_flagged in judgments.csv) when that share is below min_gold_accuracy "
    "in study.json. A rater without such rows is never flagged for gold.",
)
CSV_FILES = (JUDGMENTS, RESULTS, PROMPTS, SAMPLES, CONTROLS)


def _utc_text(moment: datetime.datetime | None) -> str | None:
    """As the judgments export writes its times (ISO 8601, microseconds, Z), None as an empty field."""
    return moment.astimezone(datetime.UTC).strftime(ISO_8601_UTC) if moment is not None else None


def control_rows(*, study: Study) -> list[dict[str, Any]]:
    """controls.csv: every answer to a control item of ``study`` (those quality control counts and practice), in the
    order they were answered; one query. Raters by their public id only, as in judgments.csv."""
    answers = (
        ControlAnswer.objects.filter(gold_trial__study=study)  # as quality control selects them
        .order_by("assignment__completed_at", "id")
        .values(
            "id",
            "rater__public_id",
            "assignment_id",
            "practice",
            "gold_trial_id",
            "gold_trial__kind",
            "gold_trial__prompt_id",
            "assignment__reference_on_left",
            "question",
            "choice",
            "expected",
            "correct",
            "response_time_ms",
            "assignment__served_at",
            "assignment__shown_at",
            "assignment__completed_at",
        )
    )
    return [
        {
            "study_id": study.pk,
            "control_answer_id": a["id"],
            "rater_id": a["rater__public_id"],
            "assignment_id": a["assignment_id"],
            "is_gold": not a["practice"],
            "is_practice": a["practice"],
            "gold_trial_id": a["gold_trial_id"],
            "gold_trial_kind": a["gold_trial__kind"],
            "prompt_id": a["gold_trial__prompt_id"],
            "reference_on_left": a["assignment__reference_on_left"],
            "question": a["question"],
            "choice": a["choice"],
            "expected": a["expected"] or None,  # stored blank where any answer is acceptable
            "correct": a["correct"],
            "response_time_ms": a["response_time_ms"],
            "served_at": _utc_text(a["assignment__served_at"]),
            "shown_at": _utc_text(a["assignment__shown_at"]),
            "answered_at": _utc_text(a["assignment__completed_at"]),
        }
        for a in answers
    ]


def software_versions() -> dict[str, str]:
    pyproject = tomllib.loads((Path(settings.BASE_DIR) / "pyproject.toml").read_text(encoding="utf-8"))
    versions = {"drawbench": pyproject["project"]["version"], "python": platform.python_version()}
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def study_config(study: Study) -> dict[str, Any]:
    fields = (
        "id name categories questions samples_per_side ratings_per_comparison max_comparisons_per_rater "
        "instructions practice_items gold_rate min_gold_accuracy min_response_time_ms assignment_timeout_s "
        "display_size display_format status created_at opened_at closed_at"
    ).split()
    config = {name: getattr(study, name) for name in fields if hasattr(study, name)}
    config["evaluated_models"] = [
        {"name": m.name, "version": m.version, "backend": m.backend, "config": m.config}
        for m in study.evaluated_models.order_by("name", "version")
    ]
    prompt_set = study.prompt_set
    config["prompt_set"] = {
        "slug": prompt_set.slug,
        "title": prompt_set.title,
        "source": prompt_set.source,
        "content_hash": prompt_set.content_hash,
    }
    return config


def study_bundle(*, study: Study, method: str = stats.DEFAULT_INTERVAL_METHOD) -> dict[str, bytes]:
    """The bundle's files: judgments, results (rows, ranking, fragility, methods text), the study's config and
    prompt set, the sample manifest with content hashes, the control answers, the software versions, and a data
    dictionary per CSV."""
    judgments = StudyJudgmentListApi.export(study=study, include_excluded=True)
    results = study_results(study=study, method=method)
    rows = _finite_or_null(
        StudyResultsApi.OutputSerializer(results["rows"], many=True).data  # the export's own rows
    )
    # The ranking export's rows from the fits the results already made (the same judgments and settings).
    ranking = _finite_or_null(
        StudyRankingApi.OutputSerializer(ranking_export_rows(results["ranking"], study_id=study.pk), many=True).data
    )
    fragility = [
        {"question": table["question"], "pair_model": pair_model, **row}
        for table in results["ranking"]
        for pair_model, fit in table["fits"].items()
        for row in fit.get("fragility") or []
    ]
    settings_used = {
        "method": method,
        "level": results["level"],
        "B": results["B"],
        "seed": results["seed"],
        "ranking_B": results["ranking_B"],
        "ranking_seed": results["ranking_seed"],
        "include_excluded": False,
        "exclude_flagged_raters": False,
        "questions": list(study.questions),
        "tie_convention": results["tie_convention"],
    }
    methods = methods_text(results)
    prompts = study.prompt_set.prompts.order_by("position").values("id", "position", "category", "text")
    samples = (
        Sample.objects.filter(prompt__prompt_set=study.prompt_set, evaluated_model__in=study.evaluated_models.all())
        .order_by("id")
        .values(
            "id",
            "evaluated_model__name",
            "evaluated_model__version",
            "prompt_id",
            "index",
            "seed",
            "content_hash",
            "width",
            "height",
            "image",
        )
    )
    sample_rows = [
        {
            "sample_id": s["id"],
            "model": f"{s['evaluated_model__name']}@{s['evaluated_model__version']}",
            "prompt_id": s["prompt_id"],
            "index": s["index"],
            "seed": s["seed"],
            "sha256": s["content_hash"],
            "width": s["width"],
            "height": s["height"],
            "file": s["image"],
        }
        for s in samples
    ]
    return {
        JUDGMENTS.file: csv_bytes(judgments, JUDGMENTS.header, spreadsheet_safe=False),
        "results.json": _json(
            {"settings": settings_used, "methods": methods, "rows": rows, "ranking": ranking, "fragility": fragility}
        ),
        RESULTS.file: csv_bytes(rows, RESULTS.header, spreadsheet_safe=False),
        "study.json": _json(study_config(study)),
        PROMPTS.file: csv_bytes(list(prompts), PROMPTS.header, spreadsheet_safe=False),
        SAMPLES.file: csv_bytes(sample_rows, SAMPLES.header, spreadsheet_safe=False),
        CONTROLS.file: csv_bytes(control_rows(study=study), CONTROLS.header, spreadsheet_safe=False),
        **{csv_file.dictionary_file: _json(csv_file.dictionary()) for csv_file in CSV_FILES},
        "software.json": _json(software_versions()),
        "METHODS.md": (methods + "\n").encode("utf-8"),
    }
