"""The rating form with its script off: the hidden response time stays empty and the server's clock stands in."""

import datetime

import pytest
from django.utils import timezone

from drawbench.studies.models import Assignment, Judgment
from tests.studies.test_views import good_payload, rate_url, start

pytestmark = pytest.mark.django_db


def test_a_form_posted_without_script_records_the_answers_with_the_servers_time(client, make_study):
    study = make_study(n_prompts=2)
    key = start(client, study)
    Assignment.objects.filter(key=key).update(shown_at=timezone.now() - datetime.timedelta(seconds=7))

    response = client.post(rate_url(study), good_payload(key, response_time_ms=""))

    assert response.status_code == 302
    times = set(Judgment.objects.values_list("response_time_ms", flat=True))
    assert len(times) == 1
    assert 7000 <= times.pop() < 60_000


def test_the_rating_page_says_what_works_without_script(client, make_study):
    study = make_study(n_prompts=1)
    start(client, study)
    html = client.get(rate_url(study)).content.decode()
    assert '<input type="hidden" name="response_time_ms" value="">' in html
    assert "JavaScript is off: pick one answer to each question and press Submit" in html
