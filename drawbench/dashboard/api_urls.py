"""Researcher API under /api/: studies/ (with open/ and close/), models/, prompt-sets/, generation-runs/ (with
resume/ and cancel/) and sample-imports/.

Plain path() routes with int converters (rather than a DRF router's regexes), as every other route of the site.
"""

from django.urls import path

from drawbench.dashboard.apis import EvaluatedModelViewSet, GenerationRunViewSet, PromptSetViewSet, StudyViewSet
from drawbench.dashboard.crowd_apis import StudyApprovalsApi, StudyBonusesApi, StudyEstimateApi
from drawbench.dashboard.import_apis import SampleImportJobViewSet

LIST = {"get": "list"}
LIST_CREATE = {"get": "list", "post": "create"}
DETAIL = {"get": "retrieve"}

urlpatterns = [
    path("studies/", StudyViewSet.as_view({"get": "list", "post": "create"}), name="api-study-list"),
    path("studies/<int:study_id>/", StudyViewSet.as_view(DETAIL), name="api-study-detail"),
    path("studies/<int:study_id>/open/", StudyViewSet.as_view({"post": "open"}), name="api-study-open"),
    path("studies/<int:study_id>/close/", StudyViewSet.as_view({"post": "close"}), name="api-study-close"),
    path("studies/<int:study_id>/approvals/", StudyApprovalsApi.as_view(), name="api-study-approvals"),
    path("studies/<int:study_id>/bonuses/", StudyBonusesApi.as_view(), name="api-study-bonuses"),
    path("studies/<int:study_id>/estimate/", StudyEstimateApi.as_view(), name="api-study-estimate"),
    path("models/", EvaluatedModelViewSet.as_view(LIST_CREATE), name="api-model-list"),
    path(
        "models/<int:model_id>/",
        EvaluatedModelViewSet.as_view({"get": "retrieve", "patch": "partial_update"}),
        name="api-model-detail",
    ),
    path("prompt-sets/", PromptSetViewSet.as_view(LIST_CREATE), name="api-prompt-set-list"),
    path("prompt-sets/<int:prompt_set_id>/", PromptSetViewSet.as_view(DETAIL), name="api-prompt-set-detail"),
    path("generation-runs/", GenerationRunViewSet.as_view(LIST_CREATE), name="api-generation-run-list"),
    path("generation-runs/<int:run_id>/", GenerationRunViewSet.as_view(DETAIL), name="api-generation-run-detail"),
    path(
        "generation-runs/<int:run_id>/resume/",
        GenerationRunViewSet.as_view({"post": "resume"}),
        name="api-generation-run-resume",
    ),
    path(
        "generation-runs/<int:run_id>/cancel/",
        GenerationRunViewSet.as_view({"post": "cancel"}),
        name="api-generation-run-cancel",
    ),
    path("sample-imports/", SampleImportJobViewSet.as_view(LIST_CREATE), name="api-sample-import-list"),
    path("sample-imports/<int:job_id>/", SampleImportJobViewSet.as_view(DETAIL), name="api-sample-import-detail"),
]
