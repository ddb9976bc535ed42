"""Root URLs: the rater pages and rater API, the staff dashboard and results, the API and Django admin."""

from django.conf import settings
from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults
from django.views.decorators.cache import never_cache
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView


@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """For the container's health check and load balancers: 200 once the process answers and reaches its database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok\n", content_type="text/plain; charset=utf-8")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """API clients get JSON, as DRF's own 404s are; people get the usual page."""
    if _is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)


urlpatterns = [
    path("", include("drawbench.studies.urls")),
    path("dashboard/", include("drawbench.dashboard.urls")),
    path("dashboard/", include("drawbench.results.urls")),
    path("api/rater/", include("drawbench.studies.api_urls")),
    path("api/", include("drawbench.results.api_urls")),
    path("api/", include("drawbench.dashboard.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI from our own static files (drf-spectacular-sidecar), its start-up script a separate file: no inline
    # script, so it runs under the site's CSP.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api/swagger_ui.html"),
        name="api-docs",
    ),
    path("admin/", admin.site.urls),
    path("healthz/", healthz, name="healthz"),
]

# Says what was wrong with a request Django refused before any view (too large, too many fields).
handler400 = "drawbench.studies.views.bad_request"
# JSON under /api/, the usual pages elsewhere.
handler404 = page_not_found
handler500 = server_error

# Development only: in production nothing serves MEDIA_ROOT as such (exports stay behind staff views, and raters get
# sample images through the rater path's own media route).
if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
