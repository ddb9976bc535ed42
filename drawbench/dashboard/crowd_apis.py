"""Crowd operations API: approval and bonus files in Prolific's and MTurk's own formats, and a rater session's time
and cost. Researchers only (the files carry platform ids): staff with studies.change_study.

GET /api/studies/<id>/approvals/?platform=prolific|mturk[&format=csv]
GET /api/studies/<id>/bonuses/?platform=…&amount=1.50[&reason=…][&format=csv]
GET /api/studies/<id>/estimate/[?hourly_pay=12]
"""

from dataclasses import asdict
from decimal import Decimal

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from drawbench.results.renderers import CSVRenderer
from drawbench.studies import crowd
from drawbench.studies.models import Rater, Study

CROWD_PLATFORMS = [Rater.Platform.PROLIFIC, Rater.Platform.MTURK]
ERROR_RESEARCHER_ONLY = "Approval files carry platform ids: they are for researchers (staff with studies.change_study)."


class IsResearcher(BasePermission):
    message = ERROR_RESEARCHER_ONLY

    def has_permission(self, request: Request, view) -> bool:
        user = request.user
        return bool(user and user.is_active and user.is_staff and user.has_perm("studies.change_study"))


class PlatformInput(serializers.Serializer):
    platform = serializers.ChoiceField(choices=CROWD_PLATFORMS, help_text="Whose file format: prolific or mturk.")


class BonusInput(PlatformInput):
    amount = serializers.DecimalField(max_digits=8, decimal_places=2, min_value=Decimal("0.01"))
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True)


def _file_rows(name: str, columns: dict[str, list[str]]):
    """The schema of a crowd file's rows: every platform's columns (each file has its own platform's)."""
    every = dict.fromkeys(column for platform_columns in columns.values() for column in platform_columns)
    return inline_serializer(name=name, fields={c: serializers.CharField(required=False) for c in every}, many=True)


class EstimateOutput(serializers.Serializer):
    items_per_rater = serializers.IntegerField()
    seconds_per_item = serializers.FloatField()
    source = serializers.CharField(help_text="pilot median, or default")
    pilot_items = serializers.IntegerField()
    minutes_per_rater = serializers.FloatField()
    hourly_pay = serializers.FloatField(allow_null=True)
    cost_per_rater = serializers.FloatField(allow_null=True)
    raters_needed = serializers.IntegerField()
    total_cost = serializers.FloatField(allow_null=True)


class _CrowdFileApi(APIView):
    renderer_classes = [JSONRenderer, CSVRenderer]
    permission_classes = [IsResearcher]
    what = ""

    def file_response(self, request: Request, study: Study, platform: str, rows: list[dict], columns: list[str]):
        fmt = request.accepted_renderer.format
        name = f"drawbench-study-{study.pk}-{self.what}-{platform}.{fmt}"
        self.header = columns
        return Response(rows, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def get_renderer_context(self):
        context = super().get_renderer_context()
        context["header"] = getattr(self, "header", None)
        return context


class StudyApprovalsApi(_CrowdFileApi):
    """Approve or reject each rater whose work is over, in the platform's own upload format; a flagged rater is
    rejected with the flag's reason."""

    what = "approvals"

    @extend_schema(parameters=[PlatformInput], responses=_file_rows("CrowdApprovalRow", crowd.PLATFORM_COLUMNS))
    def get(self, request: Request, study_id: int) -> Response:
        params = PlatformInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        platform = params.validated_data["platform"]
        study = get_object_or_404(Study, pk=study_id)
        rows = crowd.approval_rows(study=study, platform=platform)
        return self.file_response(request, study, platform, rows, crowd.PLATFORM_COLUMNS[platform])


class StudyBonusesApi(_CrowdFileApi):
    """A bonus of `amount` for every approved rater, in the platform's bulk-bonus format."""

    what = "bonuses"

    @extend_schema(parameters=[BonusInput], responses=_file_rows("CrowdBonusRow", crowd.BONUS_COLUMNS))
    def get(self, request: Request, study_id: int) -> Response:
        params = BonusInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        study = get_object_or_404(Study, pk=study_id)
        rows = crowd.bonus_rows(
            study=study, platform=data["platform"], amount=f"{data['amount']:.2f}", reason=data.get("reason", "")
        )
        return self.file_response(request, study, data["platform"], rows, crowd.BONUS_COLUMNS[data["platform"]])


class EstimateInput(serializers.Serializer):
    hourly_pay = serializers.FloatField(min_value=0, max_value=10_000, required=False)


class StudyEstimateApi(APIView):
    """Minutes per rater and cost at an hourly pay: from the study's own median server time per item once a pilot
    has answered enough items, else a stated default."""

    permission_classes = [IsResearcher]

    @extend_schema(parameters=[EstimateInput], responses=EstimateOutput)
    def get(self, request: Request, study_id: int) -> Response:
        params = EstimateInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        study = get_object_or_404(Study, pk=study_id)
        estimate = crowd.time_estimate(study=study, hourly_pay=params.validated_data.get("hourly_pay"))
        return Response(asdict(estimate))
