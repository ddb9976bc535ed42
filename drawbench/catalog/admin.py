"""Admin for the catalog. Prompt sets and prompts come from files (`manage.py load_prompts`) and samples from
backends, so those are read-only here; evaluated models are edited by staff."""

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from drawbench.catalog.models import EvaluatedModel, Prompt, PromptSet, Sample


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(PromptSet)
class PromptSetAdmin(ReadOnlyAdmin):
    list_display = ["slug", "title", "prompt_count", "category_count", "source", "created_at"]
    search_fields = ["slug", "title"]
    readonly_fields = ["prompts_link"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PromptSet]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                prompt_count=Count("prompts"),
                category_count=Count("prompts__category", distinct=True),
            )
        )

    @admin.display(description="prompts", ordering="prompt_count")
    def prompt_count(self, obj: PromptSet) -> int:
        return obj.prompt_count

    @admin.display(description="categories", ordering="category_count")
    def category_count(self, obj: PromptSet) -> int:
        return obj.category_count

    @admin.display(description="prompts")
    def prompts_link(self, obj: PromptSet):
        url = reverse("admin:catalog_prompt_changelist") + f"?prompt_set__id__exact={obj.pk}"
        return format_html('<a href="{}">{} prompts</a>', url, obj.prompts.count())


@admin.register(Prompt)
class PromptAdmin(ReadOnlyAdmin):
    list_display = ["position", "text", "category", "prompt_set"]
    list_display_links = ["text"]
    list_filter = ["prompt_set", "category"]
    search_fields = ["text", "external_id"]
    list_select_related = ["prompt_set"]
    list_per_page = 200

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(EvaluatedModel)
class EvaluatedModelAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "backend", "sample_count", "created_at"]
    search_fields = ["name", "description"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[EvaluatedModel]:
        return super().get_queryset(request).annotate(sample_count=Count("samples"))

    @admin.display(description="samples", ordering="sample_count")
    def sample_count(self, obj: EvaluatedModel) -> int:
        return obj.sample_count


def _image_url(sample: Sample) -> str:
    """Through the staff-only image view, which works whatever the storage (no public media folder in production)."""
    return reverse("dashboard:sample-image", args=[sample.pk])


@admin.register(Sample)
class SampleAdmin(ReadOnlyAdmin):
    list_display = ["thumbnail", "evaluated_model", "prompt", "index", "seed", "width", "height", "created_at"]
    list_filter = ["evaluated_model", "prompt__prompt_set"]
    search_fields = ["prompt__text", "content_hash"]
    list_select_related = ["evaluated_model", "prompt"]
    readonly_fields = ["preview"]

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="image")
    def thumbnail(self, obj: Sample):
        return format_html('<img src="{}" alt="" style="max-height:64px;max-width:64px">', _image_url(obj))

    @admin.display(description="image")
    def preview(self, obj: Sample):
        return format_html('<img src="{}" alt="" style="max-width:512px">', _image_url(obj))
