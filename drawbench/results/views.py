"""Results pages for researchers and analysts: a study's results page and its chart (SVG or PNG), from study_results;
and the staff power page, "with this many raters and prompts, what difference can I detect?"."""

import base64
import time
from typing import Literal
from urllib.parse import urlencode

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.utils.html import escape

from drawbench.results import simulate, stats
from drawbench.results.forms import PowerForm
from drawbench.results.selectors import study_judge_inputs, study_results
from drawbench.studies.models import Study
from drawbench.studies.roles import results_viewer_required

CHART_CONTENT_TYPES = {"svg": "image/svg+xml", "png": "image/png"}
CHART_SCOPES = ("overall", "categories")
TRUE_VALUES = {"1", "true", "yes", "on"}


def _bad_request(message: str) -> HttpResponseBadRequest:
    """A 400 that names the bad parameter: plain text, and escaped, since the message quotes what the request sent."""
    return HttpResponseBadRequest(escape(message), content_type="text/plain; charset=utf-8")


def _include_excluded(request: HttpRequest) -> bool:
    return request.GET.get("include_excluded", "").lower() in TRUE_VALUES


def _exclude_flagged(request: HttpRequest) -> bool:
    return request.GET.get("exclude_flagged_raters", "").lower() in TRUE_VALUES


def _method(request: HttpRequest) -> str:
    """The interval method asked for (``?method=``), the default when none; ValueError names the known ones."""
    method = request.GET.get("method") or stats.DEFAULT_INTERVAL_METHOD
    stats.method_check(method)
    return method


def _query(*, include_excluded: bool, exclude_flagged: bool, method: str) -> str:
    """The page's settings as a query string, so that charts, exports and method links follow them."""
    params = {}
    if include_excluded:
        params["include_excluded"] = "1"
    if exclude_flagged:
        params["exclude_flagged_raters"] = "1"
    if method != stats.DEFAULT_INTERVAL_METHOD:
        params["method"] = method
    return urlencode(params)


@results_viewer_required
def study_results_page(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    try:
        method = _method(request)
    except ValueError as exc:
        return _bad_request(str(exc))
    include_excluded, exclude_flagged = _include_excluded(request), _exclude_flagged(request)
    method_links = [
        {
            "method": name,
            "label": stats.INTERVAL_METHODS[name],
            "query": _query(include_excluded=include_excluded, exclude_flagged=exclude_flagged, method=name),
            "current": name == method,
        }
        for name in stats.PAGE_METHODS
    ]
    context = {
        "study": study,
        "results": study_results(
            study=study,
            include_excluded=include_excluded,
            exclude_flagged_raters=exclude_flagged,
            method=method,
            compare_flagged=True,
            judge_inputs=study_judge_inputs(study=study),
        ),
        "query": _query(include_excluded=include_excluded, exclude_flagged=exclude_flagged, method=method),
        "method_links": method_links,
        "default_method": stats.DEFAULT_INTERVAL_METHOD,
    }
    return render(request, "results/study_results.html", context)


@results_viewer_required
def study_results_chart(request: HttpRequest, study_id: int, fmt: Literal["svg", "png"]) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    scope = request.GET.get("scope", "overall")
    if scope not in CHART_SCOPES:
        return _bad_request(f"Unknown scope {scope!r}: expected one of {', '.join(CHART_SCOPES)}.")
    try:
        method = _method(request)
    except ValueError as exc:
        return _bad_request(str(exc))
    results = study_results(
        study=study,
        include_excluded=_include_excluded(request),
        exclude_flagged_raters=_exclude_flagged(request),
        method=method,
        with_ranking=False,
        with_raters=False,
    )
    # matplotlib loads on the first chart, not with the URLs (manage.py starts without it).
    from drawbench.results.plots import figure_bytes, preference_figure

    figure = preference_figure(results, scope=scope)
    response = HttpResponse(figure_bytes(figure, fmt), content_type=CHART_CONTENT_TYPES[fmt])
    filename = f"drawbench-study-{study.pk}-{scope}.{fmt}"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


@staff_member_required
def power_page(request: HttpRequest) -> HttpResponse:
    form = PowerForm(request.GET or {name: field.initial for name, field in PowerForm.base_fields.items()})
    context: dict = {"form": form}
    if form.is_valid():
        data = form.cleaned_data
        start = time.perf_counter()
        curve = simulate.power_curve(
            data["prompts"],
            data["raters"],
            design=data["design"],
            ratings_per_prompt=data["ratings_per_prompt"],
            tie_rate=data["tie_rate"],
            prompt_sd=data["prompt_sd"],
            rater_sd=data["rater_sd"],
        )
        from drawbench.results.plots import figure_bytes, power_figure

        svg = figure_bytes(power_figure(curve), "svg")
        context.update(
            curve=curve,
            seconds=time.perf_counter() - start,
            chart_src="data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii"),
            points=list(zip(curve.differences, curve.powers, strict=True))[:: max(1, len(curve.powers) // 10)],
        )
    return render(request, "results/power.html", context)
