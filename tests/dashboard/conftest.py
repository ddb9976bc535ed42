"""Dashboard fixtures: the staff user writes on the dashboard, so it is a researcher (group "researcher")."""

import pytest
from django.contrib.auth.models import Group

from drawbench.studies.roles import RESEARCHER_GROUP
from tests.factories import PromptFactory, PromptSetFactory


@pytest.fixture
def staff_user(staff_user):
    staff_user.groups.add(Group.objects.get(name=RESEARCHER_GROUP))
    return staff_user


@pytest.fixture
def staff_client(client, staff_user):
    """The test client, logged in as the researcher."""
    client.force_login(staff_user)
    return client


@pytest.fixture
def prompt_set():
    """A three-prompt set in two categories (the catalog pages' and the import API's)."""
    prompt_set = PromptSetFactory(slug="mini", title="Mini")
    PromptFactory(prompt_set=prompt_set, position=1, text="A red colored car.", category="Colors")
    PromptFactory(prompt_set=prompt_set, position=2, text="Two cats.", category="Counting")
    PromptFactory(prompt_set=prompt_set, position=3, text="A blue bird.", category="Colors")
    return prompt_set
