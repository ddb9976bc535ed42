"""Django admin for studies and what raters did. Judgments are read-only here, as everywhere: they are immutable.

Studies are created on the dashboard (studies.services.study_create builds their comparisons), not here; the admin
can rename them, edit what raters read (instructions, consent), tune quality control and completion, open and close
them, make their gold trials and refresh their raters' quality flags. Gold trials, answers to them and flags are
read-only: services write them.
"""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils.html import format_html

from drawbench.studies.models import (
    Assignment,
    Comparison,
    ControlAnswer,
    GoldTrial,
    Judgment,
    JudgmentExclusion,
    Rater,
    RaterFlag,
    Study,
)
from drawbench.studies.services.gold import gold_trials_prepare
from drawbench.studies.services.raters import rater_flags_refresh
from drawbench.studies.services.studies import study_close, study_open


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services: visible, never added, changed or deleted by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _run_on_each(modeladmin, request, queryset, service, done: str) -> None:
    for study in queryset:
        try:
            service(study=study)
        except ValidationError as exc:
            modeladmin.message_user(request, f"{study}: {' '.join(exc.messages)}", level=messages.ERROR)
        else:
            modeladmin.message_user(request, f"{study}: {done}.", level=messages.SUCCESS)


@admin.action(description="Open the selected studies for rating")
def open_studies(modeladmin, request, queryset) -> None:
    _run_on_each(modeladmin, request, queryset, study_open, "opened")


@admin.action(description="Close the selected studies")
def close_studies(modeladmin, request, queryset) -> None:
    _run_on_each(modeladmin, request, queryset, study_close, "closed")


@admin.action(description="Make the gold trials of the selected studies (once)")
def prepare_gold_trials(modeladmin, request, queryset) -> None:
    _run_on_each(modeladmin, request, queryset, gold_trials_prepare, "gold trials ready")


@admin.action(description="Refresh the quality flags of the selected studies' raters")
def refresh_rater_flags(modeladmin, request, queryset) -> None:
    _run_on_each(modeladmin, request, queryset, rater_flags_refresh, "rater flags refreshed")


# Editable after creation: what raters read and how quality is controlled. What was compared is not.
STUDY_EDITABLE_FIELDS = (
    "name",
    "instructions",
    "consent_text",
    "practice_items",
    "gold_rate",
    "min_gold_accuracy",
    "min_response_time_ms",
    "assignment_timeout_s",
    "completion_code",
    "min_answers_for_code",
    "completion_url",
)


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "prompt_set", "samples_per_side", "ratings_per_comparison", "created_at"]
    list_filter = ["status", "prompt_set"]
    search_fields = ["name"]
    actions = [open_studies, close_studies, prepare_gold_trials, refresh_rater_flags]
    # A completion URL typed without a scheme is a crowd platform's page: https.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fields = [
        *STUDY_EDITABLE_FIELDS,
        "status",
        "rater_link",
        "prompt_set",
        "categories",
        "evaluated_models",
        "questions",
        "samples_per_side",
        "ratings_per_comparison",
        "max_comparisons_per_rater",
        "created_by",
        "created_at",
        "opened_at",
        "closed_at",
    ]
    readonly_fields = [f for f in fields if f not in STUDY_EDITABLE_FIELDS]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Rater link")
    def rater_link(self, obj: Study) -> str:
        url = reverse("rater:study-entry", args=[obj.rater_token])
        return format_html('<a href="{}">{}</a>', url, url)


@admin.register(Comparison)
class ComparisonAdmin(ReadOnlyAdmin):
    list_display = ["id", "study", "prompt", "model_a", "model_b"]
    list_filter = ["study"]
    list_select_related = ["study", "prompt", "model_a", "model_b"]


class RaterFlagInline(admin.TabularInline):
    model = RaterFlag
    fields = ["reason", "detail", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Rater)
class RaterAdmin(ReadOnlyAdmin):
    list_display = ["id", "study", "platform", "external_id", "created_at", "completed_at", "flag_list"]
    list_filter = ["study", "platform", "flags__reason"]
    search_fields = ["external_id", "public_id"]
    list_select_related = ["study"]
    exclude = ["access_token"]
    inlines = [RaterFlagInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("flags")

    @admin.display(description="Flags")
    def flag_list(self, obj: Rater) -> str:
        return ", ".join(flag.get_reason_display() for flag in obj.flags.all())


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "rater", "kind", "comparison", "left_model", "served_at", "completed_at", "released_at"]
    list_filter = ["rater__study", "kind"]
    list_select_related = ["rater", "comparison", "left_model"]


@admin.register(GoldTrial)
class GoldTrialAdmin(ReadOnlyAdmin):
    list_display = ["id", "study", "kind", "prompt", "created_at"]
    list_filter = ["study", "kind"]
    list_select_related = ["study", "prompt"]


@admin.register(ControlAnswer)
class ControlAnswerAdmin(ReadOnlyAdmin):
    list_display = ["id", "rater", "gold_trial", "practice", "question", "choice", "expected", "correct", "created_at"]
    list_filter = ["gold_trial__study", "practice", "correct"]
    list_select_related = ["rater", "gold_trial"]


@admin.register(RaterFlag)
class RaterFlagAdmin(ReadOnlyAdmin):
    list_display = ["rater", "reason", "detail", "created_at"]
    list_filter = ["rater__study", "reason"]
    list_select_related = ["rater"]


@admin.register(Judgment)
class JudgmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "comparison", "rater", "question", "choice", "left_model", "response_time_ms", "created_at"]
    list_filter = ["comparison__study", "question", "choice"]
    list_select_related = ["comparison", "rater", "left_model"]


@admin.register(JudgmentExclusion)
class JudgmentExclusionAdmin(admin.ModelAdmin):
    """Excluding a judgment is a flag beside it; the judgment itself stays."""

    list_display = ["judgment", "reason", "created_by", "created_at"]
    raw_id_fields = ["judgment"]
    readonly_fields = ["created_by", "created_at"]

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
