"""Issue 13: a malformed batch must not jam a node. Each hostile payload gets a signed
`refused` ack and a `refused_batch` alarm, nothing of it is stored, and the valid batch the
edge sends next is stored and acknowledged `ok` (on SQLite and on PostgreSQL, which refuses a
NUL character in text that SQLite takes)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cloud.db import models
from ledger.chain import NodeKey
from ledger.wire import MAGIC, AckStatus, Status, encode_batch
from tests.cloud.fake_edge import T0, ms, reading
from tests.cloud.helpers import count, node_row, open_ack
from tests.ledger.test_wire import batch_docs, json_values

NODE = "edge-0001"
EDGE_KEY = NodeKey.from_seed(b"h" * 32)


def deflated(text: bytes) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return MAGIC + deflate.compress(text) + deflate.flush()


def _valid_doc() -> dict[str, Any]:
    """A well-formed batch without a ledger part, as JSON, to spoil one field of."""
    return {
        "node": NODE,
        "first": 1,
        "upto": 1,
        "ledger": None,
        "readings": {
            "meters": ["000000000001"],
            "cols": {
                "m": [0],
                "t": [ms(T0)],
                "e": [1000],
                "u": [2295],
                "i": [1000],
                "p": [2000],
                "pf": [990],
                "r": [1],
                "t1": [1],
                "t2": [2],
                "t3": [3],
                "t4": [4],
                "n": [4],
            },
        },
        "events": [{"id": 1, "t": ms(T0), "c": "event", "k": "relay_tripped", "d": {}}],
        "results": [],
    }


def spoilt(change: Callable[[dict[str, Any]], object]) -> bytes:
    doc = _valid_doc()
    change(doc)
    return deflated(json.dumps(doc).encode())


def _cols(doc: dict[str, Any]) -> dict[str, Any]:
    cols: dict[str, Any] = doc["readings"]["cols"]
    return cols


def _energy_past_64_bits(doc: dict[str, Any]) -> None:
    """Two readings of one meter whose energy deltas are each in range, their sum not."""
    cols = _cols(doc)
    for name in cols:
        cols[name] = cols[name] * 2
    cols.update(t=[1, 1], e=[2**62, 2**62])


HOSTILE: dict[str, bytes] = {
    # The six of the issue.
    "nested brackets": deflated(b"[" * 100_000),
    "a 10^400 number": deflated(
        json.dumps(_valid_doc()).replace("1000", "1" + "0" * 400, 1).encode()
    ),
    "a short column": spoilt(lambda d: _cols(d).update(n=[5])),  # more tariffs than columns
    "NUL in a meter address": spoilt(lambda d: d["readings"].update(meters=["00000000\x001"])),
    "NUL in an event": spoilt(lambda d: d["events"][0].update(k="relay\x00tripped")),
    "a lone surrogate": deflated(
        json.dumps(_valid_doc()).replace("relay_tripped", "\\ud800").encode()
    ),
    # And their neighbours.
    "1e400": deflated(json.dumps(_valid_doc()).replace('"p": [2000]', '"p": [1e400]').encode()),
    "NaN in an event": deflated(json.dumps(_valid_doc()).replace("{}", '{"x": NaN}').encode()),
    "upto beyond 2**63": spoilt(lambda d: d.update(upto=2**63)),
    "energy summing past 2**63": spoilt(_energy_past_64_bits),
    "an event id beyond 2**63": spoilt(lambda d: d["events"][0].update(id=2**63)),
    "a relay of 2**40": spoilt(lambda d: _cols(d).update(r=[2**40])),
    "a relay of 2": spoilt(lambda d: _cols(d).update(r=[2])),
    "a negative tariff count": spoilt(lambda d: _cols(d).update(n=[-1])),
    "a tariff count of true": spoilt(lambda d: _cols(d).update(n=[True])),
    "an event time in year 10000": spoilt(
        lambda d: d["events"][0].update(t="9999-12-31T23:59:59-12:00")
    ),
    "readings of the wrong shape": spoilt(lambda d: d.update(readings=[1, 2])),
    "a batch that is a list": deflated(b"[1]"),
    "a duplicate key": deflated(b'{"node": "x", "node": "edge-0001"}'),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_batch_is_refused_and_the_next_valid_one_is_stored(
    kind, ingest, edge_of, sessions, cloud_key
) -> None:
    edge = edge_of(NODE)
    ack = open_ack(ingest.handle_batch(NODE, HOSTILE[kind]), cloud_key)
    assert ack.status is AckStatus.REFUSED and ack.reason
    assert (ack.seq, ack.upto) == (0, 0)
    assert count(sessions, models.Alarm, models.Alarm.kind == "refused_batch") == 1
    assert count(sessions, models.Reading) == count(sessions, models.Event) == 0

    entries = edge.book_consumption(2)
    good = encode_batch(edge.batch(1, 3, entries, readings=[reading("000000000001", T0, 1)]))
    ack = open_ack(ingest.handle_batch(NODE, good), cloud_key)
    assert (ack.status, ack.seq, ack.upto) == (AckStatus.OK, 2, 3)
    assert count(sessions, models.Reading) == 1
    assert node_row(sessions, NODE).status == models.NodeStatus.ACTIVE.value


HOSTILE_STATUS: dict[str, bytes] = {
    "nested brackets": b"[" * 100_000,
    "a 10^400 counter": b'{"node": "edge-0001", "online": true, "head": 1'
    + b"0" * 400
    + b', "acked": 0, "commands": 0}',
    "a counter beyond 2**63": Status(NODE, True, commands=2**63).signed(EDGE_KEY),
    "NUL in the inventory": Status(NODE, True, extra={"accounts": {"A\x001": {}}}).signed(EDGE_KEY),
    # issue 13: a status not signed by the node's key claimed its accounts
    "unsigned": json.dumps(Status(NODE, True, extra={"accounts": {"A0001": {}}}).fields()).encode(),
    "signed by another key": Status(NODE, True).signed(NodeKey.from_seed(b"x" * 32)),
    "altered after signing": Status(NODE, True, extra={"accounts": {"A0001": {}}})
    .signed(EDGE_KEY)
    .replace(b"A0001", b"A0002"),
    "another node's status": Status("edge-0002", True).signed(EDGE_KEY),
    "a lone surrogate": b'{"node": "\\ud800", "online": true, "head": 0, "acked": 0, '
    b'"commands": 0}',
    "online as a string": b'{"node": "edge-0001", "online": "no", "head": 0, "acked": 0, '
    b'"commands": 0}',
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_STATUS))
def test_a_hostile_status_is_refused_with_an_alarm_and_the_next_is_recorded(
    kind, ingest, edge_of, sessions
) -> None:
    edge = edge_of(NODE, EDGE_KEY)
    assert ingest.handle_status(NODE, HOSTILE_STATUS[kind]) == []
    assert count(sessions, models.Alarm, models.Alarm.kind == "refused_status") == 1
    assert not node_row(sessions, NODE).online
    assert count(sessions, models.ReportedAccount) == count(sessions, models.MeterState) == 0

    inventory = {"A0001": {"shop": "1F-01", "meters": [{"address": "000000000001"}]}}
    assert ingest.handle_status(NODE, edge.status(accounts=inventory)) == []
    assert node_row(sessions, NODE).online
    assert count(sessions, models.ReportedAccount) == 1


inventories = st.one_of(
    json_values,
    st.dictionaries(
        st.text(max_size=70),
        st.one_of(json_values, st.fixed_dictionaries(
            {}, optional={"shop": json_values, "building": json_values, "floor": json_values,
                          "meters": st.one_of(st.integers(), json_values, st.lists(st.one_of(
                              json_values, st.fixed_dictionaries(
                                  {"address": st.one_of(st.text(max_size=40), json_values)},
                                  optional={"protocol": json_values})), max_size=3))})),
        max_size=4,
    ),
)  # fmt: skip


@pytest.mark.slow  # 100 examples against the database
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(inventory=inventories)
def test_any_signed_inventory_is_taken_or_left_and_never_raises(
    inventory, ingest, edge_of, sessions
) -> None:
    """A node's own signed status can still hold anything: what is not an account of the shape
    the cloud knows is left out, the rest fits its columns."""
    if count(sessions, models.Concentrator, models.Concentrator.node == NODE) == 0:
        edge_of(NODE, EDGE_KEY)
    try:
        payload = Status(NODE, True, extra={"accounts": inventory}).signed(EDGE_KEY)
    except (ValueError, UnicodeEncodeError):  # NaN, a lone surrogate: nothing a node can sign
        assume(False)
    ingest.handle_status(NODE, payload)
    with sessions() as session:
        for row in session.scalars(select(models.ReportedAccount)):
            assert row.node == NODE and 0 < len(row.account) <= 64 and len(row.shop) <= 64
        for meter in session.scalars(select(models.MeterState)):
            assert 0 < len(meter.address) <= 32 and len(meter.protocol) <= 32


@pytest.mark.slow  # 100 examples against the database
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(doc=st.one_of(batch_docs, json_values))
def test_any_batch_gets_an_ack_and_never_jams_the_node(
    doc, ingest, edge_of, sessions, cloud_key
) -> None:
    """Whatever JSON arrives, `handle_batch` answers with a signed ack and raises nothing."""
    if count(sessions, models.Concentrator, models.Concentrator.node == NODE) == 0:
        edge_of(NODE)
    payload = deflated(json.dumps(doc, allow_nan=True).encode())
    ack = open_ack(ingest.handle_batch(NODE, payload), cloud_key)
    assert ack.status in (AckStatus.OK, AckStatus.REFUSED, AckStatus.GAP, AckStatus.QUARANTINED)
