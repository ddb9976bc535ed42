"""Who a rater is on their crowd platform, read from the study link's query string.

Prolific appends ``PROLIFIC_PID``, ``STUDY_ID`` and ``SESSION_ID``; MTurk's external question appends ``workerId``,
``assignmentId`` and ``hitId`` (``assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE`` while the worker only previews the HIT);
any other platform can pass ``external_id``. Values are checked before they are stored: an id is at most 200 plain
characters, or the link is refused with the parameter named.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass

from django.core.exceptions import ValidationError

MTURK_PREVIEW_ASSIGNMENT = "ASSIGNMENT_ID_NOT_AVAILABLE"
# Where an MTurk external question's page posts the finished assignment: MTurk names the host in the link's
# turkSubmitTo (the sandbox while a requester tests the HIT). Only MTurk's own hosts are accepted: the page posts
# the rater's assignment id there.
MTURK_SUBMIT_HOSTS = ("https://www.mturk.com", "https://workersandbox.mturk.com")
MTURK_SUBMIT_PATH = "/mturk/externalSubmit"
ERROR_MTURK_SUBMIT_TO = "The link's turkSubmitTo must be one of MTurk's hosts ({hosts}); got {value!r}."
ID_MAX_LENGTH = 200
# Ids of the platforms we know are letters, digits and a little punctuation; e-mail-like ids pass too.
ID_RE = re.compile(r"^[A-Za-z0-9_.:@+\-]+$")

ERROR_ID_INVALID = (
    "The link's {parameter} is not a valid id: use at most {max} letters, digits or _ . : @ + - characters."
)
ERROR_ID_CONFLICT = "The link names the rater twice ({first} and {second}); keep one."

# (platform, the rater's id, the platform's study id, the platform's session id), in the order they are recognised.
PLATFORM_PARAMETERS = (
    ("prolific", "PROLIFIC_PID", "STUDY_ID", "SESSION_ID"),
    ("mturk", "workerId", "hitId", "assignmentId"),
    ("external", "external_id", "", ""),
)


def session_parameter(platform: str) -> str:
    """The link parameter that carries the platform's session id (Prolific's SESSION_ID, MTurk's assignmentId)."""
    return next((session for name, _, _, session in PLATFORM_PARAMETERS if name == platform and session), "session id")


@dataclass(frozen=True)
class PlatformIdentity:
    platform: str
    external_id: str
    platform_study_id: str = ""
    platform_session_id: str = ""

    @property
    def is_preview(self) -> bool:
        """An MTurk worker looking at the HIT before accepting it: they may read, not start."""
        return self.platform == "mturk" and self.platform_session_id == MTURK_PREVIEW_ASSIGNMENT


def _checked(query: Mapping[str, str], parameter: str) -> str:
    value = (query.get(parameter) or "").strip() if parameter else ""
    if value and (len(value) > ID_MAX_LENGTH or not ID_RE.match(value)):
        raise ValidationError({parameter: ERROR_ID_INVALID.format(parameter=parameter, max=ID_MAX_LENGTH)})
    return value


def platform_identity_from_query(query: Mapping[str, str]) -> PlatformIdentity | None:
    """The crowd identity in a study link's query string; None for an anonymous visitor."""
    if query.get("assignmentId") == MTURK_PREVIEW_ASSIGNMENT:
        # MTurk sends no workerId with a preview.
        return PlatformIdentity(
            platform="mturk", external_id="", platform_study_id=_checked(query, "hitId"),
            platform_session_id=MTURK_PREVIEW_ASSIGNMENT,
        )  # fmt: skip
    found: list[tuple[str, str, PlatformIdentity]] = []
    for platform, id_parameter, study_parameter, session_parameter in PLATFORM_PARAMETERS:
        external_id = _checked(query, id_parameter)
        if not external_id:
            continue
        identity = PlatformIdentity(
            platform=platform,
            external_id=external_id,
            platform_study_id=_checked(query, study_parameter),
            platform_session_id=_checked(query, session_parameter),
        )
        found.append((platform, id_parameter, identity))
    if len(found) > 1:
        raise ValidationError(ERROR_ID_CONFLICT.format(first=found[0][1], second=found[1][1]))
    return found[0][2] if found else None


def mturk_submit_host(turk_submit_to: str | None) -> str:
    """The MTurk host an MTurk rater's finished assignment is posted to (at MTURK_SUBMIT_PATH): the one the link named
    in turkSubmitTo, production when it named none; a host that is not MTurk's is refused with the parameter named."""
    host = (turk_submit_to or MTURK_SUBMIT_HOSTS[0]).strip().rstrip("/")
    if host not in MTURK_SUBMIT_HOSTS:
        raise ValidationError(
            {"turkSubmitTo": ERROR_MTURK_SUBMIT_TO.format(hosts=", ".join(MTURK_SUBMIT_HOSTS), value=turk_submit_to)}
        )
    return host
