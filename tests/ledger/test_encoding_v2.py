"""Body format version 2: exact bytes, frozen tables, round trips, refusal of every other byte
string, and chains that mean the same whichever format their bodies are in."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.accounts import POCKET_UNIT, SYSTEM_UNIT, Pocket, System, Unit, pocket_id, system_id
from ledger.chain import Chain, Checkpoint, Entry, NodeKey
from ledger.encoding import decode_transfer, encode_body
from ledger.encoding_v2 import (
    CODES,
    KINDS,
    POCKETS,
    REF_KEYS,
    SYSTEM_ACCOUNTS,
    TIME_SOURCES,
    decode_transfer_v2,
    encode_transfer_v2,
)
from ledger.errors import DecodeError
from ledger.export import Record
from ledger.transfers import Code, Kind, TimeSource, Transfer
from ledger.units import MAX_AMOUNT
from ledger.verify import verify_records, verify_stored
from tests.ledger.factories import CASH, VECTOR_SEED, prepaid, transfer

EXAMPLE = bytes.fromhex(  # the module docstring's example
    "02" "00000000000000000000000000000001" "00000000" "00000000000001f4"
    "01" "8105" + b"A0001".hex() + "19" + b"2026-11-01T08:00:00+08:00".hex()
    + "01" "071002" + b"P1".hex()
)  # fmt: skip


def test_exact_bytes_of_the_documented_example() -> None:
    t = transfer(1, CASH, prepaid(), 500, Code.RECHARGE, refs={"payment": "P1"})
    assert encode_transfer_v2(t) == EXAMPLE and len(EXAMPLE) == 69
    assert decode_transfer(EXAMPLE) == decode_transfer_v2(EXAMPLE) == t


def test_tables_are_frozen_and_cover_every_value() -> None:
    """Append-only: an index, once written, means the same forever; a new code, account or
    time source must be appended to its table (else it cannot be encoded)."""
    assert [c.value for c in CODES] == [
        "recharge", "consume", "subsidy_issue", "subsidy_expire", "refund", "grace_issue",
        "grace_expire", "correction", "meter_settle", "move", "debt_repay", "takeover",
    ]  # fmt: skip
    assert [k.value for k in KINDS] == ["single", "pending", "post", "void"]
    assert [s.value for s in TIME_SOURCES] == ["ntp", "cloud", "meter", "persisted", "simulated"]
    assert [p.value for p in POCKETS] == ["subsidy", "prepaid", "grace", "debt", "water_subsidy"]
    assert [s.value for s in SYSTEM_ACCOUNTS][:3] == [
        "payments_received", "cash_in_transit", "energy_sales",
    ]  # fmt: skip
    assert REF_KEYS[:8] == (
        "meter", "reg_from", "reg_to", "energy_wh", "cost_cum", "tariff", "swap", "payment",
    )  # fmt: skip
    for table, enum in ((CODES, Code), (KINDS, Kind), (TIME_SOURCES, TimeSource),
                        (POCKETS, Pocket), (SYSTEM_ACCOUNTS, System)):  # fmt: skip
        assert sorted(table) == sorted(enum) and len(set(table)) == len(table)
    assert len(set(REF_KEYS)) == len(REF_KEYS) < 0x80


def _refused(data: bytes) -> bool:
    try:
        decode_transfer_v2(data)
    except DecodeError:
        return True
    return False


def test_every_other_spelling_is_refused() -> None:
    head, debit, credit = EXAMPLE[:29], EXAMPLE[29:30], EXAMPLE[30:37]
    time, refs = EXAMPLE[37:63], EXAMPLE[63:]
    assert head + debit + credit + time + refs == EXAMPLE
    bad = {
        "trailing byte": EXAMPLE + b"\x00",
        "cut short": EXAMPLE[:-1],
        "empty": b"",
        "version 3": b"\x03" + EXAMPLE[1:],
        "id 0": EXAMPLE[:1] + bytes(16) + EXAMPLE[17:],
        "linked 2": EXAMPLE[:20] + b"\x02" + EXAMPLE[21:],
        "amount 0": EXAMPLE[:21] + bytes(8) + EXAMPLE[29:],
        "amount 2^53": EXAMPLE[:21] + (2**53).to_bytes(8, "big") + EXAMPLE[29:],
        "unknown code": EXAMPLE[:17] + bytes([len(CODES)]) + EXAMPLE[18:],
        "post without pending id": EXAMPLE[:18] + b"\x02" + EXAMPLE[19:],
        "pending id on a single": head + bytes(15) + b"\x01" + debit + credit + time + refs,
        "debit is credit": head + credit + credit + time + refs,
        "two units": head + b"\x05" + credit + time + refs,  # subsidy_issued is in Wh
        "owner sys": head + debit + b"\x81\x03sys" + time + refs,
        "owner with a colon": head + debit + b"\x81\x05A0:01" + time + refs,
        "unknown pocket": head + debit + bytes([0x80 + len(POCKETS)]) + credit[1:] + time + refs,
        "long varint": head + debit + credit + b"\x99\x00" + time[1:] + refs,
        "in-line key with a table index": head + debit + credit + time
        + b"\x01\x87payment\x10\x02P1",
        "text not UTF-8": head + debit + credit + time + b"\x01\x07\x10\x02\xff\xfe",
        "integer with a leading zero": head + debit + credit + time + b"\x01\x07\x02\x00\x05",
        "negative zero": head + debit + credit + time + b"\x01\x07\x08",
        "keys out of order": head + debit + credit + time + b"\x02\x07\x00\x00\x00",
        "key repeated": head + debit + credit + time + b"\x02\x07\x00\x07\x00",
        "integer beyond 2^53-1": head + debit + credit + time + b"\x01\x07\x07\x20" + bytes(6),
    }  # fmt: skip
    assert [name for name, data in bad.items() if not _refused(data)] == []


def _text() -> st.SearchStrategy[str]:
    return st.text(max_size=160).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))


_OWNERS = st.from_regex(r"[A-Za-z0-9_.\-]{1,40}", fullmatch=True).filter(lambda o: o != "sys")
_REF_VALUES = st.one_of(
    st.integers(-MAX_AMOUNT, MAX_AMOUNT),
    st.sampled_from([0, 1, -1, 255, 256, -256, MAX_AMOUNT, -MAX_AMOUNT]),
    _text(),
)
_REF_KEYS = st.one_of(
    st.sampled_from(REF_KEYS), st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)
)


@st.composite
def transfers(draw: st.DrawFn) -> Transfer:
    """Any transfer: every account kind and unit, every kind (with pending ids), long texts."""
    unit = draw(st.sampled_from(Unit))
    accounts = [system_id(s) for s in System if SYSTEM_UNIT[s] is unit]
    pockets = [p for p in Pocket if POCKET_UNIT[p] is unit]
    owners = draw(st.lists(_OWNERS, min_size=2, max_size=2, unique=True))
    accounts += [pocket_id(o, p) for o in owners for p in pockets]
    debit, credit = draw(st.lists(st.sampled_from(accounts), min_size=2, max_size=2, unique=True))
    kind = draw(st.sampled_from(Kind))
    two_phase = kind in (Kind.POST, Kind.VOID)
    return Transfer(
        id=draw(st.integers(1, 2**128 - 1)),
        debit=debit,
        credit=credit,
        amount=draw(st.integers(1, MAX_AMOUNT)),
        unit=unit,
        code=draw(st.sampled_from(Code)),
        time=draw(st.one_of(st.just("2026-11-01T08:00:00.123456+08:00"), _text())),
        time_source=draw(st.sampled_from(TimeSource)),
        kind=kind,
        pending_id=draw(st.integers(1, 2**128 - 1)) if two_phase else None,
        linked=draw(st.booleans()),
        refs=draw(st.dictionaries(_REF_KEYS, _REF_VALUES, max_size=8)),
    )


def _canonical_and_valid(data: bytes) -> None:
    """`data` decoded: it must be the one encoding of a transfer that `Transfer` accepts."""
    try:
        decoded = decode_transfer_v2(data)
    except DecodeError:
        return
    assert dataclasses.replace(decoded) == decoded  # every invariant, checked again
    assert encode_transfer_v2(decoded) == data


@pytest.mark.slow  # 100 random transfers, encoded and decoded
@given(transfers())
def test_round_trip(t: Transfer) -> None:
    data = encode_transfer_v2(t)
    decoded = decode_transfer(data)
    assert decoded == t and type(decoded.refs) is dict
    assert encode_transfer_v2(decoded) == data
    assert decode_transfer(encode_body(t, 1)) == t  # the same transfer, in version 1


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    _canonical_and_valid(b"\x02" + data)  # the version byte first: past the first check
    with contextlib.suppress(DecodeError):
        decode_transfer(data)


@given(transfers(), st.data())
def test_mutated_encodings_decode_or_raise_decode_error(t: Transfer, data: st.DataObject) -> None:
    raw = bytearray(encode_transfer_v2(t))
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _canonical_and_valid(bytes(raw))
    _canonical_and_valid(bytes(raw[:cut]))


KEY = NodeKey.from_seed(VECTOR_SEED)

# What can happen to a chain's records on their way (the same to both formats).
_DAMAGE = st.lists(
    st.tuples(st.sampled_from(["drop", "repeat", "swap", "tamper", "resign"]), st.integers(0, 99)),
    max_size=3,
)


def _damaged(records: list[Record], damage: list[tuple[str, int]]) -> list[Record]:
    out = list(records)
    for what, at in damage:
        if not out:
            break
        i = at % len(out)
        record = out[i]
        if what == "drop":
            del out[i]
        elif what == "repeat":
            out.insert(i, record)
        elif what == "swap" and i + 1 < len(out):
            out[i], out[i + 1] = out[i + 1], out[i]
        elif what == "tamper" and isinstance(record, Entry):
            transfer = dataclasses.replace(record.transfer, amount=record.transfer.amount % 7 + 1)
            out[i] = dataclasses.replace(record, transfer=transfer)
        elif what == "resign" and isinstance(record, Checkpoint):
            out[i] = dataclasses.replace(record, signature=bytes(64))
    return out


@pytest.mark.slow  # 100 random chains, each verified three ways
@given(st.lists(transfers(), min_size=1, max_size=6, unique_by=lambda t: t.id), _DAMAGE,
       st.integers(1, 4))  # fmt: skip
def test_v1_and_v2_chains_verify_identically(
    ts: list[Transfer], damage: list[tuple[str, int]], every: int
) -> None:
    """The same transfers chained in either format and damaged the same way get the same
    verdict, problem for problem; a version-2 chain read from its stored rows too."""
    verdicts = []
    for version in (1, 2):
        chain = Chain("edge-0001", version=version)
        records: list[Record] = []
        for i, t in enumerate(ts, 1):
            records.append(chain.append(t))
            if i % every == 0 or i == len(ts):
                records.append(chain.checkpoint(KEY))
        records = _damaged(records, damage)
        verdict = verify_records(records, [KEY.public_key])
        verdicts.append([(f.problem, f.seq) for f in verdict.findings])
        if version == 2:
            rows = [(r.seq, r.prev_hash, r.hash, encode_body(r.transfer, 2))
                    for r in records if isinstance(r, Entry)]  # fmt: skip
            checkpoints = [r for r in records if isinstance(r, Checkpoint)]
            stored = verify_stored("edge-0001", rows, checkpoints, [KEY.public_key])
            verdicts.append([(f.problem, f.seq) for f in stored.findings])
            assert (stored.entries, stored.signed_through) == (
                verdict.entries, verdict.signed_through,
            )  # fmt: skip
    assert verdicts[0] == verdicts[1] == verdicts[2]
    if not damage:
        assert verdicts[0] == []


def test_a_stored_body_that_carries_no_id_is_malformed() -> None:
    chain = Chain("edge-0001", version=2)
    entry = chain.append(transfer(1, CASH, prepaid(), 500, Code.RECHARGE))
    verdict = verify_stored(
        "edge-0001", [(1, entry.prev_hash, entry.hash, b"\x02\x00")], [], [KEY.public_key]
    )
    assert [f.problem.value for f in verdict.findings] == ["malformed", "tampered", "unsigned_tail"]
