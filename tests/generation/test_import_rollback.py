"""A failed import leaves nothing behind: no sample rows, no stored files, and no model row that --create-model made
for it, whether the source is refused before any write or a write fails half-way."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from drawbench.catalog.models import EvaluatedModel, Sample
from drawbench.generation import services
from tests.generation.conftest import stored_sample_files, write_png

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_media")]


def import_into_new_model(folder) -> None:
    args = ["--model=dall-e@3", "--prompt-set=tiny-set", f"--folder={folder}", "--samples-per-prompt=2"]
    call_command("import_samples", *args, "--create-model")


@pytest.fixture
def fail_on_save(monkeypatch):
    """The n-th sample row refused by validation, after its file was stored (as a full disk or a constraint would)."""

    def arm(n: int) -> None:
        calls = {"n": 0}
        clean = Sample.full_clean

        def full_clean(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise ValidationError("the database refused this row")
            return clean(self, *args, **kwargs)

        monkeypatch.setattr(Sample, "full_clean", full_clean)

    return arm


def test_a_refused_source_leaves_no_model_row_behind(prompt_set, sample_folder):
    root = sample_folder()
    (root / "2" / "1.png").unlink()

    with pytest.raises(CommandError, match="missing sample"):
        import_into_new_model(root)

    assert not EvaluatedModel.objects.filter(name="dall-e").exists()
    assert Sample.objects.count() == 0 and stored_sample_files() == []


def test_a_write_that_fails_half_way_leaves_no_rows_files_or_model(prompt_set, sample_folder, fail_on_save):
    root = sample_folder()
    fail_on_save(4)

    with pytest.raises(CommandError, match="the database refused this row"):
        import_into_new_model(root)

    assert not EvaluatedModel.objects.filter(name="dall-e").exists()
    assert Sample.objects.count() == 0
    assert stored_sample_files() == []


def test_an_interrupted_import_takes_back_its_files(prompt_set, imported_model, sample_folder, monkeypatch):
    opened = {"n": 0}
    open_image = services.ImportBackend.open

    def open_then_interrupt(self, item):
        opened["n"] += 1
        if opened["n"] == 3:
            raise KeyboardInterrupt
        return open_image(self, item)

    monkeypatch.setattr(services.ImportBackend, "open", open_then_interrupt)

    with pytest.raises(KeyboardInterrupt):
        services.samples_import(
            evaluated_model=imported_model, prompt_set=prompt_set, source=sample_folder(), samples_per_prompt=2
        )

    assert Sample.objects.count() == 0 and stored_sample_files() == []


def test_a_failed_import_keeps_files_that_other_samples_use(prompt_set, imported_model, sample_folder, fail_on_save):
    services.samples_import(
        evaluated_model=imported_model, prompt_set=prompt_set, source=sample_folder(), samples_per_prompt=2
    )
    before = stored_sample_files()
    fail_on_save(2)

    with pytest.raises(CommandError):
        import_into_new_model(sample_folder())

    assert stored_sample_files() == before and len(before) == 6
    assert Sample.objects.count() == 6
    assert not EvaluatedModel.objects.filter(name="dall-e").exists()


def test_an_existing_model_is_kept_when_its_import_fails(prompt_set, sample_folder, tmp_path):
    call_command(
        "import_samples", "--model=dall-e@3", "--prompt-set=tiny-set", f"--folder={sample_folder()}",
        "--samples-per-prompt=2", "--create-model",
    )  # fmt: skip
    bad = tmp_path / "bad"
    write_png(bad / "1" / "0.png")
    write_png(bad / "1" / "1.png", color=(1, 2, 3))

    with pytest.raises(CommandError):
        import_into_new_model(bad)

    model = EvaluatedModel.objects.get(name="dall-e", version="3")
    assert Sample.objects.filter(evaluated_model=model).count() == 6
