from django.urls import path

from drawbench.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.study_list, name="study-list"),
    path("studies/new/", views.study_new, name="study-new"),
    path("studies/<int:study_id>/", views.study_detail, name="study-detail"),
    path("studies/<int:study_id>/progress.json", views.study_progress, name="study-progress"),
    path("studies/<int:study_id>/generate/", views.study_generate, name="study-generate"),
    path("studies/<int:study_id>/open/", views.study_open_view, name="study-open"),
    path("studies/<int:study_id>/close/", views.study_close_view, name="study-close"),
    path("studies/<int:study_id>/runs/<int:run_id>/resume/", views.generation_run_resume_view, name="run-resume"),
    path("studies/<int:study_id>/runs/<int:run_id>/cancel/", views.generation_run_cancel_view, name="run-cancel"),
    path("samples/<int:sample_id>.png", views.sample_image, name="sample-image"),
]
