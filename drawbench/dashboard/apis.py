"""The researcher's API: studies (list, create, open, close), evaluated models (list, create, edit), prompt sets
(list, create or update from a CSV/JSONL upload or a JSON list of prompts) and generation runs (list, start, resume,
cancel).

The same rules as the dashboard (drawbench.dashboard.views): reads are for staff, holders of studies.view_study and
analysts (drawbench.studies.roles); every write needs staff and the model permission of the action (studies.add_study,
studies.change_study, catalog.add_evaluatedmodel, catalog.change_evaluatedmodel, catalog.add_promptset and, to update
an existing set, catalog.change_promptset, generation.add_generationrun, generation.change_generationrun), which the
researcher group holds. Services do every write (drawbench.dashboard.catalog_services for the catalog, the same as
the dashboard's pages and the command line use); a state that forbids the action (opening a study whose samples are
missing, resuming a running run, changing the config of a model that has samples, reloading a prompt set a study
uses) is a 409 that says why.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Count, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from drawbench.catalog.models import EvaluatedModel, PromptSet
from drawbench.dashboard.catalog_forms import MAX_SAMPLES_PER_PROMPT
from drawbench.dashboard.catalog_services import (
    evaluated_model_create,
    evaluated_model_update,
    generation_run_create_and_start,
    prompt_set_from_prompts,
    prompt_set_upload,
)
from drawbench.dashboard.permissions import (
    ADD_MODEL_PERMISSION,
    ADD_PROMPT_SET_PERMISSION,
    ADD_RUN_PERMISSION,
    ADD_STUDY_PERMISSION,
    CHANGE_MODEL_PERMISSION,
    CHANGE_PROMPT_SET_PERMISSION,
    CHANGE_RUN_PERMISSION,
    CHANGE_STUDY_PERMISSION,
    VIEW_STUDY_PERMISSION,
)
from drawbench.generation.models import GenerationRun
from drawbench.generation.services import generation_run_cancel, generation_run_resume
from drawbench.studies.models import DisplayFormat, Question, Study
from drawbench.studies.parsers import StrictJSONParser
from drawbench.studies.roles import user_can_view_results
from drawbench.studies.services.studies import study_close, study_create, study_open, study_samples_unsatisfiable

# Service error codes that mean "the object's state forbids this": a 409, not a 400.
CONFLICT_CODES = {"model_in_use", "prompt_set_in_use", "prompt_set_samples"}
MAX_PROMPTS_PER_REQUEST = 100_000
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
        data = serializer.validated_data
        # Checked at creation, as the dashboard's form does, rather than first at open: samples per side that a model
        # with imported samples only could never show.
        unsatisfiable = study_samples_unsatisfiable(
            prompt_set=data["prompt_set"],
            categories=data.get("categories", ()),
            evaluated_models=list(data["evaluated_models"]),
            samples_per_side=data.get("samples_per_side", Study._meta.get_field("samples_per_side").default),
        )
        try:
            with transaction.atomic():  # a study made despite unsatisfiable samples is rolled back
                study = study_create(**data, created_by=request.user)
                if unsatisfiable:
                    raise DjangoValidationError({"samples_per_side": unsatisfiable})
        except DjangoValidationError as exc:
            errors = _validation_messages(exc)
            if unsatisfiable and isinstance(errors, dict):
                errors.setdefault("samples_per_side", unsatisfiable)
            raise ValidationError(errors) from exc
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


def _conflict_response(name: str, description: str) -> dict:
    return {
        409: OpenApiResponse(
            response=inline_serializer(
                name,
                {"detail": serializers.CharField(), "errors": serializers.ListField(child=serializers.CharField())},
            ),
            description=description,
        )
    }


def _conflict(exc: DjangoValidationError) -> Response:
    messages = exc.messages
    return Response({"detail": messages[0], "errors": messages}, status=status.HTTP_409_CONFLICT)


def _is_conflict(exc: DjangoValidationError) -> bool:
    codes = set()
    if hasattr(exc, "error_dict"):
        codes = {error.code for errors in exc.error_dict.values() for error in errors}
    elif hasattr(exc, "error_list"):
        codes = {error.code for error in exc.error_list}
    return bool(codes & CONFLICT_CODES)


# --- evaluated models -----------------------------------------------------------------------------------------


class EvaluatedModelInputSerializer(serializers.Serializer):
    """What evaluated_model_create takes; ``config`` is checked against the backend's keys (a 400 names the key)."""

    name = serializers.SlugField(max_length=100)
    version = serializers.CharField(max_length=50, default="1")
    description = serializers.CharField(required=False, allow_blank=True, max_length=20_000, default="")
    backend = serializers.CharField(max_length=200, help_text="Dotted path of a SampleBackend subclass.")
    config = serializers.JSONField(required=False, default=dict, help_text="A JSON object of the backend's keys.")

    def validate_config(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError(f"the config must be a JSON object, not a JSON {type(value).__name__}")
        return value


MODEL_CONFLICT = _conflict_response(
    "EvaluatedModelConflict",
    "The model has samples or generation runs: its name, version, backend and config are frozen (add a new version).",
)


@extend_schema_view(
    **_read_only_schema(EvaluatedModelOutputSerializer),
    create=extend_schema(
        summary="Create an evaluated model; its config is checked against its backend",
        request=EvaluatedModelInputSerializer,
        responses={201: EvaluatedModelOutputSerializer, **BAD_REQUEST, **ERROR_RESPONSES},
    ),
    partial_update=extend_schema(
        summary="Change an evaluated model (its description always; the rest while it has no samples or runs)",
        request=EvaluatedModelInputSerializer(partial=True),
        responses={
            200: EvaluatedModelOutputSerializer,
            **BAD_REQUEST,
            **NOT_FOUND,
            **MODEL_CONFLICT,
            **ERROR_RESPONSES,
        },
    ),
)
class EvaluatedModelViewSet(
    ResearcherApiMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = EvaluatedModelOutputSerializer
    queryset = EvaluatedModel.objects.order_by("name", "version")
    lookup_url_kwarg = "model_id"
    write_permissions = {"create": ADD_MODEL_PERMISSION, "partial_update": CHANGE_MODEL_PERMISSION}

    def create(self, request: Request) -> Response:
        serializer = EvaluatedModelInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            model = evaluated_model_create(**serializer.validated_data)
        except DjangoValidationError as exc:
            raise ValidationError(_validation_messages(exc)) from exc
        return Response(EvaluatedModelOutputSerializer(model).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, model_id: str) -> Response:
        model = self.get_object()
        serializer = EvaluatedModelInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        fields = {name: value for name, value in serializer.validated_data.items() if name in request.data}
        try:
            model = evaluated_model_update(model=model, **fields)
        except DjangoValidationError as exc:
            if _is_conflict(exc):
                return _conflict(exc)
            raise ValidationError(_validation_messages(exc)) from exc
        return Response(EvaluatedModelOutputSerializer(model).data)


# --- prompt sets ----------------------------------------------------------------------------------------------


class PromptSetJsonInputSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=64, help_text="The prompt set's short name; an existing slug is updated.")
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    prompts = serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        max_length=MAX_PROMPTS_PER_REQUEST,
        help_text='Objects {"prompt": ..., "category": ..., "id": ...}, checked as the lines of a JSONL file '
        "(an error names item N, from 1, as line N); other keys are kept as metadata.",
    )


class PromptSetFileInputSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=64, help_text="The prompt set's short name; an existing slug is updated.")
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    file = serializers.FileField(
        help_text="A .csv or .tsv (columns prompt, category, optional id) or .jsonl file, as `load_prompts csv` reads."
    )


class PromptSetImportOutputSerializer(serializers.Serializer):
    prompt_set = PromptSetOutputSerializer()
    created = serializers.IntegerField(help_text="Prompts added.")
    updated = serializers.IntegerField(help_text="Prompts whose position, category, id or metadata changed.")
    unchanged = serializers.IntegerField()
    deleted = serializers.IntegerField()
    warnings = serializers.ListField(child=serializers.CharField())


PROMPT_SET_CONFLICT = _conflict_response(
    "PromptSetConflict",
    "The set exists and a study uses it (or its samples would lose their prompts): its prompts cannot change.",
)


@extend_schema_view(
    **_read_only_schema(PromptSetOutputSerializer),
    create=extend_schema(
        summary="Create a prompt set, or update the one with this slug, from a file or a list of prompts",
        request={
            "multipart/form-data": PromptSetFileInputSerializer,
            "application/json": PromptSetJsonInputSerializer,
        },
        responses={
            201: PromptSetImportOutputSerializer,
            200: PromptSetImportOutputSerializer,
            **BAD_REQUEST,
            **PROMPT_SET_CONFLICT,
            **ERROR_RESPONSES,
        },
    ),
)
class PromptSetViewSet(ResearcherApiMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = PromptSetOutputSerializer
    queryset = PromptSet.objects.annotate(n_prompts=Count("prompts")).order_by("slug")
    lookup_url_kwarg = "prompt_set_id"
    parser_classes = [StrictJSONParser, MultiPartParser]
    write_permissions = {"create": ADD_PROMPT_SET_PERMISSION}

    def create(self, request: Request) -> Response:
        from_file = "file" in request.data or request.FILES
        serializer = (PromptSetFileInputSerializer if from_file else PromptSetJsonInputSerializer)(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if PromptSet.objects.filter(slug=data["slug"]).exists() and not request.user.has_perm(
            CHANGE_PROMPT_SET_PERMISSION
        ):
            raise PermissionDenied(
                f"Prompt set '{data['slug']}' exists; updating it needs the {CHANGE_PROMPT_SET_PERMISSION} permission."
            )
        try:
            if from_file:
                upload = data["file"]
                result, warnings = prompt_set_upload(
                    file=upload, file_name=upload.name, slug=data["slug"], title=data["title"]
                )
            else:
                result, warnings = prompt_set_from_prompts(
                    prompts=data["prompts"], slug=data["slug"], title=data["title"]
                )
        except DjangoValidationError as exc:
            if _is_conflict(exc):
                return _conflict(exc)
            raise ValidationError({"file" if from_file else "prompts": exc.messages}) from exc
        body = {
            "prompt_set": PromptSetOutputSerializer(self.get_queryset().get(pk=result.prompt_set.pk)).data,
            "created": result.created,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "deleted": result.deleted,
            "warnings": list(warnings),
        }
        return Response(body, status=status.HTTP_201_CREATED if result.prompt_set_created else status.HTTP_200_OK)


# --- generation runs ------------------------------------------------------------------------------------------


class GenerationRunCreateInputSerializer(serializers.Serializer):
    evaluated_model = serializers.PrimaryKeyRelatedField(queryset=EvaluatedModel.objects.all())
    prompt_set = serializers.PrimaryKeyRelatedField(queryset=PromptSet.objects.all())
    categories = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list, max_length=1000,
        help_text="Categories of the prompt set to generate; empty for every prompt.",
    )  # fmt: skip
    samples_per_prompt = serializers.IntegerField(min_value=1, max_value=MAX_SAMPLES_PER_PROMPT)
    batch_size = serializers.IntegerField(min_value=1, max_value=256, default=4, help_text="Prompts per worker task.")


RUN_CONFLICT = _conflict_response(
    "GenerationRunConflict", "The run's status forbids this (resuming a running run, cancelling a finished one)."
)


@extend_schema_view(
    **_read_only_schema(GenerationRunOutputSerializer),
    create=extend_schema(
        summary="Start generating a model's samples of a prompt set (or some of its categories)",
        request=GenerationRunCreateInputSerializer,
        responses={201: GenerationRunOutputSerializer, **BAD_REQUEST, **ERROR_RESPONSES},
    ),
    resume=extend_schema(
        summary="Resume a stopped run: its missing and failed prompts are queued again",
        request=None,
        responses={200: GenerationRunOutputSerializer, **NOT_FOUND, **RUN_CONFLICT, **ERROR_RESPONSES},
    ),
    cancel=extend_schema(
        summary="Cancel a pending or running run",
        request=None,
        responses={200: GenerationRunOutputSerializer, **NOT_FOUND, **RUN_CONFLICT, **ERROR_RESPONSES},
    ),
)
class GenerationRunViewSet(
    ResearcherApiMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = GenerationRunOutputSerializer
    queryset = GenerationRun.objects.order_by("-created_at", "-pk")
    lookup_url_kwarg = "run_id"
    write_permissions = {"create": ADD_RUN_PERMISSION, "resume": CHANGE_RUN_PERMISSION, "cancel": CHANGE_RUN_PERMISSION}

    def create(self, request: Request) -> Response:
        serializer = GenerationRunCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            run = generation_run_create_and_start(**serializer.validated_data)
        except DjangoValidationError as exc:
            raise ValidationError(_validation_messages(exc)) from exc
        return Response(GenerationRunOutputSerializer(run).data, status=status.HTTP_201_CREATED)

    def _transition(self, service) -> Response:
        run = self.get_object()
        try:
            service(run=run)
        except DjangoValidationError as exc:
            return _conflict(exc)
        return Response(GenerationRunOutputSerializer(self.get_queryset().get(pk=run.pk)).data)

    @action(detail=True, methods=["post"])
    def resume(self, request: Request, run_id: str) -> Response:
        return self._transition(generation_run_resume)

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, run_id: str) -> Response:
        return self._transition(generation_run_cancel)
