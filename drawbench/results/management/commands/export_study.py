"""Export a study's judgments, results, ranking or per-rater diagnostics as CSV or JSON: the same input serializers,
exports and renderers as the export API."""

import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from drawbench.results import intervals
from drawbench.results.apis import (
    EXPORT_RENDERERS,
    StudyJudgmentListApi,
    StudyRankingApi,
    StudyRaterDiagnosticsApi,
    StudyResultsApi,
)
from drawbench.results.bundle import study_bundle
from drawbench.studies.models import Study

EXPORTS = {
    "judgments": StudyJudgmentListApi,
    "results": StudyResultsApi,
    "ranking": StudyRankingApi,
    "raters": StudyRaterDiagnosticsApi,
}


class Command(BaseCommand):
    help = (
        "Export a study's raw judgments, aggregated results, model ranking or per-rater diagnostics as CSV or JSON "
        "(to a file or standard output)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("study_id", type=int)
        parser.add_argument("--what", choices=sorted(EXPORTS), default="judgments")
        parser.add_argument("--format", dest="fmt", choices=sorted(EXPORT_RENDERERS), default="csv")
        parser.add_argument("--output", type=Path, help="File to write; standard output when omitted.")
        parser.add_argument(
            "--bundle",
            type=Path,
            metavar="DIR",
            help="Write the release bundle into DIR (created if missing): judgments CSV with its JSON data "
            "dictionary, results, study config, prompt set, sample manifest with hashes, gold and practice answers "
            "(controls.csv), software versions.",
        )
        parser.add_argument(
            "--include-excluded", action="store_true", help="Also export judgments flagged as excluded."
        )
        parser.add_argument(
            "--exclude-flagged-raters",
            action="store_true",
            help="Leave out judgments of raters flagged by quality control (judgments, results, ranking).",
        )
        parser.add_argument(
            "--no-spreadsheet-safe",
            dest="spreadsheet_safe",
            action="store_false",
            help="Write text cells exactly as stored, even those a spreadsheet would run as a formula (=, +, -, @): "
            "for pandas, never for a file opened in a spreadsheet.",
        )
        parser.add_argument(
            "--method",
            choices=intervals.METHODS,
            help=f"Interval method of the results export (default {intervals.DEFAULT_METHOD}).",
        )

    def handle(
        self,
        *args,
        study_id: int,
        what: str,
        fmt: str,
        output: Path | None,
        include_excluded: bool,
        exclude_flagged_raters: bool,
        method: str | None,
        spreadsheet_safe: bool = True,
        bundle: Path | None = None,
        **options,
    ):
        try:
            study = Study.objects.get(pk=study_id)
        except Study.DoesNotExist:
            raise CommandError(f"Study {study_id} does not exist.") from None
        if bundle is not None:
            bundle.mkdir(parents=True, exist_ok=True)
            files = study_bundle(study=study, method=method or intervals.DEFAULT_METHOD)
            for name, content in files.items():
                _write_atomically(bundle / name, content)
            self.stderr.write(f"Wrote the bundle of study {study.pk} to {bundle}: {', '.join(files)}")
            return
        api = EXPORTS[what]
        given = {
            "include_excluded": include_excluded,
            "exclude_flagged_raters": exclude_flagged_raters,
            "method": method,
        }
        fields = api.InputSerializer().fields
        unused = [name for name, value in given.items() if value and name not in fields]
        if unused:
            flags = ", ".join("--" + name.replace("_", "-") for name in unused)
            raise CommandError(f"{flags} does not apply to the {what} export.")
        serializer = api.InputSerializer(data={name: value for name, value in given.items() if value is not None})
        if not serializer.is_valid():
            raise CommandError(f"Invalid options: {serializer.errors}")
        data = api.export(study=study, **serializer.validated_data)
        context = {"header": api.header(), "spreadsheet_safe": spreadsheet_safe}
        content = EXPORT_RENDERERS[fmt]().render(data, renderer_context=context)
        if output is None:
            self.stdout.write(content.decode("utf-8"), ending="")
            return
        _write_atomically(output, content)
        self.stderr.write(f"Wrote {what} of study {study.pk} ({fmt}) to {output}")


def _write_atomically(path: Path, content: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it, so no half-written export is ever left."""
    directory = path.resolve().parent
    if not directory.is_dir():
        raise CommandError(f"Cannot write {path}: directory {directory} does not exist.")
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
