"""Reading untrusted JSON: body parsing with size/depth/NUL checks, and typed field readers.

Every reader records a bad field as (dotted name, reason) and the caller raises one
ValidationProblem naming all of them, so a client learns every mistake at once.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, TypeVar

import orjson
from aiohttp import web

from chatserver.problems import ValidationProblem

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
ID_MIN = 1
ID_REASON = f"must be an integer between {ID_MIN} and {BIGINT_MAX}"
DECIMAL_ID = re.compile(r"[0-9]{1,19}")
HEX_ID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
INTEGER_DIGITS_MAX = 19  # 2^63 - 1 has 19 digits
# A query integer: ASCII digits only (int() also takes "١", "１", " 5", "1_0", "+5").
QUERY_INTEGER = re.compile(r"-?[0-9]+")
# An integer literal at or beyond 2^63 has at least 19 digits.
_LONG_DIGITS = re.compile(r"[0-9]{19}")
_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{19}")

FILENAME_MAX_BYTES = 255
# C0 and C1 control characters and DEL: never part of a file's name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

E = TypeVar("E", bound=StrEnum)
_MISSING: Any = object()


def check_json_value(value: Any, max_depth: int, path: str = "") -> list[tuple[str, str]]:
    """Problems Postgres would choke on: over-deep nesting, NUL characters, huge integers."""
    problems: list[tuple[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        name = where or "body"
        if isinstance(item, dict | list):
            if depth >= max_depth:
                problems.append((name, f"nested deeper than {max_depth} levels"))
                continue
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and "\x00" in key:
                    problems.append((name, "keys must not contain NUL characters"))
                child_path = f"{where}.{key}" if where else str(key)
                if isinstance(item, list):
                    child_path = f"{where}[{key}]"
                stack.append((child, child_path, depth + 1))
        elif isinstance(item, str) and "\x00" in item:
            problems.append((name, "must not contain NUL characters"))
        elif isinstance(item, int) and not BIGINT_MIN <= item <= BIGINT_MAX:
            problems.append((name, "integer out of range"))
    return problems


JSON_BODY = web.RequestKey("json_body", dict)


async def read_json_object(request: web.Request, max_depth: int) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 problem (the content type is not policed).

    Parsed once per request: the schema middleware may already have read and checked it.
    """
    if JSON_BODY in request:
        return request[JSON_BODY]
    raw = await request.read()
    if not raw.strip():
        raise ValidationProblem([("body", "a JSON object is required")])
    request[JSON_BODY] = parse_json_object(raw, max_depth)
    return request[JSON_BODY]


def parse_json_object(raw: bytes | str, max_depth: int) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationProblem([("body", f"malformed JSON: {exc}")]) from None
    if _may_hold_huge_integer(raw) and _has_huge_float(data):
        data = _exact_integers(raw)
    if not isinstance(data, dict):
        raise ValidationProblem([("body", "must be a JSON object")])
    problems = check_json_value(data, max_depth)
    if problems:
        raise ValidationProblem(problems)
    return data


def _may_hold_huge_integer(raw: bytes | str) -> bool:
    """A cheap first look (a C regex over the text): 19 digits in a row, or no such integer."""
    pattern = _LONG_DIGITS_BYTES if isinstance(raw, bytes) else _LONG_DIGITS
    return pattern.search(raw) is not None  # type: ignore[arg-type]


def _has_huge_float(value: Any) -> bool:
    """Whether a float at or beyond 2^63 is anywhere in `value`: orjson reads an integer literal
    beyond 64 bits as such a float, so only then can an out-of-range integer hide in it."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not BIGINT_MIN < item < BIGINT_MAX:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _exact_integer(text: str) -> int:
    # Past 20 digits the value is out of range anyway; skip converting thousands of digits.
    return int(text) if len(text) <= INTEGER_DIGITS_MAX + 1 else BIGINT_MAX + 1


def _exact_integers(raw: bytes | str) -> Any:
    """`raw` (already valid JSON) read again with integer literals kept as integers, so that
    check_json_value names the ones out of range instead of storing them as floats."""
    return json.loads(raw, parse_int=_exact_integer)


class Fields:
    """Typed, recorded reads of one JSON object's fields."""

    def __init__(self, data: dict[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.errors: list[tuple[str, str]] = []

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, reason: str) -> None:
        self.errors.append((self.name(key), reason))

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for key in self.data:
            if key not in allowed:
                self.fail(key, "unknown field")

    def has(self, key: str) -> bool:
        return key in self.data

    def string(
        self, key: str, *, required: bool = False, default: Any = None,
        max_length: int | None = None, nullable: bool = True, min_length: int = 0,
    ) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or (value is None and nullable and not required):
            if required:
                self.fail(key, "is required")
            return default
        if not isinstance(value, str):
            self.fail(key, "must be a string")
            return default
        if len(value) < min_length:
            self.fail(key, "must not be empty" if min_length == 1 else f"too short (<{min_length})")
        if max_length is not None and len(value) > max_length:
            self.fail(key, f"must be at most {max_length} characters")
        return value

    def choice(self, key: str, enum: type[E], *, default: E | None = None) -> E | None:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            return default
        try:
            return enum(value)
        except (ValueError, TypeError):
            allowed = ", ".join(m.value for m in enum)
            self.fail(key, f"must be one of {allowed}")
            return default

    def integer(
        self, key: str, *, required: bool = False, minimum: int = BIGINT_MIN,
        maximum: int = BIGINT_MAX, default: Any = None,
    ) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if required:
                self.fail(key, "is required")
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, "must be an integer")
            return default
        if not minimum <= value <= maximum:
            self.fail(key, f"must be between {minimum} and {maximum}")
            return default
        return value

    def obj(self, key: str, *, default: Any = None) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, dict):
            self.fail(key, "must be a JSON object")
            return default
        return value

    def raise_if_invalid(self) -> None:
        if self.errors:
            raise ValidationProblem(self.errors)


def basename_problem(name: str) -> str | None:
    """Why `name` is not a plain file name (a base name a receiver may use as is), or None."""
    if "/" in name or "\\" in name:
        return "must be a base name, without / or \\"
    if _CONTROL.search(name):
        return "must not contain control characters"
    if ".." in name:
        return "must not contain .."
    if len(name.encode()) > FILENAME_MAX_BYTES:
        return f"must be at most {FILENAME_MAX_BYTES} bytes of UTF-8"
    return None


def query_int(
    request: web.Request, key: str, *, default: int | None = None, minimum: int = 0,
    maximum: int = BIGINT_MAX,
) -> int | None:
    text = request.query.get(key)
    if text is None:
        return default
    if QUERY_INTEGER.fullmatch(text) is None:
        raise ValidationProblem([(key, "must be an integer (ASCII digits)")])
    # Past 19 significant digits it is out of range anyway: no need to convert thousands of them.
    value = int(text) if len(text.removeprefix("-").lstrip("0")) <= INTEGER_DIGITS_MAX else None
    if value is None or not minimum <= value <= maximum:
        raise ValidationProblem([(key, f"must be between {minimum} and {maximum}")])
    return value


def is_utf8(text: str) -> bool:
    """Whether `text` can be stored: header bytes that are not UTF-8 arrive as lone surrogates."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def parse_hex_id(text: str, name: str = "conversation_id") -> uuid.UUID:
    """A 32-hex id from a URL path (hyphens tolerated); a malformed one is 400 naming it.

    ASCII hex digits only: uuid.UUID alone also takes "١" and "_" (int(..., 16) does).
    """
    if HEX_ID.fullmatch(text) is None:
        raise ValidationProblem([(name, "must be a 32-character hex id")])
    return uuid.UUID(hex=text)


def parse_int_id(text: str, name: str = "id") -> int:
    """A positive bigint id from a URL path (ASCII decimal digits); else 400 naming it."""
    if DECIMAL_ID.fullmatch(text) is None or not ID_MIN <= int(text) <= BIGINT_MAX:
        raise ValidationProblem([(name, ID_REASON)])
    return int(text)
