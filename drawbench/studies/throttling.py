"""Rate limits on raters: submissions per rater, and starts (the study link's Start button and the API's start) per
client address.

The client address is the connection's (REMOTE_ADDR): X-Forwarded-For is anyone's to write, and trusting it would
let one client pass for many. Behind reverse proxies, REST_FRAMEWORK["NUM_PROXIES"] (DRAWBENCH_TRUSTED_PROXIES) says
how many: the address the nearest of them appended is taken instead.

Rates are settings (REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], scopes ``rater_submit`` and ``rater_start``), read
when a throttle is made so that a changed setting takes effect. Counts live in Django's cache: set CACHES to a
shared cache (Redis) when several processes serve raters, or each process counts on its own.
"""

from django.http import HttpRequest
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from drawbench.studies.models import Rater

ERROR_THROTTLED = "You are submitting faster than anyone can look at two sets of images; please wait {wait} s."
ERROR_START_THROTTLED = (
    "Too many raters were started from your network address in a short time; please wait {wait} s and try again."
)


class _SettingsRate:
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class RaterSubmitThrottle(_SettingsRate, SimpleRateThrottle):
    """Answers submitted by one rater (by the API or the form), whatever address they come from."""

    scope = "rater_submit"

    def get_cache_key(self, request, view):
        rater = getattr(request, "auth", None)
        if not isinstance(rater, Rater):
            rater = getattr(request, "rater", None)
        if rater is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": rater.pk}

    def allow_rater(self, rater: Rater) -> bool:
        """The same check for a caller that is not a DRF view (the form's POST)."""

        class _Request:
            pass

        request = _Request()
        request.rater = rater
        return self.allow_request(request, None)


class RaterStartThrottle(_SettingsRate, SimpleRateThrottle):
    """Starts from one client address, by the API or the study link's Start button, signed in or not."""

    scope = "rater_start"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def allow_client(self, request: HttpRequest) -> bool:
        """The same check for a caller that is not a DRF view (the Start button's POST)."""
        return self.allow_request(request, None)
