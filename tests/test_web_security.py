"""Web security of every page: no reflected markup from a query string, a nonce CSP on every page (staff pages
included, rater pages keeping their own), and researcher permissions on every dashboard write.

The reflection test walks every URL pattern of the project (the admin by a few of its pages) and sends hostile values
in every query parameter the code reads: the names are harvested from the source (request.GET / query_params reads,
the crowd platforms' link parameters, the export APIs' input serializers, the power form), so a new parameter is
covered without editing this file.
"""

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from drawbench.catalog.models import Sample
from drawbench.dashboard.models import SampleImportJob
from drawbench.dashboard.permissions import ADD_STUDY_PERMISSION, CHANGE_STUDY_PERMISSION
from drawbench.generation.models import GenerationRun
from drawbench.results import apis as results_apis
from drawbench.results.forms import PowerForm
from drawbench.studies.models import Study
from drawbench.studies.platforms import PLATFORM_PARAMETERS
from drawbench.studies.roles import RESEARCHER_GROUP
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory, SampleFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
PAYLOADS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(document.domain)>']
ADMIN_URLS = ["/admin/login/", "/admin/", "/admin/studies/study/", "/admin/catalog/prompt/"]
PARAMETER_READS = re.compile(r"""(?:GET|query_params)(?:\.get\(|\[)\s*["']([A-Za-z_][\w-]*)["']""")


def query_parameters() -> list[str]:
    """Every query parameter some view reads."""
    names = set()
    for path in (ROOT / "drawbench").rglob("*.py"):
        names.update(PARAMETER_READS.findall(path.read_text(encoding="utf-8")))
    for row in PLATFORM_PARAMETERS:
        names.update(name for name in row[1:] if name)
    for api in vars(results_apis).values():
        serializer = getattr(api, "InputSerializer", None)
        if serializer is not None:
            names.update(serializer().fields)
    names.update(PowerForm.base_fields)
    # DRF's format override, the CSV exports' opt-out, the admin's search, ordering and login redirect.
    names.update({"format", "spreadsheet_safe", "q", "o", "next"})
    return sorted(names)


def url_patterns(patterns=None, prefix: str = "", namespace: str | None = None):
    """(name, converters, default kwargs) of every route, the admin's left out (ADMIN_URLS stands for it)."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace != "admin":
                yield from url_patterns(pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace)
        elif isinstance(pattern, URLPattern) and pattern.name:
            name = f"{namespace}:{pattern.name}" if namespace else pattern.name
            yield name, list(pattern.pattern.converters), pattern.default_args


@pytest.fixture
def site(make_researcher):
    """A study with samples, a generation run, a researcher's client and a rater's client that started."""
    prompt_set = PromptSetFactory()
    prompts = [PromptFactory(prompt_set=prompt_set, position=i + 1) for i in range(2)]
    models = [EvaluatedModelFactory() for _ in range(2)]
    for model in models:
        for prompt in prompts:
            for index in range(2):
                SampleFactory(evaluated_model=model, prompt=prompt, index=index)
    staff = Client()
    staff.force_login(make_researcher(superuser=True))
    response = staff.post(
        reverse("dashboard:study-new"),
        {
            "name": "Security",
            "prompt_set": prompt_set.pk,
            "evaluated_models": [m.pk for m in models],
            "questions": ["fidelity", "alignment"],
            "samples_per_side": 2,
            "ratings_per_comparison": 3,
        },
    )
    assert response.status_code == 302, response.content
    study = Study.objects.get(name="Security")
    staff.post(reverse("dashboard:study-open", args=[study.pk]))
    run = GenerationRun.objects.create(evaluated_model=models[0], prompt_set=prompt_set, samples_per_prompt=2)
    rater = Client()
    entry = reverse("rater:study-entry", args=[study.rater_token])
    rater.get(entry)
    rater.post(entry)
    return {"study": study, "run": run, "staff": staff, "rater": rater}


@pytest.fixture
def make_researcher(django_user_model):
    def make(*, superuser: bool = False, permissions=(), group: bool = False, username: str = "r"):
        user = django_user_model.objects.create_user(username=username, password="pw-1234567", is_staff=True)
        user.is_superuser = superuser
        user.save()
        if group:
            user.groups.add(Group.objects.get(name=RESEARCHER_GROUP))
        for permission in permissions:
            app_label, codename = permission.split(".")
            user.user_permissions.add(*Permission.objects.filter(content_type__app_label=app_label, codename=codename))
        return user

    return make


def page_urls(site) -> list[tuple[str, str]]:
    """(url, which client) for every route that answers GET, with its arguments filled in."""
    values = {
        "study_id": site["study"].pk,
        "run_id": site["run"].pk,
        "token": site["study"].rater_token,
        "sample_id": Sample.objects.order_by("pk").first().pk,
        "model_id": site["study"].evaluated_models.first().pk,
        "prompt_set_id": site["study"].prompt_set_id,
        "job_id": SampleImportJob.objects.create(
            evaluated_model=site["run"].evaluated_model, prompt_set=site["run"].prompt_set, samples_per_prompt=2,
            archive_name="samples.zip", status="failed", problems=["1/: missing sample(s) 1"], problem_count=1,
        ).pk,
    }  # fmt: skip
    urls = [(url, "staff") for url in ADMIN_URLS]
    for name, converters, _ in url_patterns():
        kwargs = {key: values.get(key, "x0") for key in converters}
        url = reverse(name, kwargs=kwargs)
        urls.append((url, "rater" if name.startswith(("rater:", "api-rater")) else "staff"))
    return urls


def assert_not_reflected(response, payload: str, where: str) -> None:
    body = b"".join(response) if response.streaming else response.content
    content_type = response.get("Content-Type", "")
    assert response.get("X-Content-Type-Options") == "nosniff", where
    if payload.encode() in body:
        # Echoed as data (JSON, CSV, plain text), which browsers told nosniff never run as markup.
        assert not content_type.startswith(("text/html", "image/svg", "application/xhtml")), (where, content_type)


def test_the_parameter_list_covers_the_known_reads():
    names = query_parameters()
    for expected in ("method", "scope", "include_excluded", "exclude_flagged_raters", "PROLIFIC_PID", "turkSubmitTo"):
        assert expected in names


def test_no_page_reflects_a_query_parameter_as_markup(site):
    names = query_parameters()
    pages = page_urls(site)
    assert len(pages) > 25
    for url, who in pages:
        client = site[who]
        for payload in PAYLOADS:
            response = client.get(url, {name: payload for name in names})
            assert_not_reflected(response, payload, f"{url} (all parameters)")
        for name in names:
            response = client.get(url, {name: PAYLOADS[1]})
            assert_not_reflected(response, PAYLOADS[1], f"{url}?{name}=")


@pytest.mark.parametrize("name", ["results:study-results", "results:chart-png", "results:chart-svg"])
@pytest.mark.parametrize("param", ["method", "scope"])
def test_a_bad_parameter_is_a_plain_text_400_that_escapes_it(site, name, param):
    url = reverse(name, args=[site["study"].pk])
    response = site["staff"].get(url, {param: PAYLOADS[0]})
    if param == "scope" and name == "results:study-results":
        assert response.status_code == 200
        return
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert PAYLOADS[0].encode() not in response.content and b"&lt;script&gt;" in response.content


NONCE = re.compile(r"'nonce-([^']+)'")


@pytest.mark.parametrize(
    "name,args",
    [
        ("dashboard:study-list", []),
        ("dashboard:study-new", []),
        ("dashboard:study-detail", ["study"]),
        ("results:study-results", ["study"]),
        ("results:power", []),
    ],
)
def test_staff_pages_send_a_nonce_csp_that_their_own_scripts_and_styles_carry(site, name, args):
    response = site["staff"].get(reverse(name, args=[site[a].pk for a in args]), {"prompts": 2, "raters": 2})
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    nonce = NONCE.search(policy).group(1)
    assert "script-src 'self' 'nonce-" in policy and "'unsafe-inline'" not in policy.split("style-src-attr")[0]
    html = response.content.decode()
    for tag in re.findall(r"<(?:script|style)\b[^>]*>", html):
        assert f'nonce="{nonce}"' in tag, tag
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handlers do not run under the CSP"


def test_each_response_gets_a_fresh_nonce(site):
    url = reverse("dashboard:study-list")
    first, second = (site["staff"].get(url)["Content-Security-Policy"] for _ in range(2))
    assert NONCE.search(first).group(1) != NONCE.search(second).group(1)


def test_admin_api_and_error_pages_have_the_csp_too(site):
    for url in ["/admin/login/", reverse("api-study-results", args=[site["study"].pk]), "/no-such-page/"]:
        assert "Content-Security-Policy" in site["staff"].get(url), url


def test_rater_pages_keep_their_own_stricter_policy(site):
    response = site["rater"].get(reverse("rater:rate", args=[site["study"].rater_token]))
    policy = response["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'")
    nonce = NONCE.search(policy).group(1)
    for tag in re.findall(r"<(?:script|style)\b[^>]*>", response.content.decode()):
        assert f'nonce="{nonce}"' in tag


# --- dashboard writes -------------------------------------------------------------------------------------------

WRITES = [
    ("dashboard:study-new", ADD_STUDY_PERMISSION),
    ("dashboard:study-generate", CHANGE_STUDY_PERMISSION),
    ("dashboard:study-open", CHANGE_STUDY_PERMISSION),
    ("dashboard:study-close", CHANGE_STUDY_PERMISSION),
    ("dashboard:run-resume", CHANGE_STUDY_PERMISSION),
    ("dashboard:run-cancel", CHANGE_STUDY_PERMISSION),
    # The catalog pages (drawbench.dashboard.catalog_views).
    ("dashboard:model-new", "catalog.add_evaluatedmodel"),
    ("dashboard:model-edit", "catalog.change_evaluatedmodel"),
    ("dashboard:prompt-set-upload", "catalog.add_promptset"),
    ("dashboard:sample-import", "catalog.add_sample"),
    ("dashboard:run-new", "generation.add_generationrun"),
    ("dashboard:generation-run-resume", "generation.change_generationrun"),
    ("dashboard:generation-run-cancel", "generation.change_generationrun"),
]
NO_ARGUMENTS = {
    "dashboard:study-new", "dashboard:model-new", "dashboard:prompt-set-upload", "dashboard:sample-import",
    "dashboard:run-new",
}  # fmt: skip


def write_url(site, name: str) -> str:
    if name in NO_ARGUMENTS:
        return reverse(name)
    if name == "dashboard:model-edit":
        return reverse(name, args=[site["run"].evaluated_model_id])
    if name.startswith("dashboard:generation-run-"):
        return reverse(name, args=[site["run"].pk])
    if name.startswith("dashboard:run-"):
        return reverse(name, args=[site["study"].pk, site["run"].pk])
    return reverse(name, args=[site["study"].pk])


def test_every_dashboard_write_is_in_the_matrix():
    writes = {name for name, _ in WRITES}
    reads = {"dashboard:study-list", "dashboard:study-detail", "dashboard:study-progress", "dashboard:sample-image"}
    reads |= {"dashboard:model-list", "dashboard:prompt-set-list", "dashboard:run-list"}
    reads |= {"dashboard:sample-import-job", "dashboard:sample-import-job-progress", "dashboard:run-list-progress"}
    dashboard = {name for name, _, _ in url_patterns() if name.startswith("dashboard:")}
    assert dashboard - reads == writes


@pytest.mark.parametrize("name,permission", WRITES)
@pytest.mark.parametrize(
    "who,allowed",
    [
        ("anonymous", False),
        ("staff without permissions", False),
        ("staff with the other permission", False),
        ("staff with the permission", True),
        ("researcher group", True),
        ("superuser", True),
        ("analyst (not staff)", False),
    ],
)
def test_dashboard_writes_need_the_researcher_permission(site, make_researcher, name, permission, who, allowed):
    other = ADD_STUDY_PERMISSION if permission == CHANGE_STUDY_PERMISSION else CHANGE_STUDY_PERMISSION
    client = Client()
    if who != "anonymous":
        user = {
            "staff without permissions": lambda: make_researcher(username="plain"),
            "staff with the other permission": lambda: make_researcher(username="other", permissions=[other]),
            "staff with the permission": lambda: make_researcher(username="perm", permissions=[permission]),
            "researcher group": lambda: make_researcher(username="group", group=True),
            "superuser": lambda: make_researcher(username="super", superuser=True),
            "analyst (not staff)": lambda: analyst(make_researcher),
        }[who]()
        client.force_login(user)
    studies_before = Study.objects.count()
    status_before = Study.objects.get(pk=site["study"].pk).status

    response = client.post(write_url(site, name), {"name": "x"})

    if allowed:
        assert response.status_code in (200, 302) and "/admin/login/" not in response.get("Location", "")
        return
    assert response.status_code in (302, 403)
    if response.status_code == 302:
        assert "/admin/login/" in response["Location"]
    assert Study.objects.count() == studies_before
    assert Study.objects.get(pk=site["study"].pk).status == status_before


def analyst(make_researcher):
    user = make_researcher(username="analyst")
    user.is_staff = False
    user.save()
    user.groups.add(Group.objects.get(name="analyst"))
    return user


def test_a_staff_user_without_permissions_can_still_read_the_dashboard(site, make_researcher):
    client = Client()
    client.force_login(make_researcher(username="reader"))
    assert client.get(reverse("dashboard:study-list")).status_code == 200
    assert client.get(reverse("dashboard:study-detail", args=[site["study"].pk])).status_code == 200
    assert client.post(reverse("dashboard:study-close", args=[site["study"].pk])).status_code == 403


def test_sample_images_are_for_staff_only(site):
    url = reverse("dashboard:sample-image", args=[Sample.objects.first().pk])
    assert site["staff"].get(url).status_code == 200
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert site["rater"].get(url).status_code == 302
