"""The researcher dashboard: create studies, start their generation, open them, watch them fill, close them.

Staff only; every write also needs its model permission (studies.add_study to create, studies.change_study to start
generation, open, close, resume or cancel), which the "researcher" group holds (studies.roles): being staff is not
enough. Views are thin: forms validate the request, services do the work, selectors read.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from drawbench.catalog.models import Sample
from drawbench.dashboard.forms import CrowdPayForm, StudyCreateForm
from drawbench.dashboard.permissions import (
    ADD_STUDY_PERMISSION,
    CHANGE_STUDY_PERMISSION,
)
from drawbench.dashboard.selectors import study_dashboard_state, study_generation_run, study_list_rows
from drawbench.dashboard.services import study_generation_start
from drawbench.generation.services import generation_run_cancel, generation_run_resume
from drawbench.studies import crowd
from drawbench.studies.models import Study
from drawbench.studies.services.studies import (
    study_close,
    study_create,
    study_open,
    study_samples_unsatisfiable,
)


def researcher_permission_required(permission: str) -> Callable:
    """Staff (else the login page) holding `permission` for any write (else 403): a staff account alone changes
    nothing. Reads (GET, HEAD) need staff only, as the dashboard's other pages do."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in ("GET", "HEAD") and not request.user.has_perm(permission):
                raise PermissionDenied(f"This needs the {permission} permission (the researcher group has it).")
            return view(request, *args, **kwargs)

        return staff_member_required(wrapped)

    return decorator


def _error_lines(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [f"{field}: {msg}" for field, msgs in exc.message_dict.items() for msg in msgs]
    return list(exc.messages)


def _add_errors(form, exc: ValidationError) -> None:
    """Each of a service's errors once, on its field when the form has one (else above the form, with its name)."""
    if not hasattr(exc, "error_dict"):
        for message in exc.messages:
            form.add_error(None, message)
        return
    for field, messages_ in exc.message_dict.items():
        for message in messages_:
            if field in form.fields:
                form.add_error(field, message)
            else:
                form.add_error(None, f"{field}: {message}")


@staff_member_required
def study_list(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/study_list.html", {"rows": study_list_rows()})


@researcher_permission_required(ADD_STUDY_PERMISSION)
def study_new(request: HttpRequest) -> HttpResponse:
    form = StudyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        # Checked here rather than first at Open: samples per side that a model could never show.
        unsatisfiable = study_samples_unsatisfiable(
            prompt_set=data["prompt_set"],
            categories=data["categories"],
            evaluated_models=list(data["evaluated_models"]),
            samples_per_side=data["samples_per_side"],
        )
        try:
            # study_create's own errors are listed too; a study it made despite unsatisfiable samples is rolled back.
            with transaction.atomic():
                study = study_create(**data, created_by=request.user)
                if unsatisfiable:
                    raise ValidationError({"samples_per_side": unsatisfiable})
        except ValidationError as exc:
            _add_errors(form, exc)
            if unsatisfiable and "samples_per_side" not in form.errors:
                _add_errors(form, ValidationError({"samples_per_side": unsatisfiable}))
        else:
            messages.success(request, f"Study “{study.name}” created with {study.comparisons.count()} comparisons.")
            return redirect("dashboard:study-detail", study_id=study.pk)
    return render(request, "dashboard/study_new.html", {"form": form})


@staff_member_required
def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study.objects.select_related("prompt_set"), pk=study_id)
    rater_url = request.build_absolute_uri(reverse("rater:study-entry", args=[study.rater_token]))
    return render(
        request,
        "dashboard/study_detail.html",
        {
            "study": study,
            "state": study_dashboard_state(study=study),
            "rater_url": rater_url,
            "models": list(study.evaluated_models.order_by("name", "version")),
            "crowd": _crowd_card(request, study),
        },
    )


def _crowd_card(request: HttpRequest, study: Study) -> dict:
    """The crowd platform card: a rater's time and cost at the hourly pay asked for (?hourly_pay=), and, for
    researchers (the files carry platform ids), the approval and bonus files of each platform."""
    form = CrowdPayForm(request.GET or None)
    hourly_pay = form.cleaned_data.get("hourly_pay") if form.is_valid() else None
    return {
        "form": form,
        "estimate": crowd.time_estimate(study=study, hourly_pay=hourly_pay),
        "files": request.user.has_perm(CHANGE_STUDY_PERMISSION),
        "platforms": [("prolific", "Prolific"), ("mturk", "MTurk")],
    }


@staff_member_required
def study_progress(request: HttpRequest, study_id: int) -> JsonResponse:
    study = get_object_or_404(Study, pk=study_id)
    return JsonResponse(study_dashboard_state(study=study))


def _study_action(request: HttpRequest, study_id: int, action, done_message: str) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    try:
        action(study=study)
    except ValidationError as exc:
        for line in _error_lines(exc)[:20]:
            messages.error(request, line)
    else:
        messages.success(request, done_message)
    return redirect("dashboard:study-detail", study_id=study_id)


@researcher_permission_required(CHANGE_STUDY_PERMISSION)
@require_POST
def study_generate(request: HttpRequest, study_id: int) -> HttpResponse:
    return _study_action(request, study_id, study_generation_start, "Generation started.")


@researcher_permission_required(CHANGE_STUDY_PERMISSION)
@require_POST
def study_open_view(request: HttpRequest, study_id: int) -> HttpResponse:
    return _study_action(request, study_id, study_open, "The study is open for rating.")


@researcher_permission_required(CHANGE_STUDY_PERMISSION)
@require_POST
def study_close_view(request: HttpRequest, study_id: int) -> HttpResponse:
    return _study_action(request, study_id, study_close, "The study is closed.")


def _run_action(request: HttpRequest, study_id: int, run_id: int, action, done_message: str) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    run = study_generation_run(study=study, run_id=run_id)
    if run is None:
        raise Http404(f"study {study_id} has no generation run {run_id}")
    try:
        action(run=run)
    except ValidationError as exc:
        for line in _error_lines(exc):
            messages.error(request, line)
    else:
        messages.success(request, done_message.format(run=run))
    return redirect("dashboard:study-detail", study_id=study_id)


@researcher_permission_required(CHANGE_STUDY_PERMISSION)
@require_POST
def generation_run_resume_view(request: HttpRequest, study_id: int, run_id: int) -> HttpResponse:
    return _run_action(request, study_id, run_id, generation_run_resume, "Run {run.pk} resumed.")


@researcher_permission_required(CHANGE_STUDY_PERMISSION)
@require_POST
def generation_run_cancel_view(request: HttpRequest, study_id: int, run_id: int) -> HttpResponse:
    return _run_action(request, study_id, run_id, generation_run_cancel, "Run {run.pk} cancelled.")


@staff_member_required
@require_GET
def sample_image(request: HttpRequest, sample_id: int) -> FileResponse:
    """A stored sample image, for staff (the admin's thumbnails): production serves no media folder, and a private
    bucket's URLs may not be reachable from browsers (MinIO inside compose). Raters get images from the rater pages."""
    sample = get_object_or_404(Sample, pk=sample_id)
    response = FileResponse(sample.image.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response
