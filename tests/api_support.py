"""The researcher API's tests' users and clients: a token client for a user, and the users of each role."""

from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from drawbench.studies.roles import ANALYST_GROUP, RESEARCHER_GROUP


def token_client(user) -> APIClient:
    """An API client that authenticates as `user` with a token (`Authorization: Token <key>`)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def researcher_user(django_user_model):
    """Staff in the researcher group (every add and change permission the API asks for)."""
    user = django_user_model.objects.create_user(username="res", password="pw-res-123", is_staff=True)
    user.groups.add(Group.objects.get(name=RESEARCHER_GROUP))
    return user


def analyst_user(django_user_model):
    """The analyst role: reads results, writes nothing."""
    user = django_user_model.objects.create_user(username="ana", password="pw-ana-123")
    user.groups.add(Group.objects.get(name=ANALYST_GROUP))
    return user


def bare_staff_user(django_user_model):
    """Staff without any permission."""
    return django_user_model.objects.create_user(username="staff", password="pw-staff-1", is_staff=True)
