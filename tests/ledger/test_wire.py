"""The sync wire contract: batches round-trip exactly, anything else is a WireError; signed
commands and acks verify only as sent, for the right node, before expiry."""

from __future__ import annotations

import base64
import datetime as dt
import json
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import entry_ids
from ledger.accounts import AccountId, Unit
from ledger.chain import NodeKey
from ledger.encoding import encode_transfer
from ledger.encoding_v2 import encode_transfer_v2
from ledger.entry_ids import LEGS
from ledger.readings import ReadingRow
from ledger.signed import (
    ACK_TAG,
    COMMAND_TAG,
    Command,
    CommandKind,
    OplogHead,
    Rejected,
    open_command,
    open_signed,
    sign,
    trusted,
)
from ledger.transfers import Code, TimeSource, Transfer
from ledger.wire import (
    MAGIC,
    MAGIC_V1,
    MAX_BATCH_BYTES,
    Ack,
    AckStatus,
    Batch,
    LedgerPart,
    Status,
    WireError,
    batch_text,
    compress_batch,
    decode_batch,
    encode_batch,
)
from tests.ledger.factories import sample_transfers
from tests.ledger.test_encoding_v2 import transfers

CLOUD = NodeKey.from_seed(bytes(range(32)))
OTHER = NodeKey.from_seed(bytes(32))
EDGE = NodeKey.from_seed(b"e" * 32)
T0 = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)

scaled = lambda scale: st.one_of(  # noqa: E731 — a value the meter can report at that scale
    st.none(), st.integers(-(10**7), 10**7).map(lambda n: n / scale)
)


# Text without NUL, which the wire refuses (PostgreSQL cannot hold it), and integers as the
# edge's SQLite store holds them.
def texts(size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=size)


extras = st.one_of(  # the rare fields: any JSON object, as `edge.store.records` writes them
    st.none(),
    st.just({"clock": "2026-11-24T08:00:00"}),
    st.dictionaries(
        texts(5),
        st.one_of(st.integers(-(2**63), 2**63 - 1), texts(5), st.lists(texts(3), max_size=3)),
        min_size=1,
        max_size=3,
    ),
)
rows = st.lists(
    st.builds(
        ReadingRow,
        st.sampled_from(["000000000001", "000000000002", "12"]),
        st.integers(0, 2**45),
        st.one_of(st.none(), st.integers(0, 10**10)),
        st.one_of(
            st.none(),
            st.lists(st.integers(0, 10**9), max_size=4).map(
                lambda v: ",".join(map(str, v)) if v else None
            ),
        ),
        scaled(10),
        scaled(1000),
        scaled(10),
        scaled(1000),
        st.sampled_from([None, 0, 1]),
        st.sampled_from([None, "0,16"]),
        extras,
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(rows=rows, bodies=st.lists(st.binary(max_size=40), min_size=1, max_size=5))
def test_batches_round_trip_exactly(rows: list[ReadingRow], bodies: list[bytes]) -> None:
    text_bodies = tuple(b.hex().encode() for b in bodies)
    batch = Batch(
        node="edge-0001",
        first=3,
        upto=9,
        ledger=LedgerPart(5, bytes(range(32)), text_bodies, "56475aa75463474c", bytes(64)),
        readings=tuple(rows),
        events=({"id": 4, "kind": "relay_tripped", "meter": "000000000001"},),
        results=({"command_id": "ab" * 16, "status": "applied"},),
    )
    decoded = decode_batch(encode_batch(batch))
    assert decoded == batch
    assert all(type(row) is ReadingRow for row in decoded.readings)


def test_bodies_travel_as_columns_text_or_base64_by_their_versions() -> None:
    """Version-2 bodies only: as columns in `entries`; version-1 bodies only: as text in
    `bodies`, byte for byte as before; a mix: every body base64 in `stored`; a part holding
    two of those keys is refused."""
    v2 = encode_transfer_v2(sample_transfers()[0])
    v1 = encode_transfer(sample_transfers()[1])
    for bodies, key in (((v2, v2), "entries"), ((v1,), "bodies"), ((v1, v2), "stored")):
        batch = Batch("edge-0001", 1, 2, ledger=LedgerPart(5, bytes(32), bodies, "k", bytes(64)))
        part = json.loads(batch_text(batch))["ledger"]
        assert set(part) == {"from", "prev", key, "key_id", "sig"}
        assert decode_batch(encode_batch(batch)) == batch
    doc = json.loads(batch_text(batch))
    doc["ledger"]["bodies"] = []
    with pytest.raises(WireError, match="either bodies or stored"):
        decode_batch(compress_batch(json.dumps(doc).encode()))
    doc["ledger"] = {**doc["ledger"], "stored": ["not base64!"]}
    del doc["ledger"]["bodies"]
    with pytest.raises(WireError, match="not base64"):
        decode_batch(compress_batch(json.dumps(doc).encode()))


@settings(max_examples=40, deadline=None)
@given(chain=st.lists(transfers(), min_size=1, max_size=4), meters=st.data())
def test_version_2_bodies_come_back_byte_for_byte_from_their_columns(
    chain: list[Transfer], meters: st.DataObject
) -> None:
    """Any transfers, some of them consumption legs whose ids their refs derive (sent as an
    index), give back exactly the bodies the edge stored (in base64 when a text holds a NUL
    character, which the wire's JSON does not carry)."""
    legs = [
        _consumption_leg(meters.draw(st.sampled_from(["000000000001", "7"])), n, leg)
        for n, leg in enumerate(meters.draw(st.lists(st.sampled_from(LEGS), max_size=4)))
    ]
    bodies = tuple(encode_transfer_v2(t) for t in (*chain, *legs))
    batch = Batch("edge-0001", 1, 2, ledger=LedgerPart(5, bytes(32), bodies, "k", bytes(64)))
    part = json.loads(batch_text(batch))["ledger"]
    texts = [text for t in chain for text in (t.time, *t.refs.values()) if isinstance(text, str)]
    if any("\x00" in text for text in texts):
        assert "stored" in part
    else:
        assert part["entries"]["id"][len(chain) :] == [LEGS.index(str(t.refs["leg"])) for t in legs]
    assert decode_batch(encode_batch(batch)) == batch


def _consumption_leg(meter: str, n: int, leg: str) -> Transfer:
    reg_from, reg_to = 10_000 + 7 * n, 10_000 + 7 * n + 5
    return Transfer(
        id=entry_ids.consume(meter, reg_from, reg_to, leg),
        debit=AccountId("A0001:prepaid"),
        credit=AccountId("sys:energy_sales"),
        amount=5,
        unit=Unit.FEN,
        code=Code.CONSUME,
        time="2026-11-01T08:15:00+08:00",
        time_source=TimeSource.NTP,
        refs={"meter": meter, "reg_from": reg_from, "reg_to": reg_to, "leg": leg},
    )


def test_format_1_batches_decode_and_carry_no_columns() -> None:
    """A batch an edge of format 1 sent (magic `VB\\x01`) decodes as it always did; `entries`
    in it is refused (format 1 had none)."""
    batch = Batch("edge-0001", 1, 2, ledger=LedgerPart(5, bytes(32), (b"{}",), "k", bytes(64)))
    text = batch_text(batch)
    assert decode_batch(compress_batch(text)[len(MAGIC) :].join((MAGIC_V1, b""))) == batch
    doc = json.loads(text)
    doc["ledger"]["entries"] = doc["ledger"].pop("bodies")
    with pytest.raises(WireError, match=r"either bodies or stored bodies$"):
        decode_batch(MAGIC_V1 + compress_batch(json.dumps(doc).encode())[len(MAGIC) :])


def test_extra_goes_as_its_object_and_comes_back_one() -> None:
    row = ReadingRow("000000000001", 5, 7, None, None, None, None, None, 1, None, {"hz": 50.0})
    payload = encode_batch(Batch("edge-0001", 1, 1, readings=(row, row._replace(extra=None))))
    doc = json.loads(zlib.decompressobj(-15).decompress(payload[len(MAGIC) :]))
    assert doc["readings"]["cols"]["x"] == [{"hz": 50.0}, None]
    assert decode_batch(payload).readings == (row, row._replace(extra=None))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"garbage",
        MAGIC + b"\x00\x01\x02",  # not deflate
        MAGIC + zlib.compress(b"{}")[2:-4],  # deflate of JSON missing every key
        MAGIC + zlib.compress(b"[1,2]")[2:-4],
    ],
)
def test_garbage_is_a_wire_error(payload: bytes) -> None:
    with pytest.raises(WireError):
        decode_batch(payload)


def _deflate(doc: object) -> bytes:
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    return MAGIC + raw.compress(json.dumps(doc).encode()) + raw.flush()


def test_a_zip_bomb_is_refused_without_inflating_it() -> None:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = MAGIC + deflate.compress(b" " * (MAX_BATCH_BYTES * 4)) + deflate.flush()
    assert len(bomb) < 10_000
    with pytest.raises(WireError, match="beyond"):
        decode_batch(bomb)


@pytest.mark.parametrize(
    "change",
    [
        {"first": 0},
        {"upto": "9"},
        {"first": 9, "upto": 3},
        {"events": [1]},
        {"readings": {"meters": ["1"], "cols": {"m": [3]}}},
        {"ledger": {"from": 1, "prev": "00", "bodies": ["x"], "key_id": "k", "sig": ""}},
    ],
)
def test_malformed_fields_are_wire_errors(change: dict[str, object]) -> None:
    doc = {"node": "n", "first": 1, "upto": 2, "ledger": None, "readings": None}
    doc |= {"events": [], "results": []} | change
    with pytest.raises(WireError):
        decode_batch(_deflate(doc))


def test_fifteen_minute_readings_cost_a_few_bytes_each() -> None:
    rows = [
        ReadingRow(
            f"{m:012d}",
            1_793_491_200_000 + k * 900_000 + m * 37,
            100_000 + k * (m % 9) * 11,
            None,
            229.5 + (k * m) % 7 / 10,
            1.25,
            286.9,
            0.98,
            1,
            None,
            None,
        )
        for k in range(96)
        for m in range(64)
    ]
    size = len(encode_batch(Batch("edge-0001", 1, 96, readings=tuple(rows))))
    assert size / len(rows) < 12


def test_commands_verify_only_as_signed_for_their_target_before_expiry() -> None:
    command = Command(
        "0f" * 16, 1, "edge-0001", CommandKind.RECHARGE, T0, T0 + dt.timedelta(days=3),
        {"account": "A0001", "fen": 5000, "payment": "P1", "method": "cash"},
    )  # fmt: skip
    payload = command.sign(CLOUD)
    keys = trusted(CLOUD.public_key)
    assert open_command(payload, keys, "edge-0001", T0) == command
    with pytest.raises(Rejected) as wrong:
        open_command(payload, keys, "edge-0002", T0)
    assert wrong.value.reason == "wrong_target"
    with pytest.raises(Rejected) as late:
        open_command(payload, keys, "edge-0001", T0 + dt.timedelta(days=3))
    assert late.value.reason == "expired"
    with pytest.raises(Rejected) as unknown:
        open_command(command.sign(OTHER), keys, "edge-0001", T0)
    assert unknown.value.reason == "unknown_key"
    forged = payload.replace(b'"fen":5000', b'"fen":9000')
    with pytest.raises(Rejected) as bad:
        open_command(forged, keys, "edge-0001", T0)
    assert bad.value.reason == "bad_signature"
    # An ack signature can never pass as a command (domain tags differ).
    as_ack = sign(ACK_TAG, command.fields(), CLOUD)
    with pytest.raises(Rejected) as crossed:
        open_command(as_ack, keys, "edge-0001", T0)
    assert crossed.value.reason == "bad_signature"
    assert open_signed(COMMAND_TAG, payload, keys)["seq"] == 1


@pytest.mark.parametrize("payload", [b"", b"[]", b"{}", b'{"sig":"00","key_id":"x"}', b"\xff"])
def test_malformed_signed_messages_are_rejected(payload: bytes) -> None:
    with pytest.raises(Rejected) as rejected:
        open_signed(ACK_TAG, payload, trusted(CLOUD.public_key))
    assert rejected.value.reason == "malformed"


def test_ack_and_status_round_trip() -> None:
    ack = Ack("edge-0001", 41, bytes(range(32)), 180, AckStatus.GAP, T0.isoformat(), "behind")
    fields = open_signed(ACK_TAG, sign(ACK_TAG, ack.fields(), CLOUD), trusted(CLOUD.public_key))
    assert Ack.from_fields(fields) == ack
    status = Status("edge-0001", True, 41, 40, 7, {"accounts": {"A0001": {"shop": "1F-01"}}})
    assert Status.open(status.signed(EDGE), trusted(EDGE.public_key)) == status
    with pytest.raises(WireError):
        Status.decode(b'{"node":"x","online":true,"head":-1,"acked":0,"commands":0}')
    with pytest.raises(WireError):
        Ack.from_fields({**ack.fields(), "seq": -1})


def test_a_status_not_signed_by_the_nodes_key_is_refused() -> None:
    """Issue 13: statuses were not signed, so anyone who could publish one could claim another
    concentrator's accounts. Unsigned, signed by another key, or altered after signing: refused."""
    status = Status("edge-0001", True, 41, 40, 7, {"accounts": {"A0001": {"shop": "1F-01"}}})
    keys = trusted(EDGE.public_key)
    unsigned = json.dumps(status.fields()).encode()
    altered = status.signed(EDGE).replace(b'"A0001"', b'"A0002"')
    for payload, why in [(unsigned, "malformed"), (status.signed(CLOUD), "unknown_key"),
                         (altered, "bad_signature")]:  # fmt: skip
        with pytest.raises(WireError, match=why):
            Status.open(payload, keys)
    assert Status.decode(unsigned) == status  # well formed: only the signature is wrong


def test_an_ack_carries_the_clouds_signed_oplog_head_and_stays_compatible() -> None:
    head = OplogHead.sign(812, bytes(range(32)), T0.isoformat(), CLOUD)
    head.verify(trusted(CLOUD.public_key))
    ack = Ack("edge-0001", 41, bytes(range(32)), 180, AckStatus.OK, T0.isoformat(), "", head)
    fields = open_signed(ACK_TAG, sign(ACK_TAG, ack.fields(), CLOUD), trusted(CLOUD.public_key))
    assert Ack.from_fields(fields) == ack and Ack.from_fields(fields).oplog == head
    # An edge that predates the field reads only the keys it knows: the rest is as before.
    old = Ack("edge-0001", 41, bytes(range(32)), 180, AckStatus.OK, T0.isoformat())
    assert "oplog" not in old.fields()
    assert {k: v for k, v in fields.items() if k not in ("oplog", "key_id")} == old.fields()
    with pytest.raises(Rejected):  # signed by another key
        OplogHead.sign(1, bytes(32), T0.isoformat(), NodeKey.generate()).verify(
            trusted(CLOUD.public_key)
        )
    for bad in ({"seq": -1}, {"hash": "00"}, {"sig": "zz"}, {"time": "noon"}):
        with pytest.raises(WireError):
            Ack.from_fields({**ack.fields(), "oplog": {**head.fields(), **bad}})


# -- any bytes: a value or WireError (issue 13: a malformed batch must not jam a node) ----------

# JSON as an edge with a bug, or an attacker, may write it: huge and non-finite numbers, NUL
# characters and lone surrogates in strings, and any nesting.
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 10**400, 5, 0, -1]),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "000000000001", "relay_tripped"]),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)
columns = st.dictionaries(
    st.sampled_from(
        ["m", "t", "e", "u", "i", "p", "pf", "r", "t1", "t2", "t3", "t4", "n", "s", "x"]
    ),
    st.one_of(
        st.lists(st.one_of(st.none(), st.integers(-3, 3), json_leaves), max_size=4), json_values
    ),
)
small = st.one_of(st.none(), st.integers(-2, 3), json_leaves)
entry_columns = st.fixed_dictionaries(  # near a valid one: two entries, any value anywhere
    {
        "accounts": st.one_of(st.just(["sys:energy_sales", "A0001:prepaid"]), json_values),
        "times": st.one_of(st.just(["2026-11-01T08:00:00+08:00"]), json_values),
        "texts": st.one_of(st.just(["000000000001", "x"]), json_values),
        **{
            name: st.one_of(st.lists(small, min_size=2, max_size=2), json_values)
            for name in ("id", "c", "k", "s", "l", "a", "d", "cr", "t")
        },
        "refs": st.one_of(
            st.dictionaries(st.sampled_from(["reg_from", "reg_to", "Bad", "meter"]),
                            st.lists(small, min_size=2, max_size=2)),
            json_values,
        ),
        "text_refs": st.one_of(
            st.dictionaries(st.sampled_from(["meter", "tariff", "reg_to"]),
                            st.lists(small, min_size=2, max_size=2)),
            json_values,
        ),
    },
    optional={"p": st.one_of(st.lists(small, min_size=2, max_size=2), json_values)},
)  # fmt: skip
batch_docs = st.fixed_dictionaries(
    {
        "node": st.one_of(st.just("edge-0001"), json_values),
        "first": st.one_of(st.integers(1, 3), json_values),
        "upto": st.one_of(st.integers(3, 5), json_values),
        "ledger": st.one_of(
            st.none(),
            json_values,
            st.fixed_dictionaries(
                {
                    "from": st.one_of(st.integers(1, 3), json_values),
                    "prev": st.one_of(st.just("00" * 32), json_values),
                    "bodies": st.one_of(st.lists(st.text(max_size=5), max_size=3), json_values),
                    "key_id": st.one_of(st.just("k"), json_values),
                    "sig": st.one_of(st.just("00" * 64), json_values),
                }
            ),
            st.fixed_dictionaries(  # bodies in base64, as a batch with version-2 bodies has them
                {
                    "from": st.one_of(st.integers(1, 3), json_values),
                    "prev": st.one_of(st.just("00" * 32), json_values),
                    "stored": st.one_of(
                        st.lists(
                            st.one_of(
                                st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode()),
                                st.text(max_size=8),
                            ),
                            max_size=3,
                        ),
                        json_values,
                    ),
                    "key_id": st.one_of(st.just("k"), json_values),
                    "sig": st.one_of(st.just("00" * 64), json_values),
                },
                optional={"bodies": st.lists(st.text(max_size=5), max_size=2)},
            ),
            st.fixed_dictionaries(  # format 2: the entries as columns
                {
                    "from": st.one_of(st.integers(1, 3), json_values),
                    "prev": st.one_of(st.just("00" * 32), json_values),
                    "entries": st.one_of(entry_columns, json_values),
                    "key_id": st.one_of(st.just("k"), json_values),
                    "sig": st.one_of(st.just("00" * 64), json_values),
                },
            ),
        ),
        "readings": st.one_of(
            st.none(),
            json_values,
            st.fixed_dictionaries(
                {
                    "meters": st.one_of(st.lists(json_leaves, max_size=3), json_values),
                    "cols": st.one_of(columns, json_values),
                }
            ),
        ),
        "events": st.one_of(st.lists(json_values, max_size=3), json_values),
        "results": st.one_of(st.lists(json_values, max_size=3), json_values),
    }
)


def _json_text(doc: object) -> bytes:
    """`doc` as JSON text, NaN and Infinity included (as some encoders write them)."""
    return json.dumps(doc, allow_nan=True).encode()


def _check_batch(payload: bytes) -> None:
    try:
        batch = decode_batch(payload)
    except WireError:
        return
    assert isinstance(batch, Batch)
    assert 1 <= batch.first <= batch.upto < 2**63
    for row in batch.readings:
        for value in (row.time, row.energy_wh):
            assert value is None or (type(value) is int and -(2**63) < value < 2**63)
        assert row.relay in (None, 0, 1)
        for text in (row.meter, row.tariff_wh, row.status):
            assert text is None or "\x00" not in str(text)


@settings(max_examples=300, deadline=None)
@given(payload=st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(MAGIC.__add__)))
def test_any_bytes_decode_to_a_batch_or_a_wire_error(payload: bytes) -> None:
    _check_batch(payload)


@settings(max_examples=500, deadline=None)
@given(doc=st.one_of(batch_docs, json_values))
def test_any_json_decodes_to_a_bounded_batch_or_a_wire_error(doc: object) -> None:
    _check_batch(_deflate_text(_json_text(doc)))


def _deflate_text(text: bytes) -> bytes:
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    return MAGIC + raw.compress(text) + raw.flush()


@pytest.mark.parametrize(
    "text",
    [
        b"[" * 100_000,
        b'{"node": "n", "first": 1, "upto": 1' + b", " + b"1" * 401,
        b'{"node": "n", "first": 1, "upto": 1e400, "ledger": null, "readings": null, '
        b'"events": [], "results": []}',
        b'{"node": "n\\u0000", "first": 1, "upto": 1, "ledger": null, "readings": null, '
        b'"events": [], "results": []}',
        b'{"node": "\\udc00", "first": 1, "upto": 1, "ledger": null, "readings": null, '
        b'"events": [], "results": []}',
        b'{"node": "n", "node": "m", "first": 1, "upto": 1, "ledger": null, "readings": null, '
        b'"events": [], "results": []}',
    ],
    ids=["deep", "long number", "1e400", "NUL", "lone surrogate", "duplicate key"],
)
def test_hostile_json_is_a_wire_error(text: bytes) -> None:
    with pytest.raises(WireError):
        decode_batch(_deflate_text(text))


status_docs = st.fixed_dictionaries(
    {
        "node": st.one_of(st.just("edge-0001"), json_values),
        "online": st.one_of(st.booleans(), json_values),
        "head": st.one_of(st.integers(0, 5), json_values),
        "acked": st.one_of(st.integers(0, 5), json_values),
        "commands": st.one_of(st.integers(0, 5), json_values),
    },
    optional={"accounts": json_values},
)


@settings(max_examples=500, deadline=None)
@given(
    payload=st.one_of(st.binary(max_size=300), st.one_of(status_docs, json_values).map(_json_text))
)
def test_any_bytes_decode_to_a_status_or_a_wire_error(payload: bytes) -> None:
    with pytest.raises(WireError):  # none of these bytes is signed
        Status.open(payload, trusted(EDGE.public_key))
    try:
        status = Status.decode(payload)
    except WireError:
        return
    assert isinstance(status.node, str) and type(status.online) is bool
    assert all(0 <= n < 2**63 for n in (status.head, status.acked, status.commands))
    assert "\x00" not in _json_text(status.extra).decode("unicode_escape", "replace")
