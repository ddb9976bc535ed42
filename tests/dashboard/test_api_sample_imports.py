"""The researcher API's sample imports: POST a zip (and manifest) to /api/sample-imports/, 202 with the job's URL, poll
it until finished; who may, the 400s that say which field and what was expected (the dashboard form's own rules), and
that a refused request leaves no job, no queued task and no file behind."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from drawbench.catalog.models import Sample
from drawbench.dashboard.apis import ApiUserThrottle
from drawbench.dashboard.catalog_forms import MAX_SAMPLES_PER_PROMPT, SampleImportForm
from drawbench.dashboard.catalog_selectors import IMPORT_JOBS_LISTED, sample_import_job_state
from drawbench.dashboard.catalog_services import sample_import_job_execute
from drawbench.dashboard.models import SampleImportJob
from drawbench.generation.services import IMPORT_BACKEND
from tests import api_support
from tests.api_support import analyst_user, bare_staff_user, token_client
from tests.dashboard.upload_support import folder_zip, png, zip_upload
from tests.factories import EvaluatedModelFactory

pytestmark = pytest.mark.django_db

URL = "/api/sample-imports/"
IMPORTED = IMPORT_BACKEND  # the imported backend: samples made elsewhere
SEED_BACKEND = "tests.generation.fake_backends.SeedImageBackend"
# What the body adds to the job page's state (catalog_selectors.sample_import_job_state).
ASKED_FOR = {
    "url",
    "evaluated_model",
    "evaluated_model_name",
    "prompt_set",
    "prompt_set_name",
    "samples_per_prompt",
    "archive_name",
    "manifest_name",
    "created_at",
    "started_at",
    "finished_at",
}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _stored_uploads(media) -> list:
    return list((media / "imports").rglob("*.*"))


@pytest.fixture
def researcher_user(django_user_model):
    return api_support.researcher_user(django_user_model)


@pytest.fixture
def researcher(researcher_user):
    return token_client(researcher_user)


@pytest.fixture
def bare_staff(django_user_model):
    return token_client(bare_staff_user(django_user_model))


@pytest.fixture
def analyst(django_user_model):
    return token_client(analyst_user(django_user_model))


@pytest.fixture
def closed_model():
    return EvaluatedModelFactory(name="closed", version="2", backend=IMPORTED)


def _body(model, prompt_set, n=2, **files) -> dict:
    files.setdefault("archive", folder_zip())
    return {"evaluated_model": model.pk, "prompt_set": prompt_set.pk, "samples_per_prompt": n, **files}


# --- create, then poll ----------------------------------------------------------------------------------------


def test_post_queues_a_job_and_answers_202_with_its_state_and_location(
    researcher, researcher_user, closed_model, prompt_set, media, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as queued:
        response = researcher.post(URL, _body(closed_model, prompt_set), format="multipart")

    assert response.status_code == 202, response.content
    job = SampleImportJob.objects.get()
    assert response["Location"] == f"http://testserver/api/sample-imports/{job.pk}/"
    assert (job.evaluated_model, job.prompt_set, job.samples_per_prompt) == (closed_model, prompt_set, 2)
    assert (job.archive_name, job.manifest_name, job.created_by, job.status) == (
        "samples.zip",
        "",
        researcher_user,
        "pending",
    )
    assert [path.name for path in _stored_uploads(media)] == ["samples.zip"]
    assert len(queued) == 1, "the import is queued once the request commits"
    body = response.json()
    assert set(body) == set(sample_import_job_state(job=job)) | ASKED_FOR
    assert (body["id"], body["url"], body["status"], body["finished"]) == (
        job.pk,
        response["Location"],
        "pending",
        False,
    )
    assert (body["evaluated_model"], body["evaluated_model_name"]) == (closed_model.pk, "closed@2")
    assert (body["prompt_set"], body["prompt_set_name"]) == (prompt_set.pk, "mini")
    assert body["report"] is None and body["problems"] == []


def test_a_job_run_by_its_worker_polls_as_finished_with_its_report(
    researcher, closed_model, prompt_set, media, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):  # the queued task runs eagerly in the tests
        created = researcher.post(URL, _body(closed_model, prompt_set), format="multipart")

    state = researcher.get(created["Location"]).json()

    assert created.status_code == 202
    assert (state["status"], state["finished"], state["done"], state["total"]) == ("done", True, 6, 6)
    assert state["report"] == {
        "text": "Imported 6 sample(s) of 3 prompt(s) from samples.zip (0 already present).",
        "created": 6,
        "already_present": 0,
        "prompts": 3,
        "prompts_without_samples": [],
    }
    assert state["started_at"] and state["finished_at"] and state["problems"] == []
    samples = Sample.objects.filter(evaluated_model=closed_model)
    assert sorted(samples.values_list("prompt__position", "index")) == [(p, k) for p in (1, 2, 3) for k in (0, 1)]
    assert _stored_uploads(media) == [], "the upload outlived its job"


def test_a_manifest_import_run_by_sample_import_job_execute_reports_both_files(researcher, closed_model, prompt_set):
    manifest = SimpleUploadedFile("list.csv", b"prompt,image\nTwo cats.,imgs/a.png\nTwo cats.,imgs/b.png\n")
    archive = zip_upload({"imgs/a.png": png((1, 1, 1)), "imgs/b.png": png((2, 2, 2))})
    created = researcher.post(
        URL, _body(closed_model, prompt_set, archive=archive, manifest=manifest), format="multipart"
    )

    sample_import_job_execute(job_id=created.json()["id"])
    state = researcher.get(created["Location"]).json()

    assert created.status_code == 202 and created.json()["manifest_name"] == "list.csv"
    assert state["status"] == "done"
    assert state["report"]["text"].startswith("Imported 2 sample(s) of 1 prompt(s) from list.csv + samples.zip")
    assert state["report"]["prompts_without_samples"] == [1, 3]


def test_a_job_whose_upload_is_wrong_polls_as_failed_with_each_problem_once(researcher, closed_model, prompt_set):
    created = researcher.post(URL, _body(closed_model, prompt_set, archive=folder_zip(n=1)), format="multipart")

    sample_import_job_execute(job_id=created.json()["id"])
    state = researcher.get(created["Location"]).json()

    assert (state["status"], state["finished"], state["report"]) == ("failed", True, None)
    assert len(state["problems"]) == 1 and state["problem_count"] == 3  # one problem, met in three folders
    assert state["problems"][0].startswith("missing sample(s) 1") and "in 3 places: 1/, 2/, 3/" in state["problems"][0]
    assert Sample.objects.count() == 0


# --- refused: nothing queued, nothing stored ------------------------------------------------------------------


@pytest.fixture
def refused(media, django_capture_on_commit_callbacks):
    """Send a request that must be refused; check that it left no job, queued no task and stored no file."""

    def send(client, body) -> dict:
        with django_capture_on_commit_callbacks() as queued:
            response = client.post(URL, body, format="multipart")
        assert response.status_code >= 400, response.content
        assert not SampleImportJob.objects.exists()
        assert queued == []
        assert _stored_uploads(media) == []
        return response

    return send


def test_without_credentials_it_is_401(refused, closed_model, prompt_set):
    response = refused(APIClient(), _body(closed_model, prompt_set))

    assert response.status_code == 401


@pytest.mark.parametrize("who", ["bare_staff", "analyst"])
def test_without_the_add_sample_permission_it_is_403_naming_it(request, refused, closed_model, prompt_set, who):
    response = refused(request.getfixturevalue(who), _body(closed_model, prompt_set))

    assert response.status_code == 403
    assert "catalog.add_sample" in response.json()["detail"]


def test_a_model_generated_by_its_backend_is_a_400_naming_it(refused, researcher, prompt_set):
    painter = EvaluatedModelFactory(name="painter", version="1", backend=SEED_BACKEND)

    response = refused(researcher, _body(painter, prompt_set))

    assert response.status_code == 400 and list(response.json()) == ["evaluated_model"]
    message = response.json()["evaluated_model"][0]
    assert message.startswith(f"painter@1 is generated by its backend ({SEED_BACKEND})")
    assert "a model with the imported backend" in message


@pytest.mark.parametrize(
    "files, field, says",
    [
        (
            {"archive": SimpleUploadedFile("samples.txt", b"x")},
            "archive",
            "samples.txt: expected a .zip archive, not .txt",
        ),
        ({"archive": SimpleUploadedFile("samples", b"x")}, "archive", "expected a .zip archive, not a file without"),
        (
            {"manifest": SimpleUploadedFile("list.tsv", b"x")},
            "manifest",
            "list.tsv: expected a .csv manifest, not .tsv",
        ),
    ],
    ids=["txt archive", "archive without suffix", "tsv manifest"],
)
def test_a_file_with_the_wrong_suffix_is_a_400_naming_the_field_and_what_was_expected(
    refused, researcher, closed_model, prompt_set, files, field, says
):
    response = refused(researcher, _body(closed_model, prompt_set, **files))

    assert response.status_code == 400 and list(response.json()) == [field]
    assert says in response.json()[field][0]


def test_missing_fields_are_a_400_naming_each(refused, researcher):
    response = refused(researcher, {})

    assert response.status_code == 400
    assert set(response.json()) == {"evaluated_model", "prompt_set", "samples_per_prompt", "archive"}


@pytest.mark.parametrize("n", [0, MAX_SAMPLES_PER_PROMPT + 1, "two"])
def test_a_sample_count_out_of_range_is_a_400(refused, researcher, closed_model, prompt_set, n):
    response = refused(researcher, _body(closed_model, prompt_set, n=n))

    assert response.status_code == 400 and list(response.json()) == ["samples_per_prompt"]


def test_unknown_ids_are_a_400_on_their_fields(refused, researcher):
    response = refused(researcher, {"evaluated_model": 999999, "prompt_set": 999999, "samples_per_prompt": 1,
                                    "archive": folder_zip()})  # fmt: skip

    assert response.status_code == 400 and set(response.json()) == {"evaluated_model", "prompt_set"}


def test_a_json_body_is_a_415(refused, researcher, closed_model, prompt_set):
    response = researcher.post(URL, {"evaluated_model": closed_model.pk}, format="json")

    assert response.status_code == 415
    assert not SampleImportJob.objects.exists()


@pytest.mark.parametrize(
    "case",
    ["generated model", "txt archive", "tsv manifest", "no samples", "too many samples"],
)
def test_the_api_refuses_what_the_dashboard_form_refuses_with_the_same_words(
    researcher, closed_model, prompt_set, case
):
    painter = EvaluatedModelFactory(name="painter", backend=SEED_BACKEND)

    def body() -> dict:
        data = _body(closed_model, prompt_set)
        if case == "generated model":
            data["evaluated_model"] = painter.pk
        elif case == "txt archive":
            data["archive"] = SimpleUploadedFile("samples.txt", b"x")
        elif case == "tsv manifest":
            data["manifest"] = SimpleUploadedFile("list.tsv", b"x")
        else:
            data["samples_per_prompt"] = 0 if case == "no samples" else MAX_SAMPLES_PER_PROMPT + 1
        return data

    data = body()
    files = {name: data.pop(name) for name in ("archive", "manifest") if name in data}
    form = SampleImportForm(data, files)
    response = researcher.post(URL, body(), format="multipart")

    assert not form.is_valid()
    assert response.status_code == 400
    assert response.json() == {field: list(messages) for field, messages in form.errors.items()}


# --- session authentication -----------------------------------------------------------------------------------


def test_a_session_post_needs_the_csrf_token(researcher_user, closed_model, prompt_set, media):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(researcher_user)

    without = client.post(URL, _body(closed_model, prompt_set), format="multipart")
    client.get(reverse("dashboard:sample-import"))  # the page sets the CSRF cookie, as a browser's visit does
    token = client.cookies["csrftoken"].value
    with_token = client.post(URL, _body(closed_model, prompt_set), format="multipart", HTTP_X_CSRFTOKEN=token)

    assert without.status_code == 403 and "CSRF" in without.json()["detail"]
    assert with_token.status_code == 202, with_token.content
    assert SampleImportJob.objects.count() == 1


# --- reads ----------------------------------------------------------------------------------------------------


def _jobs(closed_model, prompt_set, n: int) -> list[SampleImportJob]:
    return [
        SampleImportJob.objects.create(
            evaluated_model=closed_model, prompt_set=prompt_set, samples_per_prompt=2, archive_name=f"s{i}.zip"
        )
        for i in range(n)
    ]


def test_list_gives_the_latest_jobs_newest_first(analyst, closed_model, prompt_set):
    jobs = _jobs(closed_model, prompt_set, IMPORT_JOBS_LISTED + 2)

    response = analyst.get(URL)

    assert response.status_code == 200
    rows = response.json()
    assert [row["id"] for row in rows] == [job.pk for job in reversed(jobs)][:IMPORT_JOBS_LISTED]
    assert rows[0]["archive_name"] == f"s{IMPORT_JOBS_LISTED + 1}.zip" and rows[0]["prompt_set_name"] == "mini"


def test_list_reads_in_as_many_queries_for_one_job_as_for_many(researcher, closed_model, prompt_set):
    _jobs(closed_model, prompt_set, 1)
    researcher.get(URL)  # the first request of a client warms its caches (content types, throttle)
    with CaptureQueriesContext(connection) as one:
        assert len(researcher.get(URL).json()) == 1
    _jobs(closed_model, prompt_set, 5)
    with CaptureQueriesContext(connection) as six:
        assert len(researcher.get(URL).json()) == 6

    assert len(one) == len(six)


def test_detail_is_readable_by_analysts_and_404_for_an_unknown_job(analyst, bare_staff, closed_model, prompt_set):
    (job,) = _jobs(closed_model, prompt_set, 1)

    state = analyst.get(f"{URL}{job.pk}/")

    assert state.status_code == 200 and state.json()["waiting_s"] is not None
    assert bare_staff.get(f"{URL}{job.pk}/").status_code == 200
    assert analyst.get(f"{URL}999999/").status_code == 404
    assert APIClient().get(f"{URL}{job.pk}/").status_code == 401


def test_reads_are_throttled_as_the_rest_of_the_api(researcher, monkeypatch):
    from django.core.cache import cache

    cache.clear()
    monkeypatch.setattr(ApiUserThrottle, "THROTTLE_RATES", {"api": "2/min"})

    statuses = [researcher.get(URL).status_code for _ in range(3)]
    cache.clear()

    assert statuses == [200, 200, 429]


# --- schema ---------------------------------------------------------------------------------------------------


def test_the_schema_builds_without_warnings_and_documents_the_endpoints(tmp_path, client):
    call_command("spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    schema = client.get(reverse("api-schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]

    create = paths["/api/sample-imports/"]["post"]
    assert set(create["responses"]) >= {"202", "400", "401", "403", "429"}
    assert "Location" in create["responses"]["202"]["headers"]
    assert list(create["requestBody"]["content"]) == ["multipart/form-data"]
    assert set(paths["/api/sample-imports/"]["get"]["responses"]) >= {"200", "401", "403", "429"}
    assert set(paths["/api/sample-imports/{job_id}/"]["get"]["responses"]) >= {"200", "401", "403", "404", "429"}
    input_schema = schema["components"]["schemas"]["SampleImportInput"]
    assert set(input_schema["required"]) == {"evaluated_model", "prompt_set", "samples_per_prompt", "archive"}
    count = input_schema["properties"]["samples_per_prompt"]
    assert (count["minimum"], count["maximum"]) == (1, MAX_SAMPLES_PER_PROMPT)
