"""The rater threat model (DESIGN.md §7): the impostor who knows an id, the squatter behind a forged
X-Forwarded-For, and the reward seeker who would take a code for no work."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape
from rest_framework.test import APIClient

from drawbench.dashboard.forms import StudyCreateForm
from drawbench.studies import admin, views
from drawbench.studies.models import Rater
from drawbench.studies.platforms import PlatformIdentity
from drawbench.studies.selectors import MESSAGE_NO_WORK
from drawbench.studies.services import errors, raters
from drawbench.studies.throttling import ERROR_START_THROTTLED

pytestmark = pytest.mark.django_db

PANEL_ID = "panel-42@lab"


def entry(study, **query) -> str:
    url = reverse("rater:study-entry", args=[study.rater_token])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def url(name: str, study) -> str:
    return reverse(name, args=[study.rater_token])


def api_start(study, **body):
    return APIClient().post(url("api-rater-start", study), body, format="json")


def rater_api(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Rater {token}")
    return client


def shown_key(client: Client, study) -> str:
    page = client.get(url("rater:rate", study))
    assert page.status_code == 200
    return page.context["display"].key


def start_rates(settings, rate: str) -> None:
    settings.REST_FRAMEWORK = settings.REST_FRAMEWORK | {
        "DEFAULT_THROTTLE_RATES": settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] | {"rater_start": rate}
    }


# --- ids -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "platform", "parameter"),
    [
        ({"external_id": PANEL_ID}, "Other (external id)", "session id"),
        ({"PROLIFIC_PID": "5f1c0ffee0ddba11c0ffee00", "STUDY_ID": "64a1b2c3"}, "Prolific", "SESSION_ID"),
        ({"workerId": "A1B2C3D4E5", "hitId": "3HIT"}, "Amazon Mechanical Turk", "assignmentId"),
    ],
)
def test_a_session_less_id_is_not_resumed_from_another_browser_and_its_own_browser_resumes(
    make_study, query, platform, parameter
):
    study = make_study(n_prompts=2)
    owner, impostor = Client(), Client()
    assert owner.post(entry(study, **query)).status_code == 302
    shown = shown_key(owner, study)

    looked = impostor.get(entry(study, **query))
    started = impostor.post(entry(study, **query))

    message = raters.ERROR_RESUME_SESSIONLESS.format(platform=platform, parameter=parameter)
    assert looked.status_code == started.status_code == 403
    assert escape(message) in looked.content.decode() and escape(message) in started.content.decode()
    assert impostor.get(url("rater:rate", study))["Location"] == entry(study)
    assert Rater.objects.count() == 1
    # The browser it started in carries on, link or no link.
    assert owner.get(entry(study, **query)).status_code == 200
    assert shown_key(owner, study) == shown


def test_a_session_less_id_resumes_from_its_browser_by_the_signed_cookie_when_the_session_is_gone(make_study):
    study = make_study(n_prompts=2)
    owner = Client()
    owner.post(entry(study, external_id=PANEL_ID))
    shown = shown_key(owner, study)
    owner.cookies.pop("sessionid")

    back = owner.get(entry(study, external_id=PANEL_ID))
    continued = owner.post(entry(study, external_id=PANEL_ID))

    assert back.status_code == 200 and ">Continue<" in back.content.decode()
    assert continued.status_code == 302 and continued["Location"] == url("rater:rate", study)
    assert shown_key(owner, study) == shown
    assert Rater.objects.count() == 1


def test_a_forged_browser_cookie_resumes_nobody(make_study):
    study = make_study(n_prompts=2)
    Client().post(entry(study, external_id=PANEL_ID))
    impostor = Client()
    impostor.cookies[views.BROWSER_COOKIE.format(study_id=study.pk)] = str(Rater.objects.get().pk)

    assert impostor.get(entry(study, external_id=PANEL_ID)).status_code == 403
    assert impostor.post(entry(study, external_id=PANEL_ID)).status_code == 403


def test_the_api_never_hands_a_known_session_less_id_its_token(make_study):
    study = make_study(n_prompts=2)
    first = api_start(study, external_id=PANEL_ID)
    Client().post(entry(study, workerId="A1B2C3D4E5"))

    again = api_start(study, external_id=PANEL_ID)
    worker = api_start(study, platform="mturk", external_id="A1B2C3D4E5", platform_session_id="3GUESSED")

    assert first.status_code == 201
    assert again.status_code == 403
    assert again.json()["detail"] == raters.ERROR_RESUME_SESSIONLESS.format(
        platform="Other (external id)", parameter="platform_session_id"
    )
    assert first.json()["rater_token"] not in again.content.decode()
    assert worker.status_code == 403 and "platform_session_id" in worker.json()["detail"]
    assert Rater.objects.count() == 2


def test_the_api_hands_a_known_id_its_token_only_with_the_platform_session_id_it_started_with(make_study):
    study = make_study(n_prompts=2)
    prolific = {"platform": "prolific", "external_id": "5f1c0ffee0ddba11c0ffee00"}
    first = api_start(study, **prolific, platform_session_id="s-1")

    missing = api_start(study, **prolific)
    other = api_start(study, **prolific, platform_session_id="s-2")
    same = api_start(study, **prolific, platform_session_id="s-1")

    assert missing.status_code == 403
    assert missing.json()["detail"] == raters.ERROR_RESUME_SESSION_MISSING.format(
        platform="Prolific", parameter="platform_session_id"
    )
    assert other.status_code == 403
    assert other.json()["detail"] == errors.ERROR_OTHER_SESSION.format(
        platform="Prolific", parameter="platform_session_id"
    )
    assert same.status_code == 201 and same.json()["rater_token"] == first.json()["rater_token"]
    assert Rater.objects.count() == 1


# --- throttles -----------------------------------------------------------------------------------------------------


def test_a_forged_x_forwarded_for_does_not_escape_the_api_start_throttle(make_study, settings):
    start_rates(settings, "2/min")
    study = make_study(n_prompts=1)

    statuses = [
        APIClient()
        .post(url("api-rater-start", study), {}, format="json", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
        .status_code
        for i in range(3)
    ]

    assert statuses == [201, 201, 429]
    assert Rater.objects.count() == 2


def test_the_start_button_is_throttled_with_the_api_start_and_says_how_long_to_wait(make_study, settings):
    start_rates(settings, "2/min")
    study = make_study(n_prompts=1)

    by_page = Client().post(entry(study), HTTP_X_FORWARDED_FOR="203.0.113.1")
    by_api = APIClient().post(url("api-rater-start", study), {}, format="json", HTTP_X_FORWARDED_FOR="203.0.113.2")
    refused = Client().post(entry(study), HTTP_X_FORWARDED_FOR="203.0.113.3")

    assert (by_page.status_code, by_api.status_code, refused.status_code) == (302, 201, 429)
    wait = int(refused["Retry-After"])
    assert 0 < wait <= 60
    assert escape(ERROR_START_THROTTLED.format(wait=wait)) in refused.content.decode()
    assert Rater.objects.count() == 2


def test_behind_trusted_proxies_the_address_the_nearest_proxy_saw_is_the_client(make_study, settings):
    start_rates(settings, "1/min")
    settings.REST_FRAMEWORK = settings.REST_FRAMEWORK | {"NUM_PROXIES": 1}
    study = make_study(n_prompts=1)

    def start_from(forwarded: str) -> int:
        return Client().post(entry(study), HTTP_X_FORWARDED_FOR=forwarded).status_code

    # The proxy appends the address it saw; what the client wrote before it is not believed.
    assert start_from("10.0.0.1, 198.51.100.7") == 302
    assert start_from("10.0.0.2, 198.51.100.7") == 429
    assert start_from("10.0.0.1, 198.51.100.8") == 302


# --- minimum answers for a code ------------------------------------------------------------------------------------


def full_study(make_study, **kwargs):
    """A study of one comparison that has all its ratings already."""
    study = make_study(n_prompts=1, ratings_per_comparison=1, completion_code="C0DE1234", **kwargs)
    owner = Client()
    owner.post(entry(study))
    key = shown_key(owner, study)
    owner.post(
        url("rater:rate", study),
        {"key": key, "answer_fidelity": "left", "answer_alignment": "tie", "response_time_ms": 2000},
    )
    return study


def test_a_late_rater_who_gets_no_items_gets_no_code_and_is_told_to_return_the_study(make_study):
    study = full_study(make_study, completion_url="https://app.prolific.com/submissions/complete?cc=C0DE1234")
    late = Client()
    late.post(entry(study, PROLIFIC_PID="5f1c0ffee0ddba11c0ffee01", SESSION_ID="s-9"))

    finish_page = late.get(url("rater:rate", study))
    finished = late.post(url("rater:done", study), {"end": "finish"})
    page = late.get(url("rater:done", study))

    assert finish_page.status_code == 200 and finish_page.context["end"] == "finish"
    assert finished["Location"] == url("rater:done", study)
    html = page.content.decode()
    assert page.status_code == 200  # not sent to the platform's completion URL
    assert "C0DE1234" not in html and 'id="completion-code"' not in html
    message = MESSAGE_NO_WORK.format(needed=1, needed_plural="", done=0, platform="Prolific (Return submission)")
    assert escape(message) in html
    rater = Rater.objects.get(external_id="5f1c0ffee0ddba11c0ffee01")
    assert rater.completed_at is not None and rater.n_answered == 0


def test_a_late_mturk_rater_gets_no_form_that_submits_the_hit(make_study):
    study = full_study(make_study)
    late = Client()
    late.post(entry(study, workerId="A1B2C3D4E5", assignmentId="3ASSIGN", hitId="3HIT"))
    late.get(url("rater:rate", study))
    late.post(url("rater:done", study), {"end": "finish"})

    html = late.get(url("rater:done", study)).content.decode()

    assert "mturk-submit" not in html and "C0DE1234" not in html
    assert "Mechanical Turk (Return the HIT)" in html


def test_a_late_rater_by_the_api_gets_no_code_in_the_next_and_completion_payloads(make_study):
    study = full_study(make_study, completion_url="https://example.org/done")
    client = rater_api(api_start(study).json()["rater_token"])

    current = client.get(url("api-rater-assignment", study)).json()
    before = client.get(url("api-rater-completion", study)).json()
    ended = client.post(url("api-rater-completion", study), {"end": "finish"}, format="json").json()

    expected = {
        "completion_code": "",
        "redirect_url": "",
        "code_earned": False,
        "message": MESSAGE_NO_WORK.format(
            needed=1, needed_plural="", done=0, platform="the platform that sent you here"
        ),
    }
    assert current["assignment"] is None and current["completion"] == expected
    assert before == {"completed": False, "completion": None}  # the GET above recorded nothing
    assert ended == {"completed": True, "completion": expected}


def test_a_rater_below_the_study_minimum_gets_no_code_and_one_at_it_does(make_study):
    study = make_study(n_prompts=2, min_answers_for_code=2, completion_code="C0DE1234")
    client = rater_api(api_start(study).json()["rater_token"])
    key = client.get(url("api-rater-assignment", study)).json()["assignment"]["key"]
    answer = {"answers": {"fidelity": "left", "alignment": "tie"}, "response_time_ms": 2000}

    first = client.post(url("api-rater-answer", study), {"key": key, **answer}, format="json").json()
    stopped_short = client.post(url("api-rater-completion", study), {"end": "finish"}, format="json")
    key = first["next"]["assignment"]["key"]
    last = client.post(url("api-rater-answer", study), {"key": key, **answer}, format="json").json()

    assert stopped_short.status_code == 409  # there was an item left: no end yet
    assert last["next"]["assignment"] is None
    assert last["next"]["completion"]["code_earned"] is True
    assert last["next"]["completion"]["completion_code"] == "C0DE1234"


def test_a_rater_who_answered_fewer_than_the_minimum_of_what_there_was_gets_no_code(make_study):
    study = make_study(n_prompts=1, min_answers_for_code=3, completion_code="C0DE1234")
    client = rater_api(api_start(study).json()["rater_token"])
    key = client.get(url("api-rater-assignment", study)).json()["assignment"]["key"]

    done = client.post(
        url("api-rater-answer", study),
        {"key": key, "answers": {"fidelity": "left", "alignment": "tie"}, "response_time_ms": 2000},
        format="json",
    ).json()["next"]

    assert done["assignment"] is None
    assert done["completion"]["code_earned"] is False and done["completion"]["completion_code"] == ""
    assert "it needs 3 answered items; you answered 1" in done["completion"]["message"]


def test_the_minimum_is_set_on_the_new_study_form_and_in_the_admin():
    assert "min_answers_for_code" in StudyCreateForm.base_fields
    assert "min_answers_for_code" in StudyCreateForm.DEFAULTED
    assert "min_answers_for_code" in admin.STUDY_EDITABLE_FIELDS


def test_losing_a_race_to_start_a_known_id_does_not_hand_its_rater_over(make_study, monkeypatch):
    study = make_study(n_prompts=1)
    Client().post(entry(study, external_id=PANEL_ID))
    looked_up = []
    real = raters.rater_returning

    def not_there_yet_the_first_time(**kwargs):
        # As if the owner's start committed between this visitor's look-up and its insert.
        looked_up.append(kwargs)
        return None if len(looked_up) == 1 else real(**kwargs)

    monkeypatch.setattr(raters, "rater_returning", not_there_yet_the_first_time)

    with pytest.raises(errors.OtherSession):
        raters.rater_join(study=study, identity=PlatformIdentity(platform="external", external_id=PANEL_ID))
    assert len(looked_up) == 2 and Rater.objects.count() == 1
