"""Dashboard fixtures: the staff user writes on the dashboard, so it is a researcher (group "researcher")."""

import pytest
from django.contrib.auth.models import Group

from drawbench.studies.roles import RESEARCHER_GROUP


@pytest.fixture
def staff_user(staff_user):
    staff_user.groups.add(Group.objects.get(name=RESEARCHER_GROUP))
    return staff_user


@pytest.fixture
def staff_client(client, staff_user):
    """The test client, logged in as the researcher."""
    client.force_login(staff_user)
    return client
