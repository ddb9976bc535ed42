"""Deployment checks of our own, run by `manage.py check --deploy` beside Django's."""

from django.conf import settings
from django.core.checks import Error, Tags, register

ERROR_DEV_SECRET_KEY = "drawbench.E001"


@register(Tags.security, deploy=True)
def secret_key_is_not_the_development_key(app_configs, **kwargs) -> list[Error]:
    """Django's security.W009 passes the development key (long and varied); it is public, so refuse it."""
    if settings.SECRET_KEY != settings.DEV_SECRET_KEY:
        return []
    return [
        Error(
            "DJANGO_SECRET_KEY is the development key, which is published with the code.",
            hint="Set DJANGO_SECRET_KEY to a long random value (see .env.production.example).",
            id=ERROR_DEV_SECRET_KEY,
        )
    ]
