"""Blind media: everything a rater's browser receives for the two sides, except the pixels, says nothing about the
model or about a trial being gold. The classifier test fits a classifier on all of it and finds chance."""

import io
import math
import random
import re

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from drawbench.catalog.models import Sample
from drawbench.studies.models import Assignment, DisplayFormat, DisplayImage
from drawbench.studies.services import display
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory
from tests.studies.conftest import rater_client

pytestmark = pytest.mark.django_db

IMAGE_HEADERS = ("Content-Type", "Content-Length", "Cache-Control", "Last-Modified", "ETag", "Expires", "Vary")


# --- padding ------------------------------------------------------------------------------------------------------


def noise_image(rng: np.random.Generator, size=(40, 40)) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, size=(*size[::-1], 3), dtype=np.uint8), mode="RGB")


@pytest.mark.parametrize("display_format", DisplayFormat.values)
@pytest.mark.parametrize("extra", [4, 12, 13, 1000, 70_000, 200_003])
def test_padding_makes_any_length_and_decodes_to_the_same_pixels(display_format, extra):
    pixels = display.display_pixels(noise_image(np.random.default_rng(extra)), 64)
    data = display.encode(pixels, display_format)
    extra = max(extra, display.PAD_MIN[display_format])

    padded = display.pad(data, len(data) + extra, display_format)

    assert len(padded) == len(data) + extra
    decoded, original = Image.open(io.BytesIO(padded)), Image.open(io.BytesIO(data))
    assert decoded.format == original.format and decoded.size == (64, 64)
    assert np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(original.convert("RGB")))


def test_padding_refuses_a_length_it_cannot_make():
    data = display.encode(display.display_pixels(noise_image(np.random.default_rng(0)), 32), DisplayFormat.JPEG)
    with pytest.raises(ValueError):
        display.pad(data, len(data) + 2, DisplayFormat.JPEG)


def test_display_pixels_are_square_at_the_study_size_with_nothing_but_pixels():
    tall = noise_image(np.random.default_rng(1), size=(30, 90))
    tall.info["comment"] = b"made by model A"

    shown = display.display_pixels(tall, 96)

    assert shown.size == (96, 96) and shown.mode == "RGB" and not shown.info
    data = display.encode(shown, DisplayFormat.JPEG)
    assert b"model A" not in data and not Image.open(io.BytesIO(data)).getexif()


# --- the classifier test ------------------------------------------------------------------------------------------


def store(image: Image.Image, image_format: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return default_storage.save(
        f"samples/{random.getrandbits(64):016x}.{image_format.lower()}", ContentFile(buffer.getvalue())
    )


@pytest.fixture
def two_model_study(make_study):
    """A study between a model that makes small square PNGs and one that makes large oblong JPEGs (different native
    sizes, formats and byte sizes), with gold trials."""
    from drawbench.studies.services.studies import study_create, study_open

    rng = np.random.default_rng(7)
    prompt_set = PromptSetFactory()
    prompts = [PromptFactory(prompt_set=prompt_set, position=i + 1, category=f"C{i % 3}") for i in range(40)]
    small, large = EvaluatedModelFactory(name="small-png"), EvaluatedModelFactory(name="large-jpeg")
    samples = []
    for prompt in prompts:
        for index in range(8):
            samples.append(
                Sample(
                    evaluated_model=small, prompt=prompt, index=index, seed=index, width=24, height=24,
                    image=store(noise_image(rng, (24, 24)), "PNG"), content_hash=f"s{prompt.pk}-{index}",
                )
            )  # fmt: skip
            samples.append(
                Sample(
                    evaluated_model=large, prompt=prompt, index=index, seed=index, width=72, height=48,
                    image=store(Image.new("RGB", (72, 48), tuple(int(c) for c in rng.integers(0, 256, 3))), "JPEG"),
                    content_hash=f"l{prompt.pk}-{index}",
                )
            )  # fmt: skip
    Sample.objects.bulk_create(samples)
    study = study_create(
        name="blind", prompt_set=prompt_set, evaluated_models=[small, large], ratings_per_comparison=10,
        gold_rate=0.3, display_size=96,
    )  # fmt: skip
    return study_open(study=study)


def side_features(client: Client, urls: list[str]) -> tuple[list[float], list[tuple]]:
    """What the browser receives for one side's first two images, but their pixels: numbers for the classifier, and
    the raw header values."""
    features, headers = [], []
    for url in urls[:2]:
        response = client.get(url)
        assert response.status_code == 200
        data = response.content
        image = Image.open(io.BytesIO(data))
        headers.append(tuple(response.headers.get(h) for h in IMAGE_HEADERS))
        name = url.rsplit("/", 1)[1]
        features += [
            len(url), len(name), sum(map(ord, name)) % 97, ord(name[0]), ord(name[-1]),
            len(data), *image.size, {"JPEG": 0, "PNG": 1}.get(image.format, 2),
            sum(1 for h in response.headers) , int("Last-Modified" in response.headers),
            int("ETag" in response.headers),
        ]  # fmt: skip
    return features, headers


def cross_validated_accuracy(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, folds: int = 5, k: int = 7) -> float:
    """k-nearest-neighbour accuracy on standardised features (constant ones dropped), cross-validated over `folds`
    folds of whole groups: an image (one comparison's, one gold trial's) is never both learnt and tested, so the
    classifier must generalise from what it receives, not recognise an image it has seen labelled."""
    spread = x.std(axis=0)
    x = (x[:, spread > 0] - x[:, spread > 0].mean(axis=0)) / spread[spread > 0]
    rng = np.random.default_rng(0)
    labels = np.unique(groups)
    rng.shuffle(labels)
    correct = 0
    for fold_groups in np.array_split(labels, folds):
        test = np.flatnonzero(np.isin(groups, fold_groups))
        train = np.flatnonzero(~np.isin(groups, fold_groups))
        # Balanced training classes: holding out whole groups of one class would otherwise tilt the rest towards
        # the other, and a classifier that learnt nothing would score below chance.
        per_class = min(np.sum(y[train] == 0), np.sum(y[train] == 1))
        train = np.concatenate([rng.choice(train[y[train] == c], size=per_class, replace=False) for c in (0, 1)])
        for i in test:
            if x.shape[1] == 0:
                guess = np.bincount(y[train], minlength=2).argmax()
            else:
                nearest = train[np.argsort(np.abs(x[train] - x[i]).sum(axis=1), kind="stable")[:k]]
                guess = np.bincount(y[nearest], minlength=2).argmax()
            correct += guess == y[i]
    return correct / len(y)


def wilson(p: float, n: int, z: float = 3.29) -> tuple[float, float]:
    """Wilson's interval for a proportion; 99.9% by default, so that a classifier at chance fails the test about
    once in a thousand runs (a 95% interval would leave out the truth, 0.5, in one run of twenty)."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.slow
def test_a_classifier_on_everything_but_the_pixels_cannot_tell_the_model_or_a_gold_trial(two_model_study):
    study = two_model_study
    browser = Client()
    sides, side_models, side_groups, items, item_gold, item_groups, all_headers = [], [], [], [], [], [], set()
    for visitor in range(24):
        start = APIClient(REMOTE_ADDR=f"192.0.2.{visitor + 1}").post(
            reverse("api-rater-start", args=[study.rater_token]), {}, format="json"
        )
        from drawbench.studies.models import Rater

        client = rater_client(Rater.objects.get(access_token=start.json()["rater_token"]))
        item = client.get(reverse("api-rater-assignment", args=[study.rater_token])).json()["assignment"]
        while item is not None:
            assignment = Assignment.objects.select_related("comparison").get(key=item["key"])
            left, left_headers = side_features(browser, item["left_images"])
            right, right_headers = side_features(browser, item["right_images"])
            all_headers.update(left_headers + right_headers)
            assert not set(item["left_images"]) & set(item["right_images"]), "one URL on both sides"
            items.append(left + right + [int(item["left_images"][0] == item["right_images"][0])])
            item_gold.append(int(assignment.kind == Assignment.Kind.GOLD))
            group = assignment.comparison_id or -assignment.gold_trial_id
            item_groups.append(group)
            if assignment.kind == Assignment.Kind.COMPARISON:
                left_is_a = assignment.left_model_id == assignment.comparison.model_a_id
                sides += [left, right]
                side_models += [int(left_is_a), int(not left_is_a)]
                side_groups += [group, group]
            body = {"key": item["key"], "answers": {"fidelity": "tie", "alignment": "tie"}, "response_time_ms": 3000}
            response = client.post(reverse("api-rater-answer", args=[study.rater_token]), body, format="json")
            item = response.json()["next"]["assignment"]
            if len(items) >= 26 * (visitor + 1):
                break

    assert len(items) >= 200 and sum(item_gold) >= 40
    # Every image came with the same headers: one type, one length, the same caching, no validators.
    assert len(all_headers) == 1, all_headers
    (content_type, _, cache_control, last_modified, etag, *_) = next(iter(all_headers))
    assert content_type == "image/jpeg" and last_modified is None and etag is None and "private" in cache_control

    model_accuracy = cross_validated_accuracy(
        np.array(sides, dtype=float), np.array(side_models), np.array(side_groups)
    )
    gold = np.array(item_gold)
    # Balanced classes: every gold item and as many comparisons, drawn at random.
    comparisons = np.random.default_rng(1).choice(np.flatnonzero(gold == 0), size=int(gold.sum()), replace=False)
    chosen = np.concatenate([np.flatnonzero(gold == 1), comparisons])
    gold_accuracy = cross_validated_accuracy(
        np.array(items, dtype=float)[chosen], gold[chosen], np.array(item_groups)[chosen]
    )

    print(f"which model: {model_accuracy:.3f} of {len(side_models)}; is gold: {gold_accuracy:.3f} of {len(chosen)}")
    # A leak is accuracy above chance. Cross-validated accuracy over grouped items varies more than a binomial count:
    # at chance, over 29 runs, which-model read mean 0.493, SD 0.027 at n ≈ 680 (1.4× the binomial SD) and is-gold
    # mean 0.507, SD 0.050 at n ≈ 190 (1.4×; its gold items come from a dozen trials served many times), so the
    # interval is taken on a third of the n (SD up to 1.7×), which puts its 99.9% bound 3.9 or more SDs above chance.
    # A fixed cap at 0.6 beside it was 1.9 SDs above chance for is-gold and failed about one CI run in 20. Below
    # chance is that spread, not a tell (a two-sided check failed about one run in 20).
    for accuracy, n in ((model_accuracy, len(side_models)), (gold_accuracy, len(chosen))):
        low, _ = wilson(accuracy, n // 3)
        assert low <= 0.5, (accuracy, n, low)


def test_the_classifier_finds_a_leak_when_there_is_one():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=300)
    noise = rng.normal(size=(300, 5))
    leaky = np.column_stack([noise, labels * 50_000 + rng.integers(0, 2_000, size=300)])

    groups = np.arange(300) // 3
    assert cross_validated_accuracy(noise, labels, groups) < 0.6
    assert cross_validated_accuracy(leaky, labels, groups) > 0.95


# --- the media route ----------------------------------------------------------------------------------------------


def test_the_media_route_serves_only_display_images_of_open_studies(make_study):
    study = make_study(n_prompts=1, display_size=64)
    image = DisplayImage.objects.filter(study=study).first()
    url = reverse("rater:display-image", args=[study.rater_token, image.name])
    client = Client()

    assert client.get(url).status_code == 200
    assert client.get(reverse("rater:display-image", args=[study.rater_token, "x" * 22])).status_code == 404
    assert client.get(reverse("rater:display-image", args=["other-study", image.name])).status_code == 404
    sample_file = Sample.objects.first().image.name.rsplit("/", 1)[1]
    assert client.get(reverse("rater:display-image", args=[study.rater_token, sample_file])).status_code == 404
    assert (
        client.get(reverse("rater:display-image", args=[study.rater_token, image.file.rsplit("/", 1)[1]])).status_code
        == 404
    )
    assert client.post(url).status_code == 405
    study.status = study.Status.CLOSED
    study.save(update_fields=["status"])
    assert client.get(url).status_code == 404


def test_a_sample_shown_in_two_studies_has_a_different_name_in_each(make_study):
    first = make_study(n_prompts=1, display_size=64)
    from drawbench.studies.services.studies import study_create, study_open

    second = study_open(
        study=study_create(
            name="again", prompt_set=first.prompt_set, evaluated_models=list(first.evaluated_models.all())
        )
    )
    names = lambda study: dict(DisplayImage.objects.filter(study=study).values_list("sample_id", "name"))  # noqa: E731

    assert names(first).keys() == names(second).keys()
    assert not set(names(first).values()) & set(names(second).values())
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", name) for name in names(first).values())
