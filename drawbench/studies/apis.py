"""The rater API under /api/rater/<study link token>/: join, fetch the current item, answer it, get the completion.

The rating page's script answers through it (session and CSRF); other clients, the load benchmark among them, join
with POST start and then send ``Authorization: Rater <rater_token>``. One APIView per operation. Answering returns
the next item, so a rater needs one request per item. Errors are 4xx with a message that says what was wrong:
400 bad input, 401 unknown token, 403 not this study's rater (or a known crowd id without its platform session id),
404 unknown item, 409 answered differently or reclaimed, 410 study not open, 413 body too large, 429 too fast.

Bodies are read by the strict JSON parser (parsers.py): too deep, duplicate keys, NaN or numbers out of range are a
400 before anything runs. A GET writes nothing: a rater is recorded complete by the answer that finds nothing left
for them, or by POST completion/.
"""

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from drawbench.studies.authentication import (
    ERROR_TOKEN_INVALID,
    IsRaterOfStudy,
    RaterSessionAuthentication,
    RaterTokenAuthentication,
)
from drawbench.studies.models import Assignment, Rater, Study
from drawbench.studies.parsers import StrictJSONParser
from drawbench.studies.platforms import ID_MAX_LENGTH, ID_RE, PlatformIdentity
from drawbench.studies.selectors import (
    Completion,
    RaterProgress,
    assignment_display,
    assignment_pending_for_rater,
    rater_completion,
    rater_progress,
)
from drawbench.studies.services import answering, errors, raters, serving
from drawbench.studies.throttling import (
    ERROR_START_THROTTLED,
    ERROR_THROTTLED,
    RaterStartThrottle,
    RaterSubmitThrottle,
)

logger = logging.getLogger(__name__)

PRACTICE_FEEDBACK_SESSION_KEY = "drawbench.practice_feedback"
ERROR_STUDY_UNKNOWN = "No study has this link."
ERROR_STUDY_CLOSED = "This study is closed: it is no longer taking answers."
ERROR_STUDY_NOT_OPEN = "This study is not open for rating."
ERROR_BODY_TOO_LARGE = "The request body is {size} bytes; at most {limit} bytes are accepted."
ERROR_NO_RATER = "No rater: open the study link first, or send 'Authorization: Rater <token>'."
ERROR_WORK_LEFT = "There is still an item for you to rate: GET assignment/ and answer it, or end with 'stop'."


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class StudyGone(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_code = "study_not_open"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class Throttled(exceptions.Throttled):
    def __init__(self, wait: float | None, message: str = ERROR_THROTTLED):
        super().__init__(wait=wait, detail=message.format(wait=round(wait or 1)))


class ResponseThen(Response):
    """A response that runs `then` once it has been sent: the WSGI server calls close() after writing the body (as do
    Django's ASGI handler and test client), so the client does not wait for it. A failure is logged; the client has
    its answer already."""

    def __init__(self, *args, then: Callable[[], object], **kwargs):
        super().__init__(*args, **kwargs)
        self.then = then

    def close(self):
        try:
            self.then()
        except Exception:
            logger.exception("Work after a response failed: %r", self.then)
        finally:
            super().close()


# --- shared output pieces -----------------------------------------------------------------------------------------


class QuestionSerializer(serializers.Serializer):
    value = serializers.CharField(help_text="The key to answer it under: fidelity or alignment.")
    text = serializers.CharField()


class AssignmentSerializer(serializers.Serializer):
    """One item to rate. Nothing here says which model made which set, or whether the item is a control."""

    key = serializers.CharField(help_text="Send it back with the answers; it is also the idempotency key.")
    practice = serializers.BooleanField(help_text="A labelled practice item: answered, never counted.")
    caption = serializers.CharField()
    questions = QuestionSerializer(many=True)
    left_images = serializers.ListField(child=serializers.CharField(), help_text="Set A, in display order.")
    right_images = serializers.ListField(child=serializers.CharField(), help_text="Set B, in display order.")


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()


class CompletionSerializer(serializers.Serializer):
    completion_code = serializers.CharField(allow_blank=True, help_text="Empty when no code was earned.")
    redirect_url = serializers.CharField(allow_blank=True, help_text="Where to send the rater (may be empty).")
    code_earned = serializers.BooleanField(
        help_text="False: the rater answered fewer items than the study's minimum for a code (no code, no redirect)."
    )
    message = serializers.CharField(help_text="What to tell the rater (with no code: to return the study).")


def _completion_data(completion: Completion | None) -> dict[str, Any] | None:
    if completion is None:
        return None
    return {
        "completion_code": completion.code,
        "redirect_url": completion.redirect_url,
        "code_earned": completion.earned,
        "message": completion.message,
    }


def _assignment_data(assignment: Assignment, study: Study) -> dict[str, Any]:
    display = assignment_display(
        assignment=assignment, study=study, image_names=getattr(assignment, "image_names", None)
    )
    return {
        "key": display.key,
        "practice": display.practice,
        "caption": display.caption,
        "questions": [{"value": q.value, "text": q.text} for q in display.questions],
        "left_images": display.left_image_urls,
        "right_images": display.right_image_urls,
    }


def _next_data(
    rater: Rater, assignment: Assignment | None, progress: RaterProgress, *, record: bool = True
) -> dict[str, Any]:
    """The rater's current item, progress and, when nothing is left for them (assignment None), their completion.
    `record` (a POST's) also records them complete then; a GET's (False) only reads."""
    completion = None
    if assignment is None:
        if record:
            raters.rater_complete(rater=rater)
        completion = _completion_data(rater_completion(rater=rater, nothing_left=True))
    return {
        "assignment": _assignment_data(assignment, rater.study) if assignment is not None else None,
        "progress": {"done": progress.done, "total": progress.total},
        "completion": completion,
    }


def _open_study(token: str) -> Study:
    study = Study.objects.filter(rater_token=token).first()
    if study is None:
        raise exceptions.NotFound(ERROR_STUDY_UNKNOWN)
    if study.status != Study.Status.OPEN:
        raise StudyGone(ERROR_STUDY_CLOSED if study.status == Study.Status.CLOSED else ERROR_STUDY_NOT_OPEN)
    return study


class JSONNegotiation(DefaultContentNegotiation):
    """DRF's content negotiation with its common case answered first: one renderer, and a client that accepts
    anything or JSON (every rater's browser and client) gets it without the Accept header being parsed. Anything
    else (another type asked for, a format suffix or parameter) is negotiated as DRF does, 406 included."""

    def select_renderer(self, request, renderers, format_suffix=None):
        accept = request.META.get("HTTP_ACCEPT", "*/*")
        if (
            len(renderers) == 1
            and accept in ("*/*", renderers[0].media_type)
            and not format_suffix
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)


class _JSONApi(APIView):
    """JSON in; a body past DATA_UPLOAD_MAX_MEMORY_SIZE is a 413 that says so (Django raises RequestDataTooBig when
    the parser reads it, which would otherwise end as a bare 400)."""

    parser_classes = [StrictJSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONNegotiation

    def handle_exception(self, exc):
        if isinstance(exc, RequestDataTooBig):
            size = self.request.META.get("CONTENT_LENGTH", "?")
            exc = RequestTooLarge(ERROR_BODY_TOO_LARGE.format(size=size, limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE))
        return super().handle_exception(exc)

    def permission_denied(self, request, message=None, code=None):
        if request.authenticators and not request.successful_authenticator:
            raise exceptions.NotAuthenticated(ERROR_NO_RATER)
        super().permission_denied(request, message, code)


class _RaterApi(_JSONApi):
    authentication_classes = [RaterTokenAuthentication, RaterSessionAuthentication]
    permission_classes = [IsRaterOfStudy]

    def handle_exception(self, exc):
        if isinstance(exc, Rater.DoesNotExist):
            # Deleted since the token was last looked up.
            exc = exceptions.AuthenticationFailed(ERROR_TOKEN_INVALID)
        return super().handle_exception(exc)


# --- operations ---------------------------------------------------------------------------------------------------


class RaterStartApi(_JSONApi):
    """Join a study as a rater; returns the token for the other calls. Throttled per client address.

    The same crowd id again is the same rater, and gets its token, only with the platform_session_id it started with:
    an id is not a secret. Without it (or for an id that started without one) the answer is 403, naming what is
    missing; such a rater continues in the browser it started in.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [RaterStartThrottle]

    @extend_schema_serializer(component_name="RaterStartInput")
    class InputSerializer(serializers.Serializer):
        platform = serializers.ChoiceField(
            choices=[c for c in Rater.Platform.values if c != Rater.Platform.ANONYMOUS], required=False
        )
        external_id = serializers.RegexField(ID_RE, max_length=ID_MAX_LENGTH, required=False)
        platform_study_id = serializers.RegexField(ID_RE, max_length=ID_MAX_LENGTH, required=False)
        platform_session_id = serializers.RegexField(ID_RE, max_length=ID_MAX_LENGTH, required=False)
        consent = serializers.BooleanField(default=False, help_text="Required true when the study asks for consent.")

        def validate(self, attrs):
            if attrs.get("platform") and not attrs.get("external_id"):
                raise serializers.ValidationError({"external_id": "A platform needs the rater's id on it."})
            return attrs

    @extend_schema_serializer(component_name="RaterStartOutput")
    class OutputSerializer(serializers.Serializer):
        rater_token = serializers.CharField(help_text="Send as 'Authorization: Rater <rater_token>'.")
        consented = serializers.BooleanField()

    def throttled(self, request, wait):
        raise Throttled(wait, ERROR_START_THROTTLED)

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request, token: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        study = _open_study(token)
        identity = None
        if data.get("external_id"):
            identity = PlatformIdentity(
                platform=data.get("platform", Rater.Platform.EXTERNAL),
                external_id=data["external_id"],
                platform_study_id=data.get("platform_study_id", ""),
                platform_session_id=data.get("platform_session_id", ""),
            )
        try:
            # No browser binding here (known_rater_ids): the API hands a known id's token only with its session id.
            rater = raters.rater_join(
                study=study, identity=identity, consent=data["consent"], session_field="platform_session_id"
            )
        except errors.OtherSession as exc:
            raise exceptions.PermissionDenied(exc.messages[0]) from None
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                raise exceptions.ValidationError(exc.message_dict) from None
            raise StudyGone(" ".join(exc.messages)) from None
        serving.assignment_serve_on_start(rater=rater)
        output = {"rater_token": rater.access_token, "consented": rater.consented_at is not None}
        return Response(self.OutputSerializer(output).data, status=status.HTTP_201_CREATED)


@extend_schema_serializer(component_name="RaterNext")
class NextOutputSerializer(serializers.Serializer):
    assignment = AssignmentSerializer(allow_null=True, help_text="Null when there is nothing left to rate.")
    progress = ProgressSerializer()
    completion = CompletionSerializer(allow_null=True, help_text="Set once the rater has finished.")


class RaterAssignmentNextApi(_RaterApi):
    """GET: the item the rater is being shown, the same one until it is answered (a read: nothing is claimed,
    renewed or recorded); null when they hold none, with their completion once their work is over. POST: serve their
    next item (claiming it) when they hold none, or record them complete when nothing is left. Starting serves the
    first item, and each answer the next one, so a rater's client only POSTs here after answering with
    include_next false or when an item was reclaimed."""

    OutputSerializer = NextOutputSerializer

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, token: str) -> Response:
        rater = request.auth
        # Read afresh (a token lookup is remembered a while): the rater may have been deleted, the study closed.
        status_now = Rater.objects.filter(pk=rater.pk).values_list("study__status", flat=True).first()
        if status_now is None:
            raise exceptions.AuthenticationFailed(ERROR_TOKEN_INVALID)
        if status_now != Study.Status.OPEN:
            raise StudyGone(ERROR_STUDY_CLOSED if status_now == Study.Status.CLOSED else ERROR_STUDY_NOT_OPEN)
        rater.study.status = status_now
        assignment = assignment_pending_for_rater(rater=rater)
        completion = None
        if assignment is None:
            nothing_left = not serving.rater_has_work(rater=rater)
            completion = _completion_data(rater_completion(rater=rater, nothing_left=nothing_left))
        progress = rater_progress(rater=rater)
        data = _assignment_data(assignment, rater.study) if assignment is not None else None
        return Response({"assignment": data, "progress": {"done": progress.done, "total": progress.total},
                         "completion": completion})  # fmt: skip

    @extend_schema(request=None, responses=OutputSerializer)
    def post(self, request: Request, token: str) -> Response:
        rater = request.auth
        try:
            assignment = serving.assignment_next_for_rater(rater=rater)
        except errors.StudyNotOpen as exc:
            raise StudyGone(exc.messages[0]) from None
        return Response(_next_data(rater, assignment, rater_progress(rater=rater)))


class RaterAnswerSubmitApi(_RaterApi):
    """Answer an item. The same answers again (a retry) are a success that records nothing: 200 instead of 201."""

    throttle_classes = [RaterSubmitThrottle]

    @extend_schema_serializer(component_name="RaterAnswerInput")
    class InputSerializer(serializers.Serializer):
        """The request's shape, for the schema: answering.answer_input checks it (one check for the form and the
        API)."""

        key = serializers.CharField(max_length=64)
        answers = serializers.DictField(
            child=serializers.CharField(max_length=16), help_text="{question: left | tie | right} for each question."
        )
        response_time_ms = serializers.IntegerField(min_value=0, max_value=answering.MAX_RESPONSE_TIME_MS)
        include_next = serializers.BooleanField(default=True, help_text="Also serve and return the next item.")

    @extend_schema_serializer(component_name="RaterAnswerOutput")
    class OutputSerializer(serializers.Serializer):
        recorded = serializers.BooleanField()
        replayed = serializers.BooleanField(help_text="True: these answers had been recorded before.")
        feedback = serializers.CharField(allow_null=True, help_text="After a practice item: what was expected.")
        next = NextOutputSerializer(allow_null=True)

    def throttled(self, request, wait):
        raise Throttled(wait)

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, 201: OutputSerializer})
    def post(self, request: Request, token: str) -> Response:
        try:
            data = answering.answer_input(request.data)
        except ValidationError as exc:
            raise exceptions.ValidationError(exc.message_dict) from None
        rater = request.auth
        try:
            outcome = answering.assignment_submit(
                rater=rater,
                key=data.key,
                answers=data.answers,
                response_time_ms=data.response_time_ms,
                serve_next=data.include_next,
            )
        except errors.AssignmentUnknown as exc:
            raise exceptions.NotFound(exc.messages[0]) from None
        except (errors.AnswerConflict, errors.AssignmentExpired) as exc:
            raise Conflict(exc.messages[0]) from None
        except errors.StudyNotOpen as exc:
            raise StudyGone(exc.messages[0]) from None
        except ValidationError as exc:
            raise exceptions.ValidationError({"answers": exc.messages}) from None
        feedback = outcome.feedback
        if feedback and isinstance(request.successful_authenticator, RaterSessionAuthentication):
            # Shown on the next page by the rating view.
            request.session[PRACTICE_FEEDBACK_SESSION_KEY] = feedback
        output = {
            "recorded": True,
            "replayed": not outcome.created,
            "feedback": feedback,
            "next": _next_data(rater, outcome.next_assignment, outcome.progress) if data.include_next else None,
        }
        # Built in the OutputSerializer's shape from plain values: serializing it again would only cost time.
        code = status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK
        if outcome.refill_due:
            # The item just served is the last the rater holds: claim their next batch once they have this one.
            return ResponseThen(output, status=code, then=partial(serving.rater_batch_prefetch, rater=rater))
        return Response(output, status=code)


class RaterCompletionApi(_RaterApi):
    """GET: the completion once the rater is recorded complete (the code, and where to go, for a rater who answered
    at least the study's minimum; else no code, and a message to return the study). POST ends the rater's work:
    "finish" records them complete if nothing is left for them (else 409: answer the next item), "stop" records
    that they stopped early (no code)."""

    @extend_schema_serializer(component_name="RaterCompletion")
    class OutputSerializer(serializers.Serializer):
        completed = serializers.BooleanField()
        completion = CompletionSerializer(allow_null=True)

    @extend_schema_serializer(component_name="RaterEndInput")
    class InputSerializer(serializers.Serializer):
        end = serializers.ChoiceField(choices=["finish", "stop"])

    def _output(self, rater: Rater) -> Response:
        done = rater_completion(rater=rater)
        output = {"completed": done is not None, "completion": _completion_data(done)}
        return Response(self.OutputSerializer(output).data)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, token: str) -> Response:
        return self._output(request.auth)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request, token: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rater = request.auth
        if serializer.validated_data["end"] == "stop":
            raters.rater_finish(rater=rater)
            return self._output(rater)
        try:
            left = serving.assignment_next_for_rater(rater=rater)
        except errors.StudyNotOpen as exc:
            raise StudyGone(exc.messages[0]) from None
        if left is not None:
            raise Conflict(ERROR_WORK_LEFT)
        raters.rater_complete(rater=rater)
        return self._output(rater)
