"""Export API: /api/studies/<id>/judgments/, results/, ranking/ and raters/ (JSON, or CSV with ?format=csv)."""

from django.urls import path

from drawbench.lazy_views import LazyView


def _api(name: str) -> LazyView:
    """Imported on the first request (or schema), not with the URLs: the results code needs scipy and pandas."""
    return LazyView(f"drawbench.results.apis.{name}", as_view=True)


urlpatterns = [
    path("studies/<int:study_id>/judgments/", _api("StudyJudgmentListApi"), name="api-study-judgments"),
    path("studies/<int:study_id>/results/", _api("StudyResultsApi"), name="api-study-results"),
    path("studies/<int:study_id>/ranking/", _api("StudyRankingApi"), name="api-study-ranking"),
    path("studies/<int:study_id>/raters/", _api("StudyRaterDiagnosticsApi"), name="api-study-raters"),
]
