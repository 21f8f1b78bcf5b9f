"""Deterministic 128-bit transfer ids for business events.

A rule that decides "issue A0001's subsidy for 2026-11" or "bill meter M between registers r0
and r1" derives the transfer id from those facts. If the box loses power after deciding and
runs the rule again, it derives the same id, and the book answers `exists` instead of booking
twice: exactly-once by construction, not by bookkeeping.
"""

from __future__ import annotations

import hashlib

from ledger.errors import InvalidValue

_TAG = b"voltbook/ledger/id/v1\x00"


def derive_id(*parts: str | int) -> int:
    """A non-zero 128-bit id from the parts (order matters; each part str or int)."""
    if not parts:
        raise InvalidValue("derive_id needs at least one part")
    digest = hashlib.sha256(_TAG)
    for part in parts:
        if type(part) is int:
            raw = b"i" + str(part).encode()
        elif isinstance(part, str):
            raw = b"s" + part.encode()
        else:
            raise InvalidValue(f"id parts must be str or int, got {type(part).__name__}")
        digest.update(len(raw).to_bytes(4, "big") + raw)
    return int.from_bytes(digest.digest()[:16], "big") or 1
