"""The researcher API's catalog writes: models (POST, PATCH), prompt sets (POST a file or a JSON list), generation runs
(POST, resume, cancel); who may call them, and the 400s and 409s that say what is wrong."""

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from drawbench.catalog.models import EvaluatedModel, Prompt, PromptSet, Sample
from drawbench.generation.models import GenerationRun
from drawbench.studies.services.studies import study_create
from tests.api_support import analyst_user, bare_staff_user, researcher_user, token_client
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory, SampleFactory

pytestmark = pytest.mark.django_db

DIFFUSERS = "drawbench.backends.diffusers_backend.DiffusersBackend"
IMPORTED = "drawbench.backends.imported.ImportBackend"
SEED_BACKEND = "tests.generation.fake_backends.SeedImageBackend"


@pytest.fixture
def researcher(django_user_model):
    return token_client(researcher_user(django_user_model))


@pytest.fixture
def bare_staff(django_user_model):
    return token_client(bare_staff_user(django_user_model))


@pytest.fixture
def analyst(django_user_model):
    return token_client(analyst_user(django_user_model))


@pytest.fixture
def prompt_set():
    prompt_set = PromptSetFactory(slug="mini")
    PromptFactory(prompt_set=prompt_set, position=1, text="A red colored car.", category="Colors")
    PromptFactory(prompt_set=prompt_set, position=2, text="Two cats.", category="Counting")
    return prompt_set


# --- models ---------------------------------------------------------------------------------------------------


def test_post_model_creates_it_with_a_config_its_backend_accepts(researcher):
    body = {"name": "sd-tiny", "version": "2", "backend": DIFFUSERS, "config": {"tiny": True, "guidance_scale": 5}}

    response = researcher.post("/api/models/", body, format="json")

    assert response.status_code == 201, response.content
    model = EvaluatedModel.objects.get(name="sd-tiny")
    assert response.json()["id"] == model.pk
    assert (model.version, model.config) == ("2", {"tiny": True, "guidance_scale": 5})


@pytest.mark.parametrize(
    "config, key",
    [
        ({"tiny": True, "num_inference_steps": "many"}, "'num_inference_steps'"),
        ({"tiny": True, "sampler": "ddim"}, "'sampler'"),
        ({"tiny": True, "height": 0}, "height"),
    ],
    ids=["wrong type", "unknown key", "out of range"],
)
def test_post_model_with_a_bad_config_is_a_400_on_config_naming_the_key(researcher, config, key):
    response = researcher.post("/api/models/", {"name": "bad", "backend": DIFFUSERS, "config": config}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["config"] and key in response.json()["config"][0]
    assert not EvaluatedModel.objects.exists()


def test_post_model_with_a_config_that_is_no_object_or_a_backend_that_is_no_backend(researcher):
    not_object = researcher.post("/api/models/", {"name": "a", "backend": IMPORTED, "config": [1, 2]}, format="json")
    no_backend = researcher.post("/api/models/", {"name": "b", "backend": "os.path.join"}, format="json")
    no_name = researcher.post("/api/models/", {"name": "not a slug!", "backend": IMPORTED}, format="json")

    assert not_object.status_code == 400 and "must be a JSON object" in not_object.json()["config"][0]
    assert no_backend.status_code == 400 and "is not a subclass" in no_backend.json()["backend"][0]
    assert no_name.status_code == 400 and list(no_name.json()) == ["name"]
    assert not EvaluatedModel.objects.exists()


def test_post_model_twice_with_the_same_name_and_version_is_a_400(researcher):
    researcher.post("/api/models/", {"name": "m", "backend": IMPORTED}, format="json")

    again = researcher.post("/api/models/", {"name": "m", "backend": IMPORTED}, format="json")

    assert again.status_code == 400 and "already exists" in str(again.json())
    assert EvaluatedModel.objects.count() == 1


def test_patch_model_changes_its_config_while_it_has_no_samples_then_409(researcher, prompt_set):
    model = EvaluatedModelFactory(name="closed", backend=IMPORTED)
    url = f"/api/models/{model.pk}/"

    changed = researcher.patch(url, {"config": {"max_image_bytes": 5000}}, format="json")
    bad = researcher.patch(url, {"config": {"max_image_bytes": "5kB"}}, format="json")
    SampleFactory(evaluated_model=model, prompt=prompt_set.prompts.first(), index=0)
    frozen = researcher.patch(url, {"config": {}}, format="json")
    described = researcher.patch(url, {"description": "from an API"}, format="json")

    assert changed.status_code == 200 and changed.json()["config"] == {"max_image_bytes": 5000}
    assert bad.status_code == 400 and "'max_image_bytes'" in bad.json()["config"][0]
    assert frozen.status_code == 409 and "has 1 sample(s)" in frozen.json()["detail"]
    assert described.status_code == 200
    model.refresh_from_db()
    assert (model.config, model.description) == ({"max_image_bytes": 5000}, "from an API")


def test_patch_of_a_missing_model_is_a_json_404(researcher):
    response = researcher.patch("/api/models/999999/", {"description": "x"}, format="json")

    assert response.status_code == 404 and "detail" in response.json()


# --- prompt sets ----------------------------------------------------------------------------------------------


def test_post_prompt_set_from_a_csv_file(researcher):
    upload = SimpleUploadedFile("mine.csv", b"prompt,category\nA red cube.,Colors\nThree dogs.,Counting\n")

    response = researcher.post("/api/prompt-sets/", {"slug": "mine", "title": "Mine", "file": upload})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["prompt_set"]["slug"] == "mine" and body["prompt_set"]["n_prompts"] == 2
    assert body["prompt_set"]["categories"] == {"Colors": 1, "Counting": 1}
    assert (body["created"], body["updated"], body["deleted"]) == (2, 0, 0)
    assert list(Prompt.objects.filter(prompt_set__slug="mine").values_list("position", "text")) == [
        (1, "A red cube."),
        (2, "Three dogs."),
    ]


def test_post_prompt_set_from_a_json_list_then_again_changes_nothing(researcher):
    body = {
        "slug": "listed",
        "prompts": [{"prompt": "A cat.", "category": "Animals", "id": 3}, {"prompt": "A car.", "category": "Things"}],
    }

    first = researcher.post("/api/prompt-sets/", body, format="json")
    again = researcher.post("/api/prompt-sets/", body, format="json")

    assert first.status_code == 201 and again.status_code == 200
    assert (again.json()["created"], again.json()["unchanged"]) == (0, 2)
    assert list(Prompt.objects.values_list("text", "external_id")) == [("A cat.", "3"), ("A car.", "")]


@pytest.mark.parametrize(
    "name, body, expected",
    [
        ("bad.csv", b"prompt,category\nA cat.,Animals\nA dog.,\n", "bad.csv, line 3, column 'category'"),
        ("bad.jsonl", b'{"prompt": "A cat.", "category": "A"}\n{"prompt": "A dog."}\n', "bad.jsonl, line 2"),
        ("bad.csv", b"text;category\nA cat.;Animals\n", "bad.csv, line 1"),
    ],
    ids=["empty category", "missing field", "semicolons"],
)
def test_post_prompt_set_with_a_bad_file_is_a_400_naming_file_line_and_field(researcher, name, body, expected):
    response = researcher.post("/api/prompt-sets/", {"slug": "bad", "file": SimpleUploadedFile(name, body)})

    assert response.status_code == 400
    message = response.json()["file"][0]
    assert message.startswith(expected) and message.endswith("(nothing was imported)")
    assert not PromptSet.objects.exists() and not Prompt.objects.exists()


def test_post_prompt_set_with_a_bad_item_names_it_as_its_line(researcher):
    body = {"slug": "listed", "prompts": [{"prompt": "A cat.", "category": "A"}, {"prompt": "A dog.", "category": 7}]}

    response = researcher.post("/api/prompt-sets/", body, format="json")

    assert response.status_code == 400
    assert response.json()["prompts"][0].startswith("prompts.jsonl, line 2, field 'category': expected a string")
    assert not PromptSet.objects.exists()


def test_post_prompt_set_without_prompts_or_with_a_bad_slug_is_a_400(researcher):
    empty = researcher.post("/api/prompt-sets/", {"slug": "x", "prompts": []}, format="json")
    slug = researcher.post(
        "/api/prompt-sets/", {"slug": "../x", "prompts": [{"prompt": "a", "category": "b"}]}, format="json"
    )

    assert empty.status_code == 400 and "prompts" in empty.json()
    assert slug.status_code == 400 and "slug" in slug.json()
    assert not PromptSet.objects.exists()


def test_post_prompt_set_over_one_a_study_uses_is_a_409(researcher, prompt_set, staff_user):
    models = [EvaluatedModelFactory(backend=IMPORTED), EvaluatedModelFactory(backend=IMPORTED)]
    for model in models:
        for prompt in prompt_set.prompts.all():
            SampleFactory(evaluated_model=model, prompt=prompt, index=0)
    study_create(name="S", prompt_set=prompt_set, evaluated_models=models, samples_per_side=1, created_by=staff_user)

    response = researcher.post(
        "/api/prompt-sets/", {"slug": "mini", "prompts": [{"prompt": "New.", "category": "C"}]}, format="json"
    )

    assert response.status_code == 409 and "is used by 1 study" in response.json()["detail"]
    assert prompt_set.prompts.count() == 2


def test_updating_an_existing_prompt_set_needs_the_change_permission(django_user_model, prompt_set):
    user = django_user_model.objects.create_user(username="adder", password="pw-adder-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="add_promptset"))
    client = token_client(user)
    body = {"prompts": [{"prompt": "New.", "category": "C"}]}

    update = client.post("/api/prompt-sets/", {"slug": "mini", **body}, format="json")
    create = client.post("/api/prompt-sets/", {"slug": "fresh", **body}, format="json")

    assert update.status_code == 403 and "catalog.change_promptset" in update.json()["detail"]
    assert create.status_code == 201
    assert prompt_set.prompts.count() == 2


# --- generation runs ------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.mark.usefixtures("fresh_media")
def test_post_generation_run_starts_it_and_the_samples_are_made(
    researcher, prompt_set, django_capture_on_commit_callbacks
):
    painter = EvaluatedModelFactory(name="painter", backend=SEED_BACKEND)
    body = {
        "evaluated_model": painter.pk,
        "prompt_set": prompt_set.pk,
        "samples_per_prompt": 2,
        "categories": ["Colors"],
    }

    with django_capture_on_commit_callbacks(execute=True):
        response = researcher.post("/api/generation-runs/", body, format="json")

    assert response.status_code == 201, response.content
    run = GenerationRun.objects.get(pk=response.json()["id"])
    assert (run.total, run.categories) == (2, ["Colors"])
    run.refresh_from_db()
    assert run.status == "done"
    assert Sample.objects.filter(evaluated_model=painter, prompt__category="Colors").count() == 2


@pytest.mark.parametrize(
    "change, field",
    [
        ({"samples_per_prompt": 0}, "samples_per_prompt"),
        ({"categories": ["Kolors"]}, "categories"),
        ({"prompt_set": 999999}, "prompt_set"),
    ],
)
def test_post_generation_run_with_bad_input_is_a_400_by_field(researcher, prompt_set, change, field):
    painter = EvaluatedModelFactory(name="painter", backend=SEED_BACKEND)
    body = {"evaluated_model": painter.pk, "prompt_set": prompt_set.pk, "samples_per_prompt": 1, **change}

    response = researcher.post("/api/generation-runs/", body, format="json")

    assert response.status_code == 400 and field in response.json(), response.json()
    assert not GenerationRun.objects.exists()


def test_post_generation_run_for_an_imported_model_says_to_import(researcher, prompt_set):
    model = EvaluatedModelFactory(backend=IMPORTED)

    response = researcher.post(
        "/api/generation-runs/",
        {"evaluated_model": model.pk, "prompt_set": prompt_set.pk, "samples_per_prompt": 1},
        format="json",
    )

    assert response.status_code == 400 and "imports its samples" in response.json()["evaluated_model"][0]


def test_cancel_then_resume_a_run_and_the_conflicts_between(researcher, prompt_set):
    painter = EvaluatedModelFactory(name="painter", backend=SEED_BACKEND)
    run = GenerationRun.objects.create(evaluated_model=painter, prompt_set=prompt_set, total=2, samples_per_prompt=1)
    base = f"/api/generation-runs/{run.pk}"

    cancelled = researcher.post(f"{base}/cancel/")
    twice = researcher.post(f"{base}/cancel/")
    resumed = researcher.post(f"{base}/resume/")
    running = researcher.post(f"{base}/resume/")

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert twice.status_code == 409 and "only a pending or running run can be cancelled" in twice.json()["detail"]
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    assert running.status_code == 409 and "is running already" in running.json()["errors"][0]
    assert researcher.post("/api/generation-runs/999999/cancel/").status_code == 404


# --- who may write --------------------------------------------------------------------------------------------


def _writes(prompt_set, model, run) -> list[tuple[str, str, dict]]:
    return [
        ("post", "/api/models/", {"name": "x", "backend": IMPORTED}),
        ("patch", f"/api/models/{model.pk}/", {"description": "changed"}),
        ("post", "/api/prompt-sets/", {"slug": "new", "prompts": [{"prompt": "p", "category": "c"}]}),
        (
            "post",
            "/api/generation-runs/",
            {"evaluated_model": model.pk, "prompt_set": prompt_set.pk, "samples_per_prompt": 1},
        ),
        ("post", f"/api/generation-runs/{run.pk}/cancel/", {}),
        ("post", f"/api/generation-runs/{run.pk}/resume/", {}),
    ]


@pytest.mark.parametrize("who", ["bare_staff", "analyst"])
def test_staff_without_the_permissions_and_analysts_get_403_and_nothing_changes(request, prompt_set, who):
    client = request.getfixturevalue(who)
    model = EvaluatedModelFactory(name="painter", backend=SEED_BACKEND)
    run = GenerationRun.objects.create(evaluated_model=model, prompt_set=prompt_set, total=2, samples_per_prompt=1)

    for method, url, body in _writes(prompt_set, model, run):
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 403, (method, url, response.status_code)

    model.refresh_from_db()
    run.refresh_from_db()
    assert EvaluatedModel.objects.count() == 1 and model.description == ""
    assert not PromptSet.objects.filter(slug="new").exists()
    assert GenerationRun.objects.count() == 1 and run.status == "pending"


def test_writes_without_credentials_are_401(prompt_set):
    model = EvaluatedModelFactory(name="painter", backend=SEED_BACKEND)
    run = GenerationRun.objects.create(evaluated_model=model, prompt_set=prompt_set, total=2, samples_per_prompt=1)

    for method, url, body in _writes(prompt_set, model, run):
        assert getattr(APIClient(), method)(url, body, format="json").status_code == 401, url


def test_schema_declares_the_write_responses(client):
    schema = client.get(reverse("api-schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    codes = {
        (path, method): set(operation["responses"])
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }
    assert codes[("/api/models/", "post")] >= {"201", "400", "401", "403", "429"}
    assert codes[("/api/models/{model_id}/", "patch")] >= {"200", "400", "401", "403", "404", "409", "429"}
    assert codes[("/api/prompt-sets/", "post")] >= {"200", "201", "400", "401", "403", "409", "429"}
    assert codes[("/api/generation-runs/", "post")] >= {"201", "400", "401", "403", "429"}
    for action in ("resume", "cancel"):
        assert codes[(f"/api/generation-runs/{{run_id}}/{action}/", "post")] >= {
            "200",
            "401",
            "403",
            "404",
            "409",
            "429",
        }
    content = schema["paths"]["/api/prompt-sets/"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(content)
