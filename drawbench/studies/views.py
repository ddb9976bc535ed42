"""The rater's pages: the study link (consent, instructions, Start), the rating page and the finish page.

A rater is not a user: the Start button makes the visitor a Rater (the same one again for a crowd id seen before)
and keeps its id in the session. The rating page answers through the rater API (apis.py) with a script that
retries on a dropped connection; without the script its form posts here. Nothing rendered here may reveal which
model made an image, or tell a silent gold trial from a comparison (see tests/studies/test_blindness.py).

Every rater page carries a Content-Security-Policy that allows only this page's own inline style and script (by
nonce), images from this site and the image storage (and DRAWBENCH_CSP_IMG_SRC), and requests to this site.
"""

import functools
import secrets
from collections.abc import Sequence
from functools import wraps
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, ValidationError
from django.core.files.storage import default_storage, storages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from drawbench.studies.apis import PRACTICE_FEEDBACK_SESSION_KEY
from drawbench.studies.authentication import RATER_SESSION_KEY
from drawbench.studies.models import Assignment, DisplayedChoice, DisplayImage, Question, Rater, Study
from drawbench.studies.platforms import MTURK_SUBMIT_PATH, mturk_submit_host, platform_identity_from_query
from drawbench.studies.selectors import (
    DisplayedQuestion,
    assignment_display,
    assignment_get_for_rater,
    assignment_pending_for_rater,
    rater_completion,
    rater_progress,
)
from drawbench.studies.services import answering, display, errors, raters, serving
from drawbench.studies.throttling import (
    ERROR_START_THROTTLED,
    ERROR_THROTTLED,
    RaterStartThrottle,
    RaterSubmitThrottle,
)

ANSWER_FIELD_PREFIX = "answer_"
# One row of keys per question, in the order the study asks them: left / indifferent / right.
SHORTCUT_KEYS = (("a", "s", "d"), ("j", "k", "l"))
ANSWER_LABELS = tuple((choice.value, choice.label) for choice in DisplayedChoice)

ERROR_ASSIGNMENT_UNKNOWN = errors.ERROR_ASSIGNMENT_UNKNOWN
ERROR_RESPONSE_TIME_FORMAT = answering.ERROR_RESPONSE_TIME_TYPE
ERROR_SESSION_MISSING = "Your rating session was not found (cookies may be off); please open the study link again."
ERROR_TOO_LARGE = "The request is too large: at most {limit} bytes of form data are accepted."
ERROR_TOO_MANY_FIELDS = "The request has too many fields: at most {limit} are accepted."
ERROR_BAD_REQUEST = "The request could not be read: {reason}"
ERROR_IMAGE_UNKNOWN = "No image of an open study has this address."
# The browser a rater started in, besides its session: a signed cookie, on the study link's path, names the rater, so
# that a session that expired or was cleared does not lose a crowd id that can be resumed only from its browser.
BROWSER_COOKIE = "drawbench_rater_{study_id}"
BROWSER_COOKIE_SALT = "drawbench.studies.rater-browser.{study_id}"
BROWSER_COOKIE_MAX_AGE = 60 * 60 * 24 * 30
# How a rater's work ends (the finish page's POST): "finish" when the rating page found nothing left (verified
# here), "stop" for Stop here.
END_FINISH, END_STOP = "finish", "stop"
# The MTurk host an MTurk rater's finished assignment is posted to (the link's turkSubmitTo), per study, in their
# session.
MTURK_SUBMIT_SESSION_KEY = "drawbench.mturk_submit.{study_id}"


@functools.cache
def _storage_origin() -> str:
    """Where stored images are served from when it is not this site (an S3 bucket, a CDN): its origin, else ""."""
    parts = urlsplit(storages["default"].url("samples/probe.png"))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def rater_csp(nonce: str, *, form_action: Sequence[str] = ()) -> str:
    """The Content-Security-Policy of rater pages: nothing but this page's own style and script, and this site (and
    the image storage's origin, and DRAWBENCH_CSP_IMG_SRC, for images; and `form_action`, where a form may post)."""
    images = " ".join(dict.fromkeys(filter(None, ["'self'", _storage_origin(), *settings.DRAWBENCH_CSP_IMG_SRC])))
    forms = " ".join(["'self'", *form_action])
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src {images}; "
        f"connect-src 'self'; form-action {forms}; frame-ancestors 'none'; base-uri 'none'"
    )


def rater_page(view):
    """Never cached, and with the rater pages' Content-Security-Policy (a fresh nonce per response)."""

    @never_cache
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        request.csp_nonce = secrets.token_urlsafe(16)
        request.csp_form_action = []
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = rater_csp(request.csp_nonce, form_action=request.csp_form_action)
        return response

    return wrapped


def _study(token: str) -> Study | None:
    return Study.objects.filter(rater_token=token).first()


def _not_open(request: HttpRequest, study: Study | None) -> HttpResponse:
    closed = study is not None and study.status == Study.Status.CLOSED
    return render(request, "rater/not_open.html", {"closed": closed}, status=410 if closed else 404)


def _error_page(request: HttpRequest, message: str, *, status: int = 400) -> HttpResponse:
    return render(request, "rater/not_open.html", {"error": message}, status=status)


def _session_rater(request: HttpRequest, study: Study) -> Rater | None:
    rater_id = request.session.get(RATER_SESSION_KEY.format(study_id=study.pk))
    if rater_id is None:
        return None
    return Rater.objects.filter(pk=rater_id, study=study).select_related("study").first()


def _cookie_rater_id(request: HttpRequest, study: Study) -> int | None:
    value = request.get_signed_cookie(
        BROWSER_COOKIE.format(study_id=study.pk),
        default=None,
        salt=BROWSER_COOKIE_SALT.format(study_id=study.pk),
        max_age=BROWSER_COOKIE_MAX_AGE,
    )
    return int(value) if value and value.isdigit() else None


def _browser_rater_ids(request: HttpRequest, study: Study) -> list[int]:
    """The raters of the study this browser started: the one in its session, and the one in its signed cookie."""
    ids = [request.session.get(RATER_SESSION_KEY.format(study_id=study.pk)), _cookie_rater_id(request, study)]
    return [rater_id for rater_id in ids if isinstance(rater_id, int)]


def _browser_rater(request: HttpRequest, study: Study) -> Rater | None:
    """The rater of the study this browser started: its session's, else its signed cookie's."""
    rater = _session_rater(request, study)
    if rater is None and (rater_id := _cookie_rater_id(request, study)) is not None:
        rater = Rater.objects.filter(pk=rater_id, study=study).select_related("study").first()
    return rater


def _keep_rater(request: HttpRequest, response: HttpResponse, rater: Rater) -> HttpResponse:
    """Bind this browser to `rater`: its session, and the signed cookie that outlives the session."""
    study = rater.study
    request.session[RATER_SESSION_KEY.format(study_id=study.pk)] = rater.pk
    response.set_signed_cookie(
        BROWSER_COOKIE.format(study_id=study.pk),
        str(rater.pk),
        salt=BROWSER_COOKIE_SALT.format(study_id=study.pk),
        max_age=BROWSER_COOKIE_MAX_AGE,
        path=reverse("rater:study-entry", args=[study.rater_token]),
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
    return response


def _questions_for_form(display_questions: Sequence[DisplayedQuestion], selected: dict[str, str]) -> list[dict]:
    return [
        {
            "value": question.value,
            "text": question.text,
            "field": ANSWER_FIELD_PREFIX + question.value,
            "answers": [
                {"value": value, "label": label, "key": key, "checked": selected.get(question.value) == value}
                for (value, label), key in zip(ANSWER_LABELS, keys, strict=True)
            ],
        }
        for question, keys in zip(display_questions, SHORTCUT_KEYS, strict=False)
    ]


def _render_rating(
    request: HttpRequest,
    rater: Rater,
    assignment: Assignment | None,
    *,
    errors: Sequence[str] = (),
    selected: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "study": rater.study,
        "errors": list(errors),
        "progress": rater_progress(rater=rater),
        "feedback": request.session.pop(PRACTICE_FEEDBACK_SESSION_KEY, None),
    }
    if assignment is not None:
        display = assignment_display(
            assignment=assignment, study=rater.study, image_names=getattr(assignment, "image_names", None)
        )
        context |= {
            "display": display,
            "questions": _questions_for_form(display.questions, selected or {}),
            "samples_per_side": len(display.left_image_urls),
        }
    return render(request, "rater/rate.html", context, status=status)


@rater_page
@require_http_methods(["GET", "POST"])
def study_entry(request: HttpRequest, token: str) -> HttpResponse:
    """The study link: consent (when the study asks for it), instructions, and a Start button (POST).

    A crowd platform's ids in the query string (Prolific, MTurk, or external_id) name the rater: the same id again
    is the same rater, taken straight back to their rating page, from the browser it started in or with the
    platform session id it started with (raters.rater_returning); anyone else who knows the id is refused (403).
    Start is throttled per client address (RaterStartThrottle), as the API's start is.
    """
    study = _study(token)
    if study is None or study.status != Study.Status.OPEN:
        return _not_open(request, study)
    try:
        identity = platform_identity_from_query(request.GET)
    except ValidationError as exc:
        return _error_page(request, " ".join(exc.messages))
    rater = _browser_rater(request, study)
    known = _browser_rater_ids(request, study)
    if identity is not None and identity.external_id and (rater is None or rater.external_id != identity.external_id):
        try:
            rater = raters.rater_returning(study=study, identity=identity, known_rater_ids=known)
        except errors.OtherSession as exc:
            return _error_page(request, exc.messages[0], status=403)
        if rater is not None and (rater.consented_at is not None or not study.consent_text):
            return _keep_rater(request, redirect("rater:rate", token), rater)
    preview = identity is not None and identity.is_preview
    if identity is not None and identity.platform == Rater.Platform.MTURK:
        try:
            submit_host = mturk_submit_host(request.GET.get("turkSubmitTo"))
        except ValidationError as exc:
            return _error_page(request, " ".join(exc.messages))
        if not preview:
            request.session[MTURK_SUBMIT_SESSION_KEY.format(study_id=study.pk)] = submit_host
    error = None
    if request.method == "POST" and not preview:
        throttle = RaterStartThrottle()
        if not throttle.allow_client(request):
            wait = round(throttle.wait() or 1)
            response = _error_page(request, ERROR_START_THROTTLED.format(wait=wait), status=429)
            response["Retry-After"] = str(wait)
            return response
        consent = request.POST.get("consent") == "yes"
        try:
            if rater is not None:
                rater = raters.rater_consent(rater=rater, consent=consent)
            else:
                rater = raters.rater_join(study=study, identity=identity, consent=consent, known_rater_ids=known)
        except errors.OtherSession as exc:
            return _error_page(request, exc.messages[0], status=403)
        except ValidationError as exc:
            if not hasattr(exc, "error_dict"):
                # Closed between the check above and the Start button.
                return _not_open(request, _study(token))
            error = " ".join(exc.messages)
        else:
            serving.assignment_serve_on_start(rater=rater)
            return _keep_rater(request, redirect("rater:rate", token), rater)
    questions = [DisplayedQuestion(value=q, text=Question(q).label) for q in study.questions]
    context = {
        "study": study,
        "rater": rater,
        "questions": _questions_for_form(questions, {}),
        "preview": preview,
        "error": error,
        "needs_consent": bool(study.consent_text) and (rater is None or rater.consented_at is None),
    }
    return render(request, "rater/entry.html", context, status=400 if error else 200)


@rater_page
@require_http_methods(["GET", "POST"])
def rate(request: HttpRequest, token: str) -> HttpResponse:
    """GET: the rater's current item (the same one until answered). POST: its answers, when the script is off."""
    study = _study(token)
    if study is None:
        return _not_open(request, study)
    rater = _session_rater(request, study)
    if rater is None:
        if request.method == "POST":
            return _error_page(request, ERROR_SESSION_MISSING)
        return redirect("rater:study-entry", token)

    if request.method == "GET":
        if study.status != Study.Status.OPEN:
            return _not_open(request, study)
        # A read: the item was served by the POST before (Start, or the answer before it).
        assignment = assignment_pending_for_rater(rater=rater)
        if assignment is None:
            # None held: the finish page's button serves the next item if there is one, else records the rater
            # complete (a GET writes nothing).
            return redirect("rater:done", token) if rater.completed_at else _render_done(request, rater, end=END_FINISH)
        return _render_rating(request, rater, assignment)

    throttle = RaterSubmitThrottle()
    if not throttle.allow_rater(rater):
        return _error_page(request, ERROR_THROTTLED.format(wait=round(throttle.wait() or 1)), status=429)
    answers = {
        name.removeprefix(ANSWER_FIELD_PREFIX): value
        for name, value in request.POST.items()
        if name.startswith(ANSWER_FIELD_PREFIX)
    }
    key = request.POST.get("key", "")
    raw_time = request.POST.get("response_time_ms", "")
    try:
        try:
            response_time_ms = int(raw_time)
        except ValueError:
            response_time_ms = raw_time
        if request.POST.get("response_time_ms") == "":
            # The form's hidden field, left empty by its script being off: the server's time since the item was
            # shown stands in. (A form without the field is refused, as before.)
            response_time_ms = _shown_for_ms(rater, key, default=raw_time)
        try:
            data = answering.answer_input({"key": key, "answers": answers, "response_time_ms": response_time_ms})
        except ValidationError:
            if assignment_get_for_rater(rater=rater, key=key) is None:
                raise errors.AssignmentUnknown(ERROR_ASSIGNMENT_UNKNOWN) from None
            raise
        outcome = answering.assignment_submit(
            rater=rater, key=data.key, answers=data.answers, response_time_ms=data.response_time_ms, serve_next=True
        )
    except (errors.AnswerConflict, errors.AssignmentExpired) as exc:
        return _rating_error(request, rater, key, errors=exc.messages, answers=answers, status=409)
    except ValidationError as exc:
        return _rating_error(request, rater, key, errors=exc.messages, answers=answers)
    if outcome.feedback:
        request.session[PRACTICE_FEEDBACK_SESSION_KEY] = outcome.feedback
    if outcome.next_assignment is None and outcome.created:
        # Nothing left: this POST records it, as the API's answer does.
        raters.rater_complete(rater=rater)
        return redirect("rater:done", token)
    return redirect("rater:rate", token)


def _shown_for_ms(rater: Rater, key: str, *, default):
    assignment = assignment_get_for_rater(rater=rater, key=key) if key else None
    shown_at = assignment and (assignment.shown_at or assignment.served_at)
    if not shown_at:
        return default
    return min(answering.MAX_RESPONSE_TIME_MS, max(0, round((timezone.now() - shown_at).total_seconds() * 1000)))


def _rating_error(
    request: HttpRequest,
    rater: Rater,
    key: str,
    *,
    errors: list[str],
    answers: dict[str, str],
    status: int = 400,
) -> HttpResponse:
    """Show the form again with what went wrong: the posted item if it is still to be answered, else the current."""
    study = rater.study
    study.refresh_from_db(fields=["status"])
    if study.status != Study.Status.OPEN:
        return _render_rating(request, rater, None, errors=errors, status=status)
    posted = assignment_get_for_rater(rater=rater, key=key)
    if posted is not None and posted.completed_at is None and posted.released_at is None:
        return _render_rating(request, rater, posted, errors=errors, selected=answers, status=status)
    return _render_rating(request, rater, assignment_pending_for_rater(rater=rater), errors=errors, status=status)


@rater_page
@require_http_methods(["GET", "POST"])
def done(request: HttpRequest, token: str) -> HttpResponse:
    """The finish page. GET reads: the completion code (or the crowd platform's completion page, or MTurk's submit
    form) for a rater whose work is over, else a Stop here button. POST ends the rater's work: "finish" (the rating
    page found nothing left) records them complete once that is checked, "stop" (Stop here) records them finished.

    The code is for raters who had everything there was for them and answered at least the study's
    min_answers_for_code items; one who got less is told there is no work for them and to return the study.
    """
    study = _study(token)
    if study is None:
        return _not_open(request, study)
    rater = _session_rater(request, study)
    if rater is None:
        if request.method == "POST":
            return _error_page(request, ERROR_SESSION_MISSING)
        return redirect("rater:study-entry", token)
    if request.method == "POST":
        if request.POST.get("end") == END_FINISH and not rater.completed_at:
            try:
                left = serving.assignment_next_for_rater(rater=rater)
            except errors.StudyNotOpen:
                return _not_open(request, _study(token))
            if left is not None:
                return redirect("rater:rate", token)
            raters.rater_complete(rater=rater)
        else:
            raters.rater_finish(rater=rater)
        return redirect("rater:done", token)
    completion = rater_completion(rater=rater)
    if completion is not None and completion.earned and completion.redirect_url:
        if rater.platform != Rater.Platform.MTURK:
            return redirect(completion.redirect_url)
    return _render_done(request, rater)


def _render_done(request: HttpRequest, rater: Rater, *, end: str | None = None) -> HttpResponse:
    """The finish page: the completion when the rater's work is over; else the button that ends it (`end`:
    finish after the last item, else Stop here)."""
    study = rater.study
    completion = None if end else rater_completion(rater=rater)
    mturk = None
    if completion is not None and completion.earned and rater.platform == Rater.Platform.MTURK:
        # An external question's assignment is finished by posting it back to MTurk, from this page.
        host = request.session.get(MTURK_SUBMIT_SESSION_KEY.format(study_id=study.pk)) or mturk_submit_host(None)
        mturk = {"action": host + MTURK_SUBMIT_PATH, "assignment_id": rater.platform_session_id}
        request.csp_form_action.append(host)
    context = {
        "study": study,
        "progress": rater_progress(rater=rater),
        "completion": completion,
        "mturk": mturk,
        "end": end or (END_STOP if completion is None and rater.finished_at is None else None),
    }
    return render(request, "rater/done.html", context)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The project's 400 page: says what was wrong with the request (too large, too many fields, unreadable)."""
    if isinstance(exception, RequestDataTooBig):
        message = ERROR_TOO_LARGE.format(limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    elif isinstance(exception, TooManyFieldsSent):
        message = ERROR_TOO_MANY_FIELDS.format(limit=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS)
    else:
        message = ERROR_BAD_REQUEST.format(reason=exception or "malformed request")
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=400)
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")


@require_GET
def display_image(request: HttpRequest, token: str, name: str) -> HttpResponse:
    """A display image of an open study (services.display), with the same headers for every image: its type (one
    format per study), its length (one length per study), and caching rules; no validators (Last-Modified, ETag)."""
    row = (
        DisplayImage.objects.filter(name=name, study__rater_token=token, study__status=Study.Status.OPEN)
        .values_list("file", "study__display_format")
        .first()
    )
    if row is None:
        return HttpResponse(ERROR_IMAGE_UNKNOWN, status=404, content_type="text/plain; charset=utf-8")
    file, display_format = row
    with default_storage.open(file, "rb") as handle:
        data = handle.read()
    response = HttpResponse(data, content_type=display.CONTENT_TYPES[display_format])
    response["Cache-Control"] = "private, max-age=86400"
    return response
