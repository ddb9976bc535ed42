"""The study page's crowd platform card: a rater's session in items and minutes (a stated default until a pilot has
answered enough items, then the pilot's median), the raters needed, the cost at the hourly pay asked for, and, for
researchers only (the files carry platform ids), links to each platform's approval and bonus files."""

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from drawbench.studies.crowd import DEFAULT_ITEM_SECONDS
from drawbench.studies.models import Study
from tests.factories import AssignmentFactory, ComparisonFactory, RaterFactory, StudyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    # 40 comparisons, 5 ratings each, at most 10 per rater: 20 raters, 10 items of 20 s = 3.3 minutes each.
    study = StudyFactory(ratings_per_comparison=5, max_comparisons_per_rater=10)
    Study.objects.filter(pk=study.pk).update(n_comparisons=40)
    study.refresh_from_db()
    return study


def _page(user, study, **params):
    client = Client()
    client.force_login(user)
    return client.get(reverse("dashboard:study-detail", args=[study.pk]), params)


def test_the_card_says_a_raters_minutes_and_the_raters_needed(staff_user, study):
    body = _page(staff_user, study).content.decode()
    minutes = round(10 * DEFAULT_ITEM_SECONDS / 60, 1)
    assert f"{minutes} minutes" in body and 'id="crowd-raters">20<' in body
    assert "a stated default" in body and 'id="crowd-cost"' not in body


def test_an_hourly_pay_gives_the_cost_per_rater_and_in_all(staff_user, study):
    body = _page(staff_user, study, hourly_pay="12").content.decode()
    per_rater = round(10 * DEFAULT_ITEM_SECONDS / 60 / 60 * 12, 2)
    assert f"{per_rater:.2f} per rater, {per_rater * 20:.2f} in all" in body


@pytest.mark.parametrize("pay", ["-3", "abc", "99999"])
def test_a_bad_hourly_pay_is_named_and_costs_nothing(staff_user, study, pay):
    response = _page(staff_user, study, hourly_pay=pay)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'class="errorlist" role="alert"' in body and 'id="crowd-cost"' not in body


def test_only_researchers_get_the_platform_files(staff_user, django_user_model, study):
    plain = django_user_model.objects.create_user("plain", password="x", is_staff=True)
    assert 'id="crowd-files"' not in _page(plain, study).content.decode()
    body = _page(staff_user, study).content.decode()
    assert 'id="crowd-files"' in body
    client = Client()
    client.force_login(staff_user)
    approvals = client.get(reverse("api-study-approvals", args=[study.pk]), {"platform": "prolific", "format": "csv"})
    assert approvals.status_code == 200
    assert csv.reader(io.StringIO(approvals.content.decode())).__next__()[:3] == [
        "participant_id",
        "session_id",
        "decision",
    ]
    assert f"{reverse('api-study-approvals', args=[study.pk])}?platform=mturk&amp;format=csv" in body


def test_once_a_pilot_answered_20_items_their_median_server_time_sets_the_minutes(staff_user):
    # 21 answered items: 20 took 30 s on the server's clock, one 2 hours (a rater who left the tab open): the median,
    # not the mean, sets a rater's session, so a stray outlier cannot inflate the pay estimate.
    study = StudyFactory(ratings_per_comparison=5, max_comparisons_per_rater=10)
    rater = RaterFactory(study=study)
    shown = timezone.now() - timedelta(hours=3)
    for index in range(21):
        took = timedelta(hours=2) if index == 0 else timedelta(seconds=30)
        AssignmentFactory(
            comparison=ComparisonFactory(study=study), rater=rater, shown_at=shown, completed_at=shown + took
        )
    Study.objects.filter(pk=study.pk).update(n_comparisons=40)  # as the fixture's study: 20 raters needed
    body = _page(staff_user, study, hourly_pay="12").content.decode()
    assert "the median of 21 answered items" in body
    assert "10 items</strong> × 30.0 s" in body and "5.0 minutes" in body
    assert "1.00 per rater, 20.00 in all" in body
