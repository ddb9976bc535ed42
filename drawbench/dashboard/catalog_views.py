"""The dashboard's catalog pages: evaluated models, prompt sets, sample imports and generation runs.

Staff read; each write needs its model permission (catalog.add_evaluatedmodel, catalog.change_evaluatedmodel,
catalog.add_promptset, catalog.add_sample, generation.add_generationrun, generation.change_generationrun), which
the researcher group holds (drawbench.studies.roles). A sample import is a job: the upload is kept in storage and a
Celery worker (on the cpu queue) runs it, all or nothing; the job's page polls its progress (extracting, checking
each image, storing) and then says what was imported or lists every problem once.
"""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from drawbench.catalog.models import EvaluatedModel, PromptSet
from drawbench.dashboard.catalog_forms import (
    EvaluatedModelForm,
    GenerationRunStartForm,
    PromptSetUploadForm,
    SampleImportForm,
)
from drawbench.dashboard.catalog_selectors import (
    evaluated_model_rows,
    generation_run_rows,
    known_backend_keys,
    prompt_set_rows,
    sample_import_job_rows,
    sample_import_job_state,
)
from drawbench.dashboard.catalog_services import (
    evaluated_model_create,
    evaluated_model_update,
    generation_run_create_and_start,
    prompt_set_upload,
    sample_import_job_submit,
)
from drawbench.dashboard.models import SampleImportJob
from drawbench.dashboard.permissions import (
    ADD_MODEL_PERMISSION,
    ADD_PROMPT_SET_PERMISSION,
    ADD_RUN_PERMISSION,
    ADD_SAMPLE_PERMISSION,
    CHANGE_MODEL_PERMISSION,
    CHANGE_PROMPT_SET_PERMISSION,
    CHANGE_RUN_PERMISSION,
)
from drawbench.dashboard.views import researcher_permission_required
from drawbench.generation.models import GenerationRun
from drawbench.generation.services import generation_run_cancel, generation_run_resume


def _add_service_errors(form, exc: ValidationError) -> None:
    """A service's errors on the form: by field where the form has that field, else at the top."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            for message in errors:
                form.add_error(field if field in form.fields else None, message)
    else:
        for message in exc.messages:
            form.add_error(None, message)


# --- models ---------------------------------------------------------------------------------------------------


@staff_member_required
def model_list(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/catalog/model_list.html", {"rows": evaluated_model_rows()})


def _model_form_page(request: HttpRequest, form: EvaluatedModelForm, model: EvaluatedModel | None) -> HttpResponse:
    return render(
        request,
        "dashboard/catalog/model_form.html",
        {"form": form, "model": model, "backends": known_backend_keys()},
    )


@researcher_permission_required(ADD_MODEL_PERMISSION)
def model_new(request: HttpRequest) -> HttpResponse:
    form = EvaluatedModelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            model = evaluated_model_create(**form.cleaned_data)
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            messages.success(request, f"Model {model} created.")
            return redirect("dashboard:model-list")
    return _model_form_page(request, form, None)


@researcher_permission_required(CHANGE_MODEL_PERMISSION)
def model_edit(request: HttpRequest, model_id: int) -> HttpResponse:
    model = get_object_or_404(EvaluatedModel, pk=model_id)
    form = EvaluatedModelForm(request.POST or None, instance=model)
    if request.method == "POST" and form.is_valid():
        try:
            model = evaluated_model_update(model=model, **form.cleaned_data)
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            messages.success(request, f"Model {model} saved.")
            return redirect("dashboard:model-list")
    return _model_form_page(request, form, model)


# --- prompt sets ----------------------------------------------------------------------------------------------


@staff_member_required
def prompt_set_list(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/catalog/prompt_set_list.html", {"rows": prompt_set_rows()})


@researcher_permission_required(ADD_PROMPT_SET_PERMISSION)
def prompt_set_upload_view(request: HttpRequest) -> HttpResponse:
    form = PromptSetUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        slug = form.cleaned_data["slug"]
        if PromptSet.objects.filter(slug=slug).exists() and not request.user.has_perm(CHANGE_PROMPT_SET_PERMISSION):
            raise PermissionDenied(f"Prompt set '{slug}' exists; updating it needs {CHANGE_PROMPT_SET_PERMISSION}.")
        upload = form.cleaned_data["file"]
        try:
            result, warnings = prompt_set_upload(
                file=upload, file_name=upload.name, slug=slug, title=form.cleaned_data["title"]
            )
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            verb = "created" if result.prompt_set_created else "updated"
            messages.success(
                request,
                f"Prompt set '{result.prompt_set.slug}' {verb} from {upload.name}: {result.created} new, "
                f"{result.updated} changed, {result.unchanged} unchanged, {result.deleted} removed.",
            )
            for warning in warnings:
                messages.warning(request, f"warning: {warning}")
            return redirect("dashboard:prompt-set-list")
    return render(request, "dashboard/catalog/prompt_set_upload.html", {"form": form})


# --- sample imports -------------------------------------------------------------------------------------------


@researcher_permission_required(ADD_SAMPLE_PERMISSION)
def sample_import(request: HttpRequest) -> HttpResponse:
    """The upload form (and the latest imports); a valid upload becomes a job that a worker runs."""
    form = SampleImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            job = sample_import_job_submit(fields=form.cleaned_data, created_by=request.user)
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            return redirect("dashboard:sample-import-job", job_id=job.pk)
    return render(request, "dashboard/catalog/sample_import.html", {"form": form, "jobs": sample_import_job_rows()})


@staff_member_required
def sample_import_job(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(SampleImportJob.objects.select_related("evaluated_model", "prompt_set"), pk=job_id)
    return render(
        request,
        "dashboard/catalog/sample_import_job.html",
        {"job": job, "state": sample_import_job_state(job=job)},
    )


@staff_member_required
def sample_import_job_progress(request: HttpRequest, job_id: int) -> JsonResponse:
    job = get_object_or_404(SampleImportJob, pk=job_id)
    return JsonResponse(sample_import_job_state(job=job))


# --- generation runs ------------------------------------------------------------------------------------------


@staff_member_required
def run_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/catalog/run_list.html",
        {"rows": generation_run_rows()},
    )


@staff_member_required
def run_list_progress(request: HttpRequest) -> JsonResponse:
    """The runs page's poll: each listed run's status, done/total and failures, and which actions apply."""
    keys = ("status", "done", "total", "failed", "can_resume", "can_cancel")
    rows = [{"id": row["run"].pk, **{key: row[key] for key in keys}} for row in generation_run_rows()]
    return JsonResponse({"runs": rows})


@researcher_permission_required(ADD_RUN_PERMISSION)
def run_new(request: HttpRequest) -> HttpResponse:
    form = GenerationRunStartForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            run = generation_run_create_and_start(**form.cleaned_data)
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            messages.success(request, f"Run {run.pk} started: {run.total} samples of {run.evaluated_model}.")
            return redirect("dashboard:run-list")
    return render(request, "dashboard/catalog/run_new.html", {"form": form})


def _run_action(request: HttpRequest, run_id: int, action, done: str) -> HttpResponse:
    run = get_object_or_404(GenerationRun, pk=run_id)
    try:
        action(run=run)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    else:
        messages.success(request, done.format(run=run))
    return redirect("dashboard:run-list")


@researcher_permission_required(CHANGE_RUN_PERMISSION)
@require_POST
def run_resume(request: HttpRequest, run_id: int) -> HttpResponse:
    return _run_action(request, run_id, generation_run_resume, "Run {run.pk} resumed.")


@researcher_permission_required(CHANGE_RUN_PERMISSION)
@require_POST
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    return _run_action(request, run_id, generation_run_cancel, "Run {run.pk} cancelled.")
