"""Sync benchmark (issue 5): uplink bytes per reading and per ledger entry, and a week's catch-up.

Both parts run the real thing end to end: stores filled by the real runtime (demo site, 15-minute
poll cycles on a `ManualClock`, simulated DL/T 645 meters in-process over `DirectBus`, as in
`bench/edge_bench.py`), synced by the real `edge.sync.SyncService` (configured by a `[cloud]`
section in the copy's site.toml) through a real Mosquitto to a real
`cloud.ingest.worker.IngestWorker`, ticked until the cloud has acknowledged everything.

1. **Bytes on the wire, uplink.** A `bench.tcp_counter.CountingRelay` sits between the edge and
   a Mosquitto with TLS (per-device client certificates, the production ACLs); the cloud is one
   IngestWorker on SQLite. Counted: client → broker bytes (TLS records, MQTT framing, payload;
   TCP/IP headers not). The TLS handshake (measured alone, on a bare TLS connection with the
   same certificate) and the session setup (CONNECT, SUBSCRIBE, the retained `Status` with the
   account inventory) are reported apart and are *not* in the per-reading figures; the data
   phase (PUBLISH of every batch, PUBACK of every ack) is. A day of the store, synced from a
   fresh cloud each time, as:
     backlog: mixed          — the outbox as the runtime left it (entries, readings, events …);
     backlog: readings only  — a copy with only its reading items left in the outbox;
     backlog: entries only   — only its ledger entries (and checkpoints);
     backlog: no events      — entries and readings, no events or alarms;
     live: mixed             — the same site billed afresh with sync connected, every cycle
                               acknowledged before the next (a batch per cycle, as online);
     live: readings only     — the readings-only copy with `batch_items = 1` (a reading item is
                               one cycle's rows: a batch per cycle).
   (Outbox ids are renumbered contiguously in the copies, as the sync contract needs.) B/reading
   comes from the readings-only runs, B/entry from the entries-only copy (backlog) or from live
   mixed − live readings (live, events included); mixed − no events is what events cost, and
   no events − readings only − entries only what interleaving them in batches costs.
   Peer, same run: the same readings as general IoT gateways send them — one compact JSON
   object per reading (store columns, epoch-ms time, nulls left out) per MQTT message, QoS 1, on
   `vb/<node>/reading`, by paho over the same TLS connection type (the device's certificate)
   through the same relay. Goal: ≤ 24 B per reading (backlog and live both reported).
   (Part 1 ticks every 20 ms, not every `tick_s`: bytes do not depend on it.)

2. **Catch-up.** 7 days × 256 meters (672 cycles) generated offline, then a plain Mosquitto and
   an IngestWorker on a throwaway PostgreSQL (`cloud.services.postgres`; SQLite, said so, when
   PostgreSQL is not installed); the concentrator is registered, its SyncService connects with
   `rate_bytes_s = 0` and is ticked as the runner ticks it (every `tick_s`, default 0.5 s, and at
   once whenever the link brings something, an ack most often) until the outbox is empty and
   the cloud's acknowledged head is our head. Timed: connect to the last acknowledgement. Then
   the cloud's copy is compared with the edge's (head seq and hash, entry and reading counts):
   a difference is a correctness failure (exit status 1), not a performance miss. Goal: ≤ 60 s
   (issue 18: ≤ 30 s). With the default pacing (`rate_bytes_s = 4096`) the time is the payload
   bytes over the rate (a token bucket over batch payload bytes), computed from the
   payload bytes measured here rather than waited out.

3. **Boot and store size after sync** (issue 18, item 3), on part 2's week store once the cloud
   acknowledged all of it, each figure against its limit, before → after in this run:
     boot, full replay     — `boot()` with no balance snapshot: the integrity check and a replay
                             of every entry, what every boot did before (goal ≤ 2 s);
     boot, from snapshot   — the same store with a signed balance snapshot at its head (taken at
                             stop by the runner): only what follows it is replayed;
     boot, pruned          — after `prune_synced` at the week's end with the default windows
                             (`keep_synced_days` = 2): acknowledged entries and readings older
                             than that left the store, the file shrank (incremental vacuum);
     store on disk         — the file (WAL checkpointed) per meter-day of the store's age, as the
                             week left it and after the prune (goal ≤ 15 KB per meter-day), and
                             what the pruned file holds per meter and retained day: the bound
                             that no longer grows with the box's age.

Missing a goal is reported, not fatal.

    python bench/sync_bench.py            # part 1: 256 meters × 96 cycles; part 2: × 672
    python bench/sync_bench.py --smoke    # 16 meters × 8 and × 24 cycles, ~15 s
    python bench/sync_bench.py --day 8    # part 1 short, parts 2 and 3 on the full week
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import logging
import pstats
import shutil
import socket
import sqlite3
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select

from cloud.db.engine import make_engine, session_factory, upgrade
from cloud.db.models import Concentrator, LedgerEntry, Reading
from cloud.ingest import concentrators
from cloud.ingest.worker import IngestWorker
from cloud.services.broker import CLOUD_ACL, MosquittoBroker
from cloud.services.pki import TlsFiles, create_ca, issue_client_cert, issue_server_cert
from cloud.services.postgres import ThrowawayPostgres, find_postgres
from demo.sim.simulation import building_of
from demo.site import write_demo_site
from edge.runtime.boot import Booted, boot
from edge.runtime.clock import ManualClock
from edge.runtime.retention import prune_synced, take_snapshot
from edge.site import load_site
from edge.site.model import STORE_FILE
from edge.store import OutboxKind
from edge.store.records import reading_rows, table_row
from edge.sync.service import SyncService
from ledger.chain import NodeKey
from ledger.readings import READING_FIELDS, ReadingRow
from ledger.wire import topic

try:
    from bench.tcp_counter import CountingRelay
except ModuleNotFoundError:  # run as `python bench/sync_bench.py`: bench/ is sys.path[0]
    from tcp_counter import CountingRelay  # type: ignore[no-redef]

GOAL_BYTES_PER_READING = 24.0
GOAL_CATCHUP_S = 60.0
# Issue 18: all uplink bytes (entries, events, readings) over the readings they carry, and the
# 7-day × 256-meter catch-up.
GOAL_ALL_BYTES_PER_READING = 16.0
GOAL_CATCHUP_18_S = 30.0
GOAL_BOOT_S = 2.0  # issue 18: edge boot at any age
GOAL_KB_PER_METER_DAY = 15.0  # issue 18: the store on disk, bounded after sync
DEFAULT_RATE = 4096  # `[cloud] rate_bytes_s` default (edge.site.model.CloudSettings)
POLL = dt.timedelta(minutes=15)
FAST_TICK_S = 0.02  # part 1 only: bytes do not depend on the tick
WAIT_S = 600.0  # the most any one sync may take before the bench gives up on it
QUIET_S = 0.25  # the relay is settled when nothing passed for this long

# -- the stores ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Generated:
    day: Path  # site directory: its store after `day_cycles` (part 1)
    week: Path  # … after `week_cycles` (part 2)
    start: dt.datetime  # the demo site's first cycle
    end_day: dt.datetime  # the clock after those cycles
    end_week: dt.datetime
    seconds: float
    readings: int


def _snapshot(site_dir: Path, target: Path) -> None:
    """A copy of a site directory whose store is open in this process (SQLite backup API)."""
    shutil.copytree(site_dir, target, ignore=shutil.ignore_patterns("data"))
    (target / "data").mkdir()
    source = sqlite3.connect(f"file:{site_dir / 'data' / STORE_FILE}?mode=ro", uri=True)
    copy = sqlite3.connect(target / "data" / STORE_FILE)
    with source, copy:
        source.backup(copy)
    source.close()
    copy.close()


def generate(work: Path, meters: int, day_cycles: int, week_cycles: int) -> Generated:
    """Run the real runtime offline for `week_cycles` 15-minute cycles; snapshot after
    `day_cycles`. The simulated building advances in memory only (no save per cycle)."""
    made = write_demo_site(work / "generated", meters)
    site = load_site(made.site_toml)
    assert site.simulation is not None and site.simulation.start is not None
    clock = ManualClock(site.simulation.start)
    booted = boot(site, clock=clock)  # a ManualClock: in-process DirectBus, no wire timing
    building = building_of(booted)
    booted.runtime.world = lambda: building.advance_to(clock.true_now())
    began = time.perf_counter()
    end_day = clock.true_now()
    readings = 0
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # alarms are part of the work, printing them is not
    try:
        for cycle in range(1, week_cycles + 1):
            readings += booted.runtime.run_cycle().read
            clock.advance(POLL)
            if cycle == day_cycles:
                _snapshot(made.directory, work / "day")
                end_day = clock.true_now()
    finally:
        logging.disable(previous)
        end_week = clock.true_now()
        booted.close()
    seconds = time.perf_counter() - began
    start = site.simulation.start
    return Generated(work / "day", made.directory, start, end_day, end_week, seconds, readings)


def keep_only(site_dir: Path, kinds: Sequence[OutboxKind]) -> None:
    """Leave only `kinds` in the store's outbox, renumbered 1…n in their order (the cloud
    answers `gap` to a batch whose first id skips past what it holds)."""
    conn = sqlite3.connect(site_dir / "data" / STORE_FILE, isolation_level=None)
    marks = ",".join("?" * len(kinds))
    conn.execute("BEGIN IMMEDIATE")
    kept = conn.execute(
        f"SELECT kind, ref, payload, created FROM outbox WHERE kind IN ({marks}) ORDER BY id",
        [k.value for k in kinds],
    ).fetchall()
    conn.execute("DELETE FROM outbox")
    conn.execute("UPDATE sqlite_sequence SET seq = 0 WHERE name = 'outbox'")
    conn.executemany("INSERT INTO outbox (kind, ref, payload, created) VALUES (?, ?, ?, ?)", kept)
    conn.execute("COMMIT")
    conn.close()


def cloud_section(
    site_dir: Path, host: str, port: int, cloud_key: NodeKey, tls: TlsFiles | None, **knobs: object
) -> None:
    """Append a `[cloud]` section to the copy's site.toml (TLS files copied beside it)."""
    lines = ["", "[cloud]", f'host = "{host}"', f"port = {port}"]
    if tls is not None:
        (site_dir / "tls").mkdir(exist_ok=True)
        for name, source in (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)):
            shutil.copyfile(source, site_dir / "tls" / source.name)
            lines.append(f'{name} = "tls/{source.name}"')
    lines.append(f'cloud_public_key = "{cloud_key.public_key.public_bytes_raw().hex()}"')
    lines += [f"{name} = {value}" for name, value in knobs.items()]
    with (site_dir / "site.toml").open("a") as toml:
        toml.write("\n".join(lines) + "\n")


# -- the cloud -------------------------------------------------------------------------------


@contextmanager
def ingest_worker(
    engine: Engine, edge: Booted, broker: MosquittoBroker, *, key: NodeKey, name: str,
    tls: TlsFiles | None = None,
) -> Iterator[IngestWorker]:  # fmt: skip
    upgrade(engine)
    runtime = edge.runtime
    with session_factory(engine).begin() as session:
        concentrators.register(session, runtime.store.node, runtime.key.public_key)
    worker = IngestWorker(
        broker.host, broker.cloud_port, engine=engine, key=key, client_id=name, tls=tls
    )
    worker.start()
    if not worker.wait_connected(10):
        raise RuntimeError(f"the ingest worker did not connect to {broker.url}")
    try:
        yield worker
    finally:
        worker.stop()


@dataclass(frozen=True, slots=True)
class CloudCopy:
    head_seq: int
    head_hash: bytes
    entries: int
    readings: int


def cloud_copy(engine: Engine, node: str) -> CloudCopy:
    with session_factory(engine, read_only=True)() as session:
        row = session.get(Concentrator, node)
        assert row is not None
        entries = session.scalar(select(func.count()).where(LedgerEntry.node == node))
        readings = session.scalar(select(func.count()).where(Reading.node == node))
    return CloudCopy(row.head_seq, bytes(row.head_hash), entries or 0, readings or 0)


# -- syncing ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Payloads:
    """What the edge handed paho on `up`: batches and their payload bytes."""

    batches: int = 0
    bytes: int = 0


def count_payloads(sync: SyncService) -> Payloads:
    counted = Payloads()
    publish = sync.link.publish

    def publishing(leaf: str, payload: bytes, *, retain: bool = False) -> bool:
        sent = publish(leaf, payload, retain=retain)
        if sent and leaf == "up":
            counted.batches += 1
            counted.bytes += len(payload)
        return sent

    sync.link.publish = publishing  # type: ignore[method-assign]
    return counted


def drained(edge: Booted) -> bool:
    store = edge.runtime.store
    return store.outbox_size() == 0 and store.acknowledged()[0] == store.chain.seq


def tick_until(sync: SyncService, done: Callable[[], bool], every: float) -> float:
    """Tick as the runner does (tick, then wait `every` or until the link brings something,
    an ack most often) until `done()`; when it held."""
    deadline = time.monotonic() + WAIT_S
    while True:
        sync.tick()
        if done():
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise RuntimeError(f"sync did not finish within {WAIT_S:.0f} s")
        sync.wait(every)


def settle(relay: CountingRelay) -> int:
    """The uplink count once nothing has crossed the relay for `QUIET_S`."""
    last, since = (relay.up, relay.down), time.monotonic()
    while time.monotonic() - since < QUIET_S:
        time.sleep(0.02)
        now = (relay.up, relay.down)
        if now != last:
            last, since = now, time.monotonic()
    return relay.up


# -- part 1: bytes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WireRun:
    name: str
    readings: int
    entries: int
    setup: int  # handshake + CONNECT + SUBSCRIBE + retained status
    data: int  # every batch's PUBLISH and every ack's PUBACK, TLS records included
    payloads: Payloads


def tls_handshake_bytes(relay: CountingRelay, tls: TlsFiles) -> tuple[int, str]:
    """Client → broker bytes of one TLS handshake alone, with the device's certificate and
    the context paho builds (`tls_set`: CERT_REQUIRED, PROTOCOL_TLS_CLIENT)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(tls.ca))
    context.load_cert_chain(str(tls.cert), str(tls.key))
    settle(relay)
    relay.reset()
    raw = socket.create_connection(("127.0.0.1", relay.port))
    wrapped = context.wrap_socket(raw, server_hostname="127.0.0.1")
    what = f"{wrapped.version()} {wrapped.cipher()[0]}"  # type: ignore[index]
    up = settle(relay)
    wrapped.close()  # its close_notify crosses after the count was taken
    return up, what


def sync_through_relay(
    name: str, site_dir: Path, clock: ManualClock, *, relay: CountingRelay,
    broker: MosquittoBroker, cloud_key: NodeKey, cloud_tls: TlsFiles, work: Path,
    live_cycles: int = 0, entries_expected: bool = True,
) -> WireRun:  # fmt: skip
    """Connect (counted as setup), then sync the store's outbox until all is acknowledged;
    with `live_cycles`, run that many poll cycles first, each synced before the next."""
    edge = boot(load_site(site_dir / "site.toml"), clock=clock)
    try:
        store = edge.runtime.store
        settings = edge.runtime.site.settings.cloud
        assert settings is not None
        building = building_of(edge)
        edge.runtime.world = lambda: building.advance_to(clock.true_now())
        database = work / f"cloud-{site_dir.name}.sqlite"
        engine = make_engine(f"sqlite:///{database}")
        done = (lambda: drained(edge)) if entries_expected else (lambda: not store.outbox_size())
        with ingest_worker(
            engine, edge, broker, key=cloud_key, name=f"cloud-{site_dir.name}", tls=cloud_tls
        ):
            settle(relay)
            relay.reset()
            sync = SyncService(edge.runtime, settings)
            payloads = count_payloads(sync)
            sync.session.paused = "bench: connection setup first"
            sync.start()
            tick_until(sync, lambda: sync.session.online, FAST_TICK_S)
            setup = settle(relay)
            sync.session.paused = ""
            previous = logging.root.manager.disable
            for _ in range(live_cycles):
                logging.disable(logging.WARNING)  # the runtime's alarms: work, not output
                try:
                    edge.runtime.run_cycle()
                finally:
                    logging.disable(previous)
                clock.advance(POLL)
                tick_until(sync, done, FAST_TICK_S)
            tick_until(sync, done, FAST_TICK_S)
            data = settle(relay) - setup
            sync.stop()
            copy = cloud_copy(engine, store.node)
        engine.dispose()
        if entries_expected and copy.head_seq != store.chain.seq:
            raise RuntimeError(f"{name}: the cloud holds seq {copy.head_seq}, not "
                               f"{store.chain.seq}")  # fmt: skip
        return WireRun(name, copy.readings, copy.entries, setup, data, payloads)
    finally:
        edge.close()


def gateway_json(rows: Sequence[ReadingRow]) -> list[bytes]:
    """One compact JSON object per reading, as a general IoT gateway sends them: its store
    columns (`extra` as the text the column holds)."""
    return [
        json.dumps(
            {k: v for k, v in zip(READING_FIELDS, table_row(row), strict=True) if v is not None},
            separators=(",", ":"),
        ).encode()
        for row in rows
    ]


def stored_readings(site_dir: Path) -> int:
    conn = sqlite3.connect(f"file:{site_dir / 'data' / STORE_FILE}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])
    finally:
        conn.close()


def store_readings(site_dir: Path) -> list[ReadingRow]:
    conn = sqlite3.connect(f"file:{site_dir / 'data' / STORE_FILE}?mode=ro", uri=True)
    try:
        payloads = conn.execute("SELECT payload FROM outbox WHERE kind = 'reading' ORDER BY id")
        return [row for (payload,) in payloads for row in reading_rows(payload)]
    finally:
        conn.close()


def peer_through_relay(
    node: str, messages: list[bytes], relay: CountingRelay, tls: TlsFiles
) -> tuple[int, int]:
    """(setup bytes, data bytes) of the messages published one per reading, QoS 1."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{node}-gateway", clean_session=True,
        protocol=mqtt.MQTTv311,
    )  # fmt: skip
    client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.cert), keyfile=str(tls.key),
                   cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)  # fmt: skip
    connected, acked, lock = threading.Event(), [0], threading.Lock()
    everything = threading.Event()

    def on_publish(*_: object) -> None:
        with lock:
            acked[0] += 1
            if acked[0] == len(messages):
                everything.set()

    client.on_connect = lambda *_: connected.set()
    client.on_publish = on_publish
    settle(relay)
    relay.reset()
    client.connect("127.0.0.1", relay.port, keepalive=60)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("the gateway peer did not connect")
        setup = settle(relay)
        name = topic(node, "reading")
        for message in messages:
            client.publish(name, message, qos=1)
        if not everything.wait(WAIT_S):
            raise RuntimeError(f"the gateway peer: {acked[0]} of {len(messages)} PUBACKed")
        data = settle(relay) - setup
    finally:
        client.disconnect()
        client.loop_stop()
    return setup, data


@dataclass(frozen=True, slots=True)
class Copy:
    """One store synced in part 1: which outbox items it keeps, and how it goes up."""

    kinds: tuple[OutboxKind, ...] = ()  # () = all, as the runtime left them
    batch_items: int | None = None  # None: the default
    live: bool = False  # the runtime runs the cycles with sync connected


BACKLOG = "backlog"
COPIES = {
    f"{BACKLOG}: mixed": Copy(),
    f"{BACKLOG}: readings only": Copy((OutboxKind.READING,)),
    f"{BACKLOG}: entries only": Copy((OutboxKind.ENTRY, OutboxKind.CHECKPOINT)),
    f"{BACKLOG}: no events": Copy((OutboxKind.ENTRY, OutboxKind.CHECKPOINT, OutboxKind.READING)),
    "live: mixed": Copy(live=True),
    # A reading item holds one cycle: one batch per cycle, as readings go up when online.
    "live: readings only": Copy((OutboxKind.READING,), batch_items=1),
}


def part_wire(work: Path, generated: Generated, meters: int, cycles: int) -> None:
    print(f"1. uplink bytes: {meters} meters × {cycles} cycles of 15 min, TLS through a "
          "counting relay")  # fmt: skip
    pki = work / "pki"
    ca = create_ca(pki)
    server = issue_server_cert(ca, pki)
    node = load_site(generated.day / "site.toml").settings.node
    edge_tls = issue_client_cert(ca, pki, node)
    cloud_tls = issue_client_cert(ca, pki, "cloud")
    cloud_key = NodeKey.generate()
    # The production ACLs, and the peer's topic for this device.
    acl = {**CLOUD_ACL, node: (f"write {topic(node, 'reading')}",)}
    with (
        MosquittoBroker(work / "mosquitto-tls", tls=server, acl_users=acl) as broker,
        CountingRelay(broker.host, broker.port) as relay,
    ):
        handshake, version = tls_handshake_bytes(relay, edge_tls)
        runs: dict[str, WireRun] = {}
        for name, copy in COPIES.items():
            site_dir = work / f"wire-{len(runs)}"
            if copy.live:  # the same site, written afresh, billed cycle by cycle while online
                write_demo_site(site_dir, meters)
                clock = ManualClock(generated.start)
            else:
                shutil.copytree(generated.day, site_dir)
                clock = ManualClock(generated.end_day)
            if copy.kinds:
                keep_only(site_dir, copy.kinds)
            knobs: dict[str, object] = {"rate_bytes_s": 0}
            if copy.batch_items is not None:
                knobs["batch_items"] = copy.batch_items
            cloud_section(site_dir, "127.0.0.1", relay.port, cloud_key, edge_tls, **knobs)
            runs[name] = sync_through_relay(
                name, site_dir, clock, relay=relay, broker=broker, cloud_key=cloud_key,
                cloud_tls=cloud_tls, work=work, live_cycles=cycles if copy.live else 0,
                entries_expected=not copy.kinds or OutboxKind.ENTRY in copy.kinds,
            )  # fmt: skip
        messages = gateway_json(store_readings(generated.day))
        peer_setup, peer_data = peer_through_relay(node, messages, relay, edge_tls)

    print(f"  TLS handshake alone ({version}, client certificate): {handshake} B up "
          "— in none of the figures below")  # fmt: skip
    print(f"  {'store':<26} {'readings':>8} {'entries':>8} {'batches':>7} {'payload B':>10} "
          f"{'on wire B':>10} {'wire/payload':>12} {'setup B':>8}")  # fmt: skip
    for name, run in runs.items():
        p = run.payloads
        print(f"  {name:<26} {run.readings:>8} {run.entries:>8} {p.batches:>7} {p.bytes:>10} "
              f"{run.data:>10} {run.data / max(p.bytes, 1):>12.3f} "
              f"{run.setup - handshake:>8}")  # fmt: skip
    print("  (on wire: PUBLISH of the batches + PUBACK of the acks, in TLS records; setup: "
          "CONNECT, SUBSCRIBE, retained status with the account inventory)")  # fmt: skip

    def per(name: str, minus: str | None = None, by: str = "readings") -> float:
        run = runs[name]
        data = run.data - (runs[minus].data if minus else 0)
        return float(data / getattr(run, by))

    per_reading = per(f"{BACKLOG}: readings only")
    live_reading = per("live: readings only")
    peer_per_reading = peer_data / len(messages)
    mixed, no_events = runs[f"{BACKLOG}: mixed"], runs[f"{BACKLOG}: no events"]
    interleave = (
        no_events.data - runs[f"{BACKLOG}: readings only"].data
        - runs[f"{BACKLOG}: entries only"].data
    )  # fmt: skip
    print(f"  ours  per reading, backlog (readings-only copy):  {per_reading:7.2f} B")
    print(f"  ours  per reading, live (a batch per cycle):      {live_reading:7.2f} B")
    print(f"  ours  per entry, backlog (entries-only copy):     "
          f"{per(f'{BACKLOG}: entries only', by='entries'):7.2f} B")  # fmt: skip
    print(f"  ours  per entry, live (live mixed − live readings, events included): "
          f"{per('live: mixed', 'live: readings only', 'entries'):.2f} B")  # fmt: skip
    print(f"  ours  everything / reading: backlog {mixed.data / mixed.readings:.2f} B, live "
          f"{per('live: mixed'):.2f} B; events and alarms cost {mixed.data - no_events.data} B "
          f"of the backlog, mixing readings with entries {interleave:+d} B")  # fmt: skip
    amortised = (runs[f"{BACKLOG}: readings only"].setup) / mixed.readings
    print(f"  ours  one connection's handshake + setup, spread over this backlog's readings: "
          f"+{amortised:.2f} B each")  # fmt: skip
    print(f"  peer  one JSON message per reading, QoS 1:        {peer_per_reading:7.2f} B "
          f"({len(messages)} messages; its setup {peer_setup} B incl. handshake)")  # fmt: skip
    print(f"  ratio peer / ours per reading: backlog {peer_per_reading / per_reading:.1f}×, "
          f"live {peer_per_reading / live_reading:.1f}×")  # fmt: skip
    smaller = "" if meters == 256 else f"; {meters} meters a cycle, not 256"
    for what, value in (("backlog", mixed.data / mixed.readings), ("live", per("live: mixed"))):
        goal = GOAL_ALL_BYTES_PER_READING
        print(f"  issue 18 goal ≤ {goal:.0f} B of everything per reading, {what}: "
              f"{value:.2f} B, {value / goal:.2f}× the goal "
              f"({'met' if value <= goal else 'MISSED'}{smaller})")  # fmt: skip
    for what, value in (("backlog", per_reading), ("live", live_reading)):
        met = value <= GOAL_BYTES_PER_READING
        print(f"  goal ≤ {GOAL_BYTES_PER_READING:.0f} B per reading, {what}: "
              f"{'met' if met else 'MISSED'} ({value:.2f} B{smaller})")  # fmt: skip


# -- part 2: catch-up ------------------------------------------------------------------------


@dataclass(slots=True)
class Spent:
    """Wall and thread CPU seconds spent in one method (optionally profiled)."""

    wall: float = 0.0
    cpu: float = 0.0
    calls: int = 0
    profiler: cProfile.Profile | None = None

    @classmethod
    def wrap(cls, owner: object, name: str, profile: bool) -> Spent:
        spent = cls(profiler=cProfile.Profile() if profile else None)
        method = getattr(owner, name)

        def timed(*args: object, **kwargs: object) -> object:
            wall, cpu = time.perf_counter(), time.thread_time()
            if spent.profiler is not None:
                spent.profiler.enable()
            try:
                return method(*args, **kwargs)
            finally:
                if spent.profiler is not None:
                    spent.profiler.disable()
                spent.wall += time.perf_counter() - wall
                spent.cpu += time.thread_time() - cpu
                spent.calls += 1

        setattr(owner, name, timed)
        return spent


def part_catchup(
    work: Path, generated: Generated, meters: int, cycles: int, *, postgres: bool,
    profile: Path | None, knobs: dict[str, object],
) -> bool:  # fmt: skip
    """False when the cloud's copy differs from the edge's."""
    hours = cycles / 4
    what_if = "".join(f", {name} = {value} (what-if)" for name, value in knobs.items())
    print(f"2. catch-up: {meters} meters × {cycles} cycles ({hours / 24:.1f} days) of backlog, "
          f"plain MQTT over loopback, rate_bytes_s = 0{what_if}")  # fmt: skip
    cloud_key = NodeKey.generate()
    with MosquittoBroker(work / "mosquitto-plain") as broker:
        cloud_section(
            generated.week, broker.host, broker.port, cloud_key, None, rate_bytes_s=0, **knobs
        )
        began = time.perf_counter()
        edge = boot(load_site(generated.week / "site.toml"), clock=ManualClock(generated.end_week))
        boot_s = time.perf_counter() - began
        try:
            if postgres and find_postgres() is None:
                print("  PostgreSQL (initdb, pg_ctl) not installed: the cloud runs on SQLite")
                postgres = False
            with _database(work, postgres) as (engine, kind):
                store = edge.runtime.store
                edge_readings = stored_readings(generated.week)
                items, head = store.outbox_size(), store.chain.seq
                print(
                    f"  backlog: {items} outbox items, {head} ledger entries, {edge_readings} "
                    f"readings; edge boot (integrity check) {boot_s:.1f} s; cloud on {kind}"
                )
                with ingest_worker(
                    engine, edge, broker, key=cloud_key, name="cloud-catchup"
                ) as worker:
                    settings = edge.runtime.site.settings.cloud
                    assert settings is not None
                    sync = SyncService(edge.runtime, settings)
                    payloads = count_payloads(sync)
                    edge_side = Spent.wrap(sync, "tick", profile is not None)
                    cloud_side = Spent.wrap(worker.ingest, "handle_batch", profile is not None)
                    began = time.perf_counter()
                    sync.start()
                    ended = tick_until(sync, lambda: drained(edge), settings.tick_s)
                    seconds = ended - began
                    sync.stop()
                    copy = cloud_copy(engine, store.node)
        finally:
            edge.close()
    if profile is not None:
        for side, spent in (("edge", edge_side), ("cloud", cloud_side)):
            assert spent.profiler is not None
            spent.profiler.dump_stats(profile.with_suffix(f".{side}.prof"))
            print(f"  -- profile of the {side} side ({profile.with_suffix(f'.{side}.prof')})")
            pstats.Stats(spent.profiler).sort_stats("tottime").print_stats(18)
    encodes = sync.session.builder.encodes
    print(f"  {payloads.batches} batches, {payloads.bytes / 1e6:.2f} MB of payload; "
          f"{encodes} encodes + compressions ({encodes / max(payloads.batches, 1):.2f} per "
          "batch)")  # fmt: skip
    print(
        f"  connect → last acknowledgement: {seconds:.1f} s; "
        f"{head / seconds:,.0f} entries/s, {edge_readings / seconds:,.0f} readings/s"
    )
    print(f"  where it went: edge ticks {edge_side.wall:.1f} s ({edge_side.cpu:.1f} s CPU: "
          f"build, sign, compress, verify acks, prune) in {edge_side.calls} ticks, and "
          f"{seconds - edge_side.wall:.1f} s between ticks (tick_s {settings.tick_s}, at most "
          f"{settings.window} batches in flight); meanwhile cloud ingest {cloud_side.wall:.1f} s "
          f"({cloud_side.cpu:.1f} s CPU) for {cloud_side.calls} batches — in this process, "
          "sharing its GIL")  # fmt: skip
    same = (
        copy.head_seq == store.chain.seq
        and copy.head_hash == store.chain.head
        and copy.entries == head
        and copy.readings == edge_readings
    )
    print(f"  cloud copy: head seq {copy.head_seq} {copy.head_hash.hex()[:16]}…, {copy.entries} "
          f"entries, {copy.readings} readings: "
          f"{'identical to the edge' if same else 'DIFFERS FROM THE EDGE'}")  # fmt: skip
    paced = payloads.bytes / DEFAULT_RATE
    print(f"  default pacing ({DEFAULT_RATE} B/s of payload, token bucket): "
          f"{paced / hours:.1f} s per hour of backlog, {paced / 60:.0f} min for this one "
          "(computed from the payload bytes above)")  # fmt: skip
    met = seconds <= GOAL_CATCHUP_S
    print(f"  goal ≤ {GOAL_CATCHUP_S:.0f} s for 7 days × 256 meters: "
          f"{'met' if met else 'MISSED'} ({seconds:.1f} s"
          f"{'' if (meters, cycles) == (256, 672) else ', a smaller backlog'})")  # fmt: skip
    print(f"  issue 18 goal ≤ {GOAL_CATCHUP_18_S:.0f} s: {seconds:.1f} s, "
          f"{seconds / GOAL_CATCHUP_18_S:.2f}× the goal "
          f"({'met' if seconds <= GOAL_CATCHUP_18_S else 'MISSED'})")  # fmt: skip
    if not same:
        print("  CORRECTNESS FAILURE: the cloud's copy of the chain differs from the edge's")
    return same


# -- part 3: boot and store size after sync ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Booting:
    seconds: float
    replayed: int  # entries replayed at boot
    size: int  # the store file's bytes (its WAL checkpointed) at that boot


def timed_boot(site_dir: Path, when: dt.datetime) -> tuple[Booted, Booting]:
    store_file = site_dir / "data" / STORE_FILE
    size = store_file.stat().st_size
    began = time.perf_counter()
    edge = boot(load_site(site_dir / "site.toml"), clock=ManualClock(when))
    seconds = time.perf_counter() - began
    store = edge.runtime.store
    return edge, Booting(seconds, store.chain.seq - store.boot_start, size)


def part_store(generated: Generated, meters: int, cycles: int, week_bytes: int) -> None:
    days = cycles / 96
    print(f"3. boot and store size: the {days:.1f}-day store of part 2, all of it acknowledged")
    per_meter_day = meters * days * 1024
    edge, full = timed_boot(generated.week, generated.end_week)
    try:
        settings = edge.runtime.site.settings
        take_snapshot(edge.runtime.store, edge.runtime.key)  # what the runner does at stop
    finally:
        edge.close()
    edge, snapshot = timed_boot(generated.week, generated.end_week)
    try:
        store = edge.runtime.store
        pruned = prune_synced(
            store, edge.runtime.key, generated.end_week, keep_synced=settings.keep_synced,
            keep_readings=settings.keep_readings, keep_events=settings.keep_events,
        )  # fmt: skip
        take_snapshot(store, edge.runtime.key)
        kept = store.chain.seq - store.anchor()[0]
    finally:
        edge.close()
    edge, after = timed_boot(generated.week, generated.end_week)
    edge.close()
    goal_s, goal_kb = GOAL_BOOT_S, GOAL_KB_PER_METER_DAY
    for name, run in (("full replay (before)", full), ("from snapshot", snapshot),
                      ("pruned, from snapshot", after)):  # fmt: skip
        print(f"  boot, {name:<22} {run.seconds:6.2f} s, {run.replayed:>7} entries replayed: "
              f"{run.seconds / goal_s:.2f}× the ≤ {goal_s:.0f} s goal "
              f"({'met' if run.seconds <= goal_s else 'MISSED'})")  # fmt: skip
    print(
        f"  pruned {pruned.entries} entries and {pruned.readings} readings older than "
        f"{settings.keep_synced.days} days, {pruned.pages} pages freed; {kept} entries kept"
    )
    for name, size in (
        ("as the week left it (before)", week_bytes),
        ("after sync and prune", after.size),
    ):
        kb = size / per_meter_day
        print(f"  store, {name:<30} {size / 1e6:7.2f} MB, {kb:6.2f} KB per meter-day: "
              f"{kb / goal_kb:.2f}× the ≤ {goal_kb:.0f} KB goal "
              f"({'met' if kb <= goal_kb else 'MISSED'})")  # fmt: skip
    retained = settings.keep_synced.days
    print(f"  bound after sync: {after.size / meters / 1024:.0f} KB per meter holding "
          f"{retained} days ({after.size / (meters * retained * 1024):.1f} KB per meter and "
          "retained day), whatever the box's age")  # fmt: skip


@contextmanager
def _database(work: Path, postgres: bool) -> Iterator[tuple[Engine, str]]:
    if not postgres:
        engine = make_engine(f"sqlite:///{work / 'cloud-catchup.sqlite'}")
        try:
            yield engine, "SQLite"
        finally:
            engine.dispose()
        return
    with ThrowawayPostgres(work / "postgres") as pg:
        engine = make_engine(pg.url)
        try:
            yield engine, "PostgreSQL (throwaway)"
        finally:
            engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="16 meters, 8 and 24 cycles")
    parser.add_argument("--meters", type=int, help="simulated meters (default 256)")
    parser.add_argument("--day", type=int, help="part 1 cycles (default 96: a day)")
    parser.add_argument("--week", type=int, help="part 2 cycles (default 672: 7 days)")
    parser.add_argument("--sqlite", action="store_true", help="part 2 on SQLite, not PostgreSQL")
    parser.add_argument("--profile", type=Path, help="cProfile part 2's sync into this file")
    parser.add_argument("--window", type=int, help="part 2 what-if: `[cloud] window`")
    parser.add_argument("--tick", type=float, help="part 2 what-if: `[cloud] tick_s`")
    args = parser.parse_args()
    meters = args.meters or (16 if args.smoke else 256)
    day = args.day or (8 if args.smoke else 96)
    week = max(args.week or (24 if args.smoke else 672), day)
    logging.basicConfig(level=logging.WARNING, format="  [%(name)s] %(message)s")
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        work = Path(tmp)
        generated = generate(work, meters, day, week)
        week_bytes = (generated.week / "data" / STORE_FILE).stat().st_size
        print(f"generated {meters} meters × {week} cycles with the runtime offline: "
              f"{generated.readings} readings in {generated.seconds:.1f} s "
              f"(snapshot after {day} cycles for part 1)")  # fmt: skip
        part_wire(work, generated, meters, day)
        knobs = {"window": args.window, "tick_s": args.tick}
        same = part_catchup(
            work, generated, meters, week, postgres=not args.sqlite, profile=args.profile,
            knobs={k: v for k, v in knobs.items() if v is not None},
        )  # fmt: skip
        part_store(generated, meters, week, week_bytes)
    print(f"wall {time.perf_counter() - wall:.1f} s")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
