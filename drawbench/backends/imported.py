"""Samples made elsewhere (closed APIs, other machines), imported from a folder or a manifest CSV.

Two layouts, for ``n`` samples per prompt:

- a folder ``<root>/<prompt position>/<k>.png`` (also ``.jpg``, ``.jpeg``, ``.webp``). Numbering: the prompt
  position is the prompt's 1-based position in its prompt set (the file's row order, as ``load_prompts`` stored it:
  the first prompt is ``1/``); the image index ``k`` is 0-based, ``0.png`` to ``<n-1>.png``.
- a manifest CSV with the header ``prompt,image`` and an optional ``index`` column (0-based, ``0`` to ``n-1``);
  ``image`` is a path relative to the manifest's folder. Without ``index``, a prompt's rows are numbered 0, 1, ... in
  file order.

``ImportBackend.plan()`` checks everything before anything is stored: the layout against the prompt set, the number
of samples per prompt, and every image with Pillow (readable, not truncated, under the size limits, not a
decompression bomb, content matching its extension). It reports all problems at once in an ``ImageImportError``,
each naming the file (and the manifest line); one problem met in many places (the same image missing from 200
prompt folders) is one line listing the first places.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from PIL import Image, ImageOps, UnidentifiedImageError

from drawbench.backends.base import BackendError, GeneratedImage, SampleBackend, SampleRequest

# Extension (lower case) -> the Pillow format its content must have.
IMAGE_EXTENSIONS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
IMAGE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP")
MANIFEST_IMAGE_COLUMNS: tuple[str, ...] = ("image", "image_path", "path")
MAX_LISTED_PROBLEMS = 200
# Places named on the line of a problem met in many places.
MAX_LISTED_PLACES = 10
FIRST_PROMPT_POSITION = 1
FIRST_SAMPLE_INDEX = 0

_NUMBER = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class PromptRef:
    """What an import needs to know of a prompt of the target prompt set."""

    id: int
    text: str
    position: int


@dataclass(frozen=True)
class ImportItem:
    """One validated image: sample ``index`` of a prompt, read from ``path`` (``where`` names it for people)."""

    prompt: PromptRef
    index: int
    path: Path
    where: str
    source_sha256: str
    width: int
    height: int
    format: str

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "backend": "import",
            "source_file": self.where,
            "source_sha256": self.source_sha256,
            "source_format": self.format,
            "source_size": [self.width, self.height],
        }


#: A problem: ``(where, what)`` (a file, folder or manifest line, and what is wrong there), or a whole sentence.
Problem = tuple[str, str] | str


def group_problems(problems: Iterable[Problem]) -> list[str]:
    """One line per distinct problem, in order of first appearance: ``"where: what"`` where it was met once, else
    ``"what — in N places: w1, w2, ... (first 10 of N)"``."""
    groups: dict[str, list[str]] = {}
    for problem in problems:
        where, what = ("", problem) if isinstance(problem, str) else problem
        places = groups.setdefault(what, [])
        if where and where not in places:
            places.append(where)
    lines = []
    for what, places in groups.items():
        if not places:
            lines.append(what)
        elif len(places) == 1:
            lines.append(f"{places[0]}: {what}")
        else:
            listed = ", ".join(places[:MAX_LISTED_PLACES])
            more = f", ... (first {MAX_LISTED_PLACES} of {len(places)})" if len(places) > MAX_LISTED_PLACES else ""
            lines.append(f"{what} — in {len(places)} places: {listed}{more}")
    return lines


class ImageImportError(ValueError):
    """Everything wrong with an import source: ``problems`` holds one line per distinct problem (see
    ``group_problems``), ``count`` how many places had one."""

    def __init__(self, source: Path | str, problems: Sequence[Problem]) -> None:
        self.source = str(source)
        self.count = len(problems)
        self.problems = group_problems(problems)
        listed = self.problems[:MAX_LISTED_PROBLEMS]
        more = len(self.problems) - len(listed)
        kinds = f" of {len(self.problems)} kinds" if len(self.problems) != self.count else ""
        lines = [f"Cannot import samples from {self.source}: {self.count} problem(s){kinds}; nothing was imported."]
        lines += [f"  - {problem}" for problem in listed]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))


@dataclass
class _Plan:
    items: list[ImportItem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def add(self, where: str, what: str) -> None:
        self.problems.append((where, what))


def _indices_text(indices: Iterable[int]) -> str:
    return ", ".join(str(i) for i in sorted(indices))


class ImportBackend(SampleBackend):
    """Reads and validates samples made elsewhere; it generates nothing.

    config (all optional): ``max_image_bytes`` and ``max_image_pixels``, defaulting to the settings
    ``DRAWBENCH_MAX_IMAGE_BYTES`` and ``DRAWBENCH_MAX_IMAGE_PIXELS``.
    """

    generates = False
    config_types = {"max_image_bytes": int, "max_image_pixels": int}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        unknown = sorted(set(self.config) - set(self.config_types))
        if unknown:
            raise ImproperlyConfigured(
                f"ImportBackend: unknown config key(s) {unknown}; known keys: {sorted(self.config_types)}"
            )
        for key, value in self.config.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ImproperlyConfigured(
                    f"ImportBackend: config {key!r} = {value!r} must be a whole number of at least 1"
                )
        self.max_bytes = int(self.config.get("max_image_bytes", settings.DRAWBENCH_MAX_IMAGE_BYTES))
        self.max_pixels = int(self.config.get("max_image_pixels", settings.DRAWBENCH_MAX_IMAGE_PIXELS))

    def generate(self, requests: Sequence[SampleRequest]) -> list[GeneratedImage]:
        raise BackendError(
            "Imported samples are made elsewhere: import them with `manage.py import_samples`, not a generation run."
        )

    def describe(self) -> dict[str, Any]:
        return {"backend": "import"}

    # --- validation ------------------------------------------------------------------------------------------

    def plan(
        self,
        source: Path,
        prompts: Sequence[PromptRef],
        samples_per_prompt: int,
        progress: Callable[[int], None] | None = None,
    ) -> list[ImportItem]:
        """Every image of ``source`` (a folder or a ``.csv`` manifest), validated; or ``ImageImportError``.
        ``progress`` is called with the number of images checked so far, after each one."""
        source = Path(source)
        self._progress = progress
        self._checked = 0
        if samples_per_prompt < 1:
            raise ImageImportError(source, [f"samples per prompt must be at least 1, not {samples_per_prompt}"])
        if source.is_dir():
            plan = self._plan_folder(source, prompts, samples_per_prompt)
        elif source.is_file():
            plan = self._plan_manifest(source, prompts, samples_per_prompt)
        else:
            raise ImageImportError(source, [f"{source} does not exist (expected a folder or a manifest .csv)"])
        if not plan.items and not plan.problems:
            plan.problems.append("no samples found")
        if plan.problems:
            raise ImageImportError(source, plan.problems)
        return plan.items

    def _plan_folder(self, root: Path, prompts: Sequence[PromptRef], n: int) -> _Plan:
        plan = _Plan()
        by_position = {p.position: p for p in prompts}
        seen_positions: dict[int, str] = {}
        numbered_from_one: list[str] = []
        expected = _expected_images(n)
        for entry in sorted(root.iterdir(), key=_natural_key):
            if entry.name.startswith("."):
                continue
            name = entry.name
            if not entry.is_dir():
                plan.add(
                    name,
                    "unexpected file at the top level; expected one folder per prompt position (<position>/<k>.png)",
                )
                continue
            if not _NUMBER.fullmatch(name):
                plan.add(f"{name}/", "folder name is not a prompt position (a number)")
                continue
            position = int(name)
            prompt = by_position.get(position)
            if prompt is None:
                hint = " (positions start at 1, as in the prompt file)" if position < FIRST_PROMPT_POSITION else ""
                plan.add(f"{name}/", f"the prompt set has no prompt at position {position}{hint}")
                continue
            if position in seen_positions:
                plan.add(f"{name}/", f"names prompt {position}, like {seen_positions[position]}/")
                continue
            seen_positions[position] = name
            found: dict[int, str] = {}
            named: set[int] = set()
            for file in sorted(entry.iterdir(), key=_natural_key):
                if file.name.startswith("."):
                    continue
                where = f"{name}/{file.name}"
                if file.is_dir():
                    plan.add(f"{where}/", "unexpected folder; a prompt folder holds only images <k>.png")
                    continue
                if _NUMBER.fullmatch(file.stem):
                    named.add(int(file.stem))
                index = self._index_from_name(file, where, n, plan)
                if index is None:
                    continue
                if index in found:
                    plan.add(where, f"duplicate sample index {index} (also {found[index]})")
                    continue
                found[index] = where
                self._check_and_add(plan, prompt, index, file, where)
            missing = set(range(n)) - found.keys()
            if missing:
                plan.add(f"{name}/", f"missing sample(s) {_indices_text(missing)}; expected {expected}")
            if named == set(range(1, n + 1)):
                numbered_from_one.append(f"{name}/")
        if numbered_from_one:
            places = ", ".join(numbered_from_one[:MAX_LISTED_PLACES])
            plan.problems.append(
                f"images are numbered from 1 in {len(numbered_from_one)} prompt folder(s) ({places}"
                f"{', ...' if len(numbered_from_one) > MAX_LISTED_PLACES else ''}); number them from 0: {expected}"
            )
        return plan

    def _index_from_name(self, file: Path, where: str, n: int, plan: _Plan) -> int | None:
        extension = file.suffix.lower()
        if extension not in IMAGE_EXTENSIONS:
            plan.add(where, _wrong_extension(file.suffix))
            return None
        if not _NUMBER.fullmatch(file.stem):
            plan.add(where, f"file name is not a sample index; expected 0{extension} to {n - 1}{extension}")
            return None
        index = int(file.stem)
        if index >= n:
            plan.add(where, _extra_sample(index, n))
            return None
        return index

    def _plan_manifest(self, manifest: Path, prompts: Sequence[PromptRef], n: int) -> _Plan:
        plan = _Plan()
        label = manifest.name
        try:
            text = manifest.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            plan.add(label, f"not UTF-8 text (undecodable byte at offset {exc.start})")
            return plan
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [(name or "").strip().lower() for name in (reader.fieldnames or [])]
        reader.fieldnames = header
        image_column = next((c for c in MANIFEST_IMAGE_COLUMNS if c in header), None)
        missing = [c for c, ok in (("prompt", "prompt" in header), ("image", image_column)) if not ok]
        if missing:
            delimiter = next((d for d in ";\t|" if any(d in name for name in header)), None)
            hint = f"; the columns look separated by {delimiter!r}, use commas" if delimiter else ""
            plan.add(
                f"{label} line 1",
                f"missing column(s) {', '.join(missing)}; the header is {header!r}, "
                f"expected prompt,image[,index]{hint}",
            )
            return plan
        has_index = "index" in header
        by_text = {p.text.strip(): p for p in prompts}
        by_id = {p.id: p for p in prompts}
        folder = manifest.parent.resolve()
        lines_of: dict[int, list[int]] = {}
        seen: dict[tuple[int, int], int] = {}
        next_index: dict[int, int] = {}
        rows: list[tuple[int, dict]] = []
        try:
            for row in reader:
                # line_num counts physical lines read, so it is this row's (last) line, blank lines included.
                rows.append((reader.line_num, row))
        except csv.Error as exc:
            plan.add(f"{label} line {reader.line_num}", f"unreadable CSV ({exc})")
            return plan
        for line, row in rows:
            at = f"{label} line {line}"
            if None in row:
                plan.add(at, f"more fields than the header's {len(header)} columns")
                continue
            text_value = (row["prompt"] or "").strip()
            image_value = (row[image_column] or "").strip()
            row_ok = True
            prompt = by_text.get(text_value)
            if not text_value:
                plan.add(at, "empty prompt")
                row_ok = False
            elif prompt is None:
                plan.add(at, f"prompt {text_value!r} is not in the prompt set")
                row_ok = False
            path = manifest.parent / image_value
            if not image_value:
                plan.add(at, "empty image path")
                row_ok = False
            elif Path(image_value).is_absolute() or not path.resolve().is_relative_to(folder):
                plan.add(at, f"image path {image_value!r} must be relative and inside the manifest's folder")
                row_ok = False
            if has_index:
                raw = (row["index"] or "").strip()
                if not _NUMBER.fullmatch(raw):
                    plan.add(at, f"index {raw!r} is not a whole number from 0 to {n - 1}")
                    continue
                index = int(raw)
            elif prompt is not None:
                index = next_index.get(prompt.id, 0)
                next_index[prompt.id] = index + 1
            else:
                continue
            if index >= n:
                plan.add(at, _extra_sample(index, n))
                continue
            if prompt is None:
                continue
            lines_of.setdefault(prompt.id, []).append(line)
            if (prompt.id, index) in seen:
                also = seen[prompt.id, index]
                plan.add(at, f"duplicate sample index {index} of prompt {prompt.position} (also line {also})")
                continue
            seen[prompt.id, index] = line
            if not row_ok:
                continue
            where = f"{at} ({image_value})"
            extension = path.suffix.lower()
            if extension not in IMAGE_EXTENSIONS:
                plan.add(where, _wrong_extension(path.suffix))
                continue
            if not path.is_file():
                plan.add(where, "file not found")
                continue
            self._check_and_add(plan, prompt, index, path, where)
        for prompt_id, lines in lines_of.items():
            missing = set(range(n)) - {index for (pid, index) in seen if pid == prompt_id}
            if missing:
                prompt = by_id[prompt_id]
                plan.add(
                    f"{label} lines {_indices_text(lines)} (prompt {prompt.position}, {prompt.text[:60]!r})",
                    f"missing sample(s) {_indices_text(missing)}; expected {n}, 0 to {n - 1}",
                )
        return plan

    def _check_and_add(self, plan: _Plan, prompt: PromptRef, index: int, path: Path, where: str) -> None:
        expected = IMAGE_EXTENSIONS[path.suffix.lower()]
        problem, item = self._check_image(path, where, expected, prompt, index)
        self._checked = getattr(self, "_checked", 0) + 1
        if getattr(self, "_progress", None) is not None:
            self._progress(self._checked)
        if problem:
            plan.add(where, problem)
        else:
            plan.items.append(item)

    def _check_image(
        self, path: Path, where: str, expected_format: str, prompt: PromptRef, index: int
    ) -> tuple[str | None, ImportItem | None]:
        try:
            size = path.stat().st_size
        except OSError as exc:
            return f"unreadable ({exc.strerror})", None
        if size == 0:
            return "empty file", None
        if size > self.max_bytes:
            return f"{size} bytes, over the limit of {self.max_bytes} (DRAWBENCH_MAX_IMAGE_BYTES)", None
        try:
            data = path.read_bytes()
        except OSError as exc:
            return f"unreadable ({exc.strerror})", None
        try:
            width, height, fmt = self._decode(data)
        except _ImageProblem as exc:
            return str(exc), None
        if fmt != expected_format:
            return f"the file is a {fmt} image but its extension says {expected_format}; rename it", None
        item = ImportItem(
            prompt=prompt,
            index=index,
            path=path,
            where=where,
            source_sha256=hashlib.sha256(data).hexdigest(),
            width=width,
            height=height,
            format=fmt,
        )
        return None, item

    def _decode(self, data: bytes) -> tuple[int, int, str]:
        """Decode ``data`` fully (truncation shows only then), refusing oversized images before decoding pixels."""
        try:
            with warnings.catch_warnings():
                # Pillow warns above Image.MAX_IMAGE_PIXELS and raises at twice that; both are refusals here.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                    width, height = image.size
                    if width * height > self.max_pixels:
                        raise _ImageProblem(
                            f"{width}x{height} pixels, over the limit of {self.max_pixels} "
                            f"(DRAWBENCH_MAX_IMAGE_PIXELS); refused as a possible decompression bomb"
                        )
                    fmt = image.format
                    image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _ImageProblem(f"refused as a decompression bomb ({exc})") from exc
        except UnidentifiedImageError as exc:
            raise _ImageProblem("not a PNG, JPEG or WebP image that Pillow can read") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise _ImageProblem(f"unreadable or truncated image ({exc})") from exc
        return width, height, fmt

    # --- reading ---------------------------------------------------------------------------------------------

    def open(self, item: ImportItem) -> Image.Image:
        """The pixels of a validated item, upright (EXIF orientation applied), as the file held them at validation."""
        data = item.path.read_bytes()
        if hashlib.sha256(data).hexdigest() != item.source_sha256:
            raise ImageImportError(item.path, [(item.where, "the file changed after it was validated")])
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            image.load()
            return ImageOps.exif_transpose(image)


class _ImageProblem(Exception):
    pass


def _wrong_extension(suffix: str) -> str:
    return f"wrong extension {suffix or '(none)'!r}; expected .png, .jpg, .jpeg or .webp"


def _extra_sample(index: int, n: int) -> str:
    return f"extra sample {index}; with {n} samples per prompt indices run from 0 to {n - 1}"


def _expected_images(n: int) -> str:
    """The file names of a prompt folder with ``n`` samples, numbered from 0."""
    names = ", ".join(f"{k}.png" for k in range(min(n, 3)))
    return f"{n} image(s) numbered from 0: {names}{', ...' if n > 4 else ''}{f', {n - 1}.png' if n > 3 else ''}"


def _natural_key(path: Path) -> tuple[int, int | str]:
    """Sort ``2`` before ``10`` so that problems are listed in prompt order."""
    return (0, int(path.stem)) if _NUMBER.fullmatch(path.stem) else (1, path.name)
