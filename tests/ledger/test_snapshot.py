"""Signed balance snapshots: round trip, signatures bound to the body, and any bytes either
decode to a snapshot or raise `DecodeError`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.book import Book, replay
from ledger.chain import NodeKey
from ledger.errors import DecodeError, InvalidValue
from ledger.snapshot import BalanceSnapshot, SignedSnapshot, decode_snapshot
from tests.ledger.factories import sample_transfers

KEY = NodeKey.from_seed(bytes(range(32)))
OTHER = NodeKey.from_seed(bytes(range(1, 33)))


def _snapshot() -> BalanceSnapshot:
    book = replay(sample_transfers()[:5])  # the refund still pending
    return BalanceSnapshot("edge-0001", 5, bytes(range(32)), book.state())


def test_a_snapshot_round_trips_and_restores_the_book() -> None:
    snapshot = _snapshot()
    decoded = decode_snapshot(snapshot.encode())
    assert decoded == snapshot
    assert [t.id for t in decoded.state.pendings] == [5]
    restored = Book(open_accounts=True)
    restored.restore(decoded.state)
    full = replay(sample_transfers())
    restored.post(sample_transfers()[5])  # the post of the pending taken over
    assert restored.balances() == full.balances()
    assert len(restored) == len(full)


def test_the_signature_covers_the_body() -> None:
    signed = _snapshot().sign(KEY)
    assert signed.verify(KEY.public_key)
    assert not signed.verify(OTHER.public_key)
    forged = SignedSnapshot(
        signed.body.replace(b'"seq":5', b'"seq":6'), KEY.key_id, signed.signature
    )
    assert not forged.verify(KEY.public_key)


def test_a_book_mid_transaction_has_no_state() -> None:
    book = Book(open_accounts=True)
    book.submit(sample_transfers()[:1])
    with pytest.raises(InvalidValue, match="commit"):
        book.state()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"v":2}',
        _snapshot().encode().replace(b'"count":5', b'"count":-1'),
        _snapshot().encode().replace(b'"seq":5', b'"seq": 5'),  # not canonical
        _snapshot().encode().replace(b"A0001:prepaid", b"A0001:nonsense"),
        _snapshot().encode().replace(bytes(range(32)).hex().encode(), b"zz"),
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_snapshot(body)


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        decoded = decode_snapshot(data)
    except DecodeError:
        return
    assert decoded.encode() == data  # only a canonical body decodes


@given(st.integers(0, len(_snapshot().encode()) - 1), st.integers(0, 255))
def test_any_one_byte_change_is_refused_or_changes_the_snapshot(at: int, value: int) -> None:
    body = bytearray(_snapshot().encode())
    body[at] = value
    try:
        decoded = decode_snapshot(bytes(body))
    except DecodeError:
        return
    assert decoded.encode() == bytes(body)
