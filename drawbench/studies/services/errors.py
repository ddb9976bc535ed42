"""The rater path's exceptions and the messages they carry (each says what was wrong and what to do)."""

from django.core.exceptions import ValidationError

ERROR_STUDY_NOT_OPEN = "This study is not open for rating."
# Worded without the model's name: a message raised while serving a rater must not say which model is which.
ERROR_NOT_ENOUGH_SAMPLES = "Comparison {comparison}: a side has {n} samples of prompt {position}; the study shows {k}."
ERROR_ASSIGNMENT_ANSWERED = (
    "This comparison has already been answered differently (in another tab or an earlier try); the first answer "
    "was kept."
)
ERROR_ASSIGNMENT_UNKNOWN = "This answer is not for a comparison you were shown; please answer the one on this page."
ERROR_ASSIGNMENT_EXPIRED = (
    "This comparison waited too long for an answer and went to another rater; your answer to it was not needed. "
    "Please go on with the next one."
)
ERROR_CONSENT_REQUIRED = "Please read the consent information and tick the box to agree before you start."
ERROR_ANSWER_MISSING = "Please answer the question: {text}"
ERROR_ANSWER_UNEXPECTED = "Unexpected answer to {question!r}: this study does not ask that question."
ERROR_CHOICE_UNKNOWN = "Unknown answer {choice!r} to {question!r}: expected one of left, tie, right."
ERROR_RESPONSE_TIME = "The response time must be between 0 and {max} ms; got {value}."
ERROR_OTHER_SESSION = (
    "This {platform} id started this study in another session: the link's {parameter} is not the one it started "
    "with. Open the study from the link of that session (or the browser you started in)."
)


class StudyNotOpen(ValidationError):
    """The study is not (or no longer) open for rating (HTTP 410 on the API)."""


class AnswerConflict(ValidationError):
    """The assignment was already answered, differently: the first answer stands (HTTP 409)."""


class AssignmentUnknown(ValidationError):
    """No assignment of this rater has this key (HTTP 404 on the API, 400 on the form)."""


class AssignmentExpired(ValidationError):
    """The assignment was reclaimed after its timeout and its comparison has gone to other raters (HTTP 409)."""


class OtherSession(ValidationError):
    """A crowd id seen before, arriving with another platform session than the one it started with (HTTP 403)."""
