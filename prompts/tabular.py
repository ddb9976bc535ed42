"""Reading prompt files: bytes to text, delimited tables with physical line numbers, and the checks on each row.

Every loader goes through here, so that every kind of bad file fails the same way: a PromptFileError that names
the file, the line and the problem. Normalisation, the same for all loaders:

- prompt text is kept exactly (typos, case, non-ASCII, inner spacing) except for surrounding whitespace, which is
  stripped: a trailing space is an artefact of the spreadsheet, not part of the prompt;
- category names are stripped and runs of whitespace collapse to one space (the DrawBench sheet spells
  `Gary Marcus et al. ` with a trailing space);
- rows whose fields are all blank are skipped (spreadsheet exports pad with them); a row with some fields blank
  is an error;
- a prompt or category that a person would see as empty (only zero-width, format or blank characters) is an error,
  and a prompt with bidi controls loads marked (its metadata and a warning name them; see prompts.text).
"""

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prompts.records import MAX_CATEGORY_LENGTH, MAX_EXTERNAL_ID_LENGTH, PromptFileError, PromptRecord
from prompts.text import BIDI_METADATA_KEY, bidi_controls, invisible_characters, visible_text

DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}

OnDuplicate = Literal["error", "skip"]


def read_file_bytes(path: str | Path, *, name: str | None = None) -> bytes:
    """The file's bytes, or a PromptFileError saying why there are none."""
    label = name or str(path)
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise PromptFileError(f"no such file ({path})", path=label) from None
    except IsADirectoryError:
        raise PromptFileError(f"is a directory, not a file ({path})", path=label) from None
    except PermissionError:
        raise PromptFileError(f"permission denied ({path})", path=label) from None


def decode_text(data: bytes, *, name: str) -> str:
    """UTF-8 text without its BOM; fails on an empty file, undecodable bytes (with their line) or NUL characters."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise PromptFileError("the file is UTF-16 encoded; save it as UTF-8", path=name, line=1)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        raise PromptFileError(
            f"byte 0x{data[exc.start]:02x} at byte {exc.start - line_start + 1} of the line is not valid UTF-8 "
            "(save the file as UTF-8)",
            path=name,
            line=data.count(b"\n", 0, exc.start) + 1,
        ) from None
    if not text.strip():
        raise PromptFileError("the file is empty", path=name)
    nul = text.find("\x00")
    if nul >= 0:
        raise PromptFileError(
            "contains a NUL character (is it a binary file?)", path=name, line=text.count("\n", 0, nul) + 1
        )
    return text


def normalise_category(value: str) -> str:
    return " ".join(value.split())


def _normalise_header(value: str) -> str:
    return " ".join(value.split()).casefold()


@dataclass(frozen=True)
class RawRow:
    """One row before checking. `labels` name each key as the file does (header spelling or JSON key)."""

    line: int
    text: str
    category: str
    external_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    label_kind: Literal["column", "field"] = "column"


@dataclass(frozen=True)
class Table:
    header_line: int
    # canonical key ("prompt", "category", ...) -> the header cell as spelled in the file
    columns: dict[str, str]
    rows: list[tuple[int, dict[str, str], dict[str, str]]]  # (line, {key: value}, {other column: value})


def read_table(
    text: str,
    *,
    name: str,
    delimiter: str,
    columns: dict[str, tuple[str, ...]],
    required: Iterable[str],
    quoting: int = csv.QUOTE_MINIMAL,
) -> Table:
    """Parse a delimited file with a header row.

    `columns` maps each canonical key to the header spellings it accepts (compared case-insensitively, with
    spaces collapsed); columns not named there are returned as extras under their own header spelling.
    """
    aliases = {_normalise_header(alias): key for key, names in columns.items() for alias in names}
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    rows_iter = _rows_with_lines(reader, name=name)
    header_line, header = next(((line, row) for line, row in rows_iter if any(c.strip() for c in row)), (0, []))
    # Split as the csv reader counts lines (\n, \r\n or a lone \r), so that line numbers index this list.
    raw_lines = io.StringIO(text, newline="").readlines()

    found: dict[str, int] = {}
    extra_columns: dict[int, str] = {}
    for index, cell in enumerate(header):
        key = aliases.get(_normalise_header(cell))
        label = cell.strip()
        if key is None:
            if label:
                if label in extra_columns.values():
                    raise PromptFileError(f"column '{label}' appears twice in the header", path=name, line=header_line)
                extra_columns[index] = label
            continue
        if key in found:
            raise PromptFileError(
                f"the header has two '{key}' columns ('{header[found[key]].strip()}' and '{label}')",
                path=name,
                line=header_line,
            )
        found[key] = index
    missing = [key for key in required if key not in found]
    if missing:
        header_text = raw_lines[header_line - 1].rstrip("\r\n") if header_line else ""
        hint = _delimiter_hint(header_text, delimiter, aliases) or (
            f"; the first line must be a header naming the columns ({delimiter.join(required)})" if not found else ""
        )
        raise PromptFileError(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)} "
            f"(the header is {header_text!r}){hint}",
            path=name,
            line=header_line,
        )

    named = {key: header[index].strip() for key, index in found.items()}
    used = set(found.values()) | set(extra_columns)
    table_rows = []
    width = len(header)
    for line, row in rows_iter:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != width:
            raise PromptFileError(
                _ragged_problem(row, width, header, delimiter, quoting, raw_lines[line - 1]), path=name, line=line
            )
        values = {key: row[index] for key, index in found.items()}
        extras = {label: row[index] for index, label in extra_columns.items()}
        unnamed = [i for i in range(width) if i not in used and row[i].strip()]
        if unnamed:
            raise PromptFileError(
                f"a value in field {unnamed[0] + 1}, which has no name in the header", path=name, line=line
            )
        table_rows.append((line, values, extras))
    if not table_rows:
        raise PromptFileError("the file has a header but no prompt rows", path=name, line=header_line)
    return Table(header_line=header_line, columns=named, rows=table_rows)


def _rows_with_lines(reader: Any, *, name: str) -> Iterator[tuple[int, list[str]]]:
    """(first physical line of the row, row): a quoted field may span several lines."""
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "end of data" in str(exc):
                problem = "a double quote opened here is never closed"
            else:
                problem = (
                    f"cannot parse the row ({exc}); a field that contains the delimiter or a double quote must be "
                    'in double quotes, with inner double quotes doubled ("")'
                )
            raise PromptFileError(problem, path=name, line=start) from None
        yield start, row


def _delimiter_hint(header_text: str, delimiter: str, aliases: dict[str, str]) -> str:
    for other, other_name in DELIMITER_NAMES.items():
        if other == delimiter or other not in header_text:
            continue
        cells = [_normalise_header(cell.strip('"')) for cell in header_text.split(other)]
        if any(cell in aliases for cell in cells):
            return (
                f"; it looks like it is {other_name}-delimited, but it is read as "
                f"{DELIMITER_NAMES[delimiter]}-delimited"
            )
    return ""


def _ragged_problem(row: list[str], width: int, header: list[str], delimiter: str, quoting: int, raw_line: str) -> str:
    problem = f"expected {width} fields ({', '.join(h.strip() for h in header)}) but found {len(row)}"
    if len(row) == 1:
        for other, other_name in DELIMITER_NAMES.items():
            if other != delimiter and other in raw_line:
                return f"{problem}; it looks like it is {other_name}-delimited"
    if len(row) > width:
        if quoting == csv.QUOTE_NONE:
            return f"{problem}; a prompt must not contain a {DELIMITER_NAMES[delimiter]}"
        return f"{problem}; a prompt that contains a {DELIMITER_NAMES[delimiter]} must be in double quotes"
    return problem


def build_records(
    rows: Iterable[RawRow], *, name: str, on_duplicate: OnDuplicate
) -> tuple[list[PromptRecord], list[str]]:
    """Check and normalise rows into records numbered 1.. in file order; returns (records, warnings).

    A duplicate prompt (same text after stripping) is an error naming both lines, or with on_duplicate="skip"
    the first occurrence is kept and the later one reported as a warning.
    """
    records: list[PromptRecord] = []
    warnings: list[str] = []
    first_line_of_text: dict[str, int] = {}
    first_line_of_id: dict[str, int] = {}
    for row in rows:

        def error(problem: str, key: str, row: RawRow = row) -> PromptFileError:
            return PromptFileError(problem, path=name, line=row.line, **{row.label_kind: row.labels.get(key, key)})

        text = row.text.strip()
        if not text:
            raise error("empty value (every row needs a prompt)", "prompt")
        if not visible_text(text):
            hidden = ", ".join(invisible_characters(text))
            raise error(f"the prompt has no visible character ({hidden})", "prompt")
        category = normalise_category(row.category)
        if not category:
            raise error("empty value (every prompt needs a category)", "category")
        if not visible_text(category):
            hidden = ", ".join(invisible_characters(category))
            raise error(f"the category has no visible character ({hidden})", "category")
        if len(category) > MAX_CATEGORY_LENGTH:
            raise error(f"category is {len(category)} characters long; at most {MAX_CATEGORY_LENGTH}", "category")
        external_id = row.external_id.strip()
        if len(external_id) > MAX_EXTERNAL_ID_LENGTH:
            raise error(f"id is {len(external_id)} characters long; at most {MAX_EXTERNAL_ID_LENGTH}", "id")
        if external_id:
            if external_id in first_line_of_id:
                raise error(f"duplicate id {external_id!r}, first on line {first_line_of_id[external_id]}", "id")
            first_line_of_id[external_id] = row.line
        if text in first_line_of_text:
            first = first_line_of_text[text]
            if on_duplicate == "error":
                raise error(f"duplicate prompt {_short(text)!r}, first on line {first}", "prompt")
            warnings.append(f"line {row.line}: duplicate prompt {_short(text)!r} skipped (first on line {first})")
            continue
        first_line_of_text[text] = row.line
        metadata = dict(row.metadata)
        controls = bidi_controls(text)
        if controls:
            metadata[BIDI_METADATA_KEY] = controls
            warnings.append(
                f"{Path(name).name}, line {row.line}: prompt {_short(text)!r} contains bidi controls "
                f"({', '.join(controls)}), which can make it display in another order than it reads; loaded, marked "
                "in its metadata"
            )
        records.append(
            PromptRecord(
                position=len(records) + 1,
                text=text,
                category=category,
                external_id=external_id,
                metadata=metadata,
            )
        )
    return records, warnings


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
