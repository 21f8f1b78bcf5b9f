"""Ingest of uplink batches on every backend: storing, acks, duplicates, reordering, and the
ways a batch can be wrong (malformed, forged, forked)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import zlib

import pytest
from sqlalchemy import select

from cloud.db import models
from cloud.ingest import concentrators
from cloud.ingest.handler import Ingest
from ledger.book import replay
from ledger.chain import Entry, NodeKey
from ledger.encoding import GENESIS_HASH, encode_body, encode_transfer
from ledger.invariants import check_balances_sum_to_zero
from ledger.verify import verify_records
from ledger.wire import MAGIC, MAGIC_V1, MAX_BATCH_BYTES, AckStatus, batch_text, encode_batch
from tests.cloud.fake_edge import T0, FakeEdge, consume, edge_recharge, ms, reading, subsidy
from tests.cloud.helpers import (
    balances,
    count,
    node_row,
    open_ack,
    stored_chain,
    stored_checkpoints,
)

NODE = "edge-0001"


def test_a_batch_is_stored_and_acknowledged(ingest, edge_of, sessions, cloud_key, clock) -> None:
    edge = edge_of(NODE)
    entries = edge.book_consumption(5)
    readings = [
        reading("000000000001", T0, 1000),
        reading("000000000002", T0, 2000, relay=0),
        reading("000000000001", T0 + dt.timedelta(minutes=15), 1040),
    ]
    events = [{"id": 1, "t": ms(T0), "c": "event", "k": "relay_tripped", "m": "000000000002",
               "d": {"why": "arrears"}}]  # fmt: skip
    ack = open_ack(
        ingest.handle_batch(NODE, edge.payload(1, 9, entries, readings=readings, events=events)),
        cloud_key,
    )
    assert (ack.status, ack.seq, ack.head, ack.upto) == (AckStatus.OK, 5, entries[-1].hash, 9)
    assert ack.node == NODE and ack.now == clock().isoformat()

    assert stored_chain(sessions, NODE) == entries
    assert balances(sessions) == {
        a: b for a, b in replay([e.transfer for e in entries]).balances().items()
    }
    with sessions() as session:
        stored = session.scalars(select(models.Reading).order_by(models.Reading.time)).all()
        assert [(r.meter, r.time, r.energy_wh, r.relay) for r in stored] == [
            ("000000000001", T0, 1000, 1),
            ("000000000002", T0, 2000, 0),
            ("000000000001", T0 + dt.timedelta(minutes=15), 1040, 1),
        ]
        assert stored[0].voltage == 229.5 and stored[0].tariff_wh == "1,2,3,4"
        meter = session.get(models.MeterState, (NODE, "000000000001"))
        assert meter is not None
        assert (meter.energy_wh, meter.last_reading) == (1040, T0 + dt.timedelta(minutes=15))
        event = session.get(models.Event, (NODE, 1))
        assert event is not None
        assert (event.kind, event.meter, event.time, event.detail) == (
            "relay_tripped", "000000000002", T0, {"why": "arrears"}
        )  # fmt: skip
        checkpoint = session.get(models.Checkpoint, (NODE, 5))
        assert checkpoint is not None and bytes(checkpoint.head) == entries[-1].hash
    row = node_row(sessions, NODE)
    assert (row.head_seq, bytes(row.head_hash), row.upto, row.last_seen) == (
        5, entries[-1].hash, 9, clock()
    )  # fmt: skip


def test_the_same_batch_twice_is_stored_once(ingest, edge_of, sessions, cloud_key) -> None:
    edge = edge_of(NODE)
    payload = edge.payload(1, 3, edge.book_consumption(3), readings=[reading("m1", T0, 5)])
    first = open_ack(ingest.handle_batch(NODE, payload), cloud_key)
    again = open_ack(ingest.handle_batch(NODE, payload), cloud_key)
    assert first.status is again.status is AckStatus.OK
    assert (again.seq, again.head, again.upto) == (first.seq, first.head, first.upto)
    assert count(sessions, models.LedgerEntry, models.LedgerEntry.node == NODE) == 3
    assert count(sessions, models.Reading) == 1
    assert balances(sessions)["A0001:prepaid"].debits_posted == 21


def test_readings_stored_before_under_new_outbox_ids_are_stored_once(
    ingest, edge_of, sessions, cloud_key
) -> None:
    # Outbox ids past `upto` promise new readings; a box that breaks the promise (a reading
    # sent again under a new id, or twice in one batch) still gets everything stored once.
    edge = edge_of(NODE)
    one, two = edge.book_consumption(3), edge.book_consumption(2)
    again = reading("m1", T0, 5)
    later = reading("m1", T0 + dt.timedelta(minutes=15), 6)
    ingest.handle_batch(NODE, edge.payload(1, 4, one, readings=[again]))
    payload = edge.payload(5, 8, two, readings=[again, later, later])
    ack = open_ack(ingest.handle_batch(NODE, payload), cloud_key)
    assert (ack.status, ack.seq, ack.upto) == (AckStatus.OK, 5, 8)
    assert stored_chain(sessions, NODE) == one + two
    assert count(sessions, models.Reading) == 2
    assert balances(sessions)["A0001:prepaid"].debits_posted == 35
    with sessions() as session:
        meter = session.get(models.MeterState, (NODE, "m1"))
        assert meter is not None and meter.energy_wh == 6


def test_reordered_batches_end_in_a_complete_copy(ingest, edge_of, sessions, cloud_key) -> None:
    edge = edge_of(NODE)
    one, two = edge.book_consumption(3), edge.book_consumption(2)
    batch_one = edge.payload(1, 4, one, readings=[reading("m1", T0, 1)])
    batch_two = edge.payload(5, 7, two, readings=[reading("m1", T0 + dt.timedelta(hours=1), 2)])

    gap = open_ack(ingest.handle_batch(NODE, batch_two), cloud_key)
    assert (gap.status, gap.seq, gap.head, gap.upto) == (AckStatus.GAP, 0, GENESIS_HASH, 0)
    assert count(sessions, models.Reading) == 0, "a gap stores nothing"
    assert open_ack(ingest.handle_batch(NODE, batch_one), cloud_key).seq == 3
    ack = open_ack(ingest.handle_batch(NODE, batch_two), cloud_key)
    assert (ack.status, ack.seq, ack.upto) == (AckStatus.OK, 5, 7)
    # The older batch arriving once more after the newer one: current state, nothing twice.
    late = open_ack(ingest.handle_batch(NODE, batch_one), cloud_key)
    assert (late.status, late.seq, late.head, late.upto) == (AckStatus.OK, 5, two[-1].hash, 7)
    assert stored_chain(sessions, NODE) == one + two
    assert count(sessions, models.Reading) == 2
    assert balances(sessions)["A0001:prepaid"].debits_posted == 35


def test_a_batch_overlapping_the_stored_chain_adds_only_the_new_part(
    ingest, edge_of, sessions, cloud_key
) -> None:
    edge = edge_of(NODE)
    entries = edge.book_consumption(6)
    ingest.handle_batch(NODE, edge.payload(1, 4, entries[:4]))
    ack = open_ack(ingest.handle_batch(NODE, edge.payload(3, 8, entries[2:])), cloud_key)
    assert (ack.status, ack.seq, ack.upto) == (AckStatus.OK, 6, 8)
    assert stored_chain(sessions, NODE) == entries
    assert balances(sessions)["A0001:prepaid"].debits_posted == 42


def test_outbox_ids_that_skip_past_upto_are_a_gap(ingest, edge_of, sessions, cloud_key) -> None:
    edge = edge_of(NODE)
    ingest.handle_batch(NODE, edge.payload(1, 10, readings=[reading("m1", T0, 1)]))
    later = edge.payload(21, 30, readings=[reading("m1", T0 + dt.timedelta(hours=2), 3)])
    ack = open_ack(ingest.handle_batch(NODE, later), cloud_key)
    assert (ack.status, ack.upto) == (AckStatus.GAP, 10)
    assert count(sessions, models.Reading) == 1
    between = edge.payload(11, 20, readings=[reading("m1", T0 + dt.timedelta(hours=1), 2)])
    assert open_ack(ingest.handle_batch(NODE, between), cloud_key).upto == 20
    assert open_ack(ingest.handle_batch(NODE, later), cloud_key).upto == 30
    assert count(sessions, models.Reading) == 3


def _assert_quarantined(sessions, ack, reason: str) -> None:
    assert ack.status is AckStatus.QUARANTINED
    assert ack.reason.startswith(reason), ack.reason
    row = node_row(sessions, NODE)
    assert row.status == models.NodeStatus.QUARANTINED.value
    assert row.quarantine_reason.startswith(reason)
    assert count(sessions, models.Alarm, models.Alarm.kind == "quarantined") == 1


def test_an_edited_body_quarantines_the_node(ingest, edge_of, sessions, cloud_key) -> None:
    edge = edge_of(NODE)
    entries = edge.book_consumption(3)
    bodies = [e.transfer for e in entries]
    edited = [encode_transfer(t) for t in bodies]
    edited[1] = edited[1].replace(b'"amount":7', b'"amount":1')
    payload = edge.payload(1, 3, entries, bodies=edited, readings=[reading("m1", T0, 1)])
    ack = open_ack(ingest.handle_batch(NODE, payload), cloud_key)
    _assert_quarantined(sessions, ack, "bad_signature")
    assert count(sessions, models.LedgerEntry, models.LedgerEntry.node == NODE) == 0
    assert count(sessions, models.Reading) == 0
    # Quarantined: even a good batch is refused now, until an operator clears it.
    good = edge.payload(1, 3, entries)
    assert open_ack(ingest.handle_batch(NODE, good), cloud_key).status is AckStatus.QUARANTINED
    with sessions.begin() as session:
        concentrators.clear_quarantine(session, NODE, "op1")
    assert open_ack(ingest.handle_batch(NODE, good), cloud_key).status is AckStatus.OK
    assert count(sessions, models.Alarm, models.Alarm.cleared.is_(False)) == 0


def test_a_batch_signed_by_another_nodes_key_is_wrong_key(
    ingest, edge_of, sessions, cloud_key
) -> None:
    edge = edge_of(NODE)
    other = edge_of("edge-0002")
    payload = edge.payload(1, 2, edge.book_consumption(2), key=other.key)
    _assert_quarantined(sessions, open_ack(ingest.handle_batch(NODE, payload), cloud_key),
                        "wrong_key")  # fmt: skip
    assert count(sessions, models.LedgerEntry, models.LedgerEntry.node == NODE) == 0


def test_a_fork_quarantines_the_node(ingest, edge_of, sessions, cloud_key) -> None:
    edge = edge_of(NODE)
    entries = edge.book_consumption(4)
    ingest.handle_batch(NODE, edge.payload(1, 4, entries))
    # The same node key signs a different history from seq 3 on.
    twin = FakeEdge(NODE, edge.key)
    twin.book(*(e.transfer for e in entries[:2]))
    forked = twin.book(consume(NODE, 99), consume(NODE, 100), consume(NODE, 101))
    ack = open_ack(ingest.handle_batch(NODE, twin.payload(5, 7, forked)), cloud_key)
    _assert_quarantined(sessions, ack, "fork")
    assert stored_chain(sessions, NODE) == entries
    assert (ack.seq, ack.head) == (4, entries[-1].hash)


def test_a_batch_not_extending_the_head_is_a_fork(ingest, edge_of, sessions, cloud_key) -> None:
    edge = edge_of(NODE)
    entries = edge.book_consumption(2)
    ingest.handle_batch(NODE, edge.payload(1, 2, entries))
    twin = FakeEdge(NODE, edge.key)
    twin.book(entries[0].transfer, consume(NODE, 50))
    forked = twin.book(consume(NODE, 51))  # seq 3, chained to a seq 2 the cloud does not hold
    ack = open_ack(ingest.handle_batch(NODE, twin.payload(3, 3, forked)), cloud_key)
    _assert_quarantined(sessions, ack, "fork")


def _zip_bomb() -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    body = b'{"node":"edge-0001","first":1,"upto":1,"ledger":null,"readings":null,"events":['
    body += b" " * (MAX_BATCH_BYTES + 10)
    return MAGIC + deflate.compress(body) + deflate.flush()


MALFORMED = {
    "random bytes": os.urandom(300),
    "bad magic": b"XX\x01" + zlib.compress(b"{}"),
    "truncated deflate": None,  # built in the test from a real batch
    "zip bomb": _zip_bomb(),
    "not JSON": MAGIC + zlib.compress(b"hello")[2:-4],
    "empty": b"",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_payload_is_refused(kind, ingest, edge_of, sessions, cloud_key) -> None:
    edge = edge_of(NODE)
    payload = MALFORMED[kind]
    if payload is None:
        payload = edge.payload(1, 3, edge.book_consumption(3))[:-20]
    ack = open_ack(ingest.handle_batch(NODE, payload), cloud_key)
    assert ack.status is AckStatus.REFUSED and ack.reason
    assert count(sessions, models.LedgerEntry, models.LedgerEntry.node == NODE) == 0
    assert count(sessions, models.Alarm, models.Alarm.kind == "refused_batch") == 1
    assert node_row(sessions, NODE).status == models.NodeStatus.ACTIVE.value


def test_a_batch_for_another_node_or_an_unknown_one_is_refused(
    ingest, edge_of, sessions, cloud_key
) -> None:
    edge = edge_of(NODE)
    entries = edge.book_consumption(1)
    foreign = encode_batch(edge.batch(1, 1, entries, node="edge-0002"))
    assert open_ack(ingest.handle_batch(NODE, foreign), cloud_key).status is AckStatus.REFUSED
    stranger = edge.payload(1, 1, entries, node="edge-9999")
    unknown = open_ack(ingest.handle_batch("edge-9999", stranger), cloud_key)
    assert (unknown.status, unknown.seq, unknown.upto) == (AckStatus.REFUSED, 0, 0)
    cloud = open_ack(ingest.handle_batch("cloud", edge.payload(1, 1, entries, node="cloud")),
                     cloud_key)  # fmt: skip
    assert cloud.status is AckStatus.REFUSED
    assert count(sessions, models.LedgerEntry, models.LedgerEntry.node != "cloud") == 0
    assert count(sessions, models.Alarm, models.Alarm.kind == "refused_batch") == 3


def test_a_reading_the_database_cannot_hold_refuses_the_batch(
    ingest, edge_of, sessions, cloud_key
) -> None:
    edge = edge_of(NODE)
    payload = edge.payload(1, 2, edge.book_consumption(1), readings=[reading("9" * 40, T0, 1)])
    assert open_ack(ingest.handle_batch(NODE, payload), cloud_key).status is AckStatus.REFUSED
    assert count(sessions, models.LedgerEntry, models.LedgerEntry.node == NODE) == 0


def test_the_stored_copy_verifies_and_balances(ingest, edge_of, sessions, cloud_key) -> None:
    edge = edge_of(NODE)
    edge.book(subsidy(NODE, "A0001", "2026-11"))
    edge.book_consumption(10)
    for start in range(0, 11, 4):
        part = edge.entries[start : start + 4]
        ingest.handle_batch(NODE, edge.payload(start + 1, start + len(part), part))
    verdict = verify_records(
        [*stored_chain(sessions, NODE), *stored_checkpoints(sessions, NODE)],
        [edge.key.public_key],
        node=NODE,
    )
    assert verdict.ok, verdict.summary()
    assert verdict.last_seq == 11
    assert check_balances_sum_to_zero(balances(sessions)) == []


def test_a_rotated_key_is_used_for_the_next_batch(
    ingest: Ingest, edge_of, sessions, cloud_key, clock
) -> None:
    edge = edge_of(NODE)
    ingest.handle_batch(NODE, edge.payload(1, 1, edge.book_consumption(1)))
    new_key = NodeKey.generate()
    with sessions.begin() as session:
        concentrators.register(session, NODE, new_key.public_key, rotate=True, now=clock())
    edge.key = new_key
    ack = open_ack(ingest.handle_batch(NODE, edge.payload(2, 2, edge.book_consumption(1))),
                   cloud_key)  # fmt: skip
    assert (ack.status, ack.seq) == (AckStatus.OK, 2)


def test_format_1_and_format_2_batches_are_both_ingested(
    ingest, edge_of, sessions, cloud_key
) -> None:
    """An edge not yet updated sends format 1 (version-2 bodies in base64), an updated one
    format 2 (the same bodies as columns, a recharge's id derived from its payment): the cloud
    stores both chains' parts as the edge hashed them."""
    edge = edge_of(NODE)
    edge.chain.version = 2
    old = edge.book(edge_recharge("A0001", 500, "P1"), *(consume(NODE, k) for k in range(3)))
    new = edge.book(edge_recharge("A0001", 300, "P2"), *(consume(NODE, k) for k in range(3, 6)))
    doc = json.loads(batch_text(edge.batch(1, 4, old, bodies=_v2_bodies(old))))
    doc["ledger"].pop("entries")
    doc["ledger"]["stored"] = [base64.b64encode(b).decode() for b in _v2_bodies(old)]
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    format_1 = MAGIC_V1 + deflate.compress(json.dumps(doc).encode()) + deflate.flush()
    format_2 = encode_batch(edge.batch(5, 8, new, bodies=_v2_bodies(new)))
    inflated = json.loads(zlib.decompressobj(-15).decompress(format_2[len(MAGIC) :]))
    assert format_2.startswith(MAGIC) and inflated["ledger"]["entries"]["id"][0] == 0
    for payload, seq in ((format_1, 4), (format_2, 8)):
        ack = open_ack(ingest.handle_batch(NODE, payload), cloud_key)
        assert (ack.status, ack.seq, ack.upto) == (AckStatus.OK, seq, seq)
    stored = [(e.seq, e.hash, e.transfer) for e in stored_chain(sessions, NODE)]
    assert stored == [(e.seq, e.hash, e.transfer) for e in old + new]


def _v2_bodies(entries: list[Entry]) -> list[bytes]:
    return [encode_body(e.transfer, 2) for e in entries]
