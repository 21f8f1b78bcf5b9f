"""Learnt body layouts (`ledger.body_layouts`): a body decodes, or is refused, exactly as the
general decoder decides, whether or not a layout of its length was learnt."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.accounts import Pocket, pocket_id
from ledger.encoding_v2 import LAYOUTS, decode_transfer_v2, encode_transfer_v2
from ledger.errors import DecodeError
from ledger.transfers import Code, Kind, RefValue, Transfer
from ledger.units import MAX_AMOUNT
from tests.ledger.factories import CASH, SALES, prepaid, transfer
from tests.ledger.test_encoding_v2 import transfers

# Every value width and sign, texts empty, short and long (a 2-byte length), in-line keys.
REFS: list[dict[str, RefValue]] = [
    {},
    {"meter": "123456789012", "reg_from": 1_000_000, "reg_to": 1_003_230, "energy_wh": 1230,
     "cost_cum": 10_288_950, "tariff": "peak:1230@8365"},
    {"payment": "WX0000000001", "method": "wechat"},
    {f"k{n}": (1 << 8 * (n - 1)) if n else 0 for n in range(8)},
    {f"k{n}": -(1 << 8 * (n - 1)) for n in range(1, 8)},
    {"owed": MAX_AMOUNT, "refund": -MAX_AMOUNT, "seq": 255, "node": 256},
    {"reason": "", "original": "x" * 200, "zz_custom": "价格", "a": 65535},
]  # fmt: skip
# Bodies of every shape: system and merchant accounts, a pending id, a long time.
BODIES = [
    transfer(7, CASH, prepaid(), 500, Code.RECHARGE, refs=refs) for refs in REFS
] + [
    transfer(2**128 - 1, prepaid(), SALES, 103, Code.CONSUME, linked=True, refs=REFS[1]),
    transfer(9, pocket_id("A" * 40, Pocket.DEBT), prepaid("B.b-9_"), MAX_AMOUNT,
             kind=Kind.POST, pending_id=2**127, refs=REFS[2]),
    dataclasses.replace(transfer(11, prepaid(), CASH, 1, kind=Kind.VOID, pending_id=1),
                        time="2026-11-01T08:00:00.123456+08:00 " + "t" * 130),
]  # fmt: skip


def _outcome(data: bytes) -> tuple[str, Transfer | None, list[str]]:
    try:
        t = decode_transfer_v2(data)
    except DecodeError:
        return "refused", None, []
    return "decoded", t, list(t.refs)


def _general(data: bytes) -> tuple[str, Transfer | None, list[str]]:
    LAYOUTS.forget()
    return _outcome(data)


def _with_layout_of(body: bytes, data: bytes) -> tuple[str, Transfer | None, list[str]]:
    LAYOUTS.forget()
    for _ in range(3):  # its length noted, its layout noted, its decoder built
        decode_transfer_v2(body)
    assert LAYOUTS.decoder(len(body)) is not None
    return _outcome(data)


@pytest.fixture(autouse=True)
def _forget() -> None:
    LAYOUTS.forget()


@pytest.mark.parametrize("t", BODIES, ids=range(len(BODIES)))
def test_a_layout_met_thrice_is_learnt_and_decodes_the_same(t: Transfer) -> None:
    body = encode_transfer_v2(t)
    decoded = []
    for _ in range(3):  # its length noted, its layout noted, its decoder built
        assert LAYOUTS.decoder(len(body)) is None
        decoded.append(decode_transfer_v2(body))
    learnt = LAYOUTS.decoder(len(body))
    assert learnt is not None
    decoded.append(learnt(body))
    assert decoded == [t] * 4
    assert [list(d.refs) for d in decoded] == [sorted(t.refs)] * 4
    assert all(type(d) is Transfer and type(d.refs) is dict for d in decoded)


@pytest.mark.slow  # about 10 000 decodes, a layout learnt before each
@pytest.mark.parametrize("t", BODIES, ids=range(len(BODIES)))
def test_every_byte_changed_is_judged_as_the_general_decoder_judges_it(t: Transfer) -> None:
    """Each byte set to other values, with the original's layout learnt: the same verdict
    and transfer as with nothing learnt."""
    body = encode_transfer_v2(t)
    differ = []
    for i in range(len(body)):
        for new in {0x00, 0x01, 0x7F, 0x80, 0xFF, body[i] ^ 1, (body[i] + 1) & 0xFF}:
            data = body[:i] + bytes((new,)) + body[i + 1 :]
            if _with_layout_of(body, data) != _general(data):
                differ.append((i, new))
    assert differ == []


@given(transfers(), st.data())
def test_mutated_bodies_are_judged_the_same_with_a_learnt_layout(
    t: Transfer, data: st.DataObject
) -> None:
    body = encode_transfer_v2(t)
    raw = bytearray(body)
    for _ in range(data.draw(st.integers(1, 3))):  # the length kept: the learnt layout's guess
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    assert _with_layout_of(body, bytes(raw)) == _general(bytes(raw))
