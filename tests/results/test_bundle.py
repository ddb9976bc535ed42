"""export_study --bundle: every CSV of the release bundle reads back into pandas with every dtype and value (by the
documented code), the sample manifest's hashes are the files' own, and the results rebuilt from the bundle alone
equal the results it ships."""

import contextlib
import datetime
import hashlib
import json
import math
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command

from drawbench.catalog.models import Prompt, Sample
from drawbench.results import stats
from drawbench.results.apis import StudyRankingApi, StudyResultsApi, _finite_or_null
from drawbench.results.bundle import CSV_FILES, READ_BUNDLE_CSV
from drawbench.results.selectors import JUDGMENT_COLUMNS, judgments_frame, results_from_frame
from drawbench.studies.models import Assignment
from tests.factories import (
    AssignmentFactory,
    ComparisonFactory,
    EvaluatedModelFactory,
    JudgmentFactory,
    PromptFactory,
    RaterFactory,
    SampleFactory,
    png_bytes,
)

CSV_BY_STEM = {csv_file.stem: csv_file for csv_file in CSV_FILES}


@contextlib.contextmanager
def inside(directory):
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


def read_bundle_csv(directory, stem: str) -> pd.DataFrame:
    """The data dictionary's own read code, run as a third party would (in the bundle's folder)."""
    dictionary = json.loads((directory / f"{stem}.dictionary.json").read_text(encoding="utf-8"))
    code = dictionary["read_with_pandas"]
    assert code == CSV_BY_STEM[stem].read_code and code.startswith(READ_BUNDLE_CSV)
    namespace: dict = {}
    with inside(directory):
        exec(code, namespace)
    frame = namespace[CSV_BY_STEM[stem].variable]
    # Every column, in the file's order, with the dtype its dictionary documents.
    assert list(frame.columns) == [column["name"] for column in dictionary["columns"]]
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == {
        column["name"]: column["dtype"] for column in dictionary["columns"]
    }
    return frame


def read_bundle_judgments(directory) -> pd.DataFrame:
    return read_bundle_csv(directory, "judgments")


def assert_rows_equal(frame: pd.DataFrame, rows: list[dict]) -> None:
    """Cell by cell: a missing value (None) read back as missing, every other value exactly (floats by repr)."""
    assert len(frame) == len(rows)
    for record, row in zip(frame.to_dict("records"), rows, strict=True):
        for name, value in record.items():
            if row[name] is None:
                assert pd.isna(value), (name, value, row)
            else:
                assert not pd.isna(value) and value == row[name], (name, value, row[name])


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


@pytest.fixture
def na_study(known_study):
    """The known study with a sixth prompt in a category named "NA" (its text "NA" too), judged by every rater on
    both questions, and samples stored as real files: two per model on every prompt, one of them imported (no
    seed), in sizes that differ. A sample of another prompt set is not the study's."""
    study, models = known_study.study, (known_study.model_a, known_study.model_b)
    prompt = PromptFactory(prompt_set=study.prompt_set, position=6, category="NA", text="NA")
    comparison = ComparisonFactory(study=study, prompt=prompt, model_a=models[0], model_b=models[1])
    for rater, choices in zip(known_study.raters, (("A", "tie"), ("A", "B"), ("tie", "A")), strict=True):
        assignment = AssignmentFactory(comparison=comparison, rater=rater, left_model=models[0])
        for question, choice in zip(("fidelity", "alignment"), choices, strict=True):
            JudgmentFactory(assignment=assignment, question=question, choice=choice)
    images = {}
    for m, model in enumerate(models):
        for prompt in study.prompt_set.prompts.all():
            for index in range(2):
                size = (8 + 4 * index, 8 + 2 * m)
                data = png_bytes(color=(prompt.position * 30, 90 * m, 100 * index), size=size)
                sample = SampleFactory(
                    evaluated_model=model,
                    prompt=prompt,
                    index=index,
                    seed=None if index else 2**62 + 1000 * m + prompt.position,  # beyond float64
                    image=ContentFile(data, name=f"{hashlib.sha256(data).hexdigest()}.png"),
                    content_hash=hashlib.sha256(data).hexdigest(),
                    width=size[0],
                    height=size[1],
                )
                images[sample.pk] = data
    SampleFactory(evaluated_model=EvaluatedModelFactory(), prompt=PromptFactory())
    known_study.images = images
    return known_study


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["two_way_cluster_t", "prompt_bootstrap"])
def test_every_bundle_csv_reads_back_with_every_dtype_and_value(na_study, method, tmp_path):
    study = na_study.study
    bundle = tmp_path / "bundle"
    call_command("export_study", str(study.pk), "--bundle", str(bundle), "--method", method)
    csv_names = {path.stem for path in bundle.glob("*.csv")}
    assert csv_names == set(CSV_BY_STEM) == {"judgments", "results", "prompts", "samples", "controls"}

    judgments = read_bundle_csv(bundle, "judgments")
    pd.testing.assert_frame_equal(judgments, judgments_frame(study=study, include_excluded=True))
    assert "NA" in set(judgments["category"]) and "NA" in set(judgments["prompt"])

    results = read_bundle_csv(bundle, "results")
    shipped = json.loads((bundle / "results.json").read_text(encoding="utf-8"))["rows"]
    assert_rows_equal(results, shipped)
    dtypes = {name: str(dtype) for name, dtype in results.dtypes.items()}
    assert dtypes["category"] == dtypes["model_a"] == dtypes["left_rate_method"] == "str"
    assert dtypes["B"] == dtypes["seed"] == "Int64" and dtypes["n"] == dtypes["count_tie"] == "int64"
    assert dtypes["se"] == dtypes["ci_low"] == "float64" and dtypes["low_precision"] == "bool"
    overall = results["scope"] == "overall"
    assert results.loc[overall, "category"].isna().all() and results.loc[~overall, "category"].notna().all()
    assert {"NA", "Colors", "Counting"} == set(results.loc[~overall, "category"])
    if method == "prompt_bootstrap":
        assert results["B"].notna().all() and results["seed"].notna().all()
    else:
        assert results["B"].isna().all() and results["seed"].isna().all()
    # The fixture is one that plain read_csv gets wrong: "NA" comes back missing, an analytic method's B as floats.
    plain = pd.read_csv(bundle / "results.csv")
    assert plain["category"].isna().sum() > results["category"].isna().sum()
    assert str(plain["B"].dtype) == ("int64" if method == "prompt_bootstrap" else "float64")

    prompts = read_bundle_csv(bundle, "prompts")
    assert_rows_equal(
        prompts, list(Prompt.objects.filter(prompt_set=study.prompt_set).order_by("position").values(*prompts))
    )
    assert {"int64"} == {str(prompts[name].dtype) for name in ("id", "position")}
    assert "NA" in set(prompts["category"]) and "1, 2, 3: count to NA" in set(prompts["text"])

    samples = read_bundle_csv(bundle, "samples")
    assert str(samples["seed"].dtype) == "Int64" and samples["seed"].isna().any() and samples["seed"].notna().any()
    assert str(samples["sample_id"].dtype) == str(samples["width"].dtype) == "int64"
    assert str(pd.read_csv(bundle / "samples.csv")["seed"].dtype) == "float64"  # what plain read_csv makes of it


@pytest.mark.django_db
def test_sample_manifest_hashes_are_the_files_own_and_its_rows_round_trip(na_study, tmp_path):
    bundle = write_bundle(na_study.study, tmp_path / "bundle")
    samples = read_bundle_csv(bundle, "samples")
    assert set(samples["sample_id"]) == set(na_study.images)  # the study's samples, not the other prompt set's
    for row in samples.itertuples():
        with default_storage.open(row.file, "rb") as image:
            stored = image.read()
        assert stored == na_study.images[row.sample_id]
        assert row.sha256 == hashlib.sha256(stored).hexdigest()
    expected = [
        {
            "sample_id": sample.pk,
            "model": f"{sample.evaluated_model.name}@{sample.evaluated_model.version}",
            "prompt_id": sample.prompt_id,
            "index": sample.index,
            "seed": sample.seed,
            "sha256": sample.content_hash,
            "width": sample.width,
            "height": sample.height,
            "file": sample.image.name,
        }
        for sample in Sample.objects.filter(pk__in=na_study.images).select_related("evaluated_model").order_by("pk")
    ]
    assert_rows_equal(samples, expected)
    assert samples["seed"].max() > 2**53  # exactly: a float64 column would have rounded it
    assert len(set(samples["sha256"])) == len(samples)


@pytest.mark.django_db
def test_bundle_carries_config_prompts_samples_software_and_methods(known_study, tmp_path):
    bundle = write_bundle(known_study.study, tmp_path / "bundle")
    names = {path.name for path in bundle.iterdir()}
    assert {"judgments.csv", "results.json", "results.csv", "study.json"} <= names
    assert {"prompts.csv", "samples.csv", "controls.csv", "software.json", "METHODS.md"} <= names
    assert {f"{stem}.dictionary.json" for stem in ("judgments", "results", "prompts", "samples", "controls")} <= names
    for csv_file in CSV_FILES:
        dictionary = json.loads((bundle / csv_file.dictionary_file).read_text(encoding="utf-8"))
        header = (bundle / csv_file.file).read_text(encoding="utf-8").splitlines()[0].split(",")
        assert [column["name"] for column in dictionary["columns"]] == header
        assert all(column["description"] and "nullable" in column for column in dictionary["columns"])
    software = json.loads((bundle / "software.json").read_text())
    assert {"drawbench", "python", "numpy", "scipy", "pandas"} <= software.keys()
    methods = (bundle / "METHODS.md").read_text()
    for citation in ("Cameron, Gelbach & Miller 2011", "Korn & Graubard 1998", "Davidson 1970", "Zermelo 1929"):
        assert citation in methods


@pytest.mark.django_db
def test_methods_text_states_the_tier_rule_the_rater_blind_spot_and_cites_davidson_for_the_tie_model(
    three_model_study, tmp_path
):
    bundle = write_bundle(three_model_study.study, tmp_path / "bundle")
    methods = (bundle / "METHODS.md").read_text()
    sentences = re.split(r"(?<=\.) (?=[A-Z])", methods)
    score = next(sentence for sentence in sentences if "s = share A + ½·share tie" in sentence)
    assert "Davidson" not in score and "1970" not in score  # the ties-as-half score is not Davidson's model
    davidson = next(sentence for sentence in sentences if "Davidson 1970" in sentence)
    assert "tie model" in davidson and "Rankings" in davidson
    assert "overlap share a tier" not in methods
    tiers = next(sentence for sentence in sentences if sentence.startswith("Tiers"))
    assert "wholly below the interval of the first model of the current tier" in tiers
    raters = next(sentence for sentence in sentences if "raters are not resampled" in sentence)
    assert "prompt sampling only" in raters and "too narrow" in raters
    settings = json.loads((bundle / "results.json").read_text())["settings"]
    assert f"B = {settings['ranking_B']}, seed {settings['ranking_seed']}" in methods


def test_readme_documents_exactly_the_read_code_the_bundle_ships():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("   ```python\n   import json\n") + len("   ```python\n")
    block = readme[start : readme.index("   ```\n", start)]
    documented = "".join(line[3:] if line.strip() else "\n" for line in block.splitlines(keepends=True))
    calls = "".join(f'{csv_file.variable} = read_bundle_csv("{csv_file.stem}")\n' for csv_file in CSV_FILES)
    assert documented == f"{READ_BUNDLE_CSV}\n\n{calls}"
    for csv_file in CSV_FILES:  # each dictionary's code is the README's function and its own line
        assert csv_file.read_code == f'{READ_BUNDLE_CSV}\n\n{csv_file.variable} = read_bundle_csv("{csv_file.stem}")\n'
