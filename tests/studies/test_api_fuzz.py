"""Schemathesis against the OpenAPI schema served at /api/schema/: no 5xx over more than 1,000 generated requests,
valid and invalid, to every operation; every 4xx says what was wrong.

The app is called in-process through WSGI. Requests are authenticated (a rater token on the rater API, a staff
token on the exports) and aimed at a real open study and a real pending item half of the time, so that generation
reaches past "not found" into validation, conflicts and the services.
"""

import json
from collections import Counter

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode

from drawbench.studies.models import Assignment
from drawbench.studies.services.raters import rater_create
from drawbench.studies.services.serving import assignment_next_for_rater

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

EXAMPLES_PER_OPERATION_AND_MODE = 90
MIN_REQUESTS = 1000


@pytest.fixture
def wsgi_app():
    """The project's WSGI app, kept from closing the test's database connection at the end of each request (as
    Django's test client does), so that requests see the test's data and the test sees theirs."""
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        for signal in (signals.request_started, signals.request_finished):
            signal.connect(close_old_connections)


def test_generated_requests_never_get_a_server_error(wsgi_app, make_study, answer, staff_user, settings):
    settings.REST_FRAMEWORK = settings.REST_FRAMEWORK | {
        "DEFAULT_THROTTLE_RATES": {"rater_submit": "100000/min", "rater_start": "100000/min"}
    }
    study = make_study(n_prompts=3, ratings_per_comparison=50, practice_items=1, gold_rate=0.3)
    answer(study.comparisons.first())
    rater = rater_create(study=study)
    staff_token = Token.objects.create(user=staff_user).key
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/api/rater/{token}/start/",
        "/api/rater/{token}/assignment/",
        "/api/rater/{token}/answers/",
        "/api/rater/{token}/completion/",
        "/api/studies/{study_id}/judgments/",
        "/api/studies/{study_id}/results/",
    }
    sent: list[int] = []
    unclear: list[str] = []
    no_negative: list[str] = []

    def pending_key() -> str:
        assignment = assignment_next_for_rater(rater=rater)
        return assignment.key if assignment else ""

    for operation in operations:
        rater_api = operation.path.startswith("/api/rater/")
        headers = {"Authorization": f"Rater {rater.access_token}" if rater_api else f"Token {staff_token}"}
        real = {"token": study.rater_token} if rater_api else {"study_id": study.pk}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases = st.one_of(
                operation.as_strategy(generation_mode=mode, headers=headers, path_parameters=real),
                operation.as_strategy(generation_mode=mode, headers=headers),
            )

            @hypothesis_settings(
                max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=cases, use_pending=st.booleans(), well_formed=st.booleans())
            def call(case, use_pending, well_formed):
                if use_pending and isinstance(case.body, dict) and "key" in case.body:
                    case.body["key"] = pending_key()
                    if well_formed:
                        # A real answer to the real item: reaches recording, replays and conflicts.
                        case.body["answers"] = {"fidelity": "left", "alignment": "tie"}
                        case.body["response_time_ms"] = 1500
                response = case.call()
                sent.append(response.status_code)
                assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:500]}"
                if 400 <= response.status_code < 500 and not _says_why(response.text):
                    unclear.append(f"{case.method} {case.formatted_path} {response.status_code}: {response.text!r}")

            try:
                call()
            except Unsatisfiable:
                # An operation without parameters or body has no invalid input to generate.
                assert mode == GenerationMode.NEGATIVE, operation.path
                no_negative.append(f"{operation.method.upper()} {operation.path}")

    # Shown with -s: how many requests, and what they got.
    print(
        f"schemathesis: {len(sent)} requests to {len(operations)} operations; statuses {sorted(Counter(sent).items())}"
    )
    assert len(sent) >= MIN_REQUESTS
    assert unclear == []
    # Only operations without parameters or body have no invalid input (GET and POST assignment/, the list views...).
    assert len(no_negative) <= len(operations) // 2, no_negative
    statuses = set(sent)
    assert {200, 201, 400, 404} <= statuses, sorted(statuses)
    assert Assignment.objects.filter(rater=rater, completed_at__isnull=False).exists()


def _says_why(body: str) -> bool:
    """A 4xx body that explains itself: a JSON object with a non-empty message, or non-empty text."""
    try:
        data = json.loads(body)
    except ValueError:
        return bool(body.strip())
    return isinstance(data, dict) and any(bool(value) for value in data.values())
