"""Raters are blind: nothing they can see (HTML, API responses, image URLs, file names, image metadata, alt text,
ids, redirects, order) names a model or tells a gold trial from a comparison."""

import io
import json
import re

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image, PngImagePlugin
from rest_framework.test import APIClient

from drawbench.generation.services import sample_store
from drawbench.studies.models import Assignment, DisplayImage, GoldTrial
from drawbench.studies.services.studies import study_close
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory

pytestmark = pytest.mark.django_db

SRC_RE = re.compile(r'(?:src|data-full)="([^"]*)"')
# A sample's storage name: its content hash, in a folder named by the hash's first two characters when the
# generation app stored it (test factories store flat; Django's storage appends _ and 7 random characters to a name
# already taken, which only factories can cause: sample_store shares one file between identical images).
# A sample's stored file (never shown to raters): its content hash.
SAMPLE_URL_RE = re.compile(r"^/media/samples/(?:[0-9a-f]{2}/)?[0-9a-f]{64}(_[A-Za-z0-9]{7})?\.png$")
# A rater's image URL: the study link, then an opaque display name (22 URL-safe characters, 128 random bits).
DISPLAY_URL_RE = re.compile(r"^/s/[A-Za-z0-9_-]+/m/[A-Za-z0-9_-]{22}$")


@pytest.fixture
def distinctive_models():
    specs = [
        (987654321, "zebra-diffusion-xl", "v9-zeta"),
        (987654322, "quokka-imagen", "v7-omega"),
        (987654323, "narwhal-gan", "v5-sigma"),
    ]
    return [
        EvaluatedModelFactory(
            pk=pk,
            name=name,
            version=version,
            description=f"{name} made by the marmot lab",
            backend="drawbench.backends.imported.PangolinBackend",
            config={"weights": f"/models/{name}/armadillo.safetensors"},
        )
        for pk, name, version in specs
    ]


def forbidden_strings(models) -> list[str]:
    strings = ["marmot", "pangolin", "armadillo", "model_a", "model_b", "left_model", "evaluated_model"]
    for model in models:
        strings += [model.name, model.version, str(model), str(model.pk), model.name.split("-")[0]]
    return strings


def leaks(models, text: str) -> list[str]:
    """The forbidden strings found in ``text``, in any case, where no letter or digit touches them on either side.

    Responses carry thousands of characters of random URL-safe tokens (display names, CSRF tokens, nonces, rater
    links); a bare case-insensitive substring search finds "zebra" inside one about once in 10,000 runs. A model's
    name written anywhere a rater could read it (a URL path, a file name, JSON, alt text, "zebra_v9") is delimited by
    something other than a letter or a digit, and is still found."""
    return [
        s
        for s in forbidden_strings(models)
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(s)}(?![A-Za-z0-9])", text, flags=re.IGNORECASE)
    ]


def test_no_rater_visible_page_or_url_names_a_model(make_study, distinctive_models):
    study = make_study(
        n_prompts=2,
        models=distinctive_models,
        name="zebra-diffusion-xl vs quokka-imagen vs narwhal-gan",
    )
    client = Client()
    token = study.rater_token
    seen = []

    def visit(response):
        seen.append((response.status_code, response.get("Location", ""), response.content.decode()))
        return response

    visit(client.get(reverse("rater:study-entry", args=[token])))
    visit(client.post(reverse("rater:study-entry", args=[token])))
    rate_url = reverse("rater:rate", args=[token])
    answered = 0
    while True:
        page = visit(client.get(rate_url))
        if 'name="key"' not in page.content.decode():  # the finish page
            break
        key = re.search(r'name="key" value="([^"]+)"', page.content.decode()).group(1)
        visit(client.post(rate_url, {"key": key, "answer_fidelity": "left", "response_time_ms": "10"}))
        visit(
            client.post(
                rate_url,
                {"key": key, "answer_fidelity": "left", "answer_alignment": "right", "response_time_ms": "10"},
            )
        )
        answered += 1
    visit(client.post(reverse("rater:done", args=[token]), {"end": "finish"}))
    visit(client.get(reverse("rater:done", args=[token])))
    study_close(study=study)
    visit(client.get(reverse("rater:study-entry", args=[token])))
    visit(client.get(rate_url))

    assert answered == 6 == Assignment.objects.filter(completed_at__isnull=False).count()
    assert {status for status, _, _ in seen} == {200, 302, 400, 410}
    image_urls = [url for _, _, body in seen for url in SRC_RE.findall(body)]
    assert len(image_urls) >= 6 * 2 * 16
    assert all(DISPLAY_URL_RE.match(url) for url in image_urls), image_urls[:3]
    everything = "\n".join(location + body for _, location, body in seen).lower()
    assert leaks(distinctive_models, everything) == []


@pytest.mark.parametrize(
    "page",
    [
        '<img src="/media/samples/{hex}.png" alt="{model}">',
        '{{"left": "/media/ZEBRA_v9/{hex}.png"}}',
        "/s/abc/m/{hex}-narwhal-gan.jpg",
        '<span data-id="987654321">',
    ],
)
def test_the_blindness_check_would_catch_a_model_name(distinctive_models, page):
    # The check above searches every response; make sure it finds what it is looking for, in any case and delimited
    # by anything but a letter or a digit.
    assert leaks(distinctive_models, page.format(hex="a" * 64, model=distinctive_models[0])) != []


def test_the_blindness_check_ignores_a_name_inside_a_random_token(distinctive_models):
    assert leaks(distinctive_models, "/s/Kq0ZebRa7x/m/aQuokKa9pL1mArMoTz98765432107") == []


def test_which_model_is_on_the_left_varies_between_raters(make_study, distinctive_models):
    study = make_study(n_prompts=1, models=distinctive_models[:2])
    for _ in range(24):
        client = Client()
        client.post(reverse("rater:study-entry", args=[study.rater_token]))
        client.get(reverse("rater:rate", args=[study.rater_token]))
    left_models = set(Assignment.objects.values_list("left_model_id", flat=True))

    # Both orders appear unless 24 fair coin flips all agree (probability about 1 in 8 million).
    assert left_models == {distinctive_models[0].pk, distinctive_models[1].pk}


def test_no_rater_api_response_names_a_model_or_tells_a_gold_trial_apart(make_study, distinctive_models):
    study = make_study(n_prompts=2, models=distinctive_models, gold_rate=1.0, practice_items=1)
    start = APIClient().post(reverse("api-rater-start", args=[study.rater_token]), {}, format="json")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Rater {start.json()['rater_token']}")
    bodies = [start.content.decode()]
    current = client.get(reverse("api-rater-assignment", args=[study.rater_token])).json()
    bodies.append(json.dumps(current))
    shapes = set()
    while current["assignment"] is not None:
        item = current["assignment"]
        shapes.add((tuple(item), len(item["left_images"]), len(item["right_images"]), item["practice"]))
        body = {"key": item["key"], "answers": {"fidelity": "tie", "alignment": "tie"}, "response_time_ms": 2500}
        response = client.post(reverse("api-rater-answer", args=[study.rater_token]), body, format="json")
        bodies.append(response.content.decode())
        current = response.json()["next"]
    bodies.append(client.get(reverse("api-rater-completion", args=[study.rater_token])).content.decode())

    served = set(Assignment.objects.values_list("kind", flat=True))
    assert served == {"practice", "gold", "comparison"}
    # Gold trials and comparisons have the same fields and the same number of images; only practice says so.
    assert {shape[:3] for shape in shapes} == {
        (("key", "practice", "caption", "questions", "left_images", "right_images"), 8, 8)
    }
    everything = "\n".join(bodies)
    urls = [url for body in bodies for url in re.findall(r'"(/s/[^"]+/m/[^"]+)"', body)]
    assert len(urls) >= 3 * 16
    assert all(DISPLAY_URL_RE.match(url) for url in urls), urls[:3]
    assert leaks(distinctive_models, everything) == []


def test_gold_trial_images_are_named_like_sample_images_and_never_share_a_name(make_study):
    study = make_study(n_prompts=2, gold_rate=0.2)

    names = [n for trial in GoldTrial.objects.filter(study=study) for n in trial.reference_images + trial.foil_images]
    sample_names = set(DisplayImage.objects.filter(study=study, sample__isnull=False).values_list("name", flat=True))

    assert len(names) == len(set(names)) == 3 * 2 * 2 * 8
    assert not sample_names & set(names)
    prefix = reverse("rater:display-image", args=[study.rater_token, "x"])[:-1]
    assert all(DISPLAY_URL_RE.match(prefix + name) for name in [*names, *sample_names])


def _image_with_metadata(colour) -> Image.Image:
    image = Image.new("RGB", (24, 24), colour)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "zebra-diffusion-xl v9-zeta, seed 42")
    exif = Image.Exif()
    exif[0x0131] = "zebra-diffusion-xl"  # Software
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, exif=exif)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_stored_sample_images_carry_no_metadata(distinctive_models):
    prompt = PromptFactory(prompt_set=PromptSetFactory())
    source = _image_with_metadata((10, 200, 30))
    assert source.text and source.getexif()

    sample = sample_store(
        evaluated_model=distinctive_models[0], prompt=prompt, index=0, seed=1, image=source, settings={}
    )

    with default_storage.open(sample.image.name, "rb") as handle:
        data = handle.read()
    stored = Image.open(io.BytesIO(data))
    assert stored.info == {} and not stored.getexif()
    assert b"zebra" not in data.lower() and b"tEXt" not in data and b"eXIf" not in data
    assert SAMPLE_URL_RE.match(sample.image.url)


def test_identical_images_of_two_models_share_one_file_so_no_name_suffix_tells_them_apart(distinctive_models):
    prompt = PromptFactory(prompt_set=PromptSetFactory())
    black = Image.new("RGB", (24, 24), (0, 0, 0))

    first, second = (
        sample_store(evaluated_model=model, prompt=prompt, index=0, seed=1, image=black, settings={})
        for model in distinctive_models[:2]
    )

    assert first.evaluated_model_id != second.evaluated_model_id
    assert first.image.name == second.image.name
    assert not re.search(r"_[A-Za-z0-9]{7}\.png$", first.image.name)
