"""JSON from outside (a command, an ack, a batch, a status), decoded totally and bounded.

`load_json(payload)` returns the value or raises `DecodeError`, never anything else: not the
`RecursionError` of `b"[" * 100000`, not the `ValueError` of a 5000-digit integer, not a value
holding `NaN`, `Infinity` or a lone surrogate (which canonical JSON, and so every signature
check, cannot encode). It refuses, in this order:

- a payload over `max_bytes`, or not UTF-8 (strict: no surrogates encoded in the bytes, no
  UTF-16/32 guessing as `json.loads(bytes)` would do);
- brackets nested deeper than `max_depth` (counted outside strings, before any parsing);
- an integer of more than `MAX_INT_DIGITS` digits, a float that is not finite or is written
  with more than `MAX_FLOAT_CHARS` characters, `NaN` / `Infinity` / `-Infinity`;
- an object with a repeated key (canonical JSON never has one; two parsers could read it two
  ways);
- a string (or key) that does not encode to UTF-8: an escaped lone surrogate (`"\\ud800"`);
- with `allow_nul=False`, a string (or key) holding a NUL character (`"\\u0000"`), which a
  PostgreSQL text or jsonb column refuses (the cloud's ingest decodes so).

Valid messages decode as `json.loads` decodes them: nothing changes on the wire.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ledger.errors import DecodeError

MAX_MESSAGE_BYTES = 1 << 20  # a command (a whole configuration at most) or an acknowledgement
MAX_DEPTH = 32  # a configuration document nests a few levels; nothing needs more
MAX_INT_DIGITS = 20  # 2**64 has 20 digits; every integer of the contract fits
MAX_FLOAT_CHARS = 40

# A string, or what is left of an unterminated one: it always matches from a quote, so `sub`
# never retries from an escaped quote further on (which would make it quadratic).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.S)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# Fast paths for a large payload (an uplink batch holds some 10^5 integers): without a run of
# more digits than an integer may have, no integer needs checking; without a `\u` escape, no
# string can hold a lone surrogate or a NUL (strict JSON has no raw control characters, and
# UTF-8 that decoded has no surrogates).
_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (MAX_INT_DIGITS + 1))
_ESCAPE = b"\\u"


def nesting_depth(payload: bytes, limit: int) -> int:
    """The deepest bracket nesting outside strings, counting no further than `limit` + 1."""
    depth = deepest = 0
    for byte in _STRING.sub(b"", payload).translate(None, _NOT_BRACKET):
        depth += 1 if byte in b"[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def _int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise DecodeError(f"an integer of {len(text)} characters (at most {MAX_INT_DIGITS} digits)")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if len(text) > MAX_FLOAT_CHARS or not math.isfinite(value):
        raise DecodeError(f"number {text[:MAX_FLOAT_CHARS]}… is out of range")
    return value


def _constant(name: str) -> Any:
    raise DecodeError(f"{name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise DecodeError("an object repeats a key")
    return out


def _check_strings(value: Any, *, allow_nul: bool) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode()  # raises UnicodeEncodeError on a lone surrogate
            if not allow_nul and "\x00" in item:
                raise DecodeError("a string holds a NUL character")
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def load_json(
    payload: bytes,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
    max_depth: int = MAX_DEPTH,
    allow_nul: bool = True,
) -> Any:
    """The JSON value of `payload`, or `DecodeError` saying why it is not one we accept."""
    if not isinstance(payload, bytes | bytearray):
        raise DecodeError(f"a payload is bytes, not {type(payload).__name__}")
    if len(payload) > max_bytes:
        raise DecodeError(f"payload of {len(payload)} bytes (at most {max_bytes})")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    # The depth is at most the number of opening brackets, strings included: a payload with
    # few of them (a provider's notice) needs no walk.
    brackets = payload.count(b"[") + payload.count(b"{")
    if brackets > max_depth and nesting_depth(payload, max_depth) > max_depth:
        raise DecodeError(f"nested deeper than {max_depth}")
    try:
        value = json.loads(
            text,
            parse_int=_int if _LONG_DIGITS.search(payload) else None,
            parse_float=_float,
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
        if _ESCAPE in payload:
            _check_strings(value, allow_nul=allow_nul)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc.msg} (char {exc.pos})") from None
    except UnicodeEncodeError:
        raise DecodeError("a string holds a lone surrogate") from None
    except (RecursionError, ValueError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"not acceptable JSON ({type(exc).__name__})") from None
    return value


__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "MAX_MESSAGE_BYTES", "load_json", "nesting_depth"]
