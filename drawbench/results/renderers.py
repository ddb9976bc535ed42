"""A CSV renderer for DRF: ``?format=csv`` or ``Accept: text/csv``.

UTF-8, a header row, one line per item, RFC 4180 quoting (prompts hold commas, quotes and non-ASCII characters).
The header comes from ``renderer_context["header"]`` (the view's serializer fields), so an empty export still
has its columns; without it, from the first row's keys. None is written as an empty field, booleans as
True / False and floats with repr(), so pandas reads back the same dtypes and the same numbers.

Spreadsheet-safe by default: a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (a
prompt, a model name, a rater's id: text that came from outside) gets a leading ``'``, so that Excel, LibreOffice or
Google Sheets show it as text instead of running it as a formula (OWASP "CSV injection"). Numbers are not text and are
written as they are. Analysts who read the file with pandas and want the cells exactly as stored ask for
``?spreadsheet_safe=0`` (``export_study --no-spreadsheet-safe``).
"""

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from rest_framework.renderers import BaseRenderer

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
SPREADSHEET_SAFE_PARAM = "spreadsheet_safe"
FALSE_VALUES = {"0", "false", "no", "off"}


def spreadsheet_safe_cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula, made inert with a leading quote; anything else as given."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_bytes(rows: Iterable[Mapping[str, Any]], header: list[str], *, spreadsheet_safe: bool = True) -> bytes:
    """Linear in the number of rows: one writer over one buffer."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    if spreadsheet_safe:
        rows = ({key: spreadsheet_safe_cell(value) for key, value in row.items()} for row in rows)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _spreadsheet_safe(renderer_context: Mapping[str, Any]) -> bool:
    """On unless the context (export_study) or the request's query (?spreadsheet_safe=0) turns it off."""
    if SPREADSHEET_SAFE_PARAM in renderer_context:
        return bool(renderer_context[SPREADSHEET_SAFE_PARAM])
    request = renderer_context.get("request")
    value = request.query_params.get(SPREADSHEET_SAFE_PARAM, "") if request is not None else ""
    return value.lower() not in FALSE_VALUES


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: dict | None = None) -> bytes:
        if data is None:
            return b""
        context = renderer_context or {}
        safe = _spreadsheet_safe(context)
        if isinstance(data, Mapping):
            # A single object, such as an error ({"detail": ...}): its own keys are the header.
            return csv_bytes([data], list(data), spreadsheet_safe=safe)
        rows = list(data)
        header = context.get("header") or (list(rows[0]) if rows else [])
        return csv_bytes(rows, list(header), spreadsheet_safe=safe)
