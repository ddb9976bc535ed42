"""The researcher dashboard's study pages: the new-study form (categories as choices, validation at creation, errors
shown once), the study page's buttons by state, logout, the live state (progress.json) and the overhead column."""

import re

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from drawbench.backends.diffusers_backend import tiny_model_config
from drawbench.dashboard.selectors import study_dashboard_state
from drawbench.generation.models import GenerationRun
from drawbench.generation.selectors import generation_run_progress
from drawbench.studies.models import Rater, RaterFlag, Study
from drawbench.studies.roles import RESEARCHER_GROUP
from drawbench.studies.services.studies import study_close, study_create, study_open, study_samples_unsatisfiable
from tests.factories import (
    AssignmentFactory,
    EvaluatedModelFactory,
    JudgmentFactory,
    PromptFactory,
    PromptSetFactory,
    RaterFactory,
    SampleFactory,
)

DIFFUSERS = "drawbench.backends.diffusers_backend.DiffusersBackend"

pytestmark = pytest.mark.django_db


def add_samples(model, prompts, count: int) -> None:
    for prompt in prompts:
        for index in range(count):
            SampleFactory(evaluated_model=model, prompt=prompt, index=index)


@pytest.fixture
def sets(db):
    """Two prompt sets: "mini" (Colors ×2, Counting ×1) and "other" (Colors ×1, Text ×2)."""
    mini = PromptSetFactory(slug="mini", title="Mini")
    other = PromptSetFactory(slug="other", title="Other")
    for position, category in enumerate(["Colors", "Colors", "Counting"], start=1):
        PromptFactory(prompt_set=mini, position=position, category=category, text=f"mini prompt {position}")
    for position, category in enumerate(["Colors", "Text", "Text"], start=1):
        PromptFactory(prompt_set=other, position=position, category=category, text=f"other prompt {position}")
    return {"mini": mini, "other": other}


@pytest.fixture
def generated(db):
    return [
        EvaluatedModelFactory(name="tiny-a", backend=DIFFUSERS, config=tiny_model_config(init_seed=1)),
        EvaluatedModelFactory(name="tiny-b", backend=DIFFUSERS, config=tiny_model_config(init_seed=2)),
    ]


# --- the shared samples rule ------------------------------------------------------------------------------------


def test_samples_unsatisfiable_names_the_imported_model_short_of_samples_and_how_many_it_has(sets, generated):
    mini = sets["mini"]
    closed = EvaluatedModelFactory(name="closed-x")
    prompts = list(mini.prompts.order_by("position"))
    add_samples(closed, prompts[:2], 4)  # Colors: 4 samples each; Counting: none
    add_samples(closed, prompts[2:], 2)

    lines = study_samples_unsatisfiable(
        prompt_set=mini, categories=[], evaluated_models=[generated[0], closed], samples_per_side=4
    )
    assert len(lines) == 1 and lines[0].startswith("closed-x")
    assert "fewer than 4 samples for 1 of the 3 prompts" in lines[0] and "as few as 2" in lines[0]
    assert "prompt 3 (Counting)" in lines[0] and "lower samples per side to 2" in lines[0]

    # Only Colors in scope: every prompt has 4.
    assert (
        study_samples_unsatisfiable(
            prompt_set=mini, categories=["Colors"], evaluated_models=[closed], samples_per_side=4
        )
        == []
    )
    # The generated model is never the problem, whatever samples per side.
    assert (
        study_samples_unsatisfiable(prompt_set=mini, categories=[], evaluated_models=generated, samples_per_side=16)
        == []
    )


def test_study_open_and_creation_apply_the_same_rule(sets):
    mini = sets["mini"]
    a, b = EvaluatedModelFactory(name="imp-a"), EvaluatedModelFactory(name="imp-b")
    prompts = list(mini.prompts.all())
    add_samples(a, prompts, 3)
    add_samples(b, prompts, 3)
    args = {"prompt_set": mini, "categories": [], "evaluated_models": [a, b]}
    assert study_samples_unsatisfiable(**args, samples_per_side=3) == []
    assert len(study_samples_unsatisfiable(**args, samples_per_side=4)) == 2
    study = study_create(name="s", **args, samples_per_side=3, display_size=64)
    assert study_open(study=study).status == Study.Status.OPEN


# --- the new-study form ------------------------------------------------------------------------------------------


def _post(staff_client, prompt_set, models, **overrides):
    data = {
        "name": "Form study",
        "prompt_set": prompt_set.pk,
        "evaluated_models": [m.pk for m in models],
        "questions": ["fidelity", "alignment"],
        "samples_per_side": 2,
        "ratings_per_comparison": 5,
        **overrides,
    }
    return staff_client.post(reverse("dashboard:study-new"), data)


def _text(response) -> str:
    """The page's visible text, tags stripped, entities as the browser shows them."""
    import html

    return html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_the_form_offers_each_sets_categories_with_their_counts_grouped_by_set(staff_client, sets, generated):
    page = staff_client.get(reverse("dashboard:study-new")).content.decode()
    mini, other = sets["mini"], sets["other"]
    groups = dict(re.findall(r'data-prompt-set="(\d+)">(.*?)</fieldset>', page, flags=re.S))
    assert set(groups) == {str(mini.pk), str(other.pk)}
    assert re.findall(r"> (\w+) \((\d+)\)</label>", groups[str(mini.pk)]) == [("Colors", "2"), ("Counting", "1")]
    assert re.findall(r"> (\w+) \((\d+)\)</label>", groups[str(other.pk)]) == [("Colors", "1"), ("Text", "2")]
    assert f'value="{other.pk}:Text"' in groups[str(other.pk)]
    # Fields rendered one by one in sections, not as_p; the rater operations fold away; the script is a static file.
    assert "<p><label" not in page and '<details class="card" id="rater-operations">' in page
    assert re.search(r'<script src="[^"]*dashboard/study_new\.js" nonce=', page)
    assert "<script nonce" not in page


def test_a_category_of_another_prompt_set_is_refused_by_name(staff_client, sets, generated):
    mini, other = sets["mini"], sets["other"]
    # "Colors" exists in both sets: the box checked is the other set's, and that is what is refused.
    response = _post(staff_client, mini, generated, categories=[f"{mini.pk}:Counting", f"{other.pk}:Colors"])
    assert response.status_code == 200 and not Study.objects.exists()
    message = "Category “Colors” belongs to prompt set Other, not to the chosen prompt set Mini."
    assert _text(response).count(message) == 1

    response = _post(staff_client, mini, generated, categories=["Text"])
    assert _text(response).count("Category “Text” is not a category of prompt set Mini; it has: Colors, Counting.") == 1
    assert not Study.objects.exists()


def test_chosen_categories_of_the_chosen_set_make_the_study(staff_client, sets, generated):
    mini = sets["mini"]
    response = _post(staff_client, mini, generated, categories=[f"{mini.pk}:Colors"])
    study = Study.objects.get()
    assert response.status_code == 302 and response.url == reverse("dashboard:study-detail", args=[study.pk])
    assert study.categories == ["Colors"] and study.comparisons.count() == 2


def test_samples_per_side_an_imported_model_cannot_show_is_refused_at_creation_naming_it(staff_client, sets, generated):
    mini = sets["mini"]
    closed = EvaluatedModelFactory(name="closed-x")
    add_samples(closed, mini.prompts.all(), 2)

    response = _post(staff_client, mini, [generated[0], closed], samples_per_side=4)
    assert response.status_code == 200 and not Study.objects.exists()
    text = _text(response)
    assert text.count("closed-x@1 generates nothing (imported samples only) and has fewer than 4 samples") == 1
    assert "for 3 of the 3 prompts in scope (as few as 2" in text and "lower samples per side to 2" in text
    # On its field: the samples-per-side field is marked, and the summary links to it.
    assert 'id="field-samples_per_side"' in response.content.decode()
    assert re.search(r'class="field has-error" id="field-samples_per_side"', response.content.decode())
    assert 'href="#field-samples_per_side"' in response.content.decode()

    assert _post(staff_client, mini, [generated[0], closed], samples_per_side=2).status_code == 302
    assert Study.objects.get().samples_per_side == 2


def test_both_the_samples_error_and_the_services_errors_show_each_once(staff_client, sets):
    mini = sets["mini"]
    closed = EvaluatedModelFactory(name="closed-x")
    response = _post(staff_client, mini, [closed], samples_per_side=1)  # one model, and it has no samples
    text = _text(response)
    assert text.count("A study compares at least 2 distinct evaluated models; 1 given.") == 1
    assert text.count("closed-x@1 generates nothing") == 1
    assert not Study.objects.exists()


def test_a_study_create_error_shows_once_on_its_field_not_also_above_the_form(staff_client, sets, generated):
    response = _post(staff_client, sets["mini"], generated[:1])
    html = response.content.decode()
    message = "A study compares at least 2 distinct evaluated models; 1 given."
    assert _text(response).count(message) == 1
    # It sits in the evaluated models' field, which the summary links to.
    field = html[html.index('id="field-evaluated_models"') :]
    assert message in field[: field.index("</ul>")]
    assert 'href="#field-evaluated_models"' in html


def test_a_rater_operations_error_opens_its_section(staff_client, sets, generated):
    response = _post(staff_client, sets["mini"], generated, gold_rate="1.5")
    html = response.content.decode()
    assert '<details class="card" id="rater-operations" open>' in html
    assert _text(response).count("Ensure this value is less than or equal to 1") == 1


# --- the study page: buttons by state ---------------------------------------------------------------------------


def _buttons(staff_client, study) -> set[str]:
    page = staff_client.get(reverse("dashboard:study-detail", args=[study.pk])).content.decode()
    return set(re.findall(r'id="action-(\w+)"', page))


def _imported_study(sets, samples: int = 2, version: str = "1", **kwargs):
    mini = sets["mini"]
    models = [
        EvaluatedModelFactory(name="imp-a", version=version),
        EvaluatedModelFactory(name="imp-b", version=version),
    ]
    for model in models:
        add_samples(model, mini.prompts.all(), samples)
    return study_create(
        name="Imported", prompt_set=mini, evaluated_models=models, samples_per_side=2, display_size=64,
        ratings_per_comparison=5, **kwargs,
    )  # fmt: skip


def test_buttons_follow_the_study_state(staff_client, sets, generated):
    study = _imported_study(sets)
    assert _buttons(staff_client, study) == {"open"}, "a draft with its samples: Open only"

    study_open(study=study)
    assert _buttons(staff_client, study) == {"close"}, "open, no judgments: Close only"

    comparison = study.comparisons.first()
    JudgmentFactory(assignment=AssignmentFactory(comparison=comparison, rater=RaterFactory(study=study)))
    assert _buttons(staff_client, study) == {"close", "results"}

    study_close(study=study)
    page = staff_client.get(reverse("dashboard:study-detail", args=[study.pk])).content.decode()
    assert _buttons(staff_client, study) == {"open", "results"} and "Reopen for rating" in page


def test_a_generated_study_shows_generate_until_a_run_is_going_and_open_only_with_every_sample(
    staff_client, sets, generated
):
    study = study_create(name="Gen", prompt_set=sets["mini"], evaluated_models=generated, samples_per_side=2)
    assert _buttons(staff_client, study) == {"generate"}

    run = GenerationRun.objects.create(
        evaluated_model=generated[0], prompt_set=sets["mini"], samples_per_prompt=2, status=GenerationRun.Status.RUNNING
    )
    assert _buttons(staff_client, study) == set(), "a run is going: neither Generate nor Open"
    run.status = GenerationRun.Status.FAILED
    run.save()
    assert _buttons(staff_client, study) == {"generate"}

    for model in generated:
        add_samples(model, sets["mini"].prompts.all(), 2)
    assert _buttons(staff_client, study) == {"open"}


def test_an_imported_model_short_of_samples_says_so_and_offers_nothing_to_press(staff_client, sets):
    study = _imported_study(sets, samples=1)  # created before the rule applied (e.g. through the API)
    page = staff_client.get(reverse("dashboard:study-detail", args=[study.pk])).content.decode()
    assert _buttons(staff_client, study) == set()
    assert "imp-a@1, imp-b@1 have imported samples missing" in page


def test_the_endpoints_still_refuse_actions_the_state_does_not_allow(staff_client, sets):
    study = _imported_study(sets)
    study_open(study=study)
    study_close(study=study)

    response = staff_client.post(reverse("dashboard:study-close", args=[study.pk]), follow=True)
    assert "is closed; it cannot be closed" in _text(response)
    response = staff_client.post(reverse("dashboard:study-generate", args=[study.pk]), follow=True)
    assert "is closed; it cannot be generated" in _text(response)
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED

    short = _imported_study(sets, samples=1, version="2")
    response = staff_client.post(reverse("dashboard:study-open", args=[short.pk]), follow=True)
    assert "cannot open" in _text(response)
    short.refresh_from_db()
    assert short.status == Study.Status.DRAFT


def test_the_rater_link_has_a_copy_button_and_a_field_to_select(staff_client, sets):
    study = _imported_study(sets)
    page = staff_client.get(reverse("dashboard:study-detail", args=[study.pk])).content.decode()
    link = reverse("rater:study-entry", args=[study.rater_token])
    assert re.search(rf'<input id="rater-url" type="text" readonly value="http://testserver{link}"', page)
    assert '<button class="btn secondary" type="button" id="copy-link" hidden>Copy link</button>' in page
    assert re.search(r'<script src="[^"]*dashboard/study_detail\.js" nonce=', page)
    assert "<script nonce" not in page


# --- logout -----------------------------------------------------------------------------------------------------


def test_logout_is_a_post_form_in_the_header_and_it_logs_out(staff_client):
    page = staff_client.get(reverse("dashboard:study-list")).content.decode()
    header = page[page.index("<header>") : page.index("</header>")]
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', header, flags=re.S)
    assert form and form.group(1) == reverse("admin:logout")
    assert 'name="csrfmiddlewaretoken"' in form.group(2) and ">Log out</button>" in form.group(2)

    assert staff_client.get(reverse("admin:logout")).status_code == 405, "a GET (a link, a prefetch) logs no one out"
    assert staff_client.get(reverse("dashboard:study-list")).status_code == 200

    response = staff_client.post(reverse("admin:logout"), {"next": reverse("dashboard:study-list")})
    assert response.status_code == 302 and response.url == reverse("dashboard:study-list")
    response = staff_client.get(reverse("dashboard:study-list"))
    assert response.status_code == 302 and "login" in response.url


def test_logout_needs_the_csrf_token(client, staff_user):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff_user)
    assert strict.post(reverse("admin:logout")).status_code == 403
    assert strict.get(reverse("dashboard:study-list")).status_code == 200, "still logged in"


# --- the live state (progress.json) -----------------------------------------------------------------------------


def _judge(study, comparison, rater, questions=("fidelity", "alignment")):
    assignment = AssignmentFactory(comparison=comparison, rater=rater, completed_at=timezone.now())
    for question in questions:
        JudgmentFactory(assignment=assignment, question=question)


def test_progress_json_has_progress_per_category_raters_flags_and_time_to_finish(staff_client, sets):
    study = _imported_study(sets)  # mini: 2 Colors prompts, 1 Counting; 1 pair; 2 questions; 5 ratings wanted
    study_open(study=study)
    opened = timezone.now() - timezone.timedelta(minutes=10)
    Study.objects.filter(pk=study.pk).update(opened_at=opened)
    colors = list(study.comparisons.filter(prompt__category="Colors"))
    counting = study.comparisons.get(prompt__category="Counting")
    raters = [RaterFactory(study=study) for _ in range(4)]
    _judge(study, colors[0], raters[0])
    _judge(study, colors[1], raters[0])
    _judge(study, counting, raters[1])
    Rater.objects.filter(pk=raters[0].pk).update(finished_at=timezone.now())
    RaterFlag.objects.create(rater=raters[0], reason=RaterFlag.Reason.TOO_FAST)
    RaterFlag.objects.create(rater=raters[0], reason=RaterFlag.Reason.ALWAYS_LEFT)
    RaterFlag.objects.create(rater=raters[1], reason=RaterFlag.Reason.TOO_FAST)

    state = staff_client.get(reverse("dashboard:study-progress", args=[study.pk])).json()

    assert state["categories"] == [
        {"category": "Colors", "done": 4, "wanted": 2 * 5 * 2, "fraction": 0.2},
        {"category": "Counting", "done": 2, "wanted": 1 * 5 * 2, "fraction": 0.2},
    ]
    assert state["raters"] == {
        "started": 4,
        "finished": 1,
        "flagged": 2,
        "flags": [
            {"reason": "always_left", "label": "Always chose the left set", "n": 1},
            {"reason": "too_fast", "label": "Answered faster than the response-time floor", "n": 2},
        ],
    }
    assert state["actions"]["close"] and state["actions"]["results"] and not state["actions"]["open"]
    # 6 judgments since the study opened 10 minutes ago: 0.6 a minute, 24 to go.
    eta = state["time_to_finish"]
    assert eta["rate_per_min"] == pytest.approx(0.6, rel=0.01)
    assert eta["eta_s"] == pytest.approx(24 / 0.6 * 60, rel=0.01) and eta["eta_text"] == "about 40 min"


def test_time_to_finish_is_unknown_until_there_is_a_rate_and_done_at_the_target(sets):
    study = _imported_study(sets)
    assert study_dashboard_state(study=study)["time_to_finish"]["eta_text"] == "—", "not open"
    study_open(study=study)
    state = study_dashboard_state(study=study)
    assert state["time_to_finish"] == {"eta_s": None, "rate_per_min": None, "eta_text": "—"}, "no answers yet"
    page_study = Study.objects.get(pk=study.pk)
    Study.objects.filter(pk=study.pk).update(ratings_per_comparison=1, questions=["fidelity"])
    page_study.refresh_from_db()
    rater = RaterFactory(study=page_study)
    for comparison in page_study.comparisons.all():
        _judge(page_study, comparison, rater, questions=("fidelity",))
    assert study_dashboard_state(study=page_study)["time_to_finish"]["eta_text"] == "done"


def test_the_study_page_shows_the_live_numbers_it_polls(staff_client, sets):
    study = _imported_study(sets)
    study_open(study=study)
    rater = RaterFactory(study=study)
    _judge(study, study.comparisons.filter(prompt__category="Counting").get(), rater)
    RaterFlag.objects.create(rater=rater, reason=RaterFlag.Reason.FAILED_GOLD)
    page = staff_client.get(reverse("dashboard:study-detail", args=[study.pk])).content.decode()
    assert re.search(r'<tr data-category="Counting"><td>Counting</td><td class="cat-done">2 / 10</td>', page)
    assert re.search(r'<tr data-category="Colors"><td>Colors</td><td class="cat-done">0 / 20</td>', page)
    assert '<strong id="raters-started">1</strong>' in page and '<strong id="raters-flagged">1</strong>' in page
    assert '<li data-reason="failed_gold">Failed gold trials: 1</li>' in page
    assert '<strong id="time-to-finish">—</strong>' in page


# --- overhead -----------------------------------------------------------------------------------------------------


def _run_with_times(study, model, model_seconds: float, task_seconds: float) -> GenerationRun:
    return GenerationRun.objects.create(
        evaluated_model=model,
        prompt_set=study.prompt_set,
        samples_per_prompt=2,
        status=GenerationRun.Status.DONE,
        model_seconds=model_seconds,
        task_seconds=task_seconds,
    )


def test_overhead_is_a_share_of_task_time_and_not_shown_for_a_near_zero_model_time(staff_client, sets, generated):
    study = study_create(name="Gen", prompt_set=sets["mini"], evaluated_models=generated, samples_per_side=2)
    tiny = _run_with_times(study, generated[0], model_seconds=0.001, task_seconds=0.7364)  # was "73,540%"
    real = _run_with_times(study, generated[1], model_seconds=10.0, task_seconds=12.5)

    assert generation_run_progress(run=tiny)["overhead"] is None
    assert generation_run_progress(run=real)["overhead"] == pytest.approx(0.2)

    runs = {r["id"]: r for r in staff_client.get(reverse("dashboard:study-progress", args=[study.pk])).json()["runs"]}
    assert runs[tiny.pk]["overhead_text"] == "n/a (model time < 1 s)"
    assert runs[real.pk]["overhead_text"] == "20% of task time"

    page = staff_client.get(reverse("dashboard:study-detail", args=[study.pk])).content.decode()
    cells = dict(re.findall(r'<tr class="run" data-run="(\d+)">.*?<td class="run-overhead">([^<]*)</td>', page, re.S))
    assert cells == {str(tiny.pk): "n/a (model time &lt; 1 s)", str(real.pk): "20% of task time"}
    assert "73" not in "".join(cells.values())


def test_overhead_is_a_dash_before_any_time_is_recorded(sets, generated):
    study = study_create(name="Gen", prompt_set=sets["mini"], evaluated_models=generated, samples_per_side=2)
    run = _run_with_times(study, generated[0], model_seconds=0.0, task_seconds=0.0)
    (row,) = [r for r in study_dashboard_state(study=study)["runs"] if r["id"] == run.pk]
    assert (row["overhead"], row["overhead_text"]) == (None, "—")


def test_the_study_list_links_results_only_once_there_are_judgments(staff_client, sets):
    study = _imported_study(sets)
    results = reverse("results:study-results", args=[study.pk])
    assert results not in staff_client.get(reverse("dashboard:study-list")).content.decode()
    study_open(study=study)
    _judge(study, study.comparisons.first(), RaterFactory(study=study))
    assert results in staff_client.get(reverse("dashboard:study-list")).content.decode()


def test_a_staff_account_without_the_researcher_group_cannot_create(client, django_user_model, sets, generated):
    user = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    client.force_login(user)
    assert client.get(reverse("dashboard:study-new")).status_code == 200
    assert _post(client, sets["mini"], generated).status_code == 403
    user.groups.add(Group.objects.get(name=RESEARCHER_GROUP))
    assert _post(client, sets["mini"], generated).status_code == 302
