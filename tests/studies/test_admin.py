"""Django admin: studies can be opened and closed there; judgments can be looked at, never added, changed or deleted."""

import pytest
from django.urls import reverse

from drawbench.studies.models import GoldTrial, Judgment, Rater, RaterFlag, Study
from drawbench.studies.services.raters import rater_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("unhurried_clock")]


@pytest.fixture
def admin_client_with_judgment(admin_client, make_study, answer):
    study = make_study(n_prompts=1)
    answer(study.comparisons.get())
    return admin_client, study, Judgment.objects.first()


def test_judgments_are_listed_and_viewable_in_the_admin(admin_client_with_judgment):
    client, _, judgment = admin_client_with_judgment

    assert client.get(reverse("admin:studies_judgment_changelist")).status_code == 200
    detail = client.get(reverse("admin:studies_judgment_change", args=[judgment.pk]))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()


def test_judgments_cannot_be_added_changed_or_deleted_in_the_admin(admin_client_with_judgment):
    client, _, judgment = admin_client_with_judgment

    assert client.get(reverse("admin:studies_judgment_add")).status_code == 403
    assert client.get(reverse("admin:studies_judgment_delete", args=[judgment.pk])).status_code == 403
    changed = client.post(reverse("admin:studies_judgment_change", args=[judgment.pk]), {"choice": "tie"})
    assert changed.status_code == 403
    bulk_delete = client.post(
        reverse("admin:studies_judgment_changelist"),
        {"action": "delete_selected", "_selected_action": [judgment.pk], "post": "yes"},
    )
    assert bulk_delete.status_code in (200, 302)
    assert Judgment.objects.filter(pk=judgment.pk, choice=judgment.choice).exists()


@pytest.mark.parametrize(
    "name",
    [
        "studies_study",
        "studies_comparison",
        "studies_rater",
        "studies_assignment",
        "studies_judgmentexclusion",
        "studies_goldtrial",
        "studies_controlanswer",
        "studies_raterflag",
    ],
)
def test_admin_lists_study_rows(admin_client_with_judgment, name):
    client, _, _ = admin_client_with_judgment

    assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200


def test_study_admin_shows_the_rater_link_and_closes_a_study(admin_client_with_judgment):
    client, study, _ = admin_client_with_judgment

    page = client.get(reverse("admin:studies_study_change", args=[study.pk]))
    client.post(reverse("admin:studies_study_changelist"), {"action": "close_studies", "_selected_action": [study.pk]})

    assert reverse("rater:study-entry", args=[study.rater_token]) in page.content.decode()
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED


def test_study_admin_makes_gold_trials_and_refreshes_rater_flags(admin_client, make_study, answer):
    study = make_study(n_prompts=6)
    rater = rater_create(study=study)
    for comparison in study.comparisons.all():
        answer(comparison, rater=rater, answers={"fidelity": "tie", "alignment": "tie"})
    changelist = reverse("admin:studies_study_changelist")

    admin_client.post(changelist, {"action": "prepare_gold_trials", "_selected_action": [study.pk]})
    admin_client.post(changelist, {"action": "refresh_rater_flags", "_selected_action": [study.pk]})

    assert GoldTrial.objects.filter(study=study).count() == 12
    assert list(RaterFlag.objects.values_list("rater", "reason")) == [(rater.pk, "always_tie")]
    page = admin_client.get(reverse("admin:studies_rater_changelist"))
    assert "Always indifferent" in page.content.decode()


def test_the_rater_admin_never_shows_a_rater_access_token(admin_client, make_study):
    rater = rater_create(study=make_study(n_prompts=1))

    page = admin_client.get(reverse("admin:studies_rater_change", args=[rater.pk]))

    assert page.status_code == 200
    assert Rater.objects.get().access_token not in page.content.decode()


def test_quality_control_settings_are_editable_in_the_admin(admin_client, make_study):
    study = make_study(n_prompts=1)
    page = admin_client.get(reverse("admin:studies_study_change", args=[study.pk]))

    for field in ("gold_rate", "practice_items", "consent_text", "completion_code", "assignment_timeout_s"):
        assert f'name="{field}"' in page.content.decode()
