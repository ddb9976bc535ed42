"""Fixtures for studies: a study with its prompts, models and samples, a way to answer a comparison, API clients."""

import os
import random
from collections.abc import Callable, Sequence

import pytest
from django.db import connection
from rest_framework.test import APIClient

from drawbench.catalog.models import EvaluatedModel
from drawbench.studies.models import Assignment, Comparison, Rater, Study
from drawbench.studies.services.raters import rater_create
from drawbench.studies.services.studies import study_create, study_open
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory, SampleFactory
from tests.studies.helpers import assignment_create, judgment_submit


def add_samples(*, model: EvaluatedModel, prompts, count: int = 8) -> None:
    for prompt in prompts:
        for index in range(count):
            SampleFactory(evaluated_model=model, prompt=prompt, index=index)


@pytest.fixture
def make_study() -> Callable[..., Study]:
    """Build a study: prompts (cycling through `categories`), models with `samples` samples per prompt, opened."""

    def make(
        *,
        n_prompts: int = 2,
        categories: Sequence[str] = ("Colors",),
        models: Sequence[EvaluatedModel] | None = None,
        n_models: int = 2,
        samples: int = 8,
        open_study: bool = True,
        **study_kwargs,
    ) -> Study:
        prompt_set = PromptSetFactory()
        prompts = [
            PromptFactory(prompt_set=prompt_set, position=i + 1, category=categories[i % len(categories)])
            for i in range(n_prompts)
        ]
        models = list(models) if models is not None else [EvaluatedModelFactory() for _ in range(n_models)]
        for model in models:
            add_samples(model=model, prompts=prompts, count=samples)
        # Small display images: opening a study re-encodes every sample (the tests' are 16 × 16 anyway).
        study_kwargs.setdefault("display_size", 64)
        study = study_create(
            name=study_kwargs.pop("name", "A study"), prompt_set=prompt_set, evaluated_models=models, **study_kwargs
        )
        return study_open(study=study) if open_study else study

    return make


@pytest.fixture
def answer() -> Callable[..., Assignment]:
    """Serve `comparison` to `rater` (a new rater if None) and submit answers in displayed space."""

    def submit(
        comparison: Comparison,
        *,
        rater: Rater | None = None,
        answers: dict[str, str] | None = None,
        seed: int = 0,
    ) -> Assignment:
        rater = rater or rater_create(study=comparison.study)
        assignment = assignment_create(rater=rater, comparison=comparison, rng=random.Random(seed))
        answers = answers or {q: "left" for q in comparison.study.questions}
        judgment_submit(assignment=assignment, answers=answers, response_time_ms=1500)
        return assignment

    return submit


@pytest.fixture
def on_postgresql() -> None:
    """Skip a test that needs PostgreSQL's row locks on another database; fail instead in CI (services required)."""
    if connection.vendor != "postgresql":
        if os.environ.get("DRAWBENCH_REQUIRE_SERVICES") == "1":
            pytest.fail(f"this test must run on PostgreSQL, not {connection.vendor}")
        pytest.skip("needs DATABASE_URL pointing at PostgreSQL")


def rater_client(rater: Rater) -> APIClient:
    """An API client authenticated as `rater` by its token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Rater {rater.access_token}")
    return client


def pending_keys(rater: Rater) -> list[str]:
    """The keys of the items the rater holds (served, not answered nor reclaimed), in the order they are shown."""
    return list(
        Assignment.objects.filter(rater=rater, completed_at__isnull=True, released_at__isnull=True)
        .order_by("served_at", "id")
        .values_list("key", flat=True)
    )


@pytest.fixture
def unhurried_clock(monkeypatch):
    """The rater path's clock moving 5 s each time it is read: every answer comes seconds after its item was shown,
    as a careful rater's does (the server's time decides "too fast", not the response time the client reports)."""
    from datetime import timedelta
    from itertools import count

    from django.utils import timezone

    from drawbench.studies.services import serving

    start, ticks = timezone.now(), count()
    monkeypatch.setattr(serving, "rater_clock", lambda: start + timedelta(seconds=5 * next(ticks)))
