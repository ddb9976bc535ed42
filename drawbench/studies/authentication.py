"""How a rater proves who they are to the rater API: the session of the study link (with CSRF), or a token.

A rater is not a Django user. Authentication here yields ``(AnonymousUser, rater)``: ``request.auth`` is the Rater,
and the permission ``IsRaterOfStudy`` admits it only to its own study's URLs. Staff sessions and tokens do not
make anyone a rater.
"""

import copy
import time

from django.contrib.auth.models import AnonymousUser
from django.db import connection
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, CSRFCheck, get_authorization_header
from rest_framework.permissions import BasePermission

from drawbench.studies import sql
from drawbench.studies.models import Rater, Study

# The session maps each study a visitor rates to their rater: one key per study.
RATER_SESSION_KEY = "drawbench.rater.{study_id}"
RATER_SESSION_PREFIX = "drawbench.rater."
TOKEN_KEYWORD = "Rater"

ERROR_TOKEN_MALFORMED = "Malformed Authorization header: expected 'Rater <token>'."
ERROR_TOKEN_INVALID = "Unknown rater token."
ERROR_NOT_THIS_STUDY = "You are not a rater of this study: open its study link first."


# Token → (when read, rater id, study id, the study as read, its version): a rater's token, id and study never
# change, so a recent lookup is reused, per process, instead of a query on every request. The study's settings may
# change meanwhile: code that must see them fresh reads them again (under the rater's lock), and the one-statement
# answer checks the version it was given (sql.answer_and_next). A rater deleted meanwhile is unknown to those reads.
_TOKENS: dict[str, tuple[float, int, int, Study, str | None]] = {}
TOKEN_CACHE_SECONDS = 60.0
TOKEN_CACHE_SIZE = 20_000


def rater_for_token(token: str) -> Rater | None:
    """The rater with this API token (their study loaded, and its version as `study_version`), or None."""
    now = time.monotonic()
    hit = _TOKENS.get(token)
    if hit is not None and now - hit[0] < TOKEN_CACHE_SECONDS:
        _, rater_id, study_id, study, version = hit
        rater = Rater.from_db(connection.alias, ["id", "study_id"], [rater_id, study_id])
        rater.study = copy.copy(study)
        rater.study_version = version
        return rater
    rater = sql.rater_by_access_token(token=token)
    if rater is None:
        _TOKENS.pop(token, None)
        return None
    if len(_TOKENS) >= TOKEN_CACHE_SIZE:
        _TOKENS.clear()
    _TOKENS[token] = (now, rater.pk, rater.study_id, copy.copy(rater.study), rater.study_version)
    return rater


def session_rater_ids(session) -> list[int]:
    return [value for key, value in session.items() if key.startswith(RATER_SESSION_PREFIX) and isinstance(value, int)]


class RaterTokenAuthentication(BaseAuthentication):
    """``Authorization: Rater <token>``, the token returned when the rater joined (Rater.access_token)."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != TOKEN_KEYWORD.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(ERROR_TOKEN_MALFORMED)
        try:
            token = parts[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(ERROR_TOKEN_MALFORMED) from None
        rater = rater_for_token(token)
        if rater is None:
            raise exceptions.AuthenticationFailed(ERROR_TOKEN_INVALID)
        return AnonymousUser(), rater

    def authenticate_header(self, request) -> str:
        return TOKEN_KEYWORD


class RaterSessionAuthentication(BaseAuthentication):
    """The rater kept in the session by the study link's Start button, for the study named in the URL.

    A cookie is sent by the browser on its own, so a state-changing request must carry the CSRF token.
    """

    def authenticate(self, request):
        session = getattr(request._request, "session", None)
        study_token = (request.parser_context or {}).get("kwargs", {}).get("token")
        if session is None or not study_token:
            return None
        rater_ids = session_rater_ids(session)
        if not rater_ids:
            return None
        rater = Rater.objects.select_related("study").filter(pk__in=rater_ids, study__rater_token=study_token).first()
        if rater is None:
            return None
        self.enforce_csrf(request)
        return AnonymousUser(), rater

    def enforce_csrf(self, request) -> None:
        check = CSRFCheck(lambda _: None)
        check.process_request(request)
        reason = check.process_view(request, None, (), {})
        if reason:
            raise exceptions.PermissionDenied(f"CSRF Failed: {reason}")


class IsRaterOfStudy(BasePermission):
    """The request is authenticated as a rater of the study whose link token is in the URL."""

    message = ERROR_NOT_THIS_STUDY

    def has_permission(self, request, view) -> bool:
        rater = request.auth
        return isinstance(rater, Rater) and rater.study.rater_token == view.kwargs.get("token")


class RaterTokenScheme(OpenApiAuthenticationExtension):
    target_class = "drawbench.studies.authentication.RaterTokenAuthentication"
    name = "raterToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "'Rater <token>', the rater_token returned by the start operation.",
        }


class RaterSessionScheme(OpenApiAuthenticationExtension):
    target_class = "drawbench.studies.authentication.RaterSessionAuthentication"
    name = "raterSession"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
