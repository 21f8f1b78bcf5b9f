"""What a page's POST form sent, checked: an `application/x-www-form-urlencoded` body (already
bounded by `cloud.api.guards.BodyGuard`), UTF-8, each field at most once and short; and an
amount of yuan typed by a person, as integer fen.

Parsed here with the standard library rather than with python-multipart: the pages post only
small url-encoded forms, and one dependency fewer faces the outside.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from fastapi import Request

from cloud.errors import Invalid

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 16
MAX_FIELD = 256  # characters of one value (a password may be long; 256 is plenty)
MAX_LINES = 8192  # characters of a text area of one-a-line items (a year's holidays)
MAX_FILE_FIELD = 1_000_000  # a file's text a form carries (an IR handheld export), as the API's
FILE_FIELDS = frozenset({"csv"})  # the fields `read_file_form` lets be that long
YUAN = re.compile(r"\d{1,9}(\.\d{1,2})?")  # 88, 88.5, 88.50: no sign, no exponent, no commas


class AmountError(Invalid):
    """An amount a person typed that is not one we take; `key` is its catalogue message."""

    def __init__(self, key: str, **values: str) -> None:
        super().__init__(key)
        self.key, self.values = key, values


def parse_form(
    body: bytes, content_type: str, *, max_field: int = MAX_FIELD,
    files: frozenset[str] = frozenset(),
) -> dict[str, str]:  # fmt: skip
    """The fields of a url-encoded form; `Invalid` for another media type, bytes that are not
    UTF-8, a field sent twice, too many or too long fields (over `max_field` characters; those
    named in `files` may be as long as `MAX_FILE_FIELD`)."""
    fields, _ = parse_form_lists(body, content_type, max_field=max_field, files=files)
    return fields


def parse_form_lists(
    body: bytes, content_type: str, repeated: str = "", most: int = 0, *,
    max_field: int = MAX_FIELD, files: frozenset[str] = frozenset(),
) -> tuple[dict[str, str], list[str]]:  # fmt: skip
    """`parse_form`, and the values of the one field `repeated` that may come up to `most`
    times (a form's checkboxes), in the order sent."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media != FORM_TYPE:
        raise Invalid(f"a form is sent as {FORM_TYPE}")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_FIELDS + most, errors="strict")  # fmt: skip
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid(f"the form is not one we take: {exc}") from None
    fields: dict[str, str] = {}
    values: list[str] = []
    for name, value in pairs:
        if len(value) > (MAX_FILE_FIELD if name in files else max_field) or "\x00" in value:
            raise Invalid(f"the form's {name!r} is too long or holds a NUL")
        if repeated and name == repeated:
            values.append(value)
            if len(values) > most:
                raise Invalid(f"the form sends {name!r} more than {most} times")
            continue
        if name in fields:
            raise Invalid(f"the form sends {name!r} twice")
        fields[name] = value
    return fields, values


async def read_form(request: Request) -> dict[str, str]:
    """A dependency: the request's form fields (see `parse_form`)."""
    return parse_form(await request.body(), request.headers.get("content-type", ""))


async def read_lines_form(request: Request) -> dict[str, str]:
    """`read_form` for a form with text areas of one-a-line items (up to `MAX_LINES`)."""
    return parse_form(await request.body(), request.headers.get("content-type", ""),
                      max_field=MAX_LINES)  # fmt: skip


async def read_file_form(request: Request) -> dict[str, str]:
    """`read_form` for a form that carries a file's text in one of `FILE_FIELDS`."""
    return parse_form(await request.body(), request.headers.get("content-type", ""),
                      files=FILE_FIELDS)  # fmt: skip


def fen_of_yuan(text: str, *, min_fen: int, max_fen: int) -> int:
    """`"88.50"` → 8850: a yuan amount as a person types it, exactly (Decimal, never a float),
    within [min_fen, max_fen]; `AmountError` naming the catalogue message otherwise."""
    cleaned = text.strip().replace("¥", "").replace("￥", "").strip()
    if not cleaned:
        raise AmountError("amount_missing")
    if not YUAN.fullmatch(cleaned):
        raise AmountError("amount_bad")
    try:
        fen = int((Decimal(cleaned) * 100).to_integral_exact())
    except InvalidOperation:  # not reached for what YUAN admits; kept for safety
        raise AmountError("amount_bad") from None
    if fen < min_fen:
        raise AmountError("amount_small", min=yuan_text(min_fen))
    if fen > max_fen:
        raise AmountError("amount_large", max=yuan_text(max_fen))
    return fen


def yuan_text(fen: int) -> str:
    """`8850` → `"88.50"`; `-5` → `"-0.05"`: exact, from the integer."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"
