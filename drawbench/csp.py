"""A Content-Security-Policy on every response that has none of its own (staff pages, the admin, the API).

Each request gets a fresh nonce (``request.csp_nonce``; ``{{ request.csp_nonce }}`` in templates): only ``<script>`` and
``<style>`` elements that carry it run, so markup that slips into a page through a query string cannot run script.
Rater pages set their own, stricter policy (``studies.views.rater_page``); a response that already has the header is
left alone. The policy is settings.DRAWBENCH_CSP, with ``{nonce}`` and ``{img_src}`` (DRAWBENCH_CSP_IMG_SRC) filled in.
"""

import secrets
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"


def csp_policy(nonce: str) -> str:
    img_src = "".join(f" {origin}" for origin in settings.DRAWBENCH_CSP_IMG_SRC)
    return settings.DRAWBENCH_CSP.format(nonce=nonce, img_src=img_src)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.csp_nonce = secrets.token_urlsafe(16)
        response = self.get_response(request)
        if HEADER not in response:
            response[HEADER] = csp_policy(request.csp_nonce)
        return response
