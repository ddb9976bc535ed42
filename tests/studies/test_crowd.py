"""Crowd operations: approval and bonus files in Prolific's and MTurk's own formats (rejections with the flags'
reasons), and a rater session's time and cost."""

import csv
import io
import random
import statistics
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from drawbench.studies import crowd
from drawbench.studies.models import Assignment, Rater, RaterFlag
from drawbench.studies.roles import RESEARCHER_GROUP
from drawbench.studies.services.raters import rater_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher_client():
    user = User.objects.create_user("res", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=RESEARCHER_GROUP))
    client = APIClient()
    client.force_authenticate(user)
    return client


def finished_rater(study, *, platform, external_id, session="", hit="", answered=3, flag=None):
    rater = rater_create(
        study=study, platform=platform, external_id=external_id, platform_session_id=session, platform_study_id=hit
    )
    Rater.objects.filter(pk=rater.pk).update(n_answered=answered, completed_at=timezone.now())
    if flag:
        RaterFlag.objects.create(rater=rater, reason=flag, detail="2 of 5 gold answers right")
    return rater


def test_prolific_approvals_approve_the_careful_and_reject_the_flagged_with_the_reason(make_study, researcher_client):
    study = make_study(n_prompts=2)
    finished_rater(study, platform="prolific", external_id="p-good", session="s1")
    finished_rater(study, platform="prolific", external_id="p-bad", session="s2", flag=RaterFlag.Reason.FAILED_GOLD)
    finished_rater(study, platform="prolific", external_id="p-late", session="s3", answered=0)
    rater_create(study=study, platform="prolific", external_id="p-working", platform_session_id="s4")
    finished_rater(study, platform="mturk", external_id="W1", session="A1", hit="H1")

    response = researcher_client.get(
        reverse("api-study-approvals", args=[study.pk]), {"platform": "prolific", "format": "csv"}
    )

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(rows[0]) == crowd.PLATFORM_COLUMNS["prolific"]
    assert [(r["participant_id"], r["decision"]) for r in rows] == [("p-good", "APPROVE"), ("p-bad", "REJECT")]
    assert rows[1]["reason"] == "Failed the attention checks (2 of 5 gold answers right)."


def test_mturk_approvals_use_the_batch_upload_columns(make_study, researcher_client):
    study = make_study(n_prompts=2)
    finished_rater(study, platform="mturk", external_id="W1", session="A1", hit="H1")
    finished_rater(study, platform="mturk", external_id="W2", session="A2", hit="H1", flag=RaterFlag.Reason.TOO_FAST)

    rows = researcher_client.get(reverse("api-study-approvals", args=[study.pk]), {"platform": "mturk"}).json()

    assert rows == [
        {"HITId": "H1", "AssignmentId": "A1", "WorkerId": "W1", "Approve": "x", "Reject": ""},
        {
            "HITId": "H1", "AssignmentId": "A2", "WorkerId": "W2", "Approve": "",
            "Reject": "Answered faster than the images can be looked at (2 of 5 gold answers right).",
        },
    ]  # fmt: skip


def test_bonuses_go_to_approved_raters_only_in_the_platform_format(make_study, researcher_client):
    study = make_study(n_prompts=2)
    finished_rater(study, platform="prolific", external_id="p-good", session="s1")
    finished_rater(study, platform="prolific", external_id="p-bad", session="s2", flag=RaterFlag.Reason.ALWAYS_TIE)

    response = researcher_client.get(
        reverse("api-study-bonuses", args=[study.pk]), {"platform": "prolific", "amount": "1.5", "format": "csv"}
    )

    assert response.content.decode().splitlines() == ["participant_id,amount", "p-good,1.50"]


def test_crowd_files_are_for_researchers_and_refuse_an_unknown_platform(make_study, researcher_client):
    study = make_study(n_prompts=1)
    url = reverse("api-study-approvals", args=[study.pk])
    staff_only = APIClient()
    staff_only.force_authenticate(User.objects.create_user("staff", is_staff=True))

    assert APIClient().get(url, {"platform": "prolific"}).status_code in (401, 403)
    assert staff_only.get(url, {"platform": "prolific"}).status_code == 403
    response = researcher_client.get(url, {"platform": "myspace"})
    assert response.status_code == 400 and "platform" in response.json()
    assert (
        researcher_client.get(reverse("api-study-bonuses", args=[study.pk]), {"platform": "mturk"}).status_code == 400
    )


def test_the_estimate_uses_the_default_until_a_pilot_then_its_median_server_time(make_study, researcher_client):
    study = make_study(n_prompts=30, max_comparisons_per_rater=10, ratings_per_comparison=3)
    url = reverse("api-study-estimate", args=[study.pk])

    before = researcher_client.get(url, {"hourly_pay": 12}).json()

    assert before["source"] == "default" and before["items_per_rater"] == 10
    assert before["minutes_per_rater"] == round(10 * crowd.DEFAULT_ITEM_SECONDS / 60, 1)
    assert before["cost_per_rater"] == round(10 * crowd.DEFAULT_ITEM_SECONDS / 3600 * 12, 2)
    assert before["raters_needed"] == 9  # 30 comparisons × 3 ratings / 10 per rater

    rater = rater_create(study=study)
    now = timezone.now()
    comparisons = list(study.comparisons.all()[:25])
    Assignment.objects.bulk_create(
        Assignment(
            rater=rater, comparison=c, left_model_id=c.model_a_id, served_at=now, shown_at=now,
            completed_at=now + timedelta(seconds=30 + i % 3), key=f"k{i}",
        )
        for i, c in enumerate(comparisons)
    )  # fmt: skip
    after = researcher_client.get(url).json()

    assert after["source"] == "pilot median" and after["pilot_items"] == 25
    assert after["seconds_per_item"] == 31.0 and after["cost_per_rater"] is None


@pytest.mark.parametrize("n_items", [crowd.PILOT_MIN_ITEMS, crowd.PILOT_MIN_ITEMS + 1])
def test_the_pilot_median_is_the_median_of_every_answered_items_server_time(make_study, n_items):
    # Even and odd counts (the even one is the mean of the middle two), durations in no particular order.
    study = make_study(n_prompts=n_items, max_comparisons_per_rater=5)
    rater = rater_create(study=study)
    now = timezone.now()
    seconds = random.Random(n_items).sample(range(5, 500), n_items)
    Assignment.objects.bulk_create(
        Assignment(
            rater=rater, comparison=c, left_model_id=c.model_a_id, served_at=now, shown_at=now,
            completed_at=now + timedelta(seconds=s), key=f"k{i}",
        )
        for i, (c, s) in enumerate(zip(study.comparisons.order_by("?"), seconds, strict=True))
    )  # fmt: skip

    estimate = crowd.time_estimate(study=study)

    assert estimate.source == "pilot median" and estimate.pilot_items == n_items
    assert estimate.seconds_per_item == round(statistics.median(seconds), 1)
