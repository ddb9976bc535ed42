"""Blind media: the images raters receive, made when a study opens.

What a rater's browser receives for the two sides must carry no information about the model, or about a trial being
gold, except in the pixels: not the URL, the file name or folder, the response headers, the length, the pixel size,
the format or the moment an image became available. So every image a study shows is re-encoded when the study opens:
to the study's display size (square, padded) and format, stored under an opaque random name of that study's own
(DisplayImage; a sample shown in two studies has two names), and padded to one byte length for the whole study (JPEG
comment segments, a private PNG chunk: decoders skip both). Gold sets (degraded copies, another prompt's set,
identical sets) are made the same way in the same pass, each image under a fresh name: no URL appears on both sides,
or in a gold trial and a real comparison. Raters fetch them through the rater media route (views.display_image),
which sends the same headers for every image.
"""

import io
import secrets
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, ImageOps

from drawbench.studies.models import DisplayFormat, DisplayImage, Study, url_token

JPEG_QUALITY = 90
PAD_COLOUR = (0, 0, 0)
CONTENT_TYPES = {DisplayFormat.JPEG: "image/jpeg", DisplayFormat.PNG: "image/png"}
EXTENSIONS = {DisplayFormat.JPEG: "jpg", DisplayFormat.PNG: "png"}
# A JPEG comment segment: marker (2 bytes), length (2 bytes, counting itself), at most 65,533 bytes of payload.
JPEG_COM = b"\xff\xfe"
JPEG_SEGMENT_MAX = 65_533 + 4
JPEG_SEGMENT_MIN = 4
# A PNG chunk: length (4), type (4), data, CRC (4). "paDd": ancillary, private, safe to copy (PNG spec, 5.4).
PNG_PAD_TYPE = b"paDd"
PNG_CHUNK_OVERHEAD = 12
# Every file gets at least this much padding, so that any shortfall can be filled with whole segments or chunks.
PAD_MIN = {DisplayFormat.JPEG: JPEG_SEGMENT_MIN, DisplayFormat.PNG: PNG_CHUNK_OVERHEAD}


def new_name() -> str:
    """An opaque display name: 128 random bits, URL-safe; it says nothing about the image, its model or its kind."""
    return url_token(16)


def display_pixels(image: Image.Image, size: int) -> Image.Image:
    """The image as the study shows it: RGB, size × size (scaled to fit, centred on black), rebuilt from its pixels
    alone (no text chunks, EXIF or ICC profile survive)."""
    rgb = image.convert("RGB")
    if rgb.size != (size, size):
        rgb = ImageOps.pad(rgb, (size, size), method=Image.Resampling.LANCZOS, color=PAD_COLOUR)
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


def encode(pixels: Image.Image, display_format: str, *, quality: int = JPEG_QUALITY) -> bytes:
    """The pixels in the study's format, with the same encoder settings for every image."""
    buffer = io.BytesIO()
    if display_format == DisplayFormat.PNG:
        pixels.save(buffer, format="PNG", compress_level=6)
    else:
        pixels.save(buffer, format="JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    return buffer.getvalue()


def _jpeg_segment_sizes(n: int) -> list[int]:
    """Sizes (each 4 to 65,537 bytes) of comment segments that add up to exactly n ≥ 4 bytes."""
    sizes = []
    while n > JPEG_SEGMENT_MAX:
        take = JPEG_SEGMENT_MAX if n - JPEG_SEGMENT_MAX >= JPEG_SEGMENT_MIN else JPEG_SEGMENT_MAX - JPEG_SEGMENT_MIN
        sizes.append(take)
        n -= take
    return [*sizes, n]


def pad(data: bytes, length: int, display_format: str) -> bytes:
    """`data` (an encoded image) made exactly `length` bytes long without changing what it decodes to: comment
    segments after a JPEG's start-of-image marker, or one private chunk before a PNG's end chunk."""
    n = length - len(data)
    if n == 0:
        return data
    if n < PAD_MIN[display_format]:
        raise ValueError(f"Cannot pad {len(data)} bytes to {length}: at least {PAD_MIN[display_format]} are added.")
    if display_format == DisplayFormat.PNG:
        end = data.rindex(b"IEND") - 4
        payload = bytes(n - PNG_CHUNK_OVERHEAD)
        chunk = struct.pack(">I", len(payload)) + PNG_PAD_TYPE + payload
        chunk += struct.pack(">I", zlib.crc32(PNG_PAD_TYPE + payload) & 0xFFFFFFFF)
        return data[:end] + chunk + data[end:]
    segments = b"".join(JPEG_COM + struct.pack(">H", size - 2) + bytes(size - 4) for size in _jpeg_segment_sizes(n))
    return data[:2] + segments + data[2:]


@dataclass
class _Encoded:
    name: str
    sample_id: int | None
    made_from_id: int | None
    path: Path
    size: int


class DisplaySet:
    """A batch of display images for one study, made together: add images, then `save` pads every one to one
    length (the longest, plus the minimum padding; or the study's length when it already has images) and stores
    them. Encoded bytes wait in a temporary folder, not in memory."""

    def __init__(self, study: Study):
        self.study = study
        self.format = study.display_format
        self._folder = tempfile.TemporaryDirectory(prefix="drawbench-display-")
        self._encoded: list[_Encoded] = []
        self._by_source: dict[str, tuple[Path, int]] = {}
        self._namespace = f"display/{secrets.token_hex(8)}"

    def _keep(self, data: bytes) -> tuple[Path, int]:
        path = Path(self._folder.name) / f"{len(self._encoded)}-{len(self._by_source)}-{secrets.token_hex(4)}"
        path.write_bytes(data)
        return path, len(data)

    def add_pixels(self, pixels: Image.Image, *, made_from_id: int | None = None) -> str:
        """Add an image already at display size (display_pixels), made from sample `made_from_id`; returns its new
        display name."""
        path, size = self._keep(encode(pixels, self.format))
        return self._add(path, size, None, made_from_id)

    def add_stored(self, storage_name: str, *, sample_id: int | None = None, made_from_id: int | None = None) -> str:
        """Add the stored image `storage_name` under a new display name: sample `sample_id` itself, or a copy made
        from sample `made_from_id` (a gold set's). A source added before is encoded once."""
        if storage_name not in self._by_source:
            self._by_source[storage_name] = self._keep(encode(self.pixels_of(storage_name), self.format))
        path, size = self._by_source[storage_name]
        return self._add(path, size, sample_id, made_from_id)

    def pixels_of(self, storage_name: str) -> Image.Image:
        with default_storage.open(storage_name, "rb") as handle:
            image = Image.open(handle)
            image.load()
        return display_pixels(image, self.study.display_size)

    def _add(self, path: Path, size: int, sample_id: int | None, made_from_id: int | None) -> str:
        item = _Encoded(name=new_name(), sample_id=sample_id, made_from_id=made_from_id, path=path, size=size)
        self._encoded.append(item)
        return item.name

    def save(self, *, progress: Callable[[int, int], None] | None = None) -> list[DisplayImage]:
        """Pad and store every image added, in random order, and record them. Returns the rows made.

        The length is the longest image's plus the minimum padding. A study that has display images already (gold
        trials made after it opened) keeps one length: its images are padded further when a new one is longer."""
        if not self._encoded:
            return []
        needed = max(item.size for item in self._encoded) + PAD_MIN[self.format]
        length = study_display_length(self.study)
        if length is None or length < needed:
            if length is not None:
                _study_display_grow(self.study, needed)
            length = needed
        rows = []
        order = list(self._encoded)
        secrets.SystemRandom().shuffle(order)
        extension = EXTENSIONS[self.format]
        stored: dict[Path, str] = {}
        for done, item in enumerate(order, start=1):
            # Names that show the same encoded bytes (a gold copy of a sample, a source shared by several samples)
            # share one file: a file is never sent under its own name.
            if item.path not in stored:
                data = pad(item.path.read_bytes(), length, self.format)
                stored[item.path] = default_storage.save(
                    f"{self._namespace}/{secrets.token_hex(16)}.{extension}", ContentFile(data)
                )
            file = stored[item.path]
            rows.append(
                DisplayImage(
                    study=self.study,
                    name=item.name,
                    sample_id=item.sample_id,
                    made_from_id=item.made_from_id,
                    file=file,
                )
            )
            if progress is not None:
                progress(done, len(order))
        self._folder.cleanup()
        return DisplayImage.objects.bulk_create(rows, batch_size=2000)


def _study_display_grow(study: Study, length: int) -> None:
    """Pad every display image of the study further, to `length` (padding adds segments; it never removes any)."""
    for file in DisplayImage.objects.filter(study=study).values_list("file", flat=True).distinct():
        with default_storage.open(file, "rb") as handle:
            data = handle.read()
        default_storage.delete(file)
        saved = default_storage.save(file, ContentFile(pad(data, length, study.display_format)))
        if saved != file:
            raise RuntimeError(f"Storage renamed {file!r} to {saved!r} while padding it.")


def study_display_length(study: Study) -> int | None:
    """The byte length every display image of the study has (None before it has any)."""
    first = DisplayImage.objects.filter(study=study).values_list("file", flat=True).first()
    return default_storage.size(first) if first is not None else None


def study_display_prepare(*, study: Study, samples: list[tuple[int, str]]) -> DisplaySet | None:
    """Start the study's display set: every sample (id, storage name) it may show, once (None when the study has its
    display images already, from an earlier opening). The caller adds the gold sets and saves it."""
    if DisplayImage.objects.filter(study=study).exists():
        return None
    display = DisplaySet(study)
    for sample_id, storage_name in samples:
        display.add_stored(storage_name, sample_id=sample_id)
    return display
