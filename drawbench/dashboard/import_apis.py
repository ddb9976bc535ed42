"""The researcher API's sample imports: upload a zip (and manifest) of samples made elsewhere, then follow its job.

``POST /api/sample-imports/`` is the dashboard's import page (drawbench.dashboard.catalog_views.sample_import) over
HTTP: the same checks (the form's own field rules, drawbench.dashboard.catalog_forms), the same service
(``sample_import_job_submit``: the upload is kept in storage and a worker on the cpu queue imports it, all or nothing,
once the request's transaction commits) and the same permission (staff and catalog.add_sample). It answers 202 with
the job's state and its URL in ``Location``; ``GET /api/sample-imports/<id>/`` is what a client polls until
``finished``, then reads ``report`` (done) or ``problems`` (failed). Reads are for staff, studies.view_study and
analysts, as every read of the API (drawbench.dashboard.apis.ResearcherPermission).
"""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from drawbench.catalog.models import EvaluatedModel, PromptSet
from drawbench.dashboard.apis import BAD_REQUEST, ERROR_RESPONSES, NOT_FOUND, ResearcherApiMixin
from drawbench.dashboard.catalog_forms import SampleImportForm
from drawbench.dashboard.catalog_selectors import sample_import_job_rows, sample_import_job_state
from drawbench.dashboard.catalog_services import sample_import_job_submit
from drawbench.dashboard.models import SampleImportJob
from drawbench.dashboard.permissions import ADD_SAMPLE_PERMISSION


def _form_rules(name: str, **overrides: Any) -> dict[str, Any]:
    """The dashboard form's field ``name`` as serializer arguments: whether it is required, its validators (the
    imported-backend check, the file suffixes, the sample count's bounds) and its help. One rule, one room."""
    field = SampleImportForm.base_fields[name]
    return {"required": field.required, "validators": list(field.validators), "help_text": field.help_text} | overrides


class SampleImportInputSerializer(serializers.Serializer):
    evaluated_model = serializers.PrimaryKeyRelatedField(
        queryset=EvaluatedModel.objects.all(),
        **_form_rules("evaluated_model", help_text="Id of a model with the imported backend (POST /api/models/)."),
    )
    prompt_set = serializers.PrimaryKeyRelatedField(
        queryset=PromptSet.objects.all(), **_form_rules("prompt_set", help_text="Id of the prompt set.")
    )
    samples_per_prompt = serializers.IntegerField(**_form_rules("samples_per_prompt"))
    archive = serializers.FileField(**_form_rules("archive"))
    manifest = serializers.FileField(**_form_rules("manifest"))


class SampleImportReportSerializer(serializers.Serializer):
    text = serializers.CharField(help_text="What was imported, in a sentence.")
    created = serializers.IntegerField()
    already_present = serializers.IntegerField()
    prompts = serializers.IntegerField(help_text="Prompts that have samples in the upload.")
    prompts_without_samples = serializers.ListField(
        child=serializers.IntegerField(), help_text="Positions of the set's prompts that have none."
    )


class SampleImportJobOutputSerializer(serializers.Serializer):
    """The job's state as the dashboard's job page polls it (catalog_selectors.sample_import_job_state), with what
    was asked for."""

    id = serializers.IntegerField()
    url = serializers.URLField(help_text="This job; poll it until `finished`.")
    evaluated_model = serializers.IntegerField()
    evaluated_model_name = serializers.CharField(help_text="name@version")
    prompt_set = serializers.IntegerField()
    prompt_set_name = serializers.CharField(help_text="The prompt set's slug.")
    samples_per_prompt = serializers.IntegerField()
    archive_name = serializers.CharField()
    manifest_name = serializers.CharField(help_text="Empty without a manifest.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    status = serializers.ChoiceField(choices=SampleImportJob.Status.choices)
    status_display = serializers.CharField()
    finished = serializers.BooleanField(help_text="Done or failed: nothing will change any more.")
    phase = serializers.CharField(help_text="While running: extracting, checking or storing.")
    phase_display = serializers.CharField()
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    percent = serializers.IntegerField()
    waiting_s = serializers.IntegerField(allow_null=True, help_text="Seconds since upload, while waiting for a worker.")
    report = SampleImportReportSerializer(allow_null=True, help_text="What was imported, once done.")
    problems = serializers.ListField(
        child=serializers.CharField(), help_text="Once failed: every problem, once each; nothing was imported."
    )
    problem_count = serializers.IntegerField()


def _job_body(request: Request, job: SampleImportJob) -> dict[str, Any]:
    return {
        **sample_import_job_state(job=job),
        "url": request.build_absolute_uri(reverse("api-sample-import-detail", kwargs={"job_id": job.pk})),
        "evaluated_model": job.evaluated_model_id,
        "evaluated_model_name": str(job.evaluated_model),
        "prompt_set": job.prompt_set_id,
        "prompt_set_name": job.prompt_set.slug,
        "samples_per_prompt": job.samples_per_prompt,
        "archive_name": job.archive_name,
        "manifest_name": job.manifest_name,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


@extend_schema_view(
    list=extend_schema(
        summary="The latest sample imports, newest first",
        responses={200: SampleImportJobOutputSerializer, **ERROR_RESPONSES},
    ),
    retrieve=extend_schema(
        summary="One sample import: poll it until `finished`",
        responses={200: SampleImportJobOutputSerializer, **NOT_FOUND, **ERROR_RESPONSES},
    ),
    create=extend_schema(
        summary="Import samples made elsewhere: a zip of <prompt position>/<k>.png, or of the images a CSV names",
        request={"multipart/form-data": SampleImportInputSerializer},
        parameters=[
            OpenApiParameter(
                "Location",
                OpenApiTypes.URI,
                OpenApiParameter.HEADER,
                response=[202],
                description="The job's URL, to poll.",
            )
        ],
        responses={
            202: OpenApiResponse(
                SampleImportJobOutputSerializer,
                description="Queued: a worker imports the upload, all or nothing. Poll `Location` until `finished`.",
            ),
            **BAD_REQUEST,
            **ERROR_RESPONSES,
        },
    ),
)
class SampleImportJobViewSet(ResearcherApiMixin, viewsets.GenericViewSet):
    serializer_class = SampleImportJobOutputSerializer
    lookup_url_kwarg = "job_id"
    parser_classes = [MultiPartParser]
    write_permissions = {"create": ADD_SAMPLE_PERMISSION}

    def get_queryset(self):
        return SampleImportJob.objects.select_related("evaluated_model", "prompt_set")

    def list(self, request: Request) -> Response:
        jobs = sample_import_job_rows()
        return Response(SampleImportJobOutputSerializer([_job_body(request, job) for job in jobs], many=True).data)

    def retrieve(self, request: Request, job_id: str) -> Response:
        return Response(SampleImportJobOutputSerializer(_job_body(request, self.get_object())).data)

    def create(self, request: Request) -> Response:
        serializer = SampleImportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            job = sample_import_job_submit(fields=serializer.validated_data, created_by=request.user)
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from exc
        body = SampleImportJobOutputSerializer(_job_body(request, job)).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})
