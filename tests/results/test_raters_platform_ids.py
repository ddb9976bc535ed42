"""The raters export's crowd-platform ids: asked for with ?platform_ids=1, for researchers (studies.change_study) only;
an analyst, or staff without the permission, is refused rather than served a file without them, and the default
export (and the judgments export) names raters by their pseudonymous id alone."""

import io

import pandas as pd
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from rest_framework.test import APIClient

from drawbench.results.apis import PLATFORM_ID_COLUMNS
from drawbench.studies.models import Rater
from drawbench.studies.roles import ANALYST_GROUP, RESEARCHER_GROUP

pytestmark = pytest.mark.django_db


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def on_prolific(known_study):
    """The known study's raters came from Prolific, each with their own participant and session ids."""
    for index, rater in enumerate(known_study.raters):
        Rater.objects.filter(pk=rater.pk).update(
            platform=Rater.Platform.PROLIFIC,
            external_id=f"pid-{index}",
            platform_study_id="prolific-study",
            platform_session_id=f"session-{index}",
        )
    return known_study


@pytest.fixture
def researcher(staff_user):
    staff_user.groups.add(Group.objects.get(name=RESEARCHER_GROUP))
    return staff_user


def _raters(client, study, **params):
    return client.get(reverse("api-study-raters", args=[study.pk]), {"format": "csv", **params})


def test_a_researcher_gets_each_raters_platform_ids_beside_the_pseudonymous_id(on_prolific, researcher):
    response = _raters(_client(researcher), on_prolific.study, platform_ids="1")
    assert response.status_code == 200
    frame = pd.read_csv(io.BytesIO(response.content), keep_default_na=False, dtype=str).set_index("rater_id")
    assert list(frame.columns[-4:]) == list(PLATFORM_ID_COLUMNS)
    for index, rater in enumerate(on_prolific.raters):
        row = frame.loc[rater.public_id]
        assert (row["platform"], row["platform_participant_id"]) == ("prolific", f"pid-{index}")
        assert (row["platform_study_id"], row["platform_session_id"]) == ("prolific-study", f"session-{index}")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_without_asking_no_export_carries_a_platform_id(on_prolific, researcher, fmt):
    client = _client(researcher)
    for url in ("api-study-raters", "api-study-judgments"):
        body = client.get(reverse(url, args=[on_prolific.study.pk]), {"format": fmt}).content.decode()
        assert "pid-0" not in body and "session-0" not in body, url
        assert "platform_participant_id" not in body


def test_an_analyst_or_plain_staff_is_refused_the_platform_ids(on_prolific, staff_user, django_user_model):
    analyst = django_user_model.objects.create_user("ana", password="x")
    analyst.groups.add(Group.objects.get(name=ANALYST_GROUP))
    for user in (analyst, staff_user):
        response = _raters(_client(user), on_prolific.study, platform_ids="true", format="json")
        assert response.status_code == 403, user
        assert "researchers" in response.json()["detail"] and b"pid-" not in response.content
        # The same user still reads the pseudonymous export.
        assert _raters(_client(user), on_prolific.study).status_code == 200
