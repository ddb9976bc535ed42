"""Importing samples made elsewhere: folders, manifests, every kind of bad source, and what gets stored."""

import hashlib
import io
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from drawbench.backends.imported import ImageImportError
from drawbench.catalog.models import EvaluatedModel, Sample
from drawbench.generation.services import samples_import
from tests.generation.conftest import (
    png_chunk_types,
    png_header_only,
    stored_sample_files,
    write_image,
    write_png,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_media")]


def import_problems(**kwargs) -> list[str]:
    with pytest.raises(ImageImportError) as caught:
        samples_import(**kwargs)
    return caught.value.problems


def test_samples_import_from_folder_stores_every_sample_under_its_content_hash(
    prompt_set, imported_model, sample_folder
):
    report = samples_import(
        evaluated_model=imported_model, prompt_set=prompt_set, source=sample_folder(), samples_per_prompt=2
    )

    assert (report.created, report.already_present, report.prompts) == (6, 0, 3)
    samples = Sample.objects.filter(evaluated_model=imported_model).select_related("prompt")
    assert sorted((s.prompt.position, s.index) for s in samples) == [(p, k) for p in (1, 2, 3) for k in (0, 1)]
    for sample in samples:
        data = default_storage.open(sample.image.name).read()
        assert sample.image.name == f"samples/{sample.content_hash[:2]}/{sample.content_hash}.png"
        assert hashlib.sha256(data).hexdigest() == sample.content_hash
        assert sample.seed is None
        pixel = Image.open(io.BytesIO(data)).getpixel((3, 3))
        assert pixel == (sample.prompt.position * 40, sample.index * 50, 90)
    assert len(stored_sample_files()) == 6


def test_samples_import_from_manifest_numbers_rows_in_file_order(prompt_set, imported_model, tmp_path):
    colors = {}
    rows = ["prompt,image"]
    for position, text in ((1, "A red cube on top of a blue cube."), (2, "Two dogs and one cat.")):
        for k in range(2):
            colors[position, k] = (position * 60, 10 + k * 70, 5)
            write_png(tmp_path / "images" / f"p{position}-{k}.png", color=colors[position, k])
            rows.append(f'"{text}",images/p{position}-{k}.png')
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")

    report = samples_import(
        evaluated_model=imported_model, prompt_set=prompt_set, source=manifest, samples_per_prompt=2
    )

    assert report.created == 4
    assert report.prompts_without_samples == [3]
    for sample in Sample.objects.filter(evaluated_model=imported_model).select_related("prompt"):
        image = Image.open(default_storage.open(sample.image.name))
        assert image.getpixel((0, 0)) == colors[sample.prompt.position, sample.index]


def test_samples_import_from_manifest_honours_an_index_column(prompt_set, imported_model, tmp_path):
    write_png(tmp_path / "a.png", color=(1, 2, 3))
    write_png(tmp_path / "b.png", color=(4, 5, 6))
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,image,index\nA green triangle.,a.png,1\nA green triangle.,b.png,0\n", encoding="utf-8")

    samples_import(evaluated_model=imported_model, prompt_set=prompt_set, source=manifest, samples_per_prompt=2)

    by_index = {s.index: s for s in Sample.objects.filter(evaluated_model=imported_model)}
    assert Image.open(default_storage.open(by_index[0].image.name)).getpixel((0, 0)) == (4, 5, 6)
    assert Image.open(default_storage.open(by_index[1].image.name)).getpixel((0, 0)) == (1, 2, 3)


def test_samples_import_accepts_jpeg_and_webp_and_stores_png(prompt_set, imported_model, tmp_path):
    root = tmp_path / "root"
    write_image(root / "1" / "0.jpg", "JPEG")
    write_image(root / "1" / "1.webp", "WEBP")

    samples_import(evaluated_model=imported_model, prompt_set=prompt_set, source=root, samples_per_prompt=2)

    formats = {Image.open(default_storage.open(s.image.name)).format for s in Sample.objects.all()}
    assert formats == {"PNG"}
    assert {s.settings["source_format"] for s in Sample.objects.all()} == {"JPEG", "WEBP"}


def test_samples_import_strips_metadata_that_names_the_model(prompt_set, imported_model, tmp_path):
    root = tmp_path / "root"
    write_png(root / "3" / "0.png", text={"Software": "closed-api v2", "Comment": "made by closed-api"})
    assert b"closed-api" in (root / "3" / "0.png").read_bytes()

    samples_import(evaluated_model=imported_model, prompt_set=prompt_set, source=root, samples_per_prompt=1)

    data = default_storage.open(Sample.objects.get().image.name).read()
    assert b"closed-api" not in data
    assert set(png_chunk_types(data)) <= {b"IHDR", b"IDAT", b"IEND"}


def test_samples_import_twice_changes_nothing(prompt_set, imported_model, sample_folder):
    root = sample_folder()
    samples_import(evaluated_model=imported_model, prompt_set=prompt_set, source=root, samples_per_prompt=2)
    before = list(Sample.objects.values_list("pk", "content_hash"))

    report = samples_import(evaluated_model=imported_model, prompt_set=prompt_set, source=root, samples_per_prompt=2)

    assert (report.created, report.already_present) == (0, 6)
    assert list(Sample.objects.values_list("pk", "content_hash")) == before


def test_samples_import_refuses_different_images_over_existing_samples(prompt_set, imported_model, sample_folder):
    root = sample_folder()
    samples_import(evaluated_model=imported_model, prompt_set=prompt_set, source=root, samples_per_prompt=2)
    write_png(root / "2" / "1.png", color=(0, 0, 0))

    problems = import_problems(evaluated_model=imported_model, prompt_set=prompt_set, source=root, samples_per_prompt=2)

    assert len(problems) == 1
    assert problems[0].startswith("2/1.png:") and "already has a different sample 1 of prompt 2" in problems[0]


def test_identical_images_of_two_models_share_one_stored_file(prompt_set, imported_model, tmp_path):
    root = tmp_path / "root"
    write_png(root / "1" / "0.png", color=(9, 9, 9))
    other = EvaluatedModel.objects.create(name="other", backend=imported_model.backend)

    for model in (imported_model, other):
        samples_import(evaluated_model=model, prompt_set=prompt_set, source=root, samples_per_prompt=1)

    assert Sample.objects.count() == 2
    assert len(stored_sample_files()) == 1


def test_a_failure_while_storing_rolls_back_the_rows_and_deletes_the_new_files(
    prompt_set, imported_model, sample_folder, monkeypatch
):
    from drawbench.backends.imported import ImportBackend

    opened = []
    real_open = ImportBackend.open

    def open_then_fail(self, item):
        opened.append(item)
        if len(opened) == 3:
            raise OSError("disk went away")
        return real_open(self, item)

    monkeypatch.setattr(ImportBackend, "open", open_then_fail)

    with pytest.raises(OSError, match="disk went away"):
        samples_import(
            evaluated_model=imported_model, prompt_set=prompt_set, source=sample_folder(), samples_per_prompt=2
        )

    assert len(opened) == 3
    assert Sample.objects.count() == 0 and stored_sample_files() == []


# --- bad sources: each problem names its file, and nothing is written -----------------------------------------


def _valid_root(tmp_path: Path) -> Path:
    root = tmp_path / "bad"
    for position in (1, 2):
        for k in (0, 1):
            write_png(root / str(position) / f"{k}.png", color=(position, k, 0))
    return root


def _unknown_position(root: Path) -> None:
    write_png(root / "9" / "0.png")
    write_png(root / "9" / "1.png")


def _not_a_number(root: Path) -> None:
    write_png(root / "cats" / "0.png")


def _missing_sample(root: Path) -> None:
    (root / "2" / "1.png").unlink()


def _extra_sample(root: Path) -> None:
    write_png(root / "1" / "2.png")


def _duplicate_index(root: Path) -> None:
    write_image(root / "1" / "0.jpg", "JPEG")


def _wrong_extension(root: Path) -> None:
    (root / "1" / "1.png").rename(root / "1" / "1.gif")


def _content_not_extension(root: Path) -> None:
    write_image(root / "2" / "0.png", "JPEG")


def _truncated(root: Path) -> None:
    path = root / "2" / "0.png"
    write_png(path, size=(64, 64), color=(1, 2, 3))
    path.write_bytes(path.read_bytes()[:-40])


def _not_an_image(root: Path) -> None:
    (root / "1" / "0.png").write_bytes(b"this is not an image at all")


def _gif_named_png(root: Path) -> None:
    write_image(root / "1" / "0.png", "GIF")


def _empty_file(root: Path) -> None:
    (root / "1" / "0.png").write_bytes(b"")


def _stray_file(root: Path) -> None:
    (root / "notes.txt").write_text("hello")


def _index_not_a_number(root: Path) -> None:
    write_png(root / "1" / "first.png")


def _nested_folder(root: Path) -> None:
    write_png(root / "1" / "more" / "0.png")


BAD_FOLDERS = {
    "unknown position": (_unknown_position, "9/: the prompt set has no prompt at position 9"),
    "folder not a number": (_not_a_number, "cats/: folder name is not a prompt position"),
    "missing sample": (_missing_sample, "2/: missing sample(s) 1"),
    "extra sample": (_extra_sample, "1/2.png: extra sample 2"),
    "duplicate index": (_duplicate_index, "1/0.png: duplicate sample index 0 (also 1/0.jpg)"),
    "wrong extension": (_wrong_extension, "1/1.gif: wrong extension '.gif'"),
    "content is not its extension": (_content_not_extension, "2/0.png: the file is a JPEG image"),
    "truncated": (_truncated, "2/0.png: unreadable or truncated image"),
    "not an image": (_not_an_image, "1/0.png: not a PNG, JPEG or WebP image"),
    "gif named png": (_gif_named_png, "1/0.png: not a PNG, JPEG or WebP image"),
    "empty file": (_empty_file, "1/0.png: empty file"),
    "stray file": (_stray_file, "notes.txt: unexpected file at the top level"),
    "index not a number": (_index_not_a_number, "1/first.png: file name is not a sample index"),
    "nested folder": (_nested_folder, "1/more/: unexpected folder"),
}


@pytest.mark.parametrize("breakage", BAD_FOLDERS.values(), ids=BAD_FOLDERS.keys())
def test_samples_import_rejects_a_bad_folder_naming_the_file_and_writes_nothing(
    prompt_set, imported_model, tmp_path, breakage
):
    root = _valid_root(tmp_path)
    samples_import(evaluated_model=imported_model, prompt_set=prompt_set, source=root, samples_per_prompt=2)
    rows_before, files_before = Sample.objects.count(), stored_sample_files()
    break_it, expected = breakage
    write_png(root / "3" / "0.png", color=(77, 77, 77))
    write_png(root / "3" / "1.png", color=(78, 78, 78))
    break_it(root)
    other = EvaluatedModel.objects.create(name="second", backend=imported_model.backend)

    problems = import_problems(evaluated_model=other, prompt_set=prompt_set, source=root, samples_per_prompt=2)

    assert any(problem.startswith(expected) for problem in problems), problems
    assert Sample.objects.count() == rows_before
    assert stored_sample_files() == files_before


def test_samples_import_reports_every_problem_of_a_folder_at_once(prompt_set, imported_model, tmp_path):
    root = _valid_root(tmp_path)
    _unknown_position(root)
    _missing_sample(root)
    _truncated(root)
    _wrong_extension(root)

    with pytest.raises(ImageImportError) as caught:
        samples_import(evaluated_model=imported_model, prompt_set=prompt_set, source=root, samples_per_prompt=2)

    text = str(caught.value)
    # 1/ (its 1.gif refused) and 2/ both lack sample 1: one line names both folders.
    missing = "missing sample(s) 1; expected 2 image(s) numbered from 0: 0.png, 1.png — in 2 places: 1/, 2/"
    for fragment in ("9/:", missing, "2/0.png: unreadable", "1/1.gif: wrong extension"):
        assert fragment in text
    assert str(root) in text and "nothing was imported" in text
    assert Sample.objects.count() == 0 and stored_sample_files() == []


def test_samples_import_refuses_an_image_over_the_pixel_limit_before_decoding(
    prompt_set, imported_model, tmp_path, settings
):
    settings.DRAWBENCH_MAX_IMAGE_PIXELS = 32 * 32
    root = tmp_path / "root"
    write_png(root / "1" / "0.png", size=(33, 32))

    problems = import_problems(evaluated_model=imported_model, prompt_set=prompt_set, source=root, samples_per_prompt=1)

    assert problems == [
        "1/0.png: 33x32 pixels, over the limit of 1024 (DRAWBENCH_MAX_IMAGE_PIXELS); "
        "refused as a possible decompression bomb"
    ]


def test_samples_import_refuses_a_decompression_bomb_header(prompt_set, imported_model, tmp_path):
    root = tmp_path / "root"
    (root / "1").mkdir(parents=True)
    (root / "1" / "0.png").write_bytes(png_header_only(100_000, 100_000))

    problems = import_problems(evaluated_model=imported_model, prompt_set=prompt_set, source=root, samples_per_prompt=1)

    assert len(problems) == 1
    assert problems[0].startswith("1/0.png: refused as a decompression bomb")
    assert Sample.objects.count() == 0


def test_samples_import_refuses_a_file_over_the_byte_limit(prompt_set, imported_model, tmp_path, settings):
    settings.DRAWBENCH_MAX_IMAGE_BYTES = 100
    root = tmp_path / "root"
    write_png(root / "1" / "0.png", size=(64, 64), color=(5, 5, 5), text={"pad": "x" * 200})

    problems = import_problems(evaluated_model=imported_model, prompt_set=prompt_set, source=root, samples_per_prompt=1)

    assert len(problems) == 1 and problems[0].startswith("1/0.png:") and "DRAWBENCH_MAX_IMAGE_BYTES" in problems[0]


# --- bad manifests --------------------------------------------------------------------------------------------


def _manifest(tmp_path: Path, body: str) -> Path:
    for name in ("a.png", "b.png", "c.png"):
        write_png(tmp_path / name, color=(len(name), ord(name[0]), 0))
    path = tmp_path / "manifest.csv"
    path.write_text(body, encoding="utf-8")
    return path


TRIANGLE = "A green triangle."


def _csv(header: str, *rows: str) -> str:
    return "\n".join([header, *rows]) + "\n"


BAD_MANIFESTS = {
    "prompt not in the set": (
        _csv("prompt,image", "A purple cow.,a.png"),
        "manifest.csv line 2: prompt 'A purple cow.' is not in the prompt set",
    ),
    "missing column": (
        _csv("prompt;image", f"{TRIANGLE};a.png"),
        "manifest.csv line 1: missing column(s) prompt, image; the header is ['prompt;image'], expected "
        "prompt,image[,index]; the columns look separated by ';', use commas",
    ),
    "missing file": (
        _csv("prompt,image", f"{TRIANGLE},a.png", f"{TRIANGLE},zzz.png"),
        "manifest.csv line 3 (zzz.png): file not found",
    ),
    "duplicate index": (
        _csv("prompt,image,index", f"{TRIANGLE},a.png,0", f"{TRIANGLE},b.png,0"),
        "manifest.csv line 3: duplicate sample index 0 of prompt 3 (also line 2)",
    ),
    "extra sample": (
        _csv("prompt,image", f"{TRIANGLE},a.png", f"{TRIANGLE},b.png", f"{TRIANGLE},c.png"),
        "manifest.csv line 4: extra sample 2",
    ),
    "missing sample": (
        _csv("prompt,image", f"{TRIANGLE},a.png"),
        "manifest.csv lines 2 (prompt 3, 'A green triangle.'): missing sample(s) 1; expected 2, 0 to 1",
    ),
    "path escapes the folder": (
        _csv("prompt,image", f"{TRIANGLE},../a.png", f"{TRIANGLE},b.png"),
        "manifest.csv line 2: image path '../a.png' must be relative",
    ),
    "index not a number": (
        _csv("prompt,image,index", f"{TRIANGLE},a.png,one"),
        "manifest.csv line 2: index 'one' is not a whole number",
    ),
    "wrong extension": (
        _csv("prompt,image", f"{TRIANGLE},a.png", f"{TRIANGLE},notes.txt"),
        "manifest.csv line 3 (notes.txt): wrong extension '.txt'",
    ),
}


@pytest.mark.parametrize("body, expected", BAD_MANIFESTS.values(), ids=BAD_MANIFESTS.keys())
def test_samples_import_rejects_a_bad_manifest_naming_the_line_and_writes_nothing(
    prompt_set, imported_model, tmp_path, body, expected
):
    manifest = _manifest(tmp_path, body)

    problems = import_problems(
        evaluated_model=imported_model, prompt_set=prompt_set, source=manifest, samples_per_prompt=2
    )

    assert any(problem.startswith(expected) for problem in problems), problems
    assert Sample.objects.count() == 0 and stored_sample_files() == []


def test_samples_import_rejects_a_manifest_that_is_not_utf8(prompt_set, imported_model, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("prompt,image\nCafé,a.png\n".encode("latin-1"))

    problems = import_problems(
        evaluated_model=imported_model, prompt_set=prompt_set, source=manifest, samples_per_prompt=1
    )

    assert problems[0].startswith("m.csv: not UTF-8 text")


def test_samples_import_of_a_missing_source_says_so(prompt_set, imported_model, tmp_path):
    problems = import_problems(
        evaluated_model=imported_model, prompt_set=prompt_set, source=tmp_path / "nope", samples_per_prompt=1
    )

    assert problems == [f"{tmp_path / 'nope'} does not exist (expected a folder or a manifest .csv)"]


# --- the command ----------------------------------------------------------------------------------------------


def test_import_samples_command_creates_the_model_and_imports(prompt_set, sample_folder):
    out = io.StringIO()
    call_command(
        "import_samples",
        "--model=dall-e@3",
        "--prompt-set=tiny-set",
        f"--folder={sample_folder()}",
        "--samples-per-prompt=2",
        "--create-model",
        stdout=out,
    )

    model = EvaluatedModel.objects.get(name="dall-e", version="3")
    assert model.backend == "drawbench.backends.imported.ImportBackend"
    assert Sample.objects.filter(evaluated_model=model).count() == 6
    assert "Imported 6 sample(s) of 3 prompt(s)" in out.getvalue()


def test_import_samples_command_lists_every_problem_and_imports_nothing(prompt_set, imported_model, tmp_path):
    root = _valid_root(tmp_path)
    _missing_sample(root)
    _stray_file(root)

    with pytest.raises(CommandError) as caught:
        args = ["--model=closed-api", "--prompt-set=tiny-set", f"--folder={root}", "--samples-per-prompt=2"]
        call_command("import_samples", *args)

    assert "2/: missing sample(s) 1" in str(caught.value) and "notes.txt: unexpected file" in str(caught.value)
    assert Sample.objects.count() == 0


def test_import_samples_command_names_an_unknown_model(prompt_set, sample_folder):
    with pytest.raises(CommandError, match="No evaluated model 'ghost'"):
        call_command(
            "import_samples", "--model=ghost", "--prompt-set=tiny-set", f"--folder={sample_folder()}",
            "--samples-per-prompt=2",
        )  # fmt: skip


# --- the command's numbering, grouped problems and explicit sample count --------------------------------------


def _many_prompts(count: int):
    from tests.factories import PromptFactory, PromptSetFactory

    prompt_set = PromptSetFactory(slug="many")
    for position in range(1, count + 1):
        PromptFactory(prompt_set=prompt_set, position=position, text=f"Prompt number {position}.", category="C")
    return prompt_set


def test_import_samples_command_groups_one_problem_met_in_many_folders_into_one_line(imported_model, tmp_path):
    _many_prompts(30)
    root = tmp_path / "root"
    for position in range(1, 31):
        for k in range(3):  # 0.png to 2.png: 3.png is missing everywhere
            write_png(root / str(position) / f"{k}.png", color=(position, k, 0))

    with pytest.raises(CommandError) as caught:
        call_command(
            "import_samples", "--model=closed-api", "--prompt-set=many", f"--folder={root}", "--samples-per-prompt=4"
        )

    text = str(caught.value)
    lines = [line for line in text.splitlines() if "missing sample(s) 3" in line]
    assert len(lines) == 1, text
    assert "in 30 places: 1/, 2/, 3/, 4/, 5/, 6/, 7/, 8/, 9/, 10/, ... (first 10 of 30)" in lines[0]
    assert "11/" not in lines[0]
    assert "30 problem(s) of 1 kinds" in text.splitlines()[0]
    assert Sample.objects.count() == 0


def test_import_samples_command_says_when_images_are_numbered_from_one(prompt_set, imported_model, tmp_path):
    root = tmp_path / "root"
    for position in (1, 2, 3):
        for k in (1, 2):
            write_png(root / str(position) / f"{k}.png", color=(position, k, 0))

    with pytest.raises(CommandError) as caught:
        call_command(
            "import_samples", "--model=closed-api", "--prompt-set=tiny-set", f"--folder={root}",
            "--samples-per-prompt=2",
        )  # fmt: skip

    lines = str(caught.value).splitlines()
    assert any(line.startswith("  - images are numbered from 1 in 3 prompt folder(s) (1/, 2/, 3/)") for line in lines)
    assert any("number them from 0: 2 image(s) numbered from 0: 0.png, 1.png" in line for line in lines)
    extra = [line for line in lines if "extra sample 2" in line]
    assert len(extra) == 1 and "in 3 places: 1/2.png, 2/2.png, 3/2.png" in extra[0]
    assert Sample.objects.count() == 0


def test_samples_import_says_positions_start_at_one(prompt_set, imported_model, tmp_path):
    root = tmp_path / "root"
    write_png(root / "0" / "0.png")

    problems = import_problems(evaluated_model=imported_model, prompt_set=prompt_set, source=root, samples_per_prompt=1)

    assert "0/: the prompt set has no prompt at position 0 (positions start at 1, as in the prompt file)" in problems


def test_import_samples_command_requires_samples_per_prompt(prompt_set, sample_folder):
    with pytest.raises(CommandError, match="--samples-per-prompt"):
        call_command("import_samples", "--model=closed-api", "--prompt-set=tiny-set", f"--folder={sample_folder()}")
    assert Sample.objects.count() == 0


@pytest.mark.parametrize("value", ["0", "-2", "eight"])
def test_import_samples_command_refuses_a_sample_count_that_is_not_positive(prompt_set, sample_folder, value):
    with pytest.raises(CommandError, match="--samples-per-prompt"):
        call_command(
            "import_samples", "--model=closed-api", "--prompt-set=tiny-set", f"--folder={sample_folder()}",
            f"--samples-per-prompt={value}",
        )  # fmt: skip


def test_import_samples_help_documents_the_numbering():
    from django.core.management import load_command_class

    command = load_command_class("drawbench.generation", "import_samples")
    text = command.create_parser("manage.py", "import_samples").format_help()
    flat = " ".join(text.split())
    assert "1-based positions" in flat and "0.png to <n-1>.png" in flat
    assert "--samples-per-prompt N" in flat and "(required)" in flat
