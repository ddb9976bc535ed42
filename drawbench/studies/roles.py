"""Who may do what. Three roles:

- researcher: a staff user (is_staff) in the "researcher" group (or a superuser). Creates, opens and closes studies
  on the dashboard and in the admin (each dashboard write checks studies.add_study or studies.change_study, which the
  group holds: is_staff alone reaches the dashboard but changes nothing); adds and edits evaluated models, prompt
  sets, sample imports and generation runs (catalog.* and generation.* add/change); sees results and exports.
- analyst: an active user in the "analyst" group (permission studies.view_results) and not staff. Reads results and
  exports (pages and API, by session or token); cannot reach the dashboard or the admin, so creates and changes
  nothing.
- rater: not a user at all. A session (or a rater token) that reaches only that rater's own items of one study; the
  admin, dashboard, results and exports all need a user.

Analysts log in on the admin's login page, whose form admits them; every admin page still requires staff.
"""

from functools import wraps

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from rest_framework.permissions import BasePermission

ANALYST_GROUP = "analyst"
RESEARCHER_GROUP = "researcher"
VIEW_RESULTS_PERMISSION = "studies.view_results"
# (app_label, codename) of each group's permissions.
GROUP_PERMISSIONS = {
    ANALYST_GROUP: [("studies", "view_results"), ("studies", "view_study")],
    RESEARCHER_GROUP: [
        ("studies", "view_results"),
        *[("studies", f"{action}_study") for action in ("add", "change", "view")],
        *[("studies", f"view_{model}") for model in ("comparison", "rater", "assignment", "judgment", "goldtrial")],
        *[("studies", f"{action}_judgmentexclusion") for action in ("add", "change", "view")],
        ("studies", "view_raterflag"),
        # The dashboard's catalog pages and the API's writes: models, prompt sets, sample imports, generation runs.
        *[("catalog", f"{action}_evaluatedmodel") for action in ("add", "change", "view")],
        *[("catalog", f"{action}_promptset") for action in ("add", "change", "view")],
        *[("catalog", f"{action}_sample") for action in ("add", "view")],
        *[("generation", f"{action}_generationrun") for action in ("add", "change", "view")],
    ],
}


def user_can_view_results(user) -> bool:
    """Researchers (staff) and analysts."""
    return bool(user and user.is_active and (user.is_staff or user.has_perm(VIEW_RESULTS_PERMISSION)))


def results_viewer_required(view):
    """Like staff_member_required, for results pages: researchers and analysts pass; others go to the login page."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if user_can_view_results(request.user):
            return view(request, *args, **kwargs)
        return redirect_to_login(request.get_full_path(), "admin:login", REDIRECT_FIELD_NAME)

    return wrapped


class CanViewResults(BasePermission):
    """DRF: results and exports are for researchers and analysts (read-only: the results APIs have no writes)."""

    message = "Results and exports are for researchers and analysts."

    def has_permission(self, request, view) -> bool:
        return user_can_view_results(request.user)


class RoleLoginForm(AdminAuthenticationForm):
    """The admin's login form, admitting analysts too: they log in there and go on to the results they asked for."""

    def confirm_login_allowed(self, user) -> None:
        if user_can_view_results(user):
            return super(AdminAuthenticationForm, self).confirm_login_allowed(user)
        raise ValidationError(
            self.error_messages["invalid_login"],
            code="invalid_login",
            params={"username": self.username_field.verbose_name},
        )


def roles_ensure(**kwargs) -> None:
    """Create the analyst and researcher groups with their permissions (post_migrate: after permissions exist)."""
    from django.contrib.auth.models import Group, Permission

    for name, wanted in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = [
            permission
            for app_label, codename in wanted
            for permission in Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        ]
        group.permissions.add(*permissions)
