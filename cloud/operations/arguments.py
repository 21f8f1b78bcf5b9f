"""The arguments every money operation checks alike (corrections, refunds, swaps, moves): its
reference and its integer amounts.

An operation's reference is the id its command names (`ledger.signed.REFERENCE_PATTERN`). The caller
may give one (a retry then finds the first operation); else it is derived from the request's
content, so the same request twice is still one operation.
"""

from __future__ import annotations

import hashlib

from cloud.errors import Invalid
from ledger.signed import REFERENCE_PATTERN, is_reference


def reference(given: object, prefix: str, *content: object) -> str:
    """The operation's reference: `given`, checked, or one derived from `content`."""
    if given is None:
        digest = hashlib.sha256("\x1f".join(map(str, content)).encode()).hexdigest()
        return f"{prefix}-{digest[:30]}"
    if not is_reference(given):
        raise Invalid(f"reference {given!r} must match {REFERENCE_PATTERN}")
    return given


def whole(value: object, name: str, *, low: int, high: int) -> int:
    """An integer argument (never a float or a bool) within [low, high]."""
    if type(value) is not int:
        raise Invalid(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise Invalid(f"{name} must be between {low} and {high}, got {value}")
    return value
