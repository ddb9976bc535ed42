"""The researcher API (/api/studies/, models/, prompt-sets/, generation-runs/), its docs page and its JSON errors."""

import re

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from drawbench.generation.models import GenerationRun
from drawbench.studies.models import Study
from drawbench.studies.services.studies import study_create
from tests.api_support import analyst_user, researcher_user, token_client
from tests.browser_support import chromium
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory, SampleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher(django_user_model):
    return researcher_user(django_user_model)


@pytest.fixture
def analyst(django_user_model):
    return analyst_user(django_user_model)


@pytest.fixture
def catalog():
    """A prompt set of three prompts in two categories and two models (imported samples only, none yet)."""
    prompt_set = PromptSetFactory()
    prompts = [
        PromptFactory(prompt_set=prompt_set, position=i + 1, category=category)
        for i, category in enumerate(["Colors", "Colors", "Counting"])
    ]
    models = [EvaluatedModelFactory(), EvaluatedModelFactory()]
    return prompt_set, prompts, models


def _create_body(prompt_set, models, **extra) -> dict:
    return {"name": "API study", "prompt_set": prompt_set.pk, "evaluated_models": [m.pk for m in models], **extra}


def test_researcher_creates_a_study_through_the_service_and_lists_it(researcher, catalog):
    prompt_set, prompts, models = catalog
    for model in models:  # the "Counting" prompt's 2 samples each: enough for 2 per side
        SampleFactory(evaluated_model=model, prompt=prompts[2], index=0)
        SampleFactory(evaluated_model=model, prompt=prompts[2], index=1)
    client = token_client(researcher)
    response = client.post(
        "/api/studies/", _create_body(prompt_set, models, categories=["Counting"], samples_per_side=2), format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "draft"
    assert body["n_comparisons"] == 1
    assert body["samples_per_side"] == 2
    assert Study.objects.get(pk=body["id"]).created_by == researcher
    listed = client.get("/api/studies/").json()
    assert [row["id"] for row in listed] == [body["id"]]
    assert client.get(f"/api/studies/{body['id']}/").json()["name"] == "API study"


def test_study_create_reports_the_service_errors_by_field(researcher, catalog):
    prompt_set, _, models = catalog
    response = token_client(researcher).post(
        "/api/studies/", _create_body(prompt_set, models[:1], categories=["Nope"]), format="json"
    )
    assert response.status_code == 400
    errors = response.json()
    assert "at least 2 distinct evaluated models" in errors["evaluated_models"][0]
    assert "'Nope' is not a category" in errors["categories"][0]
    assert not Study.objects.exists()


def test_study_create_refuses_samples_per_side_an_imported_model_cannot_show(researcher, catalog):
    prompt_set, prompts, models = catalog
    for model in models:
        for prompt in prompts:
            SampleFactory(evaluated_model=model, prompt=prompt, index=0)
    client = token_client(researcher)
    response = client.post("/api/studies/", _create_body(prompt_set, models, samples_per_side=2), format="json")
    assert response.status_code == 400
    errors = response.json()["samples_per_side"]
    assert len(errors) == 2 and all("fewer than 2 samples for 3 of the 3 prompts" in line for line in errors)
    assert str(models[0]) in errors[0] + errors[1] and str(models[1]) in errors[0] + errors[1]
    assert not Study.objects.exists()
    # One per side is what they have: created.
    assert (
        client.post("/api/studies/", _create_body(prompt_set, models, samples_per_side=1), format="json").status_code
        == 201
    )


def test_open_without_samples_is_a_conflict_that_says_what_is_missing_then_open_and_close(researcher, catalog):
    prompt_set, prompts, models = catalog
    study = study_create(name="s", prompt_set=prompt_set, evaluated_models=models, samples_per_side=1, display_size=16)
    client = token_client(researcher)
    response = client.post(f"/api/studies/{study.pk}/open/")
    assert response.status_code == 409
    assert "cannot open" in response.json()["detail"]
    assert len(response.json()["errors"]) > 1
    for model in models:
        for prompt in prompts:
            SampleFactory(evaluated_model=model, prompt=prompt, index=0)
    response = client.post(f"/api/studies/{study.pk}/open/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "open"
    assert client.post(f"/api/studies/{study.pk}/close/").json()["status"] == "closed"
    again = client.post(f"/api/studies/{study.pk}/close/")
    assert again.status_code == 409
    assert "closed" in again.json()["detail"]


def test_analyst_reads_but_cannot_create_or_open(analyst, catalog):
    prompt_set, _, models = catalog
    study = study_create(name="s", prompt_set=prompt_set, evaluated_models=models)
    client = token_client(analyst)
    assert client.get("/api/studies/").status_code == 200
    assert client.get("/api/models/").status_code == 200
    refused = client.post("/api/studies/", _create_body(prompt_set, models), format="json")
    assert refused.status_code == 403
    assert "studies.add_study" in refused.json()["detail"]
    assert client.post(f"/api/studies/{study.pk}/open/").status_code == 403
    assert Study.objects.get(pk=study.pk).status == Study.Status.DRAFT


def test_staff_without_the_researcher_group_reads_but_cannot_write(staff_user, catalog):
    prompt_set, _, models = catalog
    client = token_client(staff_user)
    assert client.get("/api/studies/").status_code == 200
    assert client.post("/api/studies/", _create_body(prompt_set, models), format="json").status_code == 403


def test_a_user_without_a_role_is_refused_and_no_credentials_is_401(django_user_model):
    nobody = django_user_model.objects.create_user(username="nobody", password="pw-nobody-1")
    assert token_client(nobody).get("/api/studies/").status_code == 403
    anonymous = APIClient().get("/api/studies/")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == "Token"
    assert APIClient(HTTP_AUTHORIZATION="Token not-a-key").get("/api/models/").status_code == 401


def test_models_prompt_sets_and_runs_are_listed_with_their_figures(researcher, catalog):
    prompt_set, _, models = catalog
    GenerationRun.objects.create(evaluated_model=models[0], prompt_set=prompt_set, total=6)
    client = token_client(researcher)
    assert {row["id"] for row in client.get("/api/models/").json()} == {m.pk for m in models}
    (row,) = client.get("/api/prompt-sets/").json()
    assert row["n_prompts"] == 3
    assert row["categories"] == {"Colors": 2, "Counting": 1}
    (run,) = client.get("/api/generation-runs/").json()
    assert (run["evaluated_model"], run["total"], run["status"]) == (models[0].pk, 6, "pending")
    assert client.get(f"/api/models/{models[1].pk}/").json()["name"] == models[1].name


def test_unknown_paths_under_api_answer_json_and_elsewhere_html(researcher):
    client = token_client(researcher)
    missing = client.get("/api/no-such-thing/")
    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/json"
    assert missing.json() == {"detail": "Not found."}
    assert client.get("/api/studies/999999/").json() == {"detail": "No Study matches the given query."}
    page = Client().get("/no-such-page/")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")


def test_server_errors_under_api_answer_json(rf):
    from drawbench.urls import server_error

    response = server_error(rf.get("/api/studies/"))
    assert (response.status_code, response["Content-Type"]) == (500, "application/json")
    assert response.content == b'{"detail": "Server error."}'
    assert server_error(rf.get("/dashboard/"))["Content-Type"].startswith("text/html")


def test_schema_lists_the_error_responses_where_they_apply(staff_user):
    schema = Client().get(reverse("api-schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    codes = {
        (path, method): set(operation["responses"])
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }
    assert codes[("/api/studies/", "post")] >= {"201", "400", "401", "403", "429"}
    assert codes[("/api/studies/", "get")] >= {"200", "401", "403", "429"}
    assert codes[("/api/studies/{study_id}/open/", "post")] >= {"200", "401", "403", "404", "409", "429"}
    assert codes[("/api/studies/{study_id}/close/", "post")] >= {"200", "404", "409"}
    assert codes[("/api/prompt-sets/{prompt_set_id}/", "get")] >= {"200", "401", "403", "404", "429"}
    assert "404" not in codes[("/api/studies/", "get")]


def test_docs_page_loads_swagger_ui_from_our_own_static_files_under_the_csp():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    scripts = re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', html)
    assert len(scripts) == 3
    assert all(src.startswith("/static/drf_spectacular_sidecar/") or src.startswith("/api/docs/") for src in scripts)
    assert not re.search(r"<script\b(?![^>]*\bsrc=)", html), "an inline script would be blocked by the CSP"
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)
    assert f'<style nonce="{nonce}">' in html
    for src in scripts:
        assert Client().get(src).status_code == 200, src
    init = Client().get("/api/docs/?script=")
    assert init["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in init.content.decode()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_swagger_ui_renders_the_api_in_chromium_with_nothing_refused_by_the_csp(live_server, monkeypatch):
    with chromium(monkeypatch) as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(f"{live_server.url}/api/docs/")
        page.wait_for_selector("text=/api/studies/{study_id}/open/", timeout=15_000)
        assert page.locator(".opblock").count() >= 10
    assert [line for line in console if "Security Policy" in line] == []


def test_schema_gives_every_api_operation_its_error_responses_with_the_error_body():
    schema = Client().get(reverse("api-schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    results = schema["paths"]["/api/studies/{study_id}/results/"]["get"]["responses"]
    assert {"200", "400", "401", "403", "404"} <= set(results)
    assert results["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ApiError"}
    # A rater's start needs no credentials, so it answers neither 401 nor 403; it is throttled, so 429.
    start = schema["paths"]["/api/rater/{token}/start/"]["post"]["responses"]
    assert {"400", "404", "429"} <= set(start) and not {"401", "403"} & set(start)
    assert schema["components"]["schemas"]["ApiError"]["required"] == ["detail"]
