"""Results pages under /dashboard/: the results page and its chart as SVG and PNG; the power page."""

from django.urls import path

from drawbench.lazy_views import LazyView

# Imported on the first request, not with the URLs: the results code needs scipy and pandas (drawbench.lazy_views).
study_results_page = LazyView("drawbench.results.views.study_results_page")
study_results_chart = LazyView("drawbench.results.views.study_results_chart")
power_page = LazyView("drawbench.results.views.power_page")

app_name = "results"

urlpatterns = [
    path("studies/<int:study_id>/results/", study_results_page, name="study-results"),
    path("studies/<int:study_id>/results/chart.svg", study_results_chart, {"fmt": "svg"}, name="chart-svg"),
    path("studies/<int:study_id>/results/chart.png", study_results_chart, {"fmt": "png"}, name="chart-png"),
    path("power/", power_page, name="power"),
]
