"""The rater API: a whole session by token, the page's session with CSRF, retries, conflicts and bad input."""

import json
import re

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from drawbench.studies import apis, authentication
from drawbench.studies.models import Assignment, ControlAnswer, Judgment, Rater
from drawbench.studies.selectors import MESSAGE_CODE
from drawbench.studies.services import answering, errors, raters
from drawbench.studies.services.answering import MAX_RESPONSE_TIME_MS
from drawbench.studies.services.studies import study_close
from tests.studies.conftest import rater_client

pytestmark = pytest.mark.django_db

ANSWERS = {"fidelity": "left", "alignment": "tie"}


def url(name: str, study) -> str:
    return reverse(name, args=[study.rater_token])


def start(study, **body) -> tuple[APIClient, dict]:
    response = APIClient().post(url("api-rater-start", study), body, format="json")
    assert response.status_code == 201, response.content
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Rater {response.json()['rater_token']}")
    return client, response.json()


def submit(client, study, key, answers=ANSWERS, **extra):
    body = {"key": key, "answers": answers, "response_time_ms": 2100} | extra
    return client.post(url("api-rater-answer", study), body, format="json")


def test_a_whole_session_by_token_answers_every_comparison_and_ends_with_the_code(make_study):
    study = make_study(n_prompts=3, completion_code="DONE2024", completion_url="https://example.org/complete")
    client, _ = start(study, platform="prolific", external_id="5f1c0ffee0ddba11c0ffee00")

    current = client.get(url("api-rater-assignment", study)).json()
    seen = []
    while current["assignment"] is not None:
        seen.append(current["assignment"]["key"])
        response = submit(client, study, current["assignment"]["key"])
        assert response.status_code == 201
        assert response.json()["recorded"] and not response.json()["replayed"]
        current = response.json()["next"]

    assert len(set(seen)) == 3
    assert current["completion"] == {
        "completion_code": "DONE2024",
        "redirect_url": "https://example.org/complete",
        "code_earned": True,
        "message": MESSAGE_CODE,
    }
    assert current["progress"] == {"done": 3, "total": 3}
    assert Judgment.objects.count() == 6
    completion = client.get(url("api-rater-completion", study)).json()
    assert completion == {"completed": True, "completion": current["completion"]}


def test_an_item_fetched_twice_is_the_same_until_answered(make_study):
    study = make_study(n_prompts=3)
    client, _ = start(study)

    first = client.get(url("api-rater-assignment", study)).json()["assignment"]
    served = Assignment.objects.count()
    again = client.get(url("api-rater-assignment", study)).json()["assignment"]

    assert first == again
    assert Assignment.objects.count() == served
    assert len(first["left_images"]) == len(first["right_images"]) == 8
    assert first["questions"][1]["text"].startswith("Which set of images better represents the text caption")


def test_the_completion_is_empty_before_the_end(make_study):
    study = make_study(n_prompts=2)
    client, _ = start(study)

    assert client.get(url("api-rater-completion", study)).json() == {"completed": False, "completion": None}


def test_the_same_crowd_id_joining_twice_gets_the_same_rater_token(make_study):
    study = make_study(n_prompts=1)

    _, first = start(study, platform="mturk", external_id="A1B2C3", platform_session_id="3ASSIGN")
    _, again = start(study, platform="mturk", external_id="A1B2C3", platform_session_id="3ASSIGN")
    # The id alone is not enough: it is not a secret (tests/studies/test_entry.py has the refusal's wording).
    elsewhere = APIClient().post(
        url("api-rater-start", study), {"platform": "mturk", "external_id": "A1B2C3"}, format="json"
    )

    assert first["rater_token"] == again["rater_token"]
    assert elsewhere.status_code == 403 and "rater_token" not in elsewhere.json()
    assert Rater.objects.count() == 1


def test_joining_a_study_that_asks_for_consent_needs_it(make_study):
    study = make_study(n_prompts=1, consent_text="Your answers are recorded.")

    refused = APIClient().post(url("api-rater-start", study), {}, format="json")
    _, agreed = start(study, consent=True)

    assert refused.status_code == 400 and refused.json() == {"consent": [errors.ERROR_CONSENT_REQUIRED]}
    assert agreed["consented"] is True


@pytest.mark.parametrize(("status", "http_status"), [("closed", 410), ("draft", 410)])
def test_joining_a_study_that_is_not_open_is_refused(make_study, status, http_status):
    study = make_study(n_prompts=1, open_study=False)
    study.status = status
    study.save(update_fields=["status"])

    response = APIClient().post(url("api-rater-start", study), {}, format="json")

    assert response.status_code == http_status
    assert "not open" in response.json()["detail"] or "closed" in response.json()["detail"]


def test_an_unknown_study_link_is_not_found_on_the_api():
    response = APIClient().post(reverse("api-rater-start", args=["no-such-study"]), {}, format="json")

    assert response.status_code == 404 and response.json()["detail"] == "No study has this link."


def test_the_same_answer_sent_again_is_a_success_that_records_nothing(make_study):
    study = make_study(n_prompts=2)
    client, _ = start(study)
    key = client.get(url("api-rater-assignment", study)).json()["assignment"]["key"]

    first = submit(client, study, key)
    again = submit(client, study, key)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["replayed"] is True and again.json()["recorded"] is True
    assert again.json()["next"] == first.json()["next"]
    assert Judgment.objects.count() == 2


def test_a_different_answer_to_an_answered_item_is_a_conflict_and_the_first_stands(make_study):
    study = make_study(n_prompts=2)
    client, _ = start(study)
    key = client.get(url("api-rater-assignment", study)).json()["assignment"]["key"]
    submit(client, study, key)

    response = submit(client, study, key, answers={"fidelity": "right", "alignment": "tie"})

    assert response.status_code == 409
    assert response.json()["detail"] == errors.ERROR_ASSIGNMENT_ANSWERED
    assert Judgment.objects.filter(question="fidelity").count() == 1


def test_another_raters_item_is_not_found(make_study):
    study = make_study(n_prompts=2)
    mine, _ = start(study)
    theirs, _ = start(study)
    their_key = theirs.get(url("api-rater-assignment", study)).json()["assignment"]["key"]

    response = submit(mine, study, their_key)

    assert response.status_code == 404 and response.json()["detail"] == errors.ERROR_ASSIGNMENT_UNKNOWN
    assert Judgment.objects.count() == 0


def test_a_practice_answer_returns_what_was_expected(make_study):
    study = make_study(n_prompts=2, practice_items=1)
    client, _ = start(study)
    item = client.get(url("api-rater-assignment", study)).json()["assignment"]

    response = submit(client, study, item["key"])

    assert item["practice"] is True
    assert "practice item" in response.json()["feedback"]
    assert response.json()["next"]["assignment"]["practice"] is False
    assert ControlAnswer.objects.count() == 2 and Judgment.objects.count() == 0


def test_answers_to_a_closed_study_are_refused_as_gone(make_study):
    study = make_study(n_prompts=2)
    client, _ = start(study)
    key = client.get(url("api-rater-assignment", study)).json()["assignment"]["key"]
    study_close(study=study)

    response = submit(client, study, key)

    assert response.status_code == 410 and response.json()["detail"] == errors.ERROR_STUDY_NOT_OPEN
    assert client.get(url("api-rater-assignment", study)).status_code == 410
    assert Judgment.objects.count() == 0


# --- authentication -----------------------------------------------------------------------------------------------


def test_the_api_needs_a_rater(make_study):
    study = make_study(n_prompts=1)

    response = APIClient().get(url("api-rater-assignment", study))

    assert response.status_code == 401 and response.json()["detail"] == apis.ERROR_NO_RATER
    assert response["WWW-Authenticate"] == "Rater"


def test_a_tampered_rater_token_is_unauthorised(make_study):
    study = make_study(n_prompts=1)
    client, joined = start(study)
    client.credentials(HTTP_AUTHORIZATION=f"Rater {joined['rater_token'][:-2]}xx")

    response = client.get(url("api-rater-assignment", study))

    assert response.status_code == 401
    assert response.json()["detail"] == authentication.ERROR_TOKEN_INVALID
    assert response["WWW-Authenticate"] == "Rater"


def test_a_rater_token_of_another_study_is_forbidden(make_study):
    study, other = make_study(n_prompts=1), make_study(n_prompts=1)
    client, _ = start(other)

    response = client.get(url("api-rater-assignment", study))

    assert response.status_code == 403 and response.json()["detail"] == authentication.ERROR_NOT_THIS_STUDY


def test_the_page_session_reaches_the_api_and_must_send_its_csrf_token(make_study):
    study = make_study(n_prompts=2)
    browser = Client(enforce_csrf_checks=True)
    page = browser.get(url("rater:study-entry", study))
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    browser.post(url("rater:study-entry", study), {"csrfmiddlewaretoken": csrf})
    item = browser.get(url("api-rater-assignment", study)).json()["assignment"]
    body = json.dumps({"key": item["key"], "answers": ANSWERS, "response_time_ms": 1900})

    forged = browser.post(url("api-rater-answer", study), body, content_type="application/json")
    genuine = browser.post(url("api-rater-answer", study), body, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)

    assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]
    assert genuine.status_code == 201
    assert Judgment.objects.count() == 2


# --- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"answers": ANSWERS, "response_time_ms": 5}, "key", "required"),
        ({"key": "k", "answers": "left", "response_time_ms": 5}, "answers", "must be an object"),
        ({"key": "k", "answers": ANSWERS, "response_time_ms": -1}, "response_time_ms", "between 0 and"),
        ({"key": "k", "answers": ANSWERS, "response_time_ms": "soon"}, "response_time_ms", "whole number"),
        ({"key": "k" * 65, "answers": ANSWERS, "response_time_ms": 5}, "key", "1 to 64"),
        ({"key": "k", "answers": ANSWERS, "response_time_ms": 5, "extra": 1}, "extra", "Unknown field"),
        ({"key": "k", "answers": {"fidelity": 1}, "response_time_ms": 5}, "answers", "must be one of"),
    ],
)
def test_a_malformed_answer_is_refused_naming_the_field(make_study, body, field, fragment):
    study = make_study(n_prompts=1)
    client, _ = start(study)

    response = client.post(url("api-rater-answer", study), body, format="json")

    assert response.status_code == 400
    assert fragment in " ".join(response.json()[field])
    assert Judgment.objects.count() == 0


def test_an_answer_the_study_does_not_understand_is_refused_with_the_service_message(make_study):
    study = make_study(n_prompts=1)
    client, _ = start(study)
    key = client.get(url("api-rater-assignment", study)).json()["assignment"]["key"]

    response = submit(client, study, key, answers={"fidelity": "model_a", "beauty": "left"})

    assert response.status_code == 400
    assert response.json()["answers"] == [
        errors.ERROR_ANSWER_MISSING.format(text="Which set of images better represents the text caption?"),
        errors.ERROR_CHOICE_UNKNOWN.format(choice="model_a", question="fidelity"),
        errors.ERROR_ANSWER_UNEXPECTED.format(question="beauty"),
    ]


def test_malformed_json_is_a_bad_request(make_study):
    study = make_study(n_prompts=1)
    client, _ = start(study)

    response = client.post(url("api-rater-answer", study), '{"key": ', content_type="application/json")

    assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]


def test_an_oversized_body_is_refused_before_it_is_read(make_study, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    study = make_study(n_prompts=1)
    client, _ = start(study)
    body = json.dumps({"key": "k", "answers": {"fidelity": "x" * 20_000}, "response_time_ms": 1})

    response = client.post(url("api-rater-answer", study), body, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["detail"] == f"The request body is {len(body)} bytes; at most 10000 bytes are accepted."


def test_submissions_faster_than_the_rate_limit_are_throttled(make_study, settings):
    settings.REST_FRAMEWORK = settings.REST_FRAMEWORK | {"DEFAULT_THROTTLE_RATES": {"rater_submit": "2/min"}}
    study = make_study(n_prompts=3)
    client, _ = start(study)
    key = client.get(url("api-rater-assignment", study)).json()["assignment"]["key"]

    statuses = [submit(client, study, key).status_code for _ in range(3)]

    assert statuses == [201, 200, 429]
    assert "please wait" in submit(client, study, key).json()["detail"]
    assert Judgment.objects.count() == 2


def test_the_form_post_is_throttled_too(client, make_study, settings):
    settings.REST_FRAMEWORK = settings.REST_FRAMEWORK | {"DEFAULT_THROTTLE_RATES": {"rater_submit": "1/min"}}
    study = make_study(n_prompts=3)
    client.post(url("rater:study-entry", study))
    key = client.get(url("rater:rate", study)).context["display"].key
    payload = {"key": key, "answer_fidelity": "left", "answer_alignment": "tie", "response_time_ms": "2000"}

    first, second = client.post(url("rater:rate", study), payload), client.post(url("rater:rate", study), payload)

    assert (first.status_code, second.status_code) == (302, 429)
    assert "please wait" in second.content.decode()


def test_a_rater_client_fixture_authenticates_as_its_rater(make_study):
    study = make_study(n_prompts=1)
    rater = raters.rater_create(study=study)

    assert rater_client(rater).get(url("api-rater-assignment", study)).status_code == 200


@settings(max_examples=400, deadline=None)
@given(
    body=st.one_of(
        st.dictionaries(
            st.sampled_from(["key", "answers", "response_time_ms", "include_next", "other"]),
            st.one_of(
                st.text(max_size=70),
                st.integers(min_value=-5, max_value=MAX_RESPONSE_TIME_MS + 5),
                st.booleans(),
                st.none(),
                st.dictionaries(st.text(max_size=12), st.one_of(st.text(max_size=20), st.integers()), max_size=3),
            ),
        ),
        st.fixed_dictionaries(
            {
                "key": st.text(min_size=1, max_size=66),
                "answers": st.dictionaries(
                    st.sampled_from(["fidelity", "alignment"]), st.sampled_from(["left", "tie", "right", " left", ""])
                ),
                "response_time_ms": st.one_of(st.integers(min_value=-1, max_value=10**9), st.just("12")),
            },
            optional={"include_next": st.one_of(st.booleans(), st.just("true"))},
        ),
        st.lists(st.integers(), max_size=2),
    )
)
def test_the_answer_check_accepts_only_plain_values_and_refuses_anything_else_with_a_message(body):
    try:
        data = answering.answer_input(body)
    except ValidationError as exc:
        assert exc.message_dict and all(exc.message_dict.values())
        return
    assert isinstance(data.key, str) and 0 < len(data.key) <= 64 and data.key.isprintable()
    assert all(isinstance(v, str) and 0 < len(v) <= 16 for v in data.answers.values())
    assert type(data.response_time_ms) is int and 0 <= data.response_time_ms <= MAX_RESPONSE_TIME_MS
    assert type(data.include_next) is bool


def test_what_a_rater_sends_passes_the_answer_check_as_it_is():
    body = {"key": "k3y-_x", "answers": {"fidelity": "left", "alignment": "tie"}, "response_time_ms": 2400}

    assert answering.answer_input(body) == answering.AnswerInput(**body, include_next=True)
    assert answering.answer_input({**body, "include_next": False}).include_next is False
    for odd in ({"response_time_ms": "2400"}, {"key": ""}, {"answers": {"fidelity": 1}}, {"extra": 1}):
        with pytest.raises(ValidationError):
            answering.answer_input({**body, **odd})
