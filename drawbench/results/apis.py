"""Export APIs (researchers and analysts; read-only): a study's raw judgments, aggregated results, model ranking and
per-rater diagnostics, as JSON or CSV.

One APIView per operation. Each also exposes ``export(study=..., **options)`` (the validated input) and
``header()``, which the ``export_study`` management command calls with the same input serializer and renderers, so
the API and the command share one code path from the selector to the bytes.
"""

import datetime
import math
from typing import Any

import pandas as pd
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import exceptions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from drawbench.results import intervals, stats
from drawbench.results.renderers import CSVRenderer
from drawbench.results.selectors import judgments_frame, study_ranking, study_rater_diagnostics, study_results
from drawbench.studies.models import Rater, Study
from drawbench.studies.roles import CanViewResults

# Fixed width (always microseconds, always Z) so that pandas parses the column with parse_dates.
ISO_8601_UTC = "%Y-%m-%dT%H:%M:%S.%fZ"
EXPORT_RENDERERS = {"json": JSONRenderer, "csv": CSVRenderer}


class ExportInputSerializer(serializers.Serializer):
    include_excluded = serializers.BooleanField(
        default=False, help_text="Also return judgments flagged as excluded (left out by default)."
    )
    exclude_flagged_raters = serializers.BooleanField(
        default=False, help_text="Leave out every judgment of raters flagged by quality control (kept by default)."
    )


class ResultsInputSerializer(ExportInputSerializer):
    method = serializers.ChoiceField(
        choices=list(intervals.METHODS),
        default=stats.DEFAULT_INTERVAL_METHOD,
        help_text=(
            "Interval method for s and the shares. two_way_cluster_t (default) is calibrated by simulation; the "
            "bootstraps use B = 2000 and seed 5; wilson and goodman treat judgments as independent (reference only)."
        ),
    )


class RatersInputSerializer(serializers.Serializer):
    include_excluded = serializers.BooleanField(
        default=False, help_text="Also count judgments flagged as excluded (left out by default)."
    )
    platform_ids = serializers.BooleanField(
        default=False,
        help_text="Add each rater's crowd-platform ids (platform, participant, study and session ids): researchers "
        "only (studies.change_study); never in the judgments export or the release bundle.",
    )


# The raters export's columns that identify a rater on their crowd platform: personal data, for researchers only.
PLATFORM_ID_COLUMNS = ("platform", "platform_participant_id", "platform_study_id", "platform_session_id")
ERROR_PLATFORM_IDS_RESEARCHERS_ONLY = (
    "platform_ids: crowd-platform ids are for researchers (staff with studies.change_study); the export without them "
    "names raters by their pseudonymous id only."
)


class _StudyExportApi(APIView):
    """The shared plumbing of the exports: input, renderers, header, file name."""

    renderer_classes = [JSONRenderer, CSVRenderer]
    permission_classes = [CanViewResults]
    InputSerializer: type[serializers.Serializer] = ExportInputSerializer
    what = ""
    OutputSerializer: type[serializers.Serializer]

    @classmethod
    def export(cls, *, study: Study, **options: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    @classmethod
    def header(cls) -> list[str]:
        return list(cls.OutputSerializer().fields)

    @classmethod
    def filename(cls, *, study: Study, fmt: str) -> str:
        return f"drawbench-study-{study.pk}-{cls.what}.{fmt}"

    def get_renderer_context(self) -> dict[str, Any]:
        context = super().get_renderer_context()
        context["header"] = self.header()
        return context

    def export_response(self, request: Request, study_id: int) -> Response:
        input_serializer = self.InputSerializer(data=request.query_params)
        input_serializer.is_valid(raise_exception=True)
        study = get_object_or_404(Study, pk=study_id)
        data = _finite_or_null(self.export(study=study, **input_serializer.validated_data))
        filename = self.filename(study=study, fmt=request.accepted_renderer.format)
        return Response(data, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _finite_or_null(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Infinite or NaN numbers (df = inf of a normal-reference interval) as null: JSON has no such numbers."""
    return [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()} for row in rows]


class StudyJudgmentListApi(_StudyExportApi):
    """Every judgment of a study, one row each, in model space ("A" prefers model_a)."""

    what = "judgments"

    @extend_schema_serializer(component_name="StudyJudgmentRow")
    class OutputSerializer(serializers.Serializer):
        study_id = serializers.IntegerField()
        judgment_id = serializers.IntegerField()
        prompt_id = serializers.IntegerField()
        prompt_position = serializers.IntegerField()
        prompt = serializers.CharField()
        category = serializers.CharField()
        model_a = serializers.CharField(help_text="name@version")
        model_b = serializers.CharField(help_text="name@version")
        model_left = serializers.CharField(help_text="The model whose set was shown on the left.")
        question = serializers.CharField()
        choice = serializers.ChoiceField(choices=["A", "tie", "B"])
        rater_id = serializers.CharField(help_text="The rater's public id.")
        response_time_ms = serializers.IntegerField()
        created_at = serializers.DateTimeField(format=ISO_8601_UTC, default_timezone=datetime.UTC)
        excluded = serializers.BooleanField()
        rater_flagged = serializers.BooleanField(help_text="The rater is flagged by quality control.")
        assignment_id = serializers.IntegerField(help_text="The item served to the rater.")
        left_sample_ids = serializers.CharField(help_text="JSON list: the left set's sample ids, displayed order.")
        right_sample_ids = serializers.CharField(help_text="JSON list: the right set's sample ids, displayed order.")
        served_at = serializers.DateTimeField(format=ISO_8601_UTC, default_timezone=datetime.UTC)
        shown_at = serializers.DateTimeField(format=ISO_8601_UTC, default_timezone=datetime.UTC, allow_null=True)
        is_gold = serializers.BooleanField()
        is_practice = serializers.BooleanField()

    @classmethod
    def export(
        cls, *, study: Study, include_excluded: bool, exclude_flagged_raters: bool = False
    ) -> list[dict[str, Any]]:
        frame = judgments_frame(
            study=study, include_excluded=include_excluded, exclude_flagged_raters=exclude_flagged_raters
        )
        records = frame.to_dict("records")
        for record in records:
            if record["shown_at"] is pd.NaT:
                record["shown_at"] = None
        return cls.OutputSerializer(records, many=True).data

    @extend_schema(parameters=[ExportInputSerializer], responses=OutputSerializer(many=True))
    def get(self, request: Request, study_id: int) -> Response:
        return self.export_response(request, study_id)


class StudyResultsApi(_StudyExportApi):
    """Aggregated results: one row per question × pair of models × scope (overall, then each category), with the
    interval of s and of each share by ``method`` (and how it was computed), agreement and position bias."""

    what = "results"
    InputSerializer = ResultsInputSerializer

    @extend_schema_serializer(component_name="StudyResultRow")
    class OutputSerializer(serializers.Serializer):
        study_id = serializers.IntegerField()
        question = serializers.CharField()
        model_a = serializers.CharField(help_text="name@version; 'A' counts prefer this model.")
        model_b = serializers.CharField(help_text="name@version")
        scope = serializers.ChoiceField(choices=["overall", "category"])
        category = serializers.CharField(allow_null=True, help_text="Null for the overall scope.")
        exclude_flagged_raters = serializers.BooleanField(
            help_text="Whether judgments of raters flagged by quality control were left out of this row."
        )
        n = serializers.IntegerField(help_text="Judgments.")
        n_prompts = serializers.IntegerField()
        n_raters = serializers.IntegerField()
        count_a = serializers.IntegerField()
        count_tie = serializers.IntegerField()
        count_b = serializers.IntegerField()
        share_a = serializers.FloatField()
        share_tie = serializers.FloatField()
        share_b = serializers.FloatField()
        share_a_ci_low = serializers.FloatField(allow_null=True, help_text="Interval of the share, by `method`.")
        share_a_ci_high = serializers.FloatField(allow_null=True)
        share_tie_ci_low = serializers.FloatField(allow_null=True)
        share_tie_ci_high = serializers.FloatField(allow_null=True)
        share_b_ci_low = serializers.FloatField(allow_null=True)
        share_b_ci_high = serializers.FloatField(allow_null=True)
        score = serializers.FloatField(help_text="Preference score s = A + ½·tie.")
        ci_low = serializers.FloatField(
            allow_null=True, help_text="Interval for s, by `method`; null where undefined (a single prompt)."
        )
        ci_high = serializers.FloatField(allow_null=True)
        se = serializers.FloatField(
            allow_null=True,
            help_text="Standard error of s; null where undefined (no variation, one prompt) and for Wilson, Goodman.",
        )
        df = serializers.FloatField(allow_null=True, help_text="Degrees of freedom of a t interval, else null.")
        n_eff = serializers.FloatField(
            allow_null=True,
            help_text=(
                "Design-effect-adjusted effective n behind the score interval (Wilson's n, with t, on the s(1 − s) "
                "scale: above n where ties make the judgments vary less than 0/1 answers would), else null."
            ),
        )
        method = serializers.CharField(help_text="How the intervals of this row were computed.")
        level = serializers.FloatField(help_text="Confidence level of every interval of this row.")
        B = serializers.IntegerField(allow_null=True, help_text="Bootstrap resamples; null for analytic methods.")
        seed = serializers.IntegerField(allow_null=True, help_text="Bootstrap seed; null for analytic methods.")
        target = serializers.CharField(help_text="The population the interval is about.")
        tie_convention = serializers.CharField(
            help_text="ties_half: a tie scores ½ for each model (s = share A + ½·share tie)."
        )
        decisive_win_rate = serializers.FloatField(allow_null=True, help_text="A / (A + B).")
        low_precision = serializers.BooleanField(
            help_text="The interval is wider than ±10 points or rests on fewer than 5 degrees of freedom."
        )
        alpha_nominal = serializers.FloatField(allow_null=True, help_text="Krippendorff's α, nominal.")
        alpha_ordinal = serializers.FloatField(allow_null=True, help_text="Krippendorff's α, ordinal A < tie < B.")
        raw_agreement = serializers.FloatField(allow_null=True, help_text="Agreeing pairs of judgments of a prompt.")
        agreement_units = serializers.IntegerField(help_text="Prompts with two judgments or more.")
        n_decisive = serializers.IntegerField(help_text="Judgments preferring one side.")
        left_rate = serializers.FloatField(allow_null=True, help_text="Position bias: P(left | decisive).")
        left_rate_low = serializers.FloatField(allow_null=True)
        left_rate_high = serializers.FloatField(allow_null=True)
        left_rate_method = serializers.CharField(allow_null=True, help_text="How the left-rate interval was made.")

    @classmethod
    def export(
        cls,
        *,
        study: Study,
        include_excluded: bool,
        exclude_flagged_raters: bool = False,
        method: str = stats.DEFAULT_INTERVAL_METHOD,
    ) -> list[dict[str, Any]]:
        rows = study_results(
            study=study,
            include_excluded=include_excluded,
            exclude_flagged_raters=exclude_flagged_raters,
            method=method,
            with_ranking=False,
            with_raters=False,
        )["rows"]
        return cls.OutputSerializer(rows, many=True).data

    @extend_schema(parameters=[ResultsInputSerializer], responses=OutputSerializer(many=True))
    def get(self, request: Request, study_id: int) -> Response:
        return self.export_response(request, study_id)


class StudyRankingApi(_StudyExportApi):
    """Bradley–Terry and Davidson rankings of a study's models (three or more; empty otherwise): one row per
    question × fit × model, strengths with prompt-cluster bootstrap intervals, ranks from interval overlap."""

    what = "ranking"

    @extend_schema_serializer(component_name="StudyRankingRow")
    class OutputSerializer(serializers.Serializer):
        study_id = serializers.IntegerField()
        question = serializers.CharField()
        exclude_flagged_raters = serializers.BooleanField()
        pair_model = serializers.ChoiceField(
            choices=list(stats.PAIR_MODELS), help_text="bradley_terry (a tie scores ½ for each model) or davidson."
        )
        evaluated_model = serializers.CharField(help_text="name@version")
        strength = serializers.FloatField(help_text="Log strength, sum zero over the models.")
        strength_low = serializers.FloatField()
        strength_high = serializers.FloatField()
        rank = serializers.IntegerField(help_text="1 + models whose interval lies wholly above this one's.")
        rank_low = serializers.IntegerField(help_text="Best rank the intervals allow.")
        rank_high = serializers.IntegerField(help_text="Worst rank the intervals allow.")
        tier = serializers.IntegerField(
            help_text=(
                "Tier (1 is the top): walking down by strength, a model opens a new tier when its interval lies "
                "wholly below that of the first model of the current tier."
            )
        )
        n_to_flip_next = serializers.IntegerField(
            allow_null=True,
            help_text="Fewest judgments whose removal puts the next model below above this one (refit-confirmed); "
            "null for the last model or where no removal does.",
        )
        share_to_flip_next = serializers.FloatField(allow_null=True, help_text="n_to_flip_next over all judgments.")
        penalised = serializers.BooleanField(
            help_text="No finite MLE: a penalised fit (one virtual judgment per pair)."
        )
        separated_resamples = serializers.IntegerField(
            help_text="Bootstrap resamples without a finite MLE, refitted penalised."
        )
        tie_parameter = serializers.FloatField(allow_null=True, help_text="Davidson's ν; null for Bradley–Terry.")
        tie_parameter_low = serializers.FloatField(allow_null=True)
        tie_parameter_high = serializers.FloatField(allow_null=True)
        method = serializers.CharField(help_text="How the intervals were computed.")
        level = serializers.FloatField()
        B = serializers.IntegerField()
        seed = serializers.IntegerField()
        target = serializers.CharField()
        tie_convention = serializers.CharField()

    @classmethod
    def export(
        cls, *, study: Study, include_excluded: bool, exclude_flagged_raters: bool = False
    ) -> list[dict[str, Any]]:
        rows = study_ranking(
            study=study, include_excluded=include_excluded, exclude_flagged_raters=exclude_flagged_raters
        )
        return cls.OutputSerializer(rows, many=True).data

    @extend_schema(parameters=[ExportInputSerializer], responses=OutputSerializer(many=True))
    def get(self, request: Request, study_id: int) -> Response:
        return self.export_response(request, study_id)


class StudyRaterDiagnosticsApi(_StudyExportApi):
    """Per-rater diagnostics, one row per rater with judgments (flagged raters included and marked): judgments,
    tie rate, left-side rate P(left | decisive) with its interval, median response time."""

    what = "raters"
    InputSerializer = RatersInputSerializer

    @extend_schema_serializer(component_name="StudyRaterRow")
    class OutputSerializer(serializers.Serializer):
        study_id = serializers.IntegerField()
        rater_id = serializers.CharField(help_text="The rater's public id, as in the judgments export.")
        flagged = serializers.BooleanField(help_text="Flagged by quality control.")
        flag_reasons = serializers.CharField(allow_blank=True, help_text="Flag reasons, ';'-separated.")
        n = serializers.IntegerField(help_text="Judgments (all questions).")
        n_decisive = serializers.IntegerField()
        tie_rate = serializers.FloatField()
        left_rate = serializers.FloatField(allow_null=True, help_text="P(left | decisive); null without any.")
        left_low = serializers.FloatField(allow_null=True)
        left_high = serializers.FloatField(allow_null=True)
        left_method = serializers.CharField(help_text="Wilson on the rater's prompt-clustered effective n.")
        level = serializers.FloatField()
        median_response_ms = serializers.FloatField(allow_null=True)
        # With ?platform_ids=1 only (researchers): who the rater is on their crowd platform.
        platform = serializers.CharField(required=False, help_text="prolific, mturk or generic (platform_ids=1).")
        platform_participant_id = serializers.CharField(
            required=False, allow_blank=True, help_text="PROLIFIC_PID / workerId / the link's id (platform_ids=1)."
        )
        platform_study_id = serializers.CharField(
            required=False, allow_blank=True, help_text="STUDY_ID / hitId (platform_ids=1)."
        )
        platform_session_id = serializers.CharField(
            required=False, allow_blank=True, help_text="SESSION_ID / assignmentId (platform_ids=1)."
        )

    platform_ids = False

    @classmethod
    def header(cls) -> list[str]:
        return [name for name in cls.OutputSerializer().fields if name not in PLATFORM_ID_COLUMNS]

    def get_renderer_context(self) -> dict[str, Any]:
        context = super().get_renderer_context()
        if self.platform_ids:
            context["header"] = [*context["header"], *PLATFORM_ID_COLUMNS]
        return context

    @classmethod
    def export(cls, *, study: Study, include_excluded: bool, platform_ids: bool = False) -> list[dict[str, Any]]:
        rows = study_rater_diagnostics(study=study, include_excluded=include_excluded)
        if platform_ids:
            who = {
                public_id: {
                    "platform": platform,
                    "platform_participant_id": external_id,
                    "platform_study_id": study_id,
                    "platform_session_id": session_id,
                }
                for public_id, platform, external_id, study_id, session_id in Rater.objects.filter(
                    study=study
                ).values_list("public_id", "platform", "external_id", "platform_study_id", "platform_session_id")
            }
            rows = [{**row, **who[row["rater_id"]]} for row in rows]
        return cls.OutputSerializer(rows, many=True).data

    @extend_schema(parameters=[RatersInputSerializer], responses=OutputSerializer(many=True))
    def get(self, request: Request, study_id: int) -> Response:
        self.platform_ids = str(request.query_params.get("platform_ids", "")).lower() in ("1", "true", "yes", "on")
        if self.platform_ids and not request.user.has_perm("studies.change_study"):
            raise exceptions.PermissionDenied(ERROR_PLATFORM_IDS_RESEARCHERS_ONLY)
        return self.export_response(request, study_id)
