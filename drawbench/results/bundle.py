"""A study's release bundle: everything a third party needs to recompute every number of its results.

``study_bundle`` returns the files (name → bytes); ``export_study --bundle DIR`` writes them. The judgments CSV is
written exactly as stored (no spreadsheet quoting), with every judgment (excluded ones flagged), and its data
dictionary carries the pandas code that reads it back with every column's dtype (``READ_JUDGMENTS``).
"""

from __future__ import annotations

import json
import platform
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

from django.conf import settings

from drawbench.catalog.models import Sample
from drawbench.results import stats
from drawbench.results.apis import StudyJudgmentListApi, StudyRankingApi, StudyResultsApi, _finite_or_null
from drawbench.results.renderers import csv_bytes
from drawbench.results.selectors import JUDGMENT_COLUMN_DESCRIPTIONS, JUDGMENT_COLUMNS, study_results
from drawbench.results.stats import methods_text
from drawbench.studies.models import Study

JUDGMENTS_FILE = "judgments.csv"
DICTIONARY_FILE = "judgments.dictionary.json"
# The documented read code (README, data dictionary): plain pandas, run as is by the bundle tests.
READ_JUDGMENTS = """import json

import pandas as pd

columns = json.load(open("judgments.dictionary.json", encoding="utf-8"))["columns"]
dtypes = {column["name"]: column["dtype"] for column in columns}
dates = [name for name, dtype in dtypes.items() if dtype.startswith("datetime")]
judgments = pd.read_csv(
    "judgments.csv",
    encoding="utf-8",
    dtype={name: ("object" if dtype == "str" or name in dates else dtype) for name, dtype in dtypes.items()},
    keep_default_na=False,  # a prompt reading "NA" or "null" stays text
    na_values={name: [""] for name in dates},  # only an unrecorded time is missing
)
for name in dates:
    judgments[name] = pd.to_datetime(judgments[name], utc=True, format="ISO8601")
judgments = judgments.astype(dtypes)
"""
SOFTWARE = ("django", "numpy", "scipy", "pandas", "statsmodels")


def judgments_dictionary() -> dict[str, Any]:
    return {
        "file": JUDGMENTS_FILE,
        "encoding": "utf-8",
        "columns": [
            {"name": name, "dtype": dtype, "description": JUDGMENT_COLUMN_DESCRIPTIONS[name]}
            for name, dtype in JUDGMENT_COLUMNS.items()
        ],
        "missing": "An empty field is missing (shown_at only); every other field is always present.",
        "read_with_pandas": READ_JUDGMENTS,
    }


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
    """The bundle's files: judgments with their dictionary, results (rows, ranking, fragility, methods text), the
    study's config and prompt set, the sample manifest with content hashes, and the software versions."""
    judgments = StudyJudgmentListApi.export(study=study, include_excluded=True)
    results = study_results(study=study, method=method)
    rows = _finite_or_null(
        StudyResultsApi.OutputSerializer(results["rows"], many=True).data  # the export's own rows
    )
    ranking = _finite_or_null(StudyRankingApi.export(study=study, include_excluded=False))
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
    sample_header = ["sample_id", "model", "prompt_id", "index", "seed", "sha256", "width", "height", "file"]
    return {
        JUDGMENTS_FILE: csv_bytes(judgments, StudyJudgmentListApi.header(), spreadsheet_safe=False),
        DICTIONARY_FILE: _json(judgments_dictionary()),
        "results.json": _json(
            {"settings": settings_used, "methods": methods, "rows": rows, "ranking": ranking, "fragility": fragility}
        ),
        "results.csv": csv_bytes(rows, StudyResultsApi.header(), spreadsheet_safe=False),
        "study.json": _json(study_config(study)),
        "prompts.csv": csv_bytes(list(prompts), ["id", "position", "category", "text"], spreadsheet_safe=False),
        "samples.csv": csv_bytes(sample_rows, sample_header, spreadsheet_safe=False),
        "software.json": _json(software_versions()),
        "METHODS.md": (methods + "\n").encode("utf-8"),
    }
