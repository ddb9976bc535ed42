"""export_study --bundle: the release bundle reads back into pandas with every dtype (by the documented code), and
the results rebuilt from the bundle alone equal the results it ships."""

import contextlib
import datetime
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import call_command

from drawbench.results import stats
from drawbench.results.apis import StudyRankingApi, StudyResultsApi, _finite_or_null
from drawbench.results.bundle import READ_JUDGMENTS
from drawbench.results.selectors import JUDGMENT_COLUMNS, judgments_frame, results_from_frame
from drawbench.studies.models import Assignment
from tests.factories import AssignmentFactory, JudgmentFactory, RaterFactory


@contextlib.contextmanager
def inside(directory):
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


def read_bundle_judgments(directory) -> pd.DataFrame:
    """The data dictionary's own read code, run as a third party would (in the bundle's folder)."""
    dictionary = json.loads((directory / "judgments.dictionary.json").read_text(encoding="utf-8"))
    assert dictionary["read_with_pandas"] == READ_JUDGMENTS
    namespace: dict = {}
    with inside(directory):
        exec(dictionary["read_with_pandas"], namespace)
    return namespace["judgments"]


def write_bundle(study, directory):
    call_command("export_study", str(study.pk), "--bundle", str(directory))
    return directory


@pytest.mark.django_db
def test_bundle_judgments_read_back_with_every_dtype_and_value(known_study, tmp_path):
    # One more item, shown at a known time, with its sample ids in display order; the others never recorded a
    # shown time.
    shown = datetime.datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=datetime.UTC)
    comparison = known_study.judgments[0].comparison
    rater = RaterFactory(study=known_study.study)
    assignment = AssignmentFactory(comparison=comparison, rater=rater, left_sample_ids=[7, 3], right_sample_ids=[9])
    Assignment.objects.filter(pk=assignment.pk).update(shown_at=shown)
    JudgmentFactory(assignment=assignment, question="fidelity", choice="tie")
    bundle = write_bundle(known_study.study, tmp_path / "bundle")
    frame = read_bundle_judgments(bundle)
    expected = judgments_frame(study=known_study.study, include_excluded=True)
    assert list(frame.columns) == list(JUDGMENT_COLUMNS)
    assert {column: str(dtype) for column, dtype in frame.dtypes.items()} == {
        column: str(dtype) for column, dtype in expected.dtypes.items()
    }
    pd.testing.assert_frame_equal(frame, expected)  # dtypes and values, "NA" in a prompt and newlines included
    row = frame[frame["assignment_id"] == assignment.pk].iloc[0]
    assert row["shown_at"] == pd.Timestamp(shown) and json.loads(row["left_sample_ids"]) == [7, 3]
    assert frame["shown_at"].isna().sum() == (frame["assignment_id"] != assignment.pk).sum()
    assert frame["excluded"].sum() == 1 and not frame["is_gold"].any() and not frame["is_practice"].any()
    assert (frame["served_at"] <= frame["created_at"]).all()


def _numbers_equal(left, right) -> bool:
    if isinstance(left, float) or isinstance(right, float):
        if left is None or right is None:
            return left is right
        return math.isclose(left, right, rel_tol=1e-12, abs_tol=1e-15)
    return left == right


@pytest.mark.django_db
@pytest.mark.parametrize("fixture", ["known_study", "three_model_study"])
def test_results_rebuilt_from_the_bundle_alone_equal_the_shipped_results(fixture, request, tmp_path):
    study = request.getfixturevalue(fixture).study
    bundle = write_bundle(study, tmp_path / "bundle")
    shipped = json.loads((bundle / "results.json").read_text(encoding="utf-8"))
    config = json.loads((bundle / "study.json").read_text(encoding="utf-8"))
    settings = shipped["settings"]
    frame = read_bundle_judgments(bundle)

    rebuilt = results_from_frame(
        frame,
        study_id=config["id"],
        study_name=config["name"],
        questions=settings["questions"],
        method=settings["method"],
        level=settings["level"],
        B=settings["ranking_B"],
        seed=settings["ranking_seed"],
    )
    rows = _finite_or_null(StudyResultsApi.OutputSerializer(rebuilt["rows"], many=True).data)
    assert len(rows) == len(shipped["rows"]) > 0
    for mine, theirs in zip(rows, shipped["rows"], strict=True):
        assert mine.keys() == theirs.keys()
        assert all(_numbers_equal(mine[key], theirs[key]) for key in mine), (mine, theirs)
    ranking = _finite_or_null(
        StudyRankingApi.OutputSerializer(
            [
                {"study_id": config["id"], **row, "exclude_flagged_raters": False}
                for row in stats.ranking_rows(rebuilt["ranking"])
            ],
            many=True,
        ).data
    )
    assert len(ranking) == len(shipped["ranking"])
    for mine, theirs in zip(ranking, shipped["ranking"], strict=True):
        assert all(_numbers_equal(mine[key], theirs[key]) for key in mine), (mine, theirs)
    if fixture == "three_model_study":
        assert shipped["ranking"] and shipped["fragility"]


@pytest.mark.django_db
def test_bundle_carries_config_prompts_samples_software_and_methods(known_study, tmp_path):
    bundle = write_bundle(known_study.study, tmp_path / "bundle")
    names = {path.name for path in bundle.iterdir()}
    assert {"judgments.csv", "judgments.dictionary.json", "results.json", "results.csv", "study.json"} <= names
    assert {"prompts.csv", "samples.csv", "software.json", "METHODS.md"} <= names
    prompts = pd.read_csv(bundle / "prompts.csv", keep_default_na=False)
    assert "1, 2, 3: count to NA" in set(prompts["text"])
    software = json.loads((bundle / "software.json").read_text())
    assert {"drawbench", "python", "numpy", "scipy", "pandas"} <= software.keys()
    methods = (bundle / "METHODS.md").read_text()
    for citation in ("Cameron, Gelbach & Miller 2011", "Korn & Graubard 1998", "Davidson 1970"):
        assert citation in methods
    assert list(pd.read_csv(bundle / "samples.csv").columns)[:6] == [
        "sample_id",
        "model",
        "prompt_id",
        "index",
        "seed",
        "sha256",
    ]


def test_readme_documents_exactly_the_read_code_the_bundle_ships():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("   ```python\n   import json\n") + len("   ```python\n")
    block = readme[start : readme.index("   ```\n", start)]
    assert "".join(line[3:] if line.strip() else "\n" for line in block.splitlines(keepends=True)) == READ_JUDGMENTS
