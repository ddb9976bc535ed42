"""The whole loop on PostgreSQL: load prompts → import samples → raters answer → results and export.

Everything goes through the entry points a person uses (management commands, the rater pages, the export API), and
the results are checked against numbers counted by hand from what the raters were told to answer.
"""

import io
import os

import pandas as pd
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from PIL import Image

from drawbench.catalog.models import EvaluatedModel, PromptSet, Sample
from drawbench.studies.models import Assignment, Judgment, Study
from drawbench.studies.services.studies import study_create, study_open

CATEGORY = "Rare Words"  # 7 prompts: small enough to import and rate quickly, a real DrawBench category
SAMPLES = 8


@pytest.fixture
def on_postgresql():
    if connection.vendor != "postgresql":
        if os.environ.get("DRAWBENCH_REQUIRE_SERVICES") == "1":
            pytest.fail(f"the end-to-end test must run on PostgreSQL, not {connection.vendor}")
        pytest.skip("needs DATABASE_URL pointing at PostgreSQL")


def _write_sample_folder(root, positions, colour):
    for position in positions:
        folder = root / str(position)
        folder.mkdir(parents=True)
        for k in range(SAMPLES):
            Image.new("RGB", (32, 32), (colour[0], colour[1], (k * 29) % 256)).save(folder / f"{k}.png")


# What each rater answers, in model space: the fidelity answer and the alignment answer.
RATER_POLICY = {
    0: {"fidelity": "A", "alignment": "tie"},
    1: {"fidelity": "A", "alignment": "B"},
    2: {"fidelity": "tie", "alignment": "A"},
}


def _displayed(model_space: str, *, a_is_left: bool) -> str:
    if model_space == "tie":
        return "tie"
    return "left" if (model_space == "A") == a_is_left else "right"


@pytest.mark.django_db
def test_study_end_to_end_on_postgresql(on_postgresql, tmp_path, staff_user, settings):
    # 1. Load DrawBench from its configured path.
    call_command("load_prompts", "drawbench", stdout=io.StringIO())
    drawbench = PromptSet.objects.get(slug="drawbench")
    assert drawbench.prompts.count() == 200
    positions = list(drawbench.prompts.filter(category=CATEGORY).values_list("position", flat=True))
    assert len(positions) == 7

    # 2. Two closed models whose samples were made elsewhere, imported from folders.
    for name, colour in (("closed-a", (220, 40)), ("closed-b", (40, 200))):
        folder = tmp_path / name
        _write_sample_folder(folder, positions, colour)
        call_command(
            "import_samples", "--model", name, "--prompt-set", "drawbench", "--folder", str(folder),
            "--samples-per-prompt", str(SAMPLES), "--create-model", stdout=io.StringIO(),
        )  # fmt: skip
    model_a, model_b = EvaluatedModel.objects.get(name="closed-a"), EvaluatedModel.objects.get(name="closed-b")
    assert Sample.objects.filter(evaluated_model__in=[model_a, model_b]).count() == 2 * 7 * SAMPLES

    # 3. A study over one category, opened for rating.
    study = study_create(
        name="e2e", prompt_set=drawbench, evaluated_models=[model_a, model_b], categories=[CATEGORY],
        ratings_per_comparison=3, created_by=staff_user,
    )  # fmt: skip
    study = study_open(study=study)
    assert study.comparisons.count() == 7

    # 4. Three raters answer every comparison through the rater pages.
    for policy in RATER_POLICY.values():
        client = Client()
        assert client.post(f"/s/{study.rater_token}/").status_code == 302
        for _ in range(7):
            page = client.get(f"/s/{study.rater_token}/rate/")
            assert page.status_code == 200
            key = page.context["display"].key
            assignment = Assignment.objects.get(key=key)
            a_is_left = assignment.left_model_id == assignment.comparison.model_a_id
            post = {"key": key, "response_time_ms": "1500"}
            for question, answer in policy.items():
                post[f"answer_{question}"] = _displayed(answer, a_is_left=a_is_left)
            assert client.post(f"/s/{study.rater_token}/rate/", post).status_code == 302
        assert client.get(f"/s/{study.rater_token}/rate/").url.endswith("/done/")

    # Hand count: per question, over 3 raters × 7 prompts.
    expected = {
        "fidelity": {"A": 14, "tie": 7, "B": 0},
        "alignment": {"A": 7, "tie": 7, "B": 7},
    }
    assert Judgment.objects.filter(comparison__study=study).count() == 42

    # 5. Export and results through the staff API.
    staff = Client()
    staff.force_login(staff_user)
    csv_response = staff.get(f"/api/studies/{study.pk}/judgments/?format=csv")
    assert csv_response.status_code == 200
    frame = pd.read_csv(io.BytesIO(csv_response.content))
    assert len(frame) == 42
    assert set(frame["category"]) == {CATEGORY}
    for question, counts in expected.items():
        got = frame[frame["question"] == question]["choice"].value_counts().to_dict()
        assert {k: got.get(k, 0) for k in counts} == counts

    rows = staff.get(f"/api/studies/{study.pk}/results/").json()
    overall = {r["question"]: r for r in rows if r["scope"] == "overall"}
    for question, counts in expected.items():
        row = overall[question]
        assert (row["count_a"], row["count_tie"], row["count_b"]) == (counts["A"], counts["tie"], counts["B"])
        assert row["score"] == pytest.approx((counts["A"] + 0.5 * counts["tie"]) / 21)

    # The results page shows the same study.
    page = staff.get(f"/dashboard/studies/{study.pk}/results/")
    assert page.status_code == 200
    assert Study.objects.get(pk=study.pk).status == Study.Status.OPEN
