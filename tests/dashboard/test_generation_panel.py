"""The study page's generation panel: live progress per run, the prompts that failed and why, resume and cancel."""

import pytest
from django.urls import reverse

from drawbench.catalog.models import Sample
from drawbench.generation.models import GenerationRun
from drawbench.generation.services import generation_batch_run, generation_run_create, generation_run_start
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory, StudyFactory

SEED = "tests.generation.fake_backends.SeedImageBackend"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def study():
    prompt_set = PromptSetFactory(slug="panel")
    PromptFactory(prompt_set=prompt_set, position=1, text="A red colored car.", category="Colors")
    PromptFactory(prompt_set=prompt_set, position=2, text="Two cats and one dog.", category="Counting")
    PromptFactory(prompt_set=prompt_set, position=3, text="A green triangle.", category="Colors")
    study = StudyFactory(prompt_set=prompt_set, samples_per_side=2)
    study.evaluated_models.set(
        [
            EvaluatedModelFactory(name="painter", backend=SEED, config={"fail_on": "cats"}),
            EvaluatedModelFactory(name="other", backend=SEED),
        ]
    )
    return study


def painter_run(study, capture, *, execute=True) -> GenerationRun:
    run = generation_run_create(
        evaluated_model=study.evaluated_models.get(name="painter"), prompt_set=study.prompt_set, samples_per_prompt=2
    )
    with capture(execute=execute):
        generation_run_start(run=run)
    run.refresh_from_db()
    return run


def progress(staff_client, study) -> dict:
    return staff_client.get(reverse("dashboard:study-progress", args=[study.pk])).json()


def test_the_progress_json_lists_each_failed_prompt_with_its_message(
    staff_client, study, django_capture_on_commit_callbacks
):
    run = painter_run(study, django_capture_on_commit_callbacks)

    (state,) = progress(staff_client, study)["runs"]

    assert (state["id"], state["status"], state["done"], state["total"], state["failed"]) == (run.pk, "failed", 4, 6, 1)
    assert state["failures"] == [
        {
            "position": 2,
            "category": "Counting",
            "text": "Two cats and one dog.",
            "message": "BackendError: cannot draw 'Two cats and one dog.'",
        }
    ]
    assert state["queue"] == "cpu" and state["can_resume"] and not state["can_cancel"]


def test_the_study_page_shows_the_failed_prompt_and_a_resume_button(
    staff_client, study, django_capture_on_commit_callbacks
):
    run = painter_run(study, django_capture_on_commit_callbacks)

    page = staff_client.get(reverse("dashboard:study-detail", args=[study.pk])).content.decode()

    assert "prompt 2 (Counting) “Two cats and one dog.”" in page
    assert "cannot draw &#x27;Two cats and one dog.&#x27;" in page
    assert reverse("dashboard:run-resume", args=[study.pk, run.pk]) in page
    assert reverse("dashboard:run-cancel", args=[study.pk, run.pk]) not in page


def test_resuming_from_the_dashboard_retries_the_failed_prompt(staff_client, study, django_capture_on_commit_callbacks):
    run = painter_run(study, django_capture_on_commit_callbacks)
    run.evaluated_model.config = {}
    run.evaluated_model.save()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("dashboard:run-resume", args=[study.pk, run.pk]), follow=True)

    run.refresh_from_db()
    assert f"Run {run.pk} resumed." in response.content.decode()
    assert run.status == GenerationRun.Status.DONE and run.attempt == 2 and not run.failures.exists()
    assert Sample.objects.filter(evaluated_model=run.evaluated_model).count() == 6
    (state,) = progress(staff_client, study)["runs"]
    assert state["failures"] == [] and not state["can_resume"]


def test_cancelling_from_the_dashboard_stops_a_running_run(staff_client, study, django_capture_on_commit_callbacks):
    run = painter_run(study, django_capture_on_commit_callbacks, execute=False)
    assert run.status == GenerationRun.Status.RUNNING
    (state,) = progress(staff_client, study)["runs"]
    assert state["can_cancel"] and not state["can_resume"]

    response = staff_client.post(reverse("dashboard:run-cancel", args=[study.pk, run.pk]), follow=True)

    run.refresh_from_db()
    assert run.status == GenerationRun.Status.CANCELLED and f"Run {run.pk} cancelled." in response.content.decode()
    # A task queued before the cancel finds the run stopped and draws nothing.
    assert generation_batch_run(run_id=run.pk, prompt_ids=[p.pk for p in study.prompt_set.prompts.all()]) == 0
    assert not Sample.objects.exists()


def test_resuming_a_running_run_is_refused_with_the_reason(staff_client, study, django_capture_on_commit_callbacks):
    run = painter_run(study, django_capture_on_commit_callbacks, execute=False)

    response = staff_client.post(reverse("dashboard:run-resume", args=[study.pk, run.pk]), follow=True)

    run.refresh_from_db()
    assert "is running already; cancel it first" in response.content.decode() and run.attempt == 1


def test_a_task_queued_before_a_resume_does_nothing(staff_client, study, django_capture_on_commit_callbacks):
    run = painter_run(study, django_capture_on_commit_callbacks, execute=False)
    staff_client.post(reverse("dashboard:run-cancel", args=[study.pk, run.pk]))
    with django_capture_on_commit_callbacks(execute=False):
        staff_client.post(reverse("dashboard:run-resume", args=[study.pk, run.pk]))
    prompt_ids = [p.pk for p in study.prompt_set.prompts.all()]

    stale = generation_batch_run(run_id=run.pk, prompt_ids=prompt_ids, attempt=1)
    current = generation_batch_run(run_id=run.pk, prompt_ids=prompt_ids, attempt=2)

    assert (stale, current) == (0, 4)


def test_run_actions_only_reach_the_studys_own_runs(staff_client, study, django_capture_on_commit_callbacks):
    other_study = StudyFactory()
    run = painter_run(study, django_capture_on_commit_callbacks)

    response = staff_client.post(reverse("dashboard:run-resume", args=[other_study.pk, run.pk]))

    assert response.status_code == 404


def test_run_actions_are_for_staff_only(client, study, django_capture_on_commit_callbacks):
    run = painter_run(study, django_capture_on_commit_callbacks)

    response = client.post(reverse("dashboard:run-resume", args=[study.pk, run.pk]))

    run.refresh_from_db()
    assert response.status_code == 302 and "login" in response.url and run.attempt == 1


def test_the_progress_of_a_running_run_has_a_rate_an_eta_and_the_platforms_overhead(
    staff_client, study, django_capture_on_commit_callbacks
):
    run = painter_run(study, django_capture_on_commit_callbacks, execute=False)
    first = study.prompt_set.prompts.get(position=1)
    generation_batch_run(run_id=run.pk, prompt_ids=[first.pk], attempt=run.attempt)

    (state,) = progress(staff_client, study)["runs"]

    assert (state["status"], state["done"], state["total"]) == ("running", 2, 6)
    assert state["images_per_s"] > 0
    assert state["eta_s"] == pytest.approx(4 / state["images_per_s"])
    run.refresh_from_db()
    assert 0 < run.model_seconds <= run.task_seconds
    # Overhead is a share of task time, and only once the model has run long enough to measure it.
    if run.model_seconds >= 1:
        assert state["overhead"] == pytest.approx((run.task_seconds - run.model_seconds) / run.task_seconds)
    else:
        assert state["overhead"] is None
