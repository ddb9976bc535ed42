"""Admin for the dashboard's sample import jobs: read-only (the dashboard creates them, a worker runs them)."""

from django.contrib import admin
from django.http import HttpRequest

from drawbench.dashboard.models import SampleImportJob


@admin.register(SampleImportJob)
class SampleImportJobAdmin(admin.ModelAdmin):
    list_display = ["pk", "evaluated_model", "prompt_set", "archive_name", "status", "done", "total", "created_at"]
    list_filter = ["status"]
    list_select_related = ["evaluated_model", "prompt_set"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
