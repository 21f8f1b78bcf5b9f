"""Uplink batches and the session's rules, without a broker: a day of a simulated building
(32 meters, 96 cycles) in a real store, batched under budgets, verified as the cloud would, and
measured on the wire.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import ledger.wire
from edge.rules.commodities import COMMODITIES
from edge.runtime.boot import Booted
from edge.site import load_site
from edge.store import Category, EventItem, OutboxKind, ReadingsItem, Store
from edge.sync.session import OPLOG_HEAD_STATE, SessionConfig, SyncAlarm, UplinkSession
from edge.sync.uplink import BatchBuilder, BuiltBatch, UplinkLimits
from ledger.chain import Checkpoint, Entry, NodeKey, entry_hash, sign_checkpoint
from ledger.encoding import GENESIS_HASH, encode_body
from ledger.entry_ids import LEGS
from ledger.readings import ReadingRow
from ledger.signed import ACK_TAG, OplogHead, sign, trusted
from ledger.wire import (
    MAGIC,
    Ack,
    AckStatus,
    Batch,
    LedgerPart,
    batch_text,
    decode_batch,
    encode_batch,
    topic,
)
from tests.edge.runtime.conftest import booted_at, demo
from tests.edge.sync.conftest import CLOUD_KEY, QUARTER

MQTT_FIXED = 1 + 3 + 2 + 2 + 4  # header, remaining length, topic length, packet id; PUBACK
TLS_RECORD = 16_384  # plaintext bytes per TLS record
TLS_PER_RECORD = 5 + 8 + 16  # TLS 1.2 AES-GCM: header, explicit nonce, tag (1.3: 5 + 1 + 16)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    site = demo(tmp_path_factory.mktemp("day"), 32, tariff="tou")
    booted, clock = booted_at(load_site(site.site_toml))
    for _ in range(96):
        booted.runtime.run_cycle()
        clock.advance(QUARTER)
    yield booted
    booted.close()


def wire_bytes(node: str, payload: bytes) -> int:
    """A batch's bytes on the wire: MQTT PUBLISH (QoS 1) and its PUBACK, TLS records."""
    mqtt = len(payload) + MQTT_FIXED + len(topic(node, "up"))
    return mqtt + math.ceil(mqtt / TLS_RECORD) * TLS_PER_RECORD


def all_batches(builder: BatchBuilder) -> list[BuiltBatch]:
    out: list[BuiltBatch] = []
    after = 0
    while (built := builder.build(after)) is not None:
        out.append(built)
        after = built.upto
    return out


def verify_ledger(node: str, key: NodeKey, batches: list[BuiltBatch]) -> int:
    """Check the batches as the cloud does; returns the last seq."""
    seq, head = 0, GENESIS_HASH
    for built in batches:
        part = decode_batch(built.payload).ledger
        if part is None:
            continue
        assert part.from_seq == seq + 1 and part.prev == head
        for offset, body in enumerate(part.bodies):
            head = entry_hash(node, part.from_seq + offset, head, body)
        seq = part.last_seq
        assert Checkpoint(node, seq, head, part.key_id, part.signature).verify(key.public_key)
    return seq


def test_batches_cover_the_outbox_contiguously_within_the_budget(day: Booted) -> None:
    store = day.runtime.store
    limits = UplinkLimits(max_bytes=4096, max_items=5000, priority_alarms=0)
    batches = all_batches(BatchBuilder(store, day.runtime.key, limits))
    items = store.outbox(0, 10**6)
    assert batches[0].first == items[0].id and batches[-1].upto == items[-1].id
    for before, after in itertools.pairwise(batches):
        assert after.first == before.upto + 1  # contiguous outbox ids
    assert sum(b.items for b in batches) == len(items)
    assert all(len(b.payload) <= 4096 for b in batches)
    assert all(len(b.payload) > 4096 * 0.6 for b in batches[:-1])  # and not timidly small
    assert verify_ledger(store.node, day.runtime.key, batches) == store.chain.seq
    readings = sum(len(decode_batch(b.payload).readings) for b in batches)
    assert readings == 96 * 32


@pytest.mark.parametrize("budget", [2048, 8 * 1024])
def test_each_batch_is_compressed_once(
    day: Booted, budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The items are chosen before encoding (from the last full batch's ratio): a catch-up runs
    DEFLATE once per batch, but for the rare guess that overshot (at most one batch in ten, the
    first included), and every payload is the compression of exactly the batch it describes."""
    compressions = []
    real = zlib.compressobj

    def counting(*args: int) -> zlib._Compress:
        compressions.append(args)
        return real(*args)

    monkeypatch.setattr(ledger.wire.zlib, "compressobj", counting)
    builder = BatchBuilder(day.runtime.store, day.runtime.key, UplinkLimits(max_bytes=budget))
    batches = all_batches(builder)
    monkeypatch.undo()
    assert len(batches) > 3
    assert len(batches) <= len(compressions) <= len(batches) + max(1, len(batches) // 10)
    assert builder.encodes == len(compressions)
    for built in batches:
        assert built.payload.startswith(MAGIC)
        text = zlib.decompressobj(-15).decompress(built.payload[len(MAGIC) :])
        assert text == batch_text(built.batch) and len(text) == built.inflated
        assert decode_batch(built.payload) == built.batch


def test_no_batch_ends_inside_a_linked_chain(day: Booted) -> None:
    store = day.runtime.store
    assert any(e.transfer.linked for e in store.entries())  # the day has linked chains
    for budget in (1024, 2048, 3000):
        limits = UplinkLimits(max_bytes=budget, max_items=5000, priority_alarms=0)
        for built in all_batches(BatchBuilder(store, day.runtime.key, limits)):
            if built.last_seq is not None:
                last = store.entry(built.last_seq)
                assert last is not None and not last.transfer.linked


def test_bodies_are_the_stored_canonical_bytes(day: Booted) -> None:
    store = day.runtime.store
    uri = store.path.resolve().as_uri() + "?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        stored = dict(conn.execute("SELECT seq, body FROM ledger WHERE seq <= 200"))
    built = BatchBuilder(store, day.runtime.key, UplinkLimits(max_items=400)).build(0)
    assert built is not None and built.batch.ledger is not None
    part = built.batch.ledger
    for offset, body in enumerate(part.bodies):
        if part.from_seq + offset in stored:
            assert body == bytes(stored[part.from_seq + offset])


def test_during_a_catch_up_the_newest_alarms_go_ahead_once(day: Booted) -> None:
    store = day.runtime.store
    limits = UplinkLimits(max_bytes=32 * 1024, max_items=50, priority_alarms=5)
    builder = BatchBuilder(store, day.runtime.key, limits)
    first = builder.build(0)
    assert first is not None and first.more
    newest = store.outbox_newest(OutboxKind.ALARM, first.upto, 5)
    assert sorted(first.ahead) == sorted(item.id for item in newest)
    carried = {e["id"] for e in decode_batch(first.payload).events}
    ahead = [next(i for i in newest if i.id == a) for a in first.ahead]
    assert all(isinstance(i, EventItem) and i.fields["id"] in carried for i in ahead)
    second = builder.build(first.upto, sent_ahead=set(first.ahead))
    assert second is not None and not set(second.ahead) & set(first.ahead)


def test_items_kept_from_one_build_make_the_same_next_batches(day: Booted) -> None:
    """A build keeps what it parsed beyond its batch for the next one: the batches are byte for
    byte those a fresh builder makes for each batch."""
    store, key = day.runtime.store, day.runtime.key
    limits = UplinkLimits(max_bytes=4096, max_items=300, priority_alarms=0)
    keeping = BatchBuilder(store, key, limits)
    kept, ratios, after = [], [], 0
    while True:
        ratios.append(keeping.ratio)  # what it learned so far decides where the budget cuts
        if (built := keeping.build(after)) is None:
            break
        kept.append(built)
        after = built.upto
    fresh, after = [], 0
    for ratio in ratios[:-1]:
        builder = BatchBuilder(store, key, limits)
        builder.ratio = ratio
        built = builder.build(after)
        assert built is not None
        fresh.append(built)
        after = built.upto
    assert len(kept) > 10
    assert [b.payload for b in kept] == [b.payload for b in fresh]


def test_kept_items_pruned_meanwhile_are_not_sent(fresh: Booted) -> None:
    store = fresh.runtime.store
    builder = BatchBuilder(store, fresh.runtime.key, UplinkLimits(1024, 5000, 0))
    first = builder.build(0)
    assert first is not None and first.more
    with store.transaction() as tx:  # acknowledged from elsewhere (another session)
        tx.prune_outbox(first.upto + 3)
    second = builder.build(first.upto)
    assert second is not None and second.first == store.outbox(0, 1)[0].id > first.upto + 3


def test_readings_cost_at_most_24_bytes_each_on_the_wire(day: Booted) -> None:
    """Readings-only batches of up to 32 KB, as a catch-up sends them: bytes per reading
    including MQTT and TLS framing (printed for the record)."""
    store = day.runtime.store
    node = store.node
    cycles = [list(i.rows) for i in store.outbox(0, 10**6) if isinstance(i, ReadingsItem)]
    total = readings = 0
    batch: list[ReadingRow] = []
    for rows in cycles:
        trial = encode_batch(Batch(node, 1, 1, readings=tuple(batch + rows)))
        if len(trial) > 32 * 1024 and batch:
            payload = encode_batch(Batch(node, 1, 1, readings=tuple(batch)))
            total, readings, batch = total + wire_bytes(node, payload), readings + len(batch), []
        batch += rows
    payload = encode_batch(Batch(node, 1, 1, readings=tuple(batch)))
    total, readings = total + wire_bytes(node, payload), readings + len(batch)
    per_reading = total / readings
    # Ledger-only batches of up to 32 KB: bytes per entry, signature and framing included.
    entries = list(store.entries())
    ledger_wire, start = 0, 0
    while start < len(entries):
        count = len(entries) - start
        while True:
            chunk = entries[start : start + count]
            payload = encode_batch(Batch(node, 1, 1, ledger=_part(day.runtime.key, chunk)))
            if len(payload) <= 32 * 1024 or count == 1:
                break
            count = int(count * 32 * 1024 / len(payload) * 0.95)
        ledger_wire, start = ledger_wire + wire_bytes(node, payload), start + count
    per_entry = ledger_wire / len(entries)
    print(
        f"\n{readings} readings: {per_reading:.2f} B/reading on the wire; "
        f"{len(entries)} ledger entries: {per_entry:.1f} B/entry on the wire"
    )
    assert per_reading <= 24
    assert per_entry <= 64


def test_everything_costs_at_most_16_bytes_a_reading_on_the_wire(day: Booted) -> None:
    """Issue 18: the whole outbox (entries, readings, events, results) in the batches the
    builder makes with the default limits, MQTT and TLS framing included, over the readings."""
    store = day.runtime.store
    batches = all_batches(BatchBuilder(store, day.runtime.key))
    total = sum(wire_bytes(store.node, b.payload) for b in batches)
    readings = sum(b.readings for b in batches)
    print(f"\n{len(batches)} batches: {total / readings:.2f} B of everything per reading")
    assert readings == 96 * 32 and total / readings <= 16


def test_every_pay_leg_has_an_id_the_wire_derives() -> None:
    """A consumption leg's id goes as the index of its leg name in `ledger.entry_ids.LEGS`: a
    pay leg missing there would send its 16 bytes of hash instead."""
    assert {leg.name for c in COMMODITIES.values() for leg in c.pay_order} <= set(LEGS)


def _part(key: NodeKey, entries: list[Entry]) -> LedgerPart:
    last = entries[-1]
    checkpoint = sign_checkpoint(key, last.node, last.seq, last.hash)
    bodies = tuple(encode_body(e.transfer, e.version) for e in entries)  # as stored
    return LedgerPart(
        entries[0].seq, entries[0].prev_hash, bodies, key.key_id, checkpoint.signature
    )


def _session(store: Store, key: NodeKey, budget: int = 2048, **config: object) -> UplinkSession:
    builder = BatchBuilder(store, key, UplinkLimits(max_bytes=budget, max_items=5000))
    session = UplinkSession(store, builder, trusted(CLOUD_KEY.public_key), SessionConfig(**config))  # type: ignore[arg-type]
    session.connected(0.0)
    return session


def _ack(
    store: Store, seq: int, upto: int, status: AckStatus = AckStatus.OK, **kw: object
) -> bytes:
    entry = store.entry(seq)
    head = GENESIS_HASH if entry is None else entry.hash
    fields = Ack(store.node, seq, head, upto, status, dt.datetime.now(dt.UTC).isoformat()).fields()
    fields.update(kw)
    return sign(ACK_TAG, fields, CLOUD_KEY)


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Booted]:
    site = demo(tmp_path, 8, tariff="flat")
    booted, clock = booted_at(load_site(site.site_toml))
    for _ in range(6):
        booted.runtime.run_cycle()
        clock.advance(QUARTER)
    yield booted
    booted.close()


def test_pacing_keeps_to_the_byte_rate(fresh: Booted) -> None:
    store = fresh.runtime.store
    session = _session(
        store, fresh.runtime.key, budget=1024, window=64, rate_bytes_s=300, ack_timeout_s=999
    )
    sent: list[tuple[float, int]] = []
    for step in range(101):  # ten seconds in ticks of 0.1 s
        mono = step / 10
        sent += [(mono, len(b.payload)) for b in session.next_batches(mono)]
    assert len(sent) > 2
    # A token bucket: at most one second of burst plus the rate times the elapsed time.
    for mono, _ in sent:
        assert sum(size for when, size in sent if when < mono) <= 300 * (1 + mono)


def test_an_ack_prunes_only_what_was_sent_and_what_its_seq_covers(fresh: Booted) -> None:
    store = fresh.runtime.store
    session = _session(store, fresh.runtime.key, budget=512, window=1)
    first = session.next_batches(1.0)[0]
    assert first.last_seq is not None
    # The cloud claims far more than was sent: pruning stops at what this session sent.
    report = session.receive_ack(_ack(store, first.last_seq, 10**6), 1.1, dt.datetime.now(dt.UTC))
    assert report.accepted and session.acked == first.upto
    assert store.outbox(0, 1)[0].id == first.upto + 1
    second = session.next_batches(1.2)[0]
    assert second.last_seq is not None and second.last_seq > first.last_seq
    # An ack of the batch's outbox ids but an older ledger seq: only up to its entries.
    report = session.receive_ack(
        _ack(store, first.last_seq, second.upto), 1.3, dt.datetime.now(dt.UTC)
    )
    assert store.acknowledged()[0] == first.last_seq
    entry_ids = [i.id for i in store.outbox(0, 10**6) if i.kind is OutboxKind.ENTRY]
    assert entry_ids and min(entry_ids) > session.acked  # no unacknowledged entry was pruned


def test_the_edge_keeps_the_clouds_highest_signed_oplog_head(fresh: Booted) -> None:
    """Every ack carries the cloud's signed operator-log head: the concentrator keeps the
    highest, a copy of the anchor outside the cloud's database; a head behind it, or the same
    row with another hash, is an alarm (the cloud's log was cut or rewritten)."""
    store = fresh.runtime.store
    session = _session(store, fresh.runtime.key, window=1)
    built = session.next_batches(1.0)[0]
    assert built.last_seq is not None
    now = dt.datetime.now(dt.UTC)

    def ack_with(head: OplogHead) -> bytes:
        return _ack(store, built.last_seq or 0, built.upto, oplog=head.fields())

    high = OplogHead.sign(40, b"\x01" * 32, now.isoformat(), CLOUD_KEY)
    assert session.receive_ack(ack_with(high), 1.1, now).accepted
    assert store.get_state(OPLOG_HEAD_STATE) == high.fields()
    OplogHead.from_fields(store.get_state(OPLOG_HEAD_STATE)).verify(trusted(CLOUD_KEY.public_key))
    forged = OplogHead.sign(99, b"\x02" * 32, now.isoformat(), NodeKey.generate())
    for head in (
        forged,  # not the cloud's: not kept
        OplogHead.sign(12, b"\x03" * 32, now.isoformat(), CLOUD_KEY),  # behind
        OplogHead.sign(40, b"\x04" * 32, now.isoformat(), CLOUD_KEY),  # rewritten
    ):
        session.receive_ack(ack_with(head), 1.2, now)
        assert store.get_state(OPLOG_HEAD_STATE) == high.fields()
    alarms = [e for e in store.events(category=Category.ALARM)
              if e.event.kind == SyncAlarm.OPLOG_BEHIND]  # fmt: skip
    assert len(alarms) == 1  # rate-limited like every sync alarm
    assert "behind row 40" in alarms[0].event.detail["message"]
    higher = OplogHead.sign(41, b"\x05" * 32, now.isoformat(), CLOUD_KEY)
    session.receive_ack(ack_with(higher), 1.3, now)
    assert store.get_state(OPLOG_HEAD_STATE)["seq"] == 41


def test_acks_that_do_not_verify_change_nothing(fresh: Booted) -> None:
    store = fresh.runtime.store
    session = _session(store, fresh.runtime.key, window=1)
    built = session.next_batches(1.0)[0]
    assert built.last_seq is not None
    size = store.outbox_size()
    now = dt.datetime.now(dt.UTC)
    good = _ack(store, built.last_seq, built.upto)
    head = store.entry(built.last_seq)
    assert head is not None
    fields = Ack(store.node, built.last_seq, head.hash, built.upto, AckStatus.OK, now.isoformat())
    forged = sign(ACK_TAG, fields.fields(), NodeKey.generate())
    for payload in (
        forged,
        good.replace(b'"upto":', b'"upto":1'),  # tampered after signing
        b"{}",
        _ack(store, built.last_seq, built.upto, node="edge-other"),
    ):
        report = session.receive_ack(payload, 2.0, now)
        assert not report.accepted
    assert store.outbox_size() == size + 1  # just the (rate-limited) alarm itself
    assert store.acknowledged()[0] == 0
    alarms = [
        e for e in store.events(category=Category.ALARM) if e.event.kind == SyncAlarm.ACK_REJECTED
    ]
    assert len(alarms) == 1  # the same alarm at most once an hour
    assert session.receive_ack(good, 3.0, now).accepted
