"""The researcher dashboard: create a study, generate its samples, open it, watch it, close it."""

import pytest
from django.urls import reverse

from drawbench.backends.diffusers_backend import tiny_model_config
from drawbench.catalog.models import Sample
from drawbench.generation.models import GenerationRun
from drawbench.studies.models import Study
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory

DIFFUSERS = "drawbench.backends.diffusers_backend.DiffusersBackend"


@pytest.fixture
def prompt_set(db):
    prompt_set = PromptSetFactory(slug="mini")
    PromptFactory(prompt_set=prompt_set, position=1, text="A red colored car.", category="Colors")
    PromptFactory(prompt_set=prompt_set, position=2, text="Two cats.", category="Counting")
    return prompt_set


@pytest.fixture
def tiny_models(db):
    return [
        EvaluatedModelFactory(name="tiny-a", backend=DIFFUSERS, config=tiny_model_config(init_seed=1)),
        EvaluatedModelFactory(name="tiny-b", backend=DIFFUSERS, config=tiny_model_config(init_seed=2)),
    ]


def _create(staff_client, prompt_set, models, **overrides):
    data = {
        "name": "Dashboard study",
        "prompt_set": prompt_set.pk,
        "categories": "",
        "evaluated_models": [m.pk for m in models],
        "questions": ["fidelity", "alignment"],
        "samples_per_side": 2,
        "ratings_per_comparison": 5,
        **overrides,
    }
    return staff_client.post(reverse("dashboard:study-new"), data)


@pytest.mark.django_db
def test_dashboard_is_for_staff_only(client, django_user_model):
    assert client.get(reverse("dashboard:study-list")).status_code == 302
    client.force_login(django_user_model.objects.create_user(username="rater", password="x"))
    response = client.get(reverse("dashboard:study-list"))
    assert response.status_code == 302 and "login" in response.url


@pytest.mark.django_db
def test_study_new_creates_a_study_with_one_comparison_per_prompt(staff_client, prompt_set, tiny_models):
    response = _create(staff_client, prompt_set, tiny_models)
    study = Study.objects.get(name="Dashboard study")
    assert response.status_code == 302 and response.url == reverse("dashboard:study-detail", args=[study.pk])
    assert study.comparisons.count() == 2
    assert study.status == Study.Status.DRAFT


@pytest.mark.django_db
def test_study_new_with_one_model_shows_the_error_and_creates_nothing(staff_client, prompt_set, tiny_models):
    response = _create(staff_client, prompt_set, tiny_models[:1])
    assert response.status_code == 200
    assert "evaluated_models" in response.content.decode() or "two" in response.content.decode().lower()
    assert not Study.objects.exists()


@pytest.mark.django_db
def test_study_new_with_an_unknown_category_names_it(staff_client, prompt_set, tiny_models):
    response = _create(staff_client, prompt_set, tiny_models, categories="Colors, Kolors")
    assert response.status_code == 200
    assert "Kolors" in response.content.decode()
    assert not Study.objects.exists()


@pytest.mark.django_db
def test_opening_before_generation_lists_missing_samples_and_stays_draft(staff_client, prompt_set, tiny_models):
    _create(staff_client, prompt_set, tiny_models)
    study = Study.objects.get()
    response = staff_client.post(reverse("dashboard:study-open", args=[study.pk]), follow=True)
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT
    assert "tiny-a" in response.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_generate_open_watch_and_close_a_study(staff_client, prompt_set, tiny_models):
    _create(staff_client, prompt_set, tiny_models)
    study = Study.objects.get()

    # Generation runs as Celery tasks (eager in tests; a real worker is exercised in tests/generation).
    staff_client.post(reverse("dashboard:study-generate", args=[study.pk]))
    assert GenerationRun.objects.filter(status=GenerationRun.Status.DONE).count() == 2
    assert Sample.objects.count() == 2 * 2 * 2

    progress = staff_client.get(reverse("dashboard:study-progress", args=[study.pk])).json()
    assert [s["present"] for s in progress["samples"]] == [4, 4]
    assert {r["status"] for r in progress["runs"]} == {"done"}

    staff_client.post(reverse("dashboard:study-open", args=[study.pk]))
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN

    detail = staff_client.get(reverse("dashboard:study-detail", args=[study.pk])).content.decode()
    assert study.rater_token in detail
    assert "0 of 20 judgments" in detail

    staff_client.post(reverse("dashboard:study-close", args=[study.pk]))
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED
    listing = staff_client.get(reverse("dashboard:study-list")).content.decode()
    assert "Dashboard study" in listing and "Closed" in listing


@pytest.mark.django_db
def test_study_new_sets_quality_control_consent_and_completion(staff_client, prompt_set, tiny_models):
    response = _create(
        staff_client,
        prompt_set,
        tiny_models,
        consent_text="We record your answers.",
        practice_items=2,
        gold_rate=0.1,
        min_gold_accuracy=0.75,
        min_response_time_ms=1500,
        assignment_timeout_s=600,
        completion_code="ABCD1234",
        completion_url="https://app.prolific.com/submissions/complete?cc=ABCD1234",
    )

    assert response.status_code == 302
    study = Study.objects.get(name="Dashboard study")
    assert (
        study.consent_text, study.practice_items, study.gold_rate, study.min_gold_accuracy,
        study.min_response_time_ms, study.assignment_timeout_s, study.completion_code, study.completion_url,
    ) == (
        "We record your answers.", 2, 0.1, 0.75, 1500, 600, "ABCD1234",
        "https://app.prolific.com/submissions/complete?cc=ABCD1234",
    )  # fmt: skip


@pytest.mark.django_db
def test_study_new_leaves_empty_quality_fields_at_their_defaults_and_names_a_bad_one(
    staff_client, prompt_set, tiny_models
):
    _create(staff_client, prompt_set, tiny_models, gold_rate="", completion_code="")
    study = Study.objects.get()
    assert (study.gold_rate, study.practice_items, study.min_response_time_ms) == (0.0, 0, 1000)
    assert len(study.completion_code) == 8

    page = _create(staff_client, prompt_set, tiny_models, name="Bad", gold_rate="1.5")
    assert page.status_code == 200 and not Study.objects.filter(name="Bad").exists()
    assert "Ensure this value is less than or equal to 1" in page.content.decode()
