from django.urls import path

from drawbench.dashboard import catalog_views, views

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
    path("models/", catalog_views.model_list, name="model-list"),
    path("models/new/", catalog_views.model_new, name="model-new"),
    path("models/<int:model_id>/edit/", catalog_views.model_edit, name="model-edit"),
    path("prompt-sets/", catalog_views.prompt_set_list, name="prompt-set-list"),
    path("prompt-sets/upload/", catalog_views.prompt_set_upload_view, name="prompt-set-upload"),
    path("samples/import/", catalog_views.sample_import, name="sample-import"),
    path("samples/import/<int:job_id>/", catalog_views.sample_import_job, name="sample-import-job"),
    path(
        "samples/import/<int:job_id>/progress.json",
        catalog_views.sample_import_job_progress,
        name="sample-import-job-progress",
    ),
    path("runs/", catalog_views.run_list, name="run-list"),
    path("runs/progress.json", catalog_views.run_list_progress, name="run-list-progress"),
    path("runs/new/", catalog_views.run_new, name="run-new"),
    path("runs/<int:run_id>/resume/", catalog_views.run_resume, name="generation-run-resume"),
    path("runs/<int:run_id>/cancel/", catalog_views.run_cancel, name="generation-run-cancel"),
]
