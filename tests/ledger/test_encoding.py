"""The canonical encoding: exact bytes, round trips, and refusal of anything else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.accounts import Pocket, System, Unit, pocket_id, system_id
from ledger.encoding import decode_transfer, encode_transfer
from ledger.errors import DecodeError
from ledger.transfers import Code, Kind, TimeSource, Transfer
from ledger.units import MAX_AMOUNT
from tests.ledger.factories import CASH, prepaid, transfer

EXPECTED = (
    '{"amount":500,"code":"recharge","credit":"A0001:prepaid","debit":"sys:cash_in_transit",'
    '"id":"0000000000000000000000000000002a","kind":"single","linked":false,"pending_id":null,'
    '"refs":{"operator":"王芳","payment":"P1"},"time":"2026-11-01T08:00:00+08:00",'
    '"time_source":"ntp","unit":"fen"}'
).encode()


def test_exact_bytes() -> None:
    t = transfer(
        42, CASH, prepaid(), 500, Code.RECHARGE, refs={"payment": "P1", "operator": "王芳"}
    )
    assert encode_transfer(t) == EXPECTED
    assert decode_transfer(EXPECTED) == t


def test_control_characters_are_escaped_like_rfc8785() -> None:
    t = transfer(1, CASH, prepaid(), 1, refs={"note": 'a"b\\c\n\x01\x7f'})
    assert b'"note":"a\\"b\\\\c\\n\\u0001\x7f"' in encode_transfer(t)


def test_non_canonical_forms_are_refused() -> None:
    spaced = EXPECTED.replace(b":500,", b": 500,")
    upper = EXPECTED.replace(b"2a", b"2A")
    reordered = EXPECTED.replace(
        b'"amount":500,"code":"recharge"', b'"code":"recharge","amount":500'
    )
    float_amount = EXPECTED.replace(b":500,", b":500.0,")
    extra = EXPECTED[:-1] + b',"x":1}'
    for bad in (spaced, upper, reordered, float_amount, extra, b"[]", b"\xff", b""):
        try:
            decode_transfer(bad)
        except DecodeError:
            continue
        raise AssertionError(f"accepted non-canonical {bad!r}")


ref_values = st.one_of(
    st.integers(-MAX_AMOUNT, MAX_AMOUNT),
    st.text(max_size=20).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
)
transfers = st.builds(
    Transfer,
    id=st.integers(1, 2**128 - 1),
    debit=st.just(system_id(System.CASH_IN_TRANSIT)),
    credit=st.sampled_from([pocket_id(o, Pocket.PREPAID) for o in ("A1", "shop-2.b", "X_9")]),
    amount=st.integers(1, MAX_AMOUNT),
    unit=st.just(Unit.FEN),
    code=st.sampled_from(Code),
    time=st.text(max_size=30).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
    time_source=st.sampled_from(TimeSource),
    kind=st.sampled_from([Kind.SINGLE, Kind.PENDING]),
    linked=st.booleans(),
    refs=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True), ref_values, max_size=5
    ),
)


@pytest.mark.slow  # 100 random transfers, encoded and decoded
@given(transfers)
def test_round_trip(t: Transfer) -> None:
    data = encode_transfer(t)
    assert decode_transfer(data) == t
    assert encode_transfer(decode_transfer(data)) == data


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_transfer(data)


@given(transfers, st.data())
def test_mutated_encodings_decode_or_raise_decode_error(t: Transfer, data: st.DataObject) -> None:
    raw = bytearray(encode_transfer(t))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_transfer(bytes(raw))
    except DecodeError:
        return
    assert encode_transfer(decoded) == bytes(raw)
