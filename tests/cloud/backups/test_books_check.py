"""Which signed heads a restored copy is held to (`books_check.heads_until`): those signed at or
before the restored moment, since a copy of 10:00 cannot reach a head signed at 11:00."""

from __future__ import annotations

import datetime as dt

from cloud.backups.books_check import heads_until
from ledger.chain import NodeKey
from ledger.signed import OplogHead

KEY = NodeKey.from_seed(bytes(range(32)))
TEN = dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.UTC)


def head(seq: int, when: str) -> OplogHead:
    return OplogHead.sign(seq, bytes([seq]) * 32, when, KEY)


def test_only_heads_signed_by_the_restored_moment_count() -> None:
    early, on_time = head(1, "2026-12-06T09:00:00+00:00"), head(2, "2026-12-06T18:00:00+08:00")
    late, garbled = head(3, "2026-12-06T10:00:01+00:00"), head(4, "yesterday")
    heads = [early, on_time, late, garbled]
    assert heads_until(heads, TEN) == [early, on_time, garbled]  # garbled: the check names it
    assert heads_until(heads, None) == heads
