"""Uploads for the sample-import tests (page and API): small PNGs, and zips of them in memory."""

import io
import zipfile

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image


def png(color=(10, 20, 30), size=(16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_upload(members: dict[str, bytes], name="samples.zip") -> SimpleUploadedFile:
    """A zip of these {member path: bytes}, as an uploaded file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for member, data in members.items():
            bundle.writestr(member, data)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/zip")


def folder_zip(positions=(1, 2, 3), n=2, prefix="", name="samples.zip") -> SimpleUploadedFile:
    """The import's folder layout: <prefix><prompt position>/<k>.png, k from 0, each image a different colour."""
    return zip_upload(
        {f"{prefix}{p}/{k}.png": png((p * 40, k * 60, 7)) for p in positions for k in range(n)}, name=name
    )
