"""Root URLs: the rater pages and rater API, the staff dashboard and results, the API and Django admin."""

from django.conf import settings
from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.cache import never_cache
from drf_spectacular.views import SpectacularAPIView


@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """For the container's health check and load balancers: 200 once the process answers and reaches its database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok\n", content_type="text/plain; charset=utf-8")


urlpatterns = [
    path("", include("drawbench.studies.urls")),
    path("dashboard/", include("drawbench.dashboard.urls")),
    path("dashboard/", include("drawbench.results.urls")),
    path("api/rater/", include("drawbench.studies.api_urls")),
    path("api/", include("drawbench.results.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("admin/", admin.site.urls),
    path("healthz/", healthz, name="healthz"),
]

# Says what was wrong with a request Django refused before any view (too large, too many fields).
handler400 = "drawbench.studies.views.bad_request"

# Development only: in production nothing serves MEDIA_ROOT as such (exports stay behind staff views, and raters get
# sample images through the rater path's own media route).
if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
