"""The dashboard's catalog pages: models, prompt sets, sample imports and generation runs; who may use them, and
what a bad upload (a broken CSV, a zip that climbs out of its folder or inflates to gigabytes) gets."""

import re
import tempfile

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from drawbench.backends.base import backend_config_check
from drawbench.catalog.models import EvaluatedModel, Prompt, PromptSet, Sample
from drawbench.dashboard.models import SampleImportJob
from drawbench.generation.models import GenerationRun
from drawbench.studies.services.studies import study_create
from tests.dashboard.upload_support import folder_zip, png, zip_upload
from tests.factories import EvaluatedModelFactory, SampleFactory

pytestmark = [pytest.mark.django_db]

DIFFUSERS = "drawbench.backends.diffusers_backend.DiffusersBackend"
IMPORTED = "drawbench.backends.imported.ImportBackend"
SEED_BACKEND = "tests.generation.fake_backends.SeedImageBackend"


@pytest.fixture
def bare_staff_client(client, django_user_model):
    """Staff, but in no group: reads the pages, writes nothing."""
    user = django_user_model.objects.create_user(username="bare-staff", password="pw-bare-123", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def fresh_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _errors(response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


# --- who may do what ------------------------------------------------------------------------------------------

PAGES = ["model-list", "model-new", "prompt-set-list", "prompt-set-upload", "sample-import", "run-list", "run-new"]


@pytest.mark.parametrize("page", PAGES)
def test_every_catalog_page_sends_a_non_staff_user_to_the_login_page(client, django_user_model, page):
    client.force_login(django_user_model.objects.create_user(username="someone", password="pw-someone-1"))

    response = client.get(reverse(f"dashboard:{page}"))

    assert response.status_code == 302 and "/login/" in response.url


@pytest.mark.parametrize("page", PAGES)
def test_staff_reads_every_catalog_page(bare_staff_client, page):
    assert bare_staff_client.get(reverse(f"dashboard:{page}")).status_code == 200


def test_staff_without_the_permissions_gets_403_on_every_write_and_nothing_changes(bare_staff_client, prompt_set):
    model = EvaluatedModelFactory(name="closed", backend=IMPORTED)
    run = GenerationRun.objects.create(
        evaluated_model=EvaluatedModelFactory(name="gen", backend=SEED_BACKEND), prompt_set=prompt_set, total=6
    )
    writes = {
        "model-new": ({"name": "x", "version": "1", "backend": IMPORTED, "config": "{}"}, []),
        "model-edit": ({"name": "x", "version": "1", "backend": IMPORTED, "description": "new"}, [model.pk]),
        "prompt-set-upload": (
            {"slug": "up", "file": SimpleUploadedFile("p.csv", b"prompt,category\nA cat.,Animals\n")},
            [],
        ),
        "sample-import": (
            {
                "evaluated_model": model.pk,
                "prompt_set": prompt_set.pk,
                "samples_per_prompt": 2,
                "archive": folder_zip(),
            },
            [],
        ),
        "run-new": (
            {"evaluated_model": run.evaluated_model.pk, "prompt_set": prompt_set.pk, "samples_per_prompt": 1},
            [],
        ),
        "generation-run-cancel": ({}, [run.pk]),
        "generation-run-resume": ({}, [run.pk]),
    }
    for name, (data, args) in writes.items():
        response = bare_staff_client.post(reverse(f"dashboard:{name}", args=args), data)
        assert response.status_code == 403, name

    model.refresh_from_db()
    run.refresh_from_db()
    assert (EvaluatedModel.objects.count(), model.name, model.description) == (2, "closed", "")
    assert not PromptSet.objects.filter(slug="up").exists()
    assert Sample.objects.count() == 0 and GenerationRun.objects.count() == 1 and run.status == "pending"


def test_the_researcher_group_holds_the_catalog_write_permissions(staff_user):
    for permission in (
        "catalog.add_evaluatedmodel",
        "catalog.change_evaluatedmodel",
        "catalog.add_promptset",
        "catalog.add_sample",
        "generation.add_generationrun",
        "generation.change_generationrun",
    ):
        assert staff_user.has_perm(permission), permission


def test_the_header_links_to_every_catalog_page(staff_client):
    html = staff_client.get(reverse("dashboard:study-list")).content.decode()
    for page in ("model-list", "prompt-set-list", "sample-import", "run-list"):
        assert f'href="{reverse(f"dashboard:{page}")}"' in html, page


# --- models ---------------------------------------------------------------------------------------------------


def test_model_list_shows_backend_or_imported_and_sample_counts(bare_staff_client, prompt_set):
    closed = EvaluatedModelFactory(name="closed", backend=IMPORTED)
    EvaluatedModelFactory(name="tiny", backend=DIFFUSERS, config={"tiny": True})
    for index in range(3):
        SampleFactory(evaluated_model=closed, prompt=prompt_set.prompts.first(), index=index)

    html = bare_staff_client.get(reverse("dashboard:model-list")).content.decode()

    closed_row = re.search(rf'<tr data-model="{closed.pk}">(.*?)</tr>', html, re.S).group(1)
    assert "imported" in closed_row and '<td class="samples">3</td>' in closed_row
    assert "DiffusersBackend" in html


def test_model_new_creates_a_model_whose_config_the_backend_accepts(staff_client):
    response = staff_client.post(
        reverse("dashboard:model-new"),
        {"name": "sd-tiny", "version": "2", "backend": DIFFUSERS, "config": '{"tiny": true, "num_inference_steps": 3}'},
    )

    assert response.status_code == 302
    model = EvaluatedModel.objects.get(name="sd-tiny")
    assert (model.version, model.config) == ("2", {"tiny": True, "num_inference_steps": 3})


@pytest.mark.parametrize(
    "config, named",
    [
        ('{"tiny": true, "num_inference_steps": "fifty"}', "'num_inference_steps'"),
        ('{"tiny": true, "guidance": 7}', "'guidance'"),
        ('{"tiny": true, "dtype": "float8"}', "dtype"),
    ],
    ids=["wrong type", "unknown key", "bad value"],
)
def test_model_new_with_a_bad_config_names_the_key_and_creates_nothing(staff_client, config, named):
    response = staff_client.post(
        reverse("dashboard:model-new"), {"name": "bad", "version": "1", "backend": DIFFUSERS, "config": config}
    )

    assert response.status_code == 200
    errors = re.search(r'<ul class="errorlist"[^>]*>(.*?)</ul>', response.content.decode(), re.S).group(1)
    assert named in errors.replace("&#x27;", "'")
    assert not EvaluatedModel.objects.filter(name="bad").exists()


def test_model_new_with_json_that_does_not_parse_says_where(staff_client):
    response = staff_client.post(
        reverse("dashboard:model-new"),
        {"name": "bad", "version": "1", "backend": DIFFUSERS, "config": '{\n  "tiny": true,\n}'},
    )

    assert "not valid JSON" in _errors(response) and "line 3" in _errors(response)
    assert not EvaluatedModel.objects.exists()


def test_model_new_with_a_backend_that_is_no_backend_says_so(staff_client):
    response = staff_client.post(
        reverse("dashboard:model-new"),
        {"name": "bad", "version": "1", "backend": "tests.generation.fake_backends.NotABackend", "config": "{}"},
    )

    assert "is not a subclass of drawbench.backends.base.SampleBackend" in _errors(response)
    assert not EvaluatedModel.objects.exists()


def test_model_edit_changes_the_description_but_freezes_the_config_of_a_model_with_samples(staff_client, prompt_set):
    model = EvaluatedModelFactory(name="closed", backend=IMPORTED)
    SampleFactory(evaluated_model=model, prompt=prompt_set.prompts.first(), index=0)
    url = reverse("dashboard:model-edit", args=[model.pk])
    base = {"name": "closed", "version": "1", "backend": IMPORTED, "config": "{}"}

    assert staff_client.post(url, {**base, "description": "made by an API"}).status_code == 302
    refused = staff_client.post(url, {**base, "config": '{"max_image_bytes": 1000}'})

    model.refresh_from_db()
    assert model.description == "made by an API" and model.config == {}
    assert "has 1 sample(s)" in _errors(refused) and "add a new version" in _errors(refused)


def test_backend_config_check_names_the_key_for_every_known_backend():
    for path, config, key in (
        (DIFFUSERS, {"tiny": True, "height": "big"}, "'height'"),
        ("drawbench.backends.imagen_backend.ImagenBackend", {"tiny": True, "steps": 2.5}, "'steps'"),
        (IMPORTED, {"max_image_bytes": "lots"}, "'max_image_bytes'"),
        (IMPORTED, {"max_bytes": 5}, "'max_bytes'"),
    ):
        with pytest.raises(Exception) as caught:
            backend_config_check(path, config)
        assert key in str(caught.value), (path, str(caught.value))


# --- prompt sets ----------------------------------------------------------------------------------------------


def test_prompt_set_list_shows_prompts_and_categories_with_counts(bare_staff_client, prompt_set):
    html = bare_staff_client.get(reverse("dashboard:prompt-set-list")).content.decode()

    row = re.search(r'<tr data-prompt-set="mini">(.*?)</tr>', html, re.S).group(1)
    assert '<td class="prompts">3</td>' in row
    assert re.search(r"Colors <span class=\"muted\">\(2\)</span>.*Counting <span class=\"muted\">\(1\)</span>", row)


def test_prompt_set_upload_of_a_csv_imports_it_in_file_order(staff_client):
    body = "prompt,category,id\nA red cube.,Colors,c1\nThree dogs.,Counting,n1\nA green cone.,Colors,c2\n"
    response = staff_client.post(
        reverse("dashboard:prompt-set-upload"),
        {"slug": "mine", "title": "My prompts", "file": SimpleUploadedFile("mine.csv", body.encode())},
    )

    assert response.status_code == 302
    prompt_set = PromptSet.objects.get(slug="mine")
    assert prompt_set.title == "My prompts" and prompt_set.source == "upload:mine.csv"
    rows = list(prompt_set.prompts.order_by("position").values_list("position", "text", "category", "external_id"))
    assert rows == [
        (1, "A red cube.", "Colors", "c1"),
        (2, "Three dogs.", "Counting", "n1"),
        (3, "A green cone.", "Colors", "c2"),
    ]


def test_prompt_set_upload_of_jsonl_imports_it(staff_client):
    body = '{"prompt": "A cat.", "category": "Animals"}\n{"prompt": "A dog.", "category": "Animals", "id": 7}\n'
    staff_client.post(
        reverse("dashboard:prompt-set-upload"),
        {"slug": "animals", "file": SimpleUploadedFile("animals.jsonl", body.encode())},
    )

    assert list(Prompt.objects.filter(prompt_set__slug="animals").values_list("text", "external_id")) == [
        ("A cat.", ""),
        ("A dog.", "7"),
    ]


@pytest.mark.parametrize(
    "name, body, expected",
    [
        ("bad.csv", "prompt,category\nA cat.,Animals\nA dog.,\n", "bad.csv, line 3, column 'category'"),
        (
            "bad.jsonl",
            '{"prompt": "A cat.", "category": "Animals"}\n{"prompt": 5, "category": "x"}\n',
            "bad.jsonl, line 2, field 'prompt'",
        ),
        ("bad.csv", "prompt,category\nA cat.,Animals\nA cat.,Animals\n", "bad.csv, line 3"),
        ("bad.jsonl", '{"prompt": "A cat.", "category": "Animals"}\n{"prompt": "A dog."\n', "bad.jsonl, line 2"),
    ],
    ids=["empty category", "jsonl wrong type", "duplicate prompt", "jsonl broken line"],
)
def test_prompt_set_upload_of_a_bad_file_names_file_line_and_field_and_imports_nothing(
    staff_client, name, body, expected
):
    response = staff_client.post(
        reverse("dashboard:prompt-set-upload"), {"slug": "broken", "file": SimpleUploadedFile(name, body.encode())}
    )

    assert response.status_code == 200
    assert expected in _errors(response).replace("&#x27;", "'")
    assert "nothing was imported" in _errors(response)
    assert not PromptSet.objects.filter(slug="broken").exists() and not Prompt.objects.exists()


def test_prompt_set_upload_refuses_a_file_that_is_no_prompt_file(staff_client):
    response = staff_client.post(
        reverse("dashboard:prompt-set-upload"), {"slug": "x", "file": SimpleUploadedFile("prompts.xlsx", b"PK\x03\x04")}
    )

    assert "expected a .csv, .tsv, .jsonl or .ndjson file" in _errors(response)
    assert not PromptSet.objects.exists()


def test_prompt_set_upload_over_a_set_a_study_uses_is_refused_and_changes_nothing(staff_client, staff_user, prompt_set):
    models = [EvaluatedModelFactory(backend=IMPORTED), EvaluatedModelFactory(backend=IMPORTED)]
    for model in models:
        for prompt in prompt_set.prompts.all():
            SampleFactory(evaluated_model=model, prompt=prompt, index=0)
    study_create(
        name="Uses mini", prompt_set=prompt_set, evaluated_models=models, samples_per_side=1, created_by=staff_user
    )

    response = staff_client.post(
        reverse("dashboard:prompt-set-upload"),
        {"slug": "mini", "file": SimpleUploadedFile("mini.csv", b"prompt,category\nSomething new.,Colors\n")},
    )

    assert "is used by 1 study" in _errors(response)
    assert list(prompt_set.prompts.values_list("text", flat=True)) == [
        "A red colored car.",
        "Two cats.",
        "A blue bird.",
    ]


def test_updating_an_existing_prompt_set_needs_the_change_permission(client, django_user_model, prompt_set):
    user = django_user_model.objects.create_user(username="adder", password="pw-adder-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="add_promptset"))
    client.force_login(user)

    response = client.post(
        reverse("dashboard:prompt-set-upload"),
        {"slug": "mini", "file": SimpleUploadedFile("mini.csv", b"prompt,category\nSomething new.,Colors\n")},
    )

    assert response.status_code == 403
    assert prompt_set.prompts.count() == 3


# --- sample imports -------------------------------------------------------------------------------------------


@pytest.fixture
def closed_model():
    return EvaluatedModelFactory(name="closed", backend=IMPORTED)


@pytest.fixture
def importer(staff_client, fresh_media, django_capture_on_commit_callbacks):
    """Upload on the import page; the job is queued on commit (a Celery task, eager in the tests), and the page it
    redirects to is returned once the job has run."""

    def run(model, prompt_set, archive, n=2, **extra):
        data = {"evaluated_model": model.pk, "prompt_set": prompt_set.pk, "samples_per_prompt": n, "archive": archive}
        with django_capture_on_commit_callbacks(execute=True):
            response = staff_client.post(reverse("dashboard:sample-import"), {**data, **extra})
        assert response.status_code == 302, _errors(response)
        job = SampleImportJob.objects.get(pk=int(response.url.rstrip("/").rsplit("/", 1)[1]))
        assert job.status in ("done", "failed") and not job.archive_file and not job.manifest_file
        assert list((fresh_media / "imports").rglob("*.*")) == [], "the upload outlived its job"
        return staff_client.get(response.url)

    return run


@pytest.mark.usefixtures("fresh_media")
@pytest.mark.parametrize("prefix", ["", "my-samples/"], ids=["at the root", "in one folder"])
def test_sample_import_of_a_zipped_folder_stores_every_sample(importer, closed_model, prompt_set, prefix):
    response = importer(closed_model, prompt_set, folder_zip(prefix=prefix))

    assert response.status_code == 200
    assert "Imported 6 sample(s) of 3 prompt(s) from samples.zip" in _errors(response)
    samples = Sample.objects.filter(evaluated_model=closed_model).select_related("prompt")
    assert sorted((s.prompt.position, s.index) for s in samples) == [(p, k) for p in (1, 2, 3) for k in (0, 1)]
    pixel = Image.open(samples.get(prompt__position=2, index=1).image).getpixel((3, 3))
    assert pixel == (80, 60, 7)


@pytest.mark.usefixtures("fresh_media")
def test_sample_import_of_a_manifest_with_a_zip_of_images(importer, closed_model, prompt_set):
    manifest = "prompt,image\nA red colored car.,imgs/a.png\nA red colored car.,imgs/b.png\n"
    archive = zip_upload({"imgs/a.png": png((1, 1, 1)), "imgs/b.png": png((2, 2, 2))})

    response = importer(closed_model, prompt_set, archive, manifest=SimpleUploadedFile("list.csv", manifest.encode()))

    assert "Imported 2 sample(s) of 1 prompt(s) from list.csv + samples.zip" in _errors(response)
    assert Sample.objects.filter(evaluated_model=closed_model, prompt__position=1).count() == 2


@pytest.mark.usefixtures("fresh_media")
def test_sample_import_lists_one_problem_met_in_many_folders_once_and_imports_nothing(
    importer, closed_model, prompt_set
):
    archive = folder_zip(n=1)  # 0.png only: 1.png is missing in every folder

    response = importer(closed_model, prompt_set, archive, n=2)

    assert "Nothing was imported" in _errors(response)
    problems = re.findall(
        r"<li>(.*?)</li>", re.search(r'id="import-problems"(.*?)</div>', response.content.decode(), re.S).group(1)
    )
    assert len(problems) == 1
    assert problems[0].startswith("missing sample(s) 1") and "in 3 places: 1/, 2/, 3/" in problems[0]
    assert "Nothing was imported" in _errors(response)
    assert Sample.objects.count() == 0


@pytest.mark.usefixtures("fresh_media")
@pytest.mark.parametrize(
    "member, says",
    [
        ("../../x.png", "a path that climbs out of the archive with '..'"),
        ("1/../../x.png", "a path that climbs out of the archive with '..'"),
        ("/etc/x.png", "an absolute path"),
        ("C:/x.png", "an absolute path"),
    ],
)
def test_sample_import_refuses_a_zip_whose_names_climb_out_and_writes_no_file(
    importer, closed_model, prompt_set, tmp_path, monkeypatch, member, says
):
    # Uploads are extracted under tmp_path/t/drawbench-import-*/images/: "../../x.png" would land in tmp_path/t/.
    (tmp_path / "t").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "t"))
    members = {f"{p}/{k}.png": png() for p in (1, 2, 3) for k in range(2)}
    members[member] = png((9, 9, 9))

    response = importer(closed_model, prompt_set, zip_upload(members))

    assert "Nothing was imported" in _errors(response)
    assert f"{member}: {says}" in _errors(response).replace("&#x27;", "'")
    assert Sample.objects.count() == 0
    assert list(tmp_path.glob("**/x.png")) == [] and list((tmp_path / "t").iterdir()) == []


@pytest.mark.usefixtures("fresh_media")
def test_sample_import_refuses_a_zip_bomb_member_before_inflating_it(importer, closed_model, prompt_set, settings):
    settings.DRAWBENCH_MAX_IMAGE_BYTES = 64 * 1024
    members = {f"{p}/{k}.png": png() for p in (1, 2, 3) for k in range(2)}
    members["1/0.png"] = b"\0" * (8 * 1024 * 1024)  # 8 MB of zeros compress to a few KB

    archive = zip_upload(members)
    assert archive.size < 100_000
    response = importer(closed_model, prompt_set, archive)

    assert "Nothing was imported" in _errors(response)
    text = _errors(response)
    assert "1/0.png: 8388608 bytes uncompressed, over the limit of 65536 per image" in text
    assert "zip bomb" in text
    assert Sample.objects.count() == 0


@pytest.mark.usefixtures("fresh_media")
def test_sample_import_refuses_an_archive_over_the_total_limit(importer, closed_model, prompt_set, settings):
    settings.DRAWBENCH_MAX_IMPORT_BYTES = 200
    archive = folder_zip()

    response = importer(closed_model, prompt_set, archive)

    assert "bytes uncompressed in all, over the limit of 200 (DRAWBENCH_MAX_IMPORT_BYTES)" in _errors(response)
    assert Sample.objects.count() == 0


@pytest.mark.usefixtures("fresh_media")
def test_sample_import_of_something_that_is_no_zip_says_so(importer, closed_model, prompt_set):
    response = importer(closed_model, prompt_set, SimpleUploadedFile("s.zip", b"not a zip at all"))

    assert "not a readable zip archive" in _errors(response)


def test_sample_import_requires_the_sample_count_and_an_imported_model(staff_client, prompt_set):
    generated = EvaluatedModelFactory(name="gen", backend=SEED_BACKEND)
    data = {"evaluated_model": generated.pk, "prompt_set": prompt_set.pk, "archive": folder_zip()}

    response = staff_client.post(reverse("dashboard:sample-import"), data)

    text = _errors(response)
    assert "is generated by its backend" in text
    assert re.search(r"Samples per prompt:.*This field is required", text)
    assert Sample.objects.count() == 0


# --- generation runs ------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_media")
def test_run_new_generates_and_the_run_list_shows_it_with_its_study(
    staff_client, staff_user, prompt_set, django_capture_on_commit_callbacks
):
    painter = EvaluatedModelFactory(name="painter", backend=SEED_BACKEND)
    other = EvaluatedModelFactory(name="closed", backend=IMPORTED)
    for prompt in prompt_set.prompts.all():
        SampleFactory(evaluated_model=other, prompt=prompt, index=0)
    study = study_create(
        name="Painter vs closed", prompt_set=prompt_set, evaluated_models=[painter, other], samples_per_side=1,
        created_by=staff_user,
    )  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):  # the run's tasks are queued on commit (eager here)
        response = staff_client.post(
            reverse("dashboard:run-new"),
            {"evaluated_model": painter.pk, "prompt_set": prompt_set.pk, "categories": "Colors",
             "samples_per_prompt": 1, "batch_size": 4},
        )  # fmt: skip

    assert response.status_code == 302
    run = GenerationRun.objects.get()
    assert (run.status, run.total, run.categories) == ("done", 2, ["Colors"])
    html = staff_client.get(reverse("dashboard:run-list")).content.decode()
    row = re.search(rf'<tr data-run="{run.pk}">(.*?)</tr>', html, re.S).group(1)
    assert '<td class="run-progress">2 / 2</td>' in row and '<td class="run-failures">0</td>' in row
    assert f'href="{reverse("dashboard:study-detail", args=[study.pk])}"' in row
    assert "Resume" not in row and "Cancel" not in row


def test_run_new_for_an_imported_model_says_why_not(staff_client, prompt_set):
    model = EvaluatedModelFactory(name="closed", backend=IMPORTED)

    response = staff_client.post(
        reverse("dashboard:run-new"),
        {"evaluated_model": model.pk, "prompt_set": prompt_set.pk, "samples_per_prompt": 1, "batch_size": 4},
    )

    assert "imports its samples" in _errors(response)
    assert not GenerationRun.objects.exists()


def test_run_list_cancels_a_pending_run_and_resume_of_a_running_one_is_refused(staff_client, prompt_set, settings):
    painter = EvaluatedModelFactory(name="painter", backend=SEED_BACKEND)
    run = GenerationRun.objects.create(evaluated_model=painter, prompt_set=prompt_set, total=3, samples_per_prompt=1)
    running = GenerationRun.objects.create(
        evaluated_model=painter, prompt_set=prompt_set, total=3, samples_per_prompt=1, status="running"
    )

    html = staff_client.get(reverse("dashboard:run-list")).content.decode()
    assert reverse("dashboard:generation-run-cancel", args=[run.pk]) in html
    staff_client.post(reverse("dashboard:generation-run-cancel", args=[run.pk]))
    refused = staff_client.post(reverse("dashboard:generation-run-resume", args=[running.pk]), follow=True)

    run.refresh_from_db()
    running.refresh_from_db()
    assert run.status == "cancelled" and running.status == "running"
    assert "is running already" in _errors(refused)


def test_catalog_pages_carry_no_inline_script_or_style_element(staff_client, prompt_set):
    for page in PAGES:
        html = staff_client.get(reverse(f"dashboard:{page}")).content.decode()
        body = html.split("</head>", 1)[1]
        assert not re.search(r"<script\b(?![^>]*\bsrc=)", body), f"{page}: an inline script"
        assert "<style" not in body and " style=" not in body, page
        assert "/static/dashboard/catalog.css" in html
        for src in re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', body):
            assert src.startswith("/static/dashboard/") and staff_client.get(src).status_code == 200, src
    assert staff_client.get("/static/dashboard/catalog.css").status_code == 200


# --- the import job: queued, followed, run once -----------------------------------------------------------------


@pytest.fixture
def pending_job(staff_client, closed_model, prompt_set, fresh_media):
    """An upload whose job is queued but not run: the on-commit enqueue is not executed (no worker)."""
    data = {"evaluated_model": closed_model.pk, "prompt_set": prompt_set.pk, "samples_per_prompt": 2}
    response = staff_client.post(reverse("dashboard:sample-import"), {**data, "archive": folder_zip()})
    assert response.status_code == 302
    return SampleImportJob.objects.get()


def test_a_queued_import_waits_for_a_worker_and_its_page_polls_its_progress(staff_client, pending_job, fresh_media):
    html = staff_client.get(reverse("dashboard:sample-import-job", args=[pending_job.pk])).content.decode()
    state = staff_client.get(reverse("dashboard:sample-import-job-progress", args=[pending_job.pk])).json()

    assert "Waiting for a worker" in html and "celery -A drawbench worker" in html
    assert f'data-poll-url="{reverse("dashboard:sample-import-job-progress", args=[pending_job.pk])}"' in html
    assert (state["status"], state["finished"], state["done"]) == ("pending", False, 0)
    assert (fresh_media / pending_job.archive_file).is_file()
    assert Sample.objects.count() == 0


def test_running_a_job_reports_each_phase_and_a_second_delivery_does_nothing(pending_job, monkeypatch, fresh_media):
    from drawbench.dashboard import catalog_services

    seen = []
    writer = catalog_services._job_progress_writer

    def spy(job):
        write = writer(job)

        def record(phase, done, total):
            seen.append((phase, done, total))
            write(phase, done, total)

        return record

    monkeypatch.setattr(catalog_services, "_job_progress_writer", spy)
    monkeypatch.setattr(catalog_services, "PROGRESS_INTERVAL_S", 0)

    job = catalog_services.sample_import_job_execute(job_id=pending_job.pk)
    again = catalog_services.sample_import_job_execute(job_id=pending_job.pk)

    assert job.status == "done" and job.report["created"] == 6 and (job.done, job.total) == (6, 6)
    assert seen[0] == ("extracting", 0, 0)
    assert [s for s in seen if s[0] == "checking"] == [("checking", n, 6) for n in range(1, 7)]
    assert ("storing", 0, 6) in seen and ("storing", 6, 6) in seen
    assert again.status == "done" and Sample.objects.count() == 6
    assert not (fresh_media / pending_job.archive_file).exists()


def test_import_job_pages_are_for_staff(client, django_user_model, pending_job):
    client.force_login(django_user_model.objects.create_user(username="nobody", password="pw-nobody-1"))

    for name in ("sample-import-job", "sample-import-job-progress"):
        response = client.get(reverse(f"dashboard:{name}", args=[pending_job.pk]))
        assert response.status_code == 302 and "/login/" in response.url


def test_the_runs_poll_returns_each_run_with_its_figures_and_actions(bare_staff_client, prompt_set):
    painter = EvaluatedModelFactory(name="painter", backend=SEED_BACKEND)
    run = GenerationRun.objects.create(
        evaluated_model=painter, prompt_set=prompt_set, total=3, samples_per_prompt=1, status="running"
    )
    SampleFactory(evaluated_model=painter, prompt=prompt_set.prompts.first(), index=0)

    state = bare_staff_client.get(reverse("dashboard:run-list-progress")).json()

    assert state == {
        "runs": [
            {"id": run.pk, "status": "running", "done": 1, "total": 3, "failed": 0, "can_resume": False,
             "can_cancel": True}
        ]
    }  # fmt: skip
