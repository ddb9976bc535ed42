"""A strict JSON parser for the APIs: a malformed body is a 400 that says what was wrong, never a 500 and never a
silently altered value.

Refused, besides what is not JSON at all: objects and arrays nested deeper than MAX_DEPTH (measured before parsing:
deep enough, Python's parser runs out of stack), integers of more than MAX_INT_DIGITS digits, numbers out of a
double's range (``1e400``), ``NaN`` and ``Infinity``, and an object that names a key twice (``json.loads`` keeps the
last one quietly; another reader may keep the first).

A body of ordinary shape costs about what ``json.loads`` costs: the depth is measured only when the body holds
more brackets than MAX_DEPTH, and the hooks run once per object or number.
"""

import json
import math

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding

MAX_DEPTH = 32
MAX_INT_DIGITS = 20

ERROR_PREFIX = "JSON parse error - "
ERROR_TOO_DEEP = ERROR_PREFIX + "objects and arrays are nested deeper than {max} levels."
ERROR_UNBALANCED = ERROR_PREFIX + "brackets do not match."
ERROR_INT_TOO_LONG = ERROR_PREFIX + "a number has more than {max} digits."
ERROR_OUT_OF_RANGE = ERROR_PREFIX + "the number {text:.40} is out of range."
ERROR_CONSTANT = ERROR_PREFIX + "{text} is not a number JSON allows."
ERROR_DUPLICATE_KEY = ERROR_PREFIX + "the key {key!r} appears twice in one object."
ERROR_ENCODING = ERROR_PREFIX + "the body is not valid {encoding}."

_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
# Depth does not depend on the kind of bracket (a mismatched pair is the JSON parser's to refuse): { } count as [ ].
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


class Rejected(ValueError):
    """A body that is JSON by syntax but not accepted here; its message is the client's."""


def nesting_depth(raw: bytes) -> int | None:
    """How deeply objects and arrays nest in a JSON body (0 for a scalar); None when its brackets do not pair up.

    Brackets inside strings do not count: escapes are dropped (a run of backslashes pairs up from the left, as JSON
    reads it), and every other piece between quotes is a string. Each round strips the innermost pairs; at most
    MAX_DEPTH + 1 rounds are made. Every step is a bytes method: linear, in C.
    """
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(unescaped.split(b'"')[0::2]).translate(_AS_SQUARE, _NOT_BRACKETS)
    depth = 0
    while brackets:
        if depth > MAX_DEPTH:
            return depth
        # bytes.replace scans the original: a pair that a removal brings together waits for the next round.
        stripped = brackets.replace(b"[]", b"")
        if len(stripped) == len(brackets):
            return None
        brackets = stripped
        depth += 1
    return depth


def _object(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise Rejected(ERROR_DUPLICATE_KEY.format(key=key))
            seen.add(key)
    return obj


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise Rejected(ERROR_INT_TOO_LONG.format(max=MAX_INT_DIGITS))
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Rejected(ERROR_OUT_OF_RANGE.format(text=text))
    return value


def _constant(text: str):
    raise Rejected(ERROR_CONSTANT.format(text=text))


# One decoder for every request, as json.loads keeps one (json.loads with hooks would build one per call).
_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_int=_int, parse_float=_float, parse_constant=_constant)


def loads_strict(raw: bytes, *, encoding: str = "utf-8"):
    """The JSON value of `raw`; Rejected (a ValueError) with a message for the client for anything refused."""
    try:
        text = raw.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        raise Rejected(ERROR_ENCODING.format(encoding=encoding)) from None
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        depth = nesting_depth(raw)
        if depth is None:
            raise Rejected(ERROR_UNBALANCED)
        if depth > MAX_DEPTH:
            raise Rejected(ERROR_TOO_DEEP.format(max=MAX_DEPTH))
    try:
        return _DECODER.decode(text)
    except Rejected:
        raise
    except RecursionError:
        raise Rejected(ERROR_TOO_DEEP.format(max=MAX_DEPTH)) from None
    except ValueError as exc:
        raise Rejected(ERROR_PREFIX + str(exc)) from None


class StrictJSONParser(JSONParser):
    """DRF's JSONParser, strict (see the module's docstring): ParseError (400) with the reason. A JSONParser, so that
    DRF reads the body through request.body, which refuses one past DATA_UPLOAD_MAX_MEMORY_SIZE before reading it."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        raw = stream.read() if stream is not None else b""
        try:
            return loads_strict(raw, encoding=encoding)
        except Rejected as exc:
            raise ParseError(str(exc)) from None
