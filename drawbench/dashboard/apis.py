"""The researcher's API: studies (list, create, open, close), evaluated models, prompt sets and generation runs.

The same rules as the dashboard (drawbench.dashboard.views): reads are for staff, holders of studies.view_study and
analysts (drawbench.studies.roles); creating a study needs staff and studies.add_study, opening or closing one staff
and studies.change_study. Services do every write; a state that forbids the action (opening a study whose samples
are missing, closing a closed one) is a 409 that says why.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from drawbench.catalog.models import EvaluatedModel, PromptSet
from drawbench.generation.models import GenerationRun
from drawbench.studies.models import DisplayFormat, Question, Study
from drawbench.studies.roles import user_can_view_results
from drawbench.studies.services.studies import study_close, study_create, study_open

VIEW_STUDY_PERMISSION = "studies.view_study"
ADD_STUDY_PERMISSION = "studies.add_study"
CHANGE_STUDY_PERMISSION = "studies.change_study"
# Requests per user per minute across these endpoints (settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api"]).
DEFAULT_API_RATE = "1200/min"


class ApiUserThrottle(UserRateThrottle):
    scope = "api"

    def get_rate(self) -> str:
        return self.THROTTLE_RATES.get(self.scope) or DEFAULT_API_RATE


class ResearcherPermission(BasePermission):
    """Reads: staff, studies.view_study or the analyst role. Writes: staff holding the action's permission."""

    def has_permission(self, request: Request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if request.method in SAFE_METHODS:
            if user.is_staff or user.has_perm(VIEW_STUDY_PERMISSION) or user_can_view_results(user):
                return True
            self.message = "Reading studies needs staff, the studies.view_study permission or the analyst role."
            return False
        permission = getattr(view, "write_permissions", {}).get(view.action)
        if user.is_staff and permission and user.has_perm(permission):
            return True
        self.message = f"This needs staff and the {permission} permission (the researcher group has it)."
        return False


class ApiErrorSerializer(serializers.Serializer):
    """Every error under /api/ has this shape (DRF's, and the JSON 404 and 500 of drawbench.urls)."""

    detail = serializers.CharField()


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ApiErrorSerializer, description=description)


ERROR_RESPONSES = {
    401: _error("No credentials, or a token that is not valid (header `Authorization: Token <key>`)."),
    403: _error("The user lacks the role or permission for this."),
    429: _error("Too many requests; the `Retry-After` header says when to try again."),
}
NOT_FOUND = {404: _error("No such object.")}
BAD_REQUEST = {
    400: OpenApiResponse(description="The input is not valid: an object of field names to lists of messages.")
}
CONFLICT = {
    409: OpenApiResponse(
        response=inline_serializer(
            "StudyConflict",
            {"detail": serializers.CharField(), "errors": serializers.ListField(child=serializers.CharField())},
        ),
        description="The study's state forbids this (its status, or samples still missing); `errors` says why.",
    )
}


class ResearcherApiMixin:
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [ResearcherPermission]
    throttle_classes = [ApiUserThrottle]
    write_permissions: dict[str, str] = {}


class StudyOutputSerializer(serializers.ModelSerializer):
    evaluated_models = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Study
        fields = [
            "id",
            "name",
            "status",
            "prompt_set",
            "evaluated_models",
            "categories",
            "questions",
            "samples_per_side",
            "ratings_per_comparison",
            "max_comparisons_per_rater",
            "practice_items",
            "gold_rate",
            "min_gold_accuracy",
            "min_response_time_ms",
            "assignment_timeout_s",
            "min_answers_for_code",
            "completion_url",
            "display_size",
            "display_format",
            "n_comparisons",
            "created_at",
            "opened_at",
            "closed_at",
        ]
        read_only_fields = fields


class StudyCreateInputSerializer(serializers.Serializer):
    """What study_create takes; a field left out takes the service's default."""

    name = serializers.CharField(max_length=200)
    prompt_set = serializers.PrimaryKeyRelatedField(queryset=PromptSet.objects.all())
    evaluated_models = serializers.PrimaryKeyRelatedField(queryset=EvaluatedModel.objects.all(), many=True)
    categories = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=1000)
    questions = serializers.ListField(
        child=serializers.ChoiceField(choices=Question.choices), required=False, max_length=len(Question.values)
    )
    samples_per_side = serializers.IntegerField(required=False, min_value=1, max_value=32767)
    ratings_per_comparison = serializers.IntegerField(required=False, min_value=1, max_value=32767)
    max_comparisons_per_rater = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=2**31 - 1
    )
    instructions = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    consent_text = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    practice_items = serializers.IntegerField(required=False, min_value=0, max_value=32767)
    gold_rate = serializers.FloatField(required=False, min_value=0, max_value=1)
    min_gold_accuracy = serializers.FloatField(required=False, min_value=0, max_value=1)
    min_response_time_ms = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    assignment_timeout_s = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    min_answers_for_code = serializers.IntegerField(required=False, min_value=0, max_value=32767)
    completion_url = serializers.URLField(required=False, allow_blank=True, max_length=200)
    display_size = serializers.IntegerField(required=False, min_value=16, max_value=2048)
    display_format = serializers.ChoiceField(choices=DisplayFormat.choices, required=False)


def _validation_messages(exc: DjangoValidationError) -> dict | list:
    return exc.message_dict if hasattr(exc, "error_dict") else exc.messages


@extend_schema_view(
    list=extend_schema(summary="List studies, newest first", responses={200: StudyOutputSerializer, **ERROR_RESPONSES}),
    retrieve=extend_schema(summary="One study", responses={200: StudyOutputSerializer, **NOT_FOUND, **ERROR_RESPONSES}),
    create=extend_schema(
        summary="Create a draft study and its comparisons",
        request=StudyCreateInputSerializer,
        responses={201: StudyOutputSerializer, **BAD_REQUEST, **ERROR_RESPONSES},
    ),
    open=extend_schema(
        summary="Open a study for rating",
        request=None,
        responses={200: StudyOutputSerializer, **NOT_FOUND, **CONFLICT, **ERROR_RESPONSES},
    ),
    close=extend_schema(
        summary="Close a study",
        request=None,
        responses={200: StudyOutputSerializer, **NOT_FOUND, **CONFLICT, **ERROR_RESPONSES},
    ),
)
class StudyViewSet(ResearcherApiMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = StudyOutputSerializer
    lookup_url_kwarg = "study_id"
    write_permissions = {
        "create": ADD_STUDY_PERMISSION,
        "open": CHANGE_STUDY_PERMISSION,
        "close": CHANGE_STUDY_PERMISSION,
    }

    def get_queryset(self) -> QuerySet[Study]:
        return Study.objects.prefetch_related("evaluated_models").order_by("-created_at", "-pk")

    def create(self, request: Request) -> Response:
        serializer = StudyCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            study = study_create(**serializer.validated_data, created_by=request.user)
        except DjangoValidationError as exc:
            raise ValidationError(_validation_messages(exc)) from exc
        return Response(
            StudyOutputSerializer(self.get_queryset().get(pk=study.pk)).data, status=status.HTTP_201_CREATED
        )

    def _transition(self, service) -> Response:
        study = self.get_object()
        try:
            service(study=study)
        except DjangoValidationError as exc:
            messages = exc.messages
            return Response({"detail": messages[0], "errors": messages}, status=status.HTTP_409_CONFLICT)
        return Response(StudyOutputSerializer(self.get_queryset().get(pk=study.pk)).data)

    @action(detail=True, methods=["post"])
    def open(self, request: Request, study_id: str) -> Response:
        return self._transition(study_open)

    @action(detail=True, methods=["post"])
    def close(self, request: Request, study_id: str) -> Response:
        return self._transition(study_close)


class EvaluatedModelOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = EvaluatedModel
        fields = ["id", "name", "version", "description", "backend", "config", "created_at"]
        read_only_fields = fields


class PromptSetOutputSerializer(serializers.ModelSerializer):
    n_prompts = serializers.IntegerField(read_only=True)
    categories = serializers.SerializerMethodField()

    class Meta:
        model = PromptSet
        fields = ["id", "slug", "title", "source", "content_hash", "n_prompts", "categories", "created_at"]
        read_only_fields = fields

    def get_categories(self, prompt_set: PromptSet) -> dict[str, int]:
        """Each category's number of prompts."""
        rows = prompt_set.prompts.values("category").annotate(n=Count("id")).order_by("category")
        return {row["category"]: row["n"] for row in rows}


class GenerationRunOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = GenerationRun
        fields = [
            "id",
            "evaluated_model",
            "prompt_set",
            "categories",
            "samples_per_prompt",
            "batch_size",
            "status",
            "total",
            "error",
            "attempt",
            "queue",
            "model_seconds",
            "task_seconds",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


def _read_only_schema(serializer) -> dict:
    return {
        "list": extend_schema(responses={200: serializer, **ERROR_RESPONSES}),
        "retrieve": extend_schema(responses={200: serializer, **NOT_FOUND, **ERROR_RESPONSES}),
    }


@extend_schema_view(**_read_only_schema(EvaluatedModelOutputSerializer))
class EvaluatedModelViewSet(ResearcherApiMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = EvaluatedModelOutputSerializer
    queryset = EvaluatedModel.objects.order_by("name", "version")
    lookup_url_kwarg = "model_id"


@extend_schema_view(**_read_only_schema(PromptSetOutputSerializer))
class PromptSetViewSet(ResearcherApiMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = PromptSetOutputSerializer
    queryset = PromptSet.objects.annotate(n_prompts=Count("prompts")).order_by("slug")
    lookup_url_kwarg = "prompt_set_id"


@extend_schema_view(**_read_only_schema(GenerationRunOutputSerializer))
class GenerationRunViewSet(ResearcherApiMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = GenerationRunOutputSerializer
    queryset = GenerationRun.objects.order_by("-created_at", "-pk")
    lookup_url_kwarg = "run_id"
