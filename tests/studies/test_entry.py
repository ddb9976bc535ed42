"""Entry from crowd platforms (Prolific, MTurk, an external id), consent, and the completion code or redirect."""

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from drawbench.studies import platforms
from drawbench.studies.models import Rater
from drawbench.studies.platforms import PlatformIdentity, platform_identity_from_query
from drawbench.studies.services import errors, raters
from drawbench.studies.services.raters import rater_join

pytestmark = pytest.mark.django_db

PROLIFIC = {"PROLIFIC_PID": "5f1c0ffee0ddba11c0ffee00", "STUDY_ID": "64a1b2c3d4e5f60718293a4b", "SESSION_ID": "s-77"}
CONSENT = "We record your answers and how long you take. You may stop at any time."


def entry(study, **query) -> str:
    url = reverse("rater:study-entry", args=[study.rater_token])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def rate_url(study) -> str:
    return reverse("rater:rate", args=[study.rater_token])


def finish(client: Client, study) -> None:
    """Answer everything the rater is given (a study of one comparison) and press Finish."""
    page = client.get(rate_url(study))
    key = page.context["display"].key
    done = reverse("rater:done", args=[study.rater_token])
    answered = client.post(
        rate_url(study), {"key": key, "answer_fidelity": "left", "answer_alignment": "tie", "response_time_ms": "1800"}
    )
    # The answer that finds nothing left records the rater complete (a POST) and leads to the finish page.
    assert answered["Location"] == done
    assert client.post(done, {"end": "finish"})["Location"] == done


def test_a_prolific_link_makes_a_rater_with_the_platform_ids(client, make_study):
    study = make_study(n_prompts=1)

    response = client.post(entry(study, **PROLIFIC))

    rater = Rater.objects.get()
    assert response.status_code == 302 and response["Location"] == rate_url(study)
    assert (rater.platform, rater.external_id, rater.platform_study_id, rater.platform_session_id) == (
        "prolific", PROLIFIC["PROLIFIC_PID"], PROLIFIC["STUDY_ID"], PROLIFIC["SESSION_ID"],
    )  # fmt: skip


def test_the_same_crowd_id_coming_back_is_the_same_rater_from_any_browser(make_study):
    study = make_study(n_prompts=2)
    first_browser, second_browser = Client(), Client()
    first_browser.post(entry(study, **PROLIFIC))
    shown = first_browser.get(rate_url(study)).context["display"].key

    back = second_browser.get(entry(study, **PROLIFIC))

    assert back.status_code == 302 and back["Location"] == rate_url(study)
    assert second_browser.get(rate_url(study)).context["display"].key == shown
    second_browser.post(entry(study, **PROLIFIC))
    assert Rater.objects.count() == 1


def test_a_known_crowd_id_from_another_platform_session_is_refused_and_the_first_browser_keeps_its_rater(make_study):
    study = make_study(n_prompts=2)
    first_browser, stranger = Client(), Client()
    first_browser.post(entry(study, **PROLIFIC))
    shown = first_browser.get(rate_url(study)).context["display"].key
    guessed = PROLIFIC | {"SESSION_ID": "s-other"}

    refused = stranger.get(entry(study, **guessed))
    started = stranger.post(entry(study, **guessed))

    message = errors.ERROR_OTHER_SESSION.format(platform="Prolific", parameter="SESSION_ID")
    assert refused.status_code == 403 and escape(message) in refused.content.decode()
    assert started.status_code == 403 and Rater.objects.count() == 1
    assert stranger.get(rate_url(study)).status_code != 200
    # The browser the rater started in keeps them, whatever the link says.
    assert first_browser.get(entry(study, **guessed)).status_code == 200
    assert first_browser.get(rate_url(study)).context["display"].key == shown
    # Through the API, too.
    api = stranger.post(
        reverse("api-rater-start", args=[study.rater_token]),
        {"platform": "prolific", "external_id": PROLIFIC["PROLIFIC_PID"], "platform_session_id": "s-other"},
        content_type="application/json",
    )
    api_message = errors.ERROR_OTHER_SESSION.format(platform="Prolific", parameter="platform_session_id")
    assert api.status_code == 403 and api.json()["detail"] == api_message


def test_a_crowd_id_that_started_without_a_session_id_comes_back_only_in_its_browser(make_study):
    study = make_study(n_prompts=1)
    first_browser = Client()
    first_browser.post(entry(study, PROLIFIC_PID=PROLIFIC["PROLIFIC_PID"]))

    elsewhere = Client().get(entry(study, **PROLIFIC))
    back = first_browser.get(entry(study, **PROLIFIC))

    message = raters.ERROR_RESUME_SESSIONLESS.format(platform="Prolific", parameter="SESSION_ID")
    assert elsewhere.status_code == 403 and escape(message) in elsewhere.content.decode()
    assert back.status_code == 200 and ">Continue<" in back.content.decode()
    assert Rater.objects.count() == 1


def test_an_mturk_link_makes_a_rater_with_worker_hit_and_assignment_ids(client, make_study):
    study = make_study(n_prompts=1)

    client.post(entry(study, workerId="A1B2C3D4E5", assignmentId="3XYZASSIGN", hitId="3HITHIT"))

    rater = Rater.objects.get()
    assert (rater.platform, rater.external_id, rater.platform_study_id, rater.platform_session_id) == (
        "mturk", "A1B2C3D4E5", "3HITHIT", "3XYZASSIGN",
    )  # fmt: skip


def test_an_mturk_preview_shows_the_task_but_cannot_start_it(client, make_study):
    study = make_study(n_prompts=1)
    query = {"assignmentId": platforms.MTURK_PREVIEW_ASSIGNMENT, "hitId": "3HITHIT"}

    page = client.get(entry(study, **query))
    client.post(entry(study, **query))

    assert page.status_code == 200
    assert "previewing" in page.content.decode() and ">Start<" not in page.content.decode()
    assert Rater.objects.count() == 0


def test_a_generic_external_id_is_kept_as_such(client, make_study):
    study = make_study(n_prompts=1)

    client.post(entry(study, external_id="panel-42@lab"))

    assert Rater.objects.values_list("platform", "external_id").get() == ("external", "panel-42@lab")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"PROLIFIC_PID": "a b"}, platforms.ERROR_ID_INVALID.format(parameter="PROLIFIC_PID", max=200)),
        ({"workerId": "x" * 201}, platforms.ERROR_ID_INVALID.format(parameter="workerId", max=200)),
        (
            {"PROLIFIC_PID": "p1", "STUDY_ID": "<script>"},
            platforms.ERROR_ID_INVALID.format(parameter="STUDY_ID", max=200),
        ),
        (
            {"PROLIFIC_PID": "p1", "workerId": "w1"},
            platforms.ERROR_ID_CONFLICT.format(first="PROLIFIC_PID", second="workerId"),
        ),
    ],
)
def test_a_tampered_crowd_link_is_refused_naming_the_parameter(client, make_study, query, message):
    study = make_study(n_prompts=1)

    get, post = client.get(entry(study, **query)), client.post(entry(study, **query))

    assert get.status_code == post.status_code == 400
    assert escape(message) in get.content.decode()
    assert Rater.objects.count() == 0


def test_platform_identity_is_none_for_an_anonymous_visitor():
    assert platform_identity_from_query({}) is None
    assert platform_identity_from_query({"utm_source": "mail"}) is None


def test_platform_identity_reads_prolific_parameters():
    identity = platform_identity_from_query(PROLIFIC)

    assert identity == PlatformIdentity("prolific", PROLIFIC["PROLIFIC_PID"], PROLIFIC["STUDY_ID"], "s-77")
    assert not identity.is_preview


def test_rater_join_refuses_a_rater_who_did_not_consent_when_the_study_asks(make_study):
    study = make_study(n_prompts=1, consent_text=CONSENT)

    with pytest.raises(ValidationError) as caught:
        rater_join(study=study, identity=None, consent=False)

    assert caught.value.message_dict == {"consent": [errors.ERROR_CONSENT_REQUIRED]}
    assert Rater.objects.count() == 0


def test_the_consent_page_must_be_agreed_to_before_starting(client, make_study):
    study = make_study(n_prompts=1, consent_text=CONSENT)

    page = client.get(entry(study, **PROLIFIC))
    refused = client.post(entry(study, **PROLIFIC))
    agreed = client.post(entry(study, **PROLIFIC), {"consent": "yes"})

    assert CONSENT in page.content.decode() and 'name="consent"' in page.content.decode()
    assert refused.status_code == 400 and escape(errors.ERROR_CONSENT_REQUIRED) in refused.content.decode()
    assert agreed.status_code == 302
    assert Rater.objects.get().consented_at is not None


def test_a_study_without_consent_text_asks_for_none(client, make_study):
    study = make_study(n_prompts=1)

    page = client.get(entry(study))

    assert 'name="consent"' not in page.content.decode()
    assert client.post(entry(study)).status_code == 302
    assert Rater.objects.get().consented_at is None


def test_a_rater_who_finished_gets_the_study_completion_code(client, make_study):
    study = make_study(n_prompts=1, completion_code="C0DE1234")
    client.post(entry(study, **PROLIFIC))
    finish(client, study)

    page = client.get(reverse("rater:done", args=[study.rater_token]))

    assert page.status_code == 200
    assert 'id="completion-code">C0DE1234<' in page.content.decode()
    assert Rater.objects.get().completed_at is not None


def test_a_rater_who_finished_is_sent_to_the_platform_completion_url(client, make_study):
    url = "https://app.prolific.com/submissions/complete?cc=C0DE1234"
    study = make_study(n_prompts=1, completion_url=url)
    client.post(entry(study, **PROLIFIC))
    finish(client, study)

    response = client.get(reverse("rater:done", args=[study.rater_token]))

    assert response.status_code == 302 and response["Location"] == url


@pytest.mark.parametrize(
    ("submit_to", "action"),
    [
        ("https://workersandbox.mturk.com", "https://workersandbox.mturk.com/mturk/externalSubmit"),
        (None, "https://www.mturk.com/mturk/externalSubmit"),
    ],
)
def test_an_mturk_rater_who_finished_posts_the_assignment_back_to_mturk(client, make_study, submit_to, action):
    study = make_study(n_prompts=1, completion_code="C0DE1234", completion_url="https://example.org/done")
    query = {"workerId": "A1B2C3D4E5", "assignmentId": "3XYZASSIGN", "hitId": "3HITHIT"}
    client.post(entry(study, **(query | ({"turkSubmitTo": submit_to} if submit_to else {}))))
    finish(client, study)

    page = client.get(reverse("rater:done", args=[study.rater_token]))

    html = page.content.decode()
    assert page.status_code == 200  # the form, not the study's completion URL
    assert f'<form method="post" action="{action}" id="mturk-submit">' in html
    assert '<input type="hidden" name="assignmentId" value="3XYZASSIGN">' in html
    assert '<input type="hidden" name="completion_code" value="C0DE1234">' in html
    # The page may post there, and nowhere else off this site.
    assert f"form-action 'self' {action.removesuffix('/mturk/externalSubmit')};" in page["Content-Security-Policy"]


def test_an_mturk_link_naming_another_submit_host_is_refused(client, make_study):
    study = make_study(n_prompts=1)
    query = {"workerId": "A1B2C3D4E5", "assignmentId": "3XYZASSIGN", "turkSubmitTo": "https://evil.example"}

    page = client.get(entry(study, **query))
    started = client.post(entry(study, **query))

    assert page.status_code == 400 and "turkSubmitTo" in page.content.decode()
    assert started.status_code == 400 and Rater.objects.count() == 0


def test_a_rater_who_stops_early_gets_no_completion_code(client, make_study):
    study = make_study(n_prompts=2, completion_code="C0DE1234")
    client.post(entry(study))
    client.get(rate_url(study))

    page = client.post(reverse("rater:done", args=[study.rater_token]), {"end": "stop"}, follow=True)

    assert "C0DE1234" not in page.content.decode()
    assert "no completion code" in page.content.decode()
    rater = Rater.objects.get()
    assert rater.finished_at is not None and rater.completed_at is None


def test_each_study_gets_its_own_random_completion_code(make_study):
    codes = {make_study(n_prompts=1).completion_code for _ in range(3)}

    assert len(codes) == 3 and all(len(code) == 8 and code.isalnum() for code in codes)
