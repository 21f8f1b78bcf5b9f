"""The arguments every money operation checks alike (corrections, refunds, swaps, moves): its
reference and its integer amounts.

An operation's reference is the id its command names (`ledger.signed.CommandKind`): 1-64 of
`[A-Za-z0-9_.:|*@-]`. The caller may give one (a retry then finds the first operation); else it
is derived from the request's content, so the same request twice is still one operation.
"""

from __future__ import annotations

import hashlib
import re

from cloud.errors import Invalid

REFERENCE = re.compile(r"[A-Za-z0-9_.:|*@\-]{1,64}")


def reference(given: object, prefix: str, *content: object) -> str:
    """The operation's reference: `given`, checked, or one derived from `content`."""
    if given is None:
        digest = hashlib.sha256("\x1f".join(map(str, content)).encode()).hexdigest()
        return f"{prefix}-{digest[:30]}"
    if not isinstance(given, str) or not REFERENCE.fullmatch(given):
        raise Invalid(f"reference {given!r} must be 1-64 of A-Z a-z 0-9 _ . : | * @ -")
    return given


def whole(value: object, name: str, *, low: int, high: int) -> int:
    """An integer argument (never a float or a bool) within [low, high]."""
    if type(value) is not int:
        raise Invalid(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise Invalid(f"{name} must be between {low} and {high}, got {value}")
    return value
