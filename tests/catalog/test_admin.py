"""The catalog admin pages render for staff, with prompt counts, filters and sample thumbnails."""

import pytest
from django.urls import reverse

from tests.factories import PromptFactory, PromptSetFactory, SampleFactory

pytestmark = pytest.mark.django_db


def test_prompt_set_changelist_shows_prompt_and_category_counts(admin_client):
    prompt_set = PromptSetFactory(title="Tiny set")
    for position, category in enumerate(["Colors", "Colors", "Text"], start=1):
        PromptFactory(prompt_set=prompt_set, position=position, category=category)

    response = admin_client.get(reverse("admin:catalog_promptset_changelist"))

    assert response.status_code == 200
    row = response.context["cl"].result_list.get(pk=prompt_set.pk)
    assert (row.prompt_count, row.category_count) == (3, 2)


def test_prompt_changelist_filters_by_set_and_category_and_searches_text(admin_client):
    prompt_set = PromptSetFactory()
    PromptFactory(prompt_set=prompt_set, text="A purple zebra.", category="Colors")
    PromptFactory(prompt_set=prompt_set, text="Three zebras.", category="Counting")
    PromptFactory(text="A purple cow.", category="Colors")

    url = reverse("admin:catalog_prompt_changelist")
    response = admin_client.get(url, {"prompt_set__id__exact": prompt_set.pk, "category": "Colors", "q": "purple"})

    assert response.status_code == 200
    assert [p.text for p in response.context["cl"].result_list] == ["A purple zebra."]


def test_sample_changelist_shows_thumbnails_and_samples_cannot_be_edited(admin_client):
    sample = SampleFactory()

    response = admin_client.get(reverse("admin:catalog_sample_changelist"))
    change = admin_client.post(reverse("admin:catalog_sample_change", args=[sample.pk]), {"index": 5})

    thumbnail = reverse("dashboard:sample-image", args=[sample.pk])
    assert f'src="{thumbnail}"' in response.content.decode()
    assert change.status_code == 403
    image = admin_client.get(thumbnail)
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert b"".join(image.streaming_content) == sample.image.open("rb").read()


def test_prompts_cannot_be_added_through_the_admin(admin_client):
    assert admin_client.get(reverse("admin:catalog_prompt_add")).status_code == 403


def test_evaluated_model_changelist_renders(admin_client):
    SampleFactory()

    assert admin_client.get(reverse("admin:catalog_evaluatedmodel_changelist")).status_code == 200
