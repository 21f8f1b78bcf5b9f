"""A fleet, simulated (issue 18 item 7): concentrators × 256 meters, each syncing a day of
15-minute readings through one broker to the cloud, with 1 and then 2 ingest processes.

The edges. One site of 256 meters is run by the real runtime for a day of poll cycles, offline
(`bench.sync_bench.generate`: simulated DL/T 645 meters, the real rules and store). Each
simulated concentrator gets a copy of that store with its chain re-hashed under its own node id
and its checkpoints re-signed with its own key (`ledger.chain`): every node holds a valid chain
of the same transfers, as if the fleet were identical buildings (so the shops' accounts have the
same names in every building: the cloud's per-account rows, `balances` and the rollups, are
shared between nodes, which makes the cloud's writes at least as contended as real ones). Each
copy is opened as the real `edge.store.Store` (its boot check included, not timed) and synced by
the real `edge.sync.session.UplinkSession` and `BatchBuilder` over its own real
`edge.sync.client.MqttLink` (window 4, acknowledgement timeout 60 s, unpaced: a day's backlog,
as after a day's outage), all driven from this process's one thread: what goes on the wire is
what a real edge sends, byte for byte.

The cloud. A Mosquitto of its own (plain MQTT on a free port) and a throwaway PostgreSQL
(`cloud.services.postgres`); per run a fresh, migrated database with the concentrators
registered, and 1 or 2 `cloud.ingest.worker.IngestWorker` processes, each taking the nodes of
its partition (`cloud.ingest.routing`; `--route shared`: one `$share` group instead, which
Mosquitto serves round robin, so a node's batches reach both processes out of order). Timed:
every link connected → every edge's outbox acknowledged.

Figures, per run:
- throughput: readings and rows (readings + ledger entries) per second; the 2-process run
  against the 1-process run (the peer), and rows/s against a raw binary `COPY` of the same
  stored rows (of up to 10 nodes) into an identically migrated database, in the same run;
- ingest lag: from publishing a batch to its acknowledgement arriving at the edge (p50, p95,
  max), against the edge's acknowledgement timeout (beyond it the edge sends again);
- CPU per reading: of the ingest processes, of PostgreSQL (postmaster and backends) and of
  Mosquitto, read from /proc; the edges' CPU (this process) reported apart;
- the cloud's copy equal to each edge's: head seq and hash, a SHA-256 over every stored body
  and hash in seq order, the reading count and energy sum, per node. A difference is a
  correctness failure (exit status 1), a missed goal is only printed.
From these, how many concentrators (a batch per 15 minutes each) one core keeps up with
(`docs/capacity.md` does the arithmetic for a 10 000-concentrator fleet).

    python bench/fleet_bench.py            # 100 concentrators × 256 meters × 96 cycles
    python bench/fleet_bench.py --smoke    # 5 concentrators × 256 meters × 4 cycles
    python bench/fleet_bench.py --nodes 10 --cycles 48 --route shared   # the round robin
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import logging
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from cloud.db.engine import make_engine, session_factory, upgrade
from cloud.db.partitions import ensure_month_partitions
from cloud.ingest import concentrators
from cloud.ingest.routing import Partition, Route, SharedGroup, owner
from cloud.ingest.worker import IngestWorker
from cloud.services.broker import MosquittoBroker
from cloud.services.postgres import ThrowawayPostgres, find_postgres
from edge.site.model import STORE_FILE, CloudSettings
from edge.store import Store
from edge.store.integrity import format_head
from edge.sync.client import Connected, Delivery, MqttLink
from edge.sync.session import SessionConfig, UplinkSession
from edge.sync.uplink import BatchBuilder, UplinkLimits
from ledger.chain import NodeKey, entry_hash, sign_checkpoint
from ledger.encoding import GENESIS_HASH
from ledger.export import record_line
from ledger.wire import AckStatus, Status

try:
    from bench.sync_bench import generate
except ModuleNotFoundError:  # run as `python bench/fleet_bench.py`: bench/ is sys.path[0]
    from sync_bench import generate  # type: ignore[no-redef]

METERS = 256
CYCLE_S = 15 * 60  # a concentrator sends a cycle's batch every 15 minutes
TARGET_FLEET = 10_000
PEER_NODES = 10  # nodes whose stored rows the raw COPY peer copies
WAIT_S = 1800.0  # the most one run may take before the bench gives up
ACK_TIMEOUT_S = SessionConfig().ack_timeout_s  # the edge resends after it
# Smoke: a batch whose `gap` answer the session ignored (it had rewound already) waits for the
# timeout; CI need not wait a minute for it.
SMOKE_ACK_TIMEOUT_S = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the edges' stores ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EdgeCopy:
    """A simulated concentrator's pristine store and what the cloud must end up holding."""

    node: str
    key: NodeKey
    path: Path
    head_seq: int
    head_hash: bytes
    bodies: bytes  # SHA-256 over every body, in seq order
    hashes: bytes  # … over every entry hash
    readings: int
    energy_wh: int
    items: int  # in its outbox


def node_key(index: int) -> NodeKey:
    return NodeKey.from_seed(hashlib.sha256(f"fleet-bench node {index}".encode()).digest())


def rechain(template: Path, target: Path, node: str, key: NodeKey) -> EdgeCopy:
    """Copy the template store to `target` and make it `node`'s: every entry hash recomputed
    under the node's id, every checkpoint signed again with its key."""
    source = sqlite3.connect(f"file:{template}?mode=ro", uri=True)
    conn = sqlite3.connect(target, isolation_level=None)
    with source, conn:
        source.backup(conn)
    source.close()
    conn.execute("BEGIN")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'node'", (node,))
    prev, rows, heads = GENESIS_HASH, [], {}
    bodies, hashes = hashlib.sha256(), hashlib.sha256()
    for seq, body in conn.execute("SELECT seq, body FROM ledger ORDER BY seq").fetchall():
        digest = entry_hash(node, seq, prev, bytes(body))
        rows.append((prev, digest, seq))
        heads[seq] = digest
        bodies.update(body)
        hashes.update(digest)
        prev = digest
    conn.executemany("UPDATE ledger SET prev_hash = ?, hash = ? WHERE seq = ?", rows)
    head_seq = rows[-1][2] if rows else 0
    conn.execute("UPDATE meta SET value = ? WHERE key = 'head'", (format_head(head_seq, prev),))
    for (seq,) in conn.execute("SELECT seq FROM checkpoints").fetchall():
        checkpoint = sign_checkpoint(key, node, seq, heads[seq])
        conn.execute(
            "UPDATE checkpoints SET head = ?, key_id = ?, signature = ? WHERE seq = ?",
            (checkpoint.head, checkpoint.key_id, checkpoint.signature, seq),
        )
        conn.execute(
            "UPDATE outbox SET payload = ? WHERE kind = 'checkpoint' AND ref = ?",
            (record_line(checkpoint).encode(), seq),
        )
    conn.execute("COMMIT")
    readings, energy = conn.execute("SELECT count(*), sum(energy_wh) FROM readings").fetchone()
    (items,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
    conn.close()
    return EdgeCopy(node, key, target, head_seq, prev, bodies.digest(), hashes.digest(),
                    readings, energy or 0, items)  # fmt: skip


@dataclass(slots=True)
class SimulatedEdge:
    """One concentrator's uplink: the real session and link over its own store."""

    copy: EdgeCopy
    store: Store
    session: UplinkSession
    link: MqttLink
    sent: dict[int, float] = field(default_factory=dict)  # upto → when published
    published: set[int] = field(default_factory=set)  # every upto ever published
    lags: list[float] = field(default_factory=list)
    batches: int = 0
    resent: int = 0
    done: bool = False
    polled: float = 0.0

    def drained(self) -> bool:
        store = self.store
        return store.outbox_size() == 0 and store.acknowledged()[0] == store.chain.seq


def open_edge(copy: EdgeCopy, rundir: Path, settings: CloudSettings) -> SimulatedEdge:
    where = rundir / copy.node
    where.mkdir()
    shutil.copyfile(copy.path, where / STORE_FILE)
    store = Store.open(where / STORE_FILE, node=copy.node)
    limits = UplinkLimits(settings.batch_bytes, settings.batch_items, settings.priority_alarms)
    session = UplinkSession(
        store,
        BatchBuilder(store, copy.key, limits),
        settings.cloud_keys,
        SessionConfig(settings.window, settings.ack_timeout_s, settings.rate_bytes_s),
    )
    link = MqttLink(settings, copy.node, Status(copy.node, False).signed(copy.key))
    return SimulatedEdge(copy, store, session, link)


def drive(edges: Sequence[SimulatedEdge]) -> float:
    """Sync every edge until all are drained (as `edge.sync.service.SyncService.tick` does:
    handle what the link brought, then publish what the session wants); the seconds taken."""
    waker = threading.Event()
    for edge in edges:
        edge.link.wake_on_events(waker)
        edge.link.start()
    deadline = time.monotonic() + 60
    while not all(edge.session.online for edge in edges):
        for edge in edges:
            for event in edge.link.events():
                if isinstance(event, Connected):
                    edge.session.connected(time.monotonic())
        if time.monotonic() > deadline:
            raise RuntimeError("the simulated edges did not all connect within 60 s")
        waker.wait(0.1)
        waker.clear()
    began = time.perf_counter()
    deadline = time.monotonic() + WAIT_S
    pending = list(edges)
    while pending:
        waker.clear()
        for edge in pending:
            _step(edge, time.monotonic())
        pending = [edge for edge in pending if not edge.done]
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fleet did not sync within {WAIT_S:.0f} s")
        if pending:
            waker.wait(1.0)
    return time.perf_counter() - began


def _step(edge: SimulatedEdge, mono: float) -> None:
    events = edge.link.events()
    for event in events:
        if isinstance(event, Connected):
            edge.session.connected(mono)
        elif isinstance(event, Delivery):
            if event.leaf == "ack":
                report = edge.session.receive_ack(event.payload, mono, _wall())
                if report.status is AckStatus.OK:
                    for upto in [u for u in edge.sent if u <= report.upto]:
                        edge.lags.append(mono - edge.sent.pop(upto))
            edge.link.ack(event)
    if not events and mono - edge.polled < 1.0:
        return  # nothing arrived: only the session's timeout may want a send now and then
    edge.polled = mono
    for built in edge.session.next_batches(mono):
        if not edge.link.publish("up", built.payload):
            edge.session.not_sent(built)
            break
        edge.batches += 1
        edge.resent += built.upto in edge.published
        edge.published.add(built.upto)
        edge.sent[built.upto] = mono
    if not edge.session.in_flight:
        edge.done = edge.drained()


def _wall() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- the cloud -------------------------------------------------------------------------------


def ingest_process(
    *, url: str, port: int, seed: bytes, name: str, route: Route, ready: Any, stop: Any,
    results: Any,
) -> None:  # fmt: skip
    """One ingest worker process (the target of `multiprocessing`)."""
    engine = make_engine(url)
    worker = IngestWorker("127.0.0.1", port, engine=engine, key=NodeKey.from_seed(seed),
                          client_id=name, route=route)  # fmt: skip
    worker.start()
    if not worker.wait_connected(30):
        raise RuntimeError(f"{name} did not connect to the broker")
    ready.set()
    stop.wait()
    results.put((name, worker.batches, worker.failures + worker.shed))
    worker.stop()
    engine.dispose()


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of `pid`; with `children`, also of its children, live (by their
    own counters) and ended (the counters the parent collected when it waited for them)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                child = _stat(int(entry.name))
                if child is not None and int(child[1]) == pid:
                    ticks += int(child[11]) + int(child[12])
    return ticks / CLK_TCK


def mosquitto_pid() -> int:
    """Our own broker: the mosquitto process this process started."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            comm = (entry / "comm").read_text().strip() if fields else ""
            if fields and comm == "mosquitto" and int(fields[1]) == os.getpid():
                return int(entry.name)
    return 0


@dataclass(frozen=True, slots=True)
class Run:
    workers: int
    seconds: float
    readings: int
    entries: int
    batches: int
    resent: int
    lags: list[float]
    cpu: dict[str, float]  # ingest, postgres, broker, edges: CPU seconds
    failures: int  # not acknowledged: the database failed, or a full queue shed the batch
    handled: list[int]  # batches answered (ok or gap), per process
    routing: str  # which process took which nodes
    copy_rows_s: float
    differs: list[str]
    stored: dict[str, int]  # bytes on disk (tables, indexes, TOAST) of readings, entries
    ack_timeout_s: float

    @property
    def rows(self) -> int:
        return self.readings + self.entries


TEMPLATE = "migrated"  # a database migrated once; each run's databases are copies of it


def migrate_template(pg: ThrowawayPostgres, months: Sequence[dt.datetime]) -> None:
    """The migrated database, with the readings' partitions, that every run copies."""
    url = create_database(pg, TEMPLATE)
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        ensure_month_partitions(connection, months)
    engine.dispose()


def create_database(pg: ThrowawayPostgres, name: str, template: str | None = None) -> str:
    admin = psycopg.connect(pg.dsn, autocommit=True)
    admin.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    admin.close()
    return pg.url.rsplit("/", 1)[0] + f"/{name}"


def prepare_database(pg: ThrowawayPostgres, name: str, copies: Sequence[EdgeCopy]) -> str:
    """A copy of the migrated database with `copies`' nodes registered."""
    url = create_database(pg, name, TEMPLATE)
    engine = make_engine(url)
    with session_factory(engine).begin() as session:
        for copy in copies:
            concentrators.register(session, copy.node, copy.key.public_key)
    engine.dispose()
    return url


@dataclass(frozen=True, slots=True)
class Fleet:
    """What every run shares."""

    copies: Sequence[EdgeCopy]
    pg: ThrowawayPostgres
    broker: MosquittoBroker
    work: Path
    cloud_seed: bytes
    batch_items: int  # outbox items per batch, at most
    ack_timeout_s: float  # the edges'
    shared: bool  # the processes in one `$share` group, not partitions


def routes(workers: int, shared: bool) -> list[Route]:
    if shared:
        return [SharedGroup("fleet")] * workers
    return [Partition(n, workers) for n in range(workers)]


def routing_of(workers: int, fleet: Fleet) -> str:
    if workers == 1:
        return "all nodes"
    if fleet.shared:
        return "one $share group: Mosquitto deals each batch to the next process, round robin"
    owned = [sum(owner(c.node, workers) == n for c in fleet.copies) for n in range(workers)]
    return "partitions of " + " + ".join(map(str, owned)) + " nodes"


def run_fleet(workers: int, fleet: Fleet) -> Run:
    copies, pg, broker = fleet.copies, fleet.pg, fleet.broker
    cloud_seed = fleet.cloud_seed
    url = prepare_database(pg, f"fleet{workers}", copies)
    cloud_key = NodeKey.from_seed(cloud_seed)
    settings = CloudSettings(
        host=broker.host, port=broker.port, tls=None,
        cloud_keys={cloud_key.key_id: cloud_key.public_key}, rate_bytes_s=0,
        batch_items=fleet.batch_items, ack_timeout_s=fleet.ack_timeout_s,
    )  # fmt: skip
    rundir = fleet.work / f"run{workers}"
    rundir.mkdir()
    edges = [open_edge(copy, rundir, settings) for copy in copies]
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    processes = []
    for n, route in enumerate(routes(workers, fleet.shared)):
        ready = context.Event()
        name = f"ingest-{workers}-{n + 1}"
        process = context.Process(
            target=ingest_process,
            kwargs={"url": url, "port": broker.port, "seed": cloud_seed, "name": name,
                    "route": route, "ready": ready, "stop": stop, "results": results},
        )  # fmt: skip
        process.start()
        if not ready.wait(60):
            raise RuntimeError("an ingest process did not start")
        processes.append(process)
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    broker_pid = mosquitto_pid()

    def sample() -> dict[str, float]:
        return {
            "ingest": sum(cpu_seconds(p.pid) for p in processes if p.pid is not None),
            "postgres": cpu_seconds(postmaster, children=True),
            "broker": cpu_seconds(broker_pid) if broker_pid else 0.0,
            "edges": time.process_time(),
        }

    try:
        before = sample()
        seconds = drive(edges)
        after = sample()
    finally:
        stop.set()
        answers = sorted(results.get(timeout=30) for _ in processes)  # name, batches, failed
        for process in processes:
            process.join(30)
        for edge in edges:
            edge.link.stop()
            edge.store.close()
    differs = compare(url, copies)
    return Run(
        workers, seconds,
        readings=sum(c.readings for c in copies), entries=sum(c.head_seq for c in copies),
        batches=sum(e.batches for e in edges), resent=sum(e.resent for e in edges),
        lags=[lag for e in edges for lag in e.lags],
        cpu={k: after[k] - before[k] for k in after},
        failures=sum(failed for *_, failed in answers), handled=[b for _, b, _ in answers],
        routing=routing_of(workers, fleet),
        copy_rows_s=copy_peer(pg, url, copies[:PEER_NODES]), differs=differs,
        stored=stored_bytes(url), ack_timeout_s=fleet.ack_timeout_s,
    )  # fmt: skip


def compare(url: str, copies: Sequence[EdgeCopy]) -> list[str]:
    """The nodes whose cloud copy differs from what their edge sent, with how."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    found: dict[str, tuple[Any, ...]] = {}
    with psycopg.connect(dsn) as conn:
        for node, seq, head, count, bodies, hashes in conn.execute(
            "SELECT c.node, c.head_seq, c.head_hash, count(e.seq), "
            "sha256(string_agg(e.body, ''::bytea ORDER BY e.seq)), "
            "sha256(string_agg(e.hash, ''::bytea ORDER BY e.seq)) "
            "FROM concentrators c LEFT JOIN ledger_entries e ON e.node = c.node "
            "GROUP BY c.node, c.head_seq, c.head_hash"
        ):
            found[node] = (seq, bytes(head), count, bytes(bodies or b""), bytes(hashes or b""))
        readings = dict(
            (node, (count, int(energy or 0)))
            for node, count, energy in conn.execute(
                "SELECT node, count(*), sum(energy_wh) FROM readings GROUP BY node"
            )
        )
    differs = []
    for copy in copies:
        expected = (copy.head_seq, copy.head_hash, copy.head_seq, copy.bodies, copy.hashes)
        if found.get(copy.node) != expected:
            differs.append(f"{copy.node}: ledger (head {found.get(copy.node, ('?',))[0]})")
        if readings.get(copy.node) != (copy.readings, copy.energy_wh):
            differs.append(f"{copy.node}: readings {readings.get(copy.node)}")
    return differs


def stored_bytes(url: str) -> dict[str, int]:
    """Bytes on disk of `readings` (every partition) and `ledger_entries`, indexes included."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        readings = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
            "WHERE inhparent = 'readings'::regclass"
        ).fetchone()
        entries = conn.execute("SELECT pg_total_relation_size('ledger_entries')").fetchone()
    assert readings is not None and entries is not None
    return {"readings": int(readings[0]), "entries": int(entries[0])}


def copy_peer(pg: ThrowawayPostgres, url: str, copies: Sequence[EdgeCopy]) -> float:
    """Rows per second of a raw binary COPY of the rows ingest stored for `copies` into a
    fresh, identically migrated database."""
    peer_url = create_database(pg, f"peer{url.rsplit('fleet', 1)[1]}", TEMPLATE)
    nodes = [c.node for c in copies]
    columns = {
        "ledger_entries": "node, seq, transfer_id, prev_hash, hash, body, code, kind, debit, "
        "credit, amount, unit, pending_id, time, refs",
        "readings": "node, meter, time, energy_wh, tariff_wh, voltage, current, power, pf, "
        "relay, status, extra",
    }
    dumps: dict[str, list[bytes]] = {}
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as source:
        for table, names in columns.items():
            query = (f"COPY (SELECT {names} FROM {table} WHERE node = ANY(%s)) "
                     "TO STDOUT (FORMAT BINARY)")  # fmt: skip
            with source.cursor().copy(query, (nodes,)) as copy:
                dumps[table] = [bytes(block) for block in copy]
    rows = sum(c.readings + c.head_seq for c in copies)
    with psycopg.connect(peer_url.replace("postgresql+psycopg://", "postgresql://")) as target:
        began = time.perf_counter()
        with target.transaction(), target.cursor() as cursor:
            for table, names in columns.items():
                with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                    for block in dumps[table]:
                        copy.write(block)
        seconds = time.perf_counter() - began
    return rows / seconds


# -- the report ------------------------------------------------------------------------------


def report(run: Run, one: Run | None, nodes: int, cycles: int) -> None:
    """Print a run's figures (`one`: the 1-process run, the peer of a 2-process run)."""
    per = 1000 / run.readings
    lags = sorted(run.lags)
    p50, p95 = statistics.median(lags), lags[int(0.95 * (len(lags) - 1))]
    cloud = run.cpu["ingest"] + run.cpu["postgres"] + run.cpu["broker"]
    print(f"{run.workers} ingest process{'es' if run.workers > 1 else ''}: "
          f"{run.seconds:.1f} s, {run.batches} batches ({run.resent} resent), "
          f"{run.failures} failures")  # fmt: skip
    print(f"  routing: {run.routing}; batches answered per process: "
          f"{' + '.join(map(str, run.handled))}")  # fmt: skip
    print(f"  throughput {run.readings / run.seconds:,.0f} readings/s, "
          f"{run.rows / run.seconds:,.0f} rows/s (readings + entries); "
          f"{run.rows / run.seconds / run.copy_rows_s:.2f} of raw COPY "
          f"({run.copy_rows_s:,.0f} rows/s, same rows, same run)")  # fmt: skip
    if one is not None:
        print(f"  against 1 process: {one.seconds / run.seconds:.2f}× the throughput "
              "(2 cores, shared with PostgreSQL, the broker and the edges)")  # fmt: skip
    print(f"  ingest lag (publish → ack at the edge) p50 {p50:.2f} s, p95 {p95:.2f} s, "
          f"max {lags[-1]:.2f} s: {lags[-1] / run.ack_timeout_s:.2f} of the "
          f"edges' {run.ack_timeout_s:.0f} s ack timeout")  # fmt: skip
    print(f"  CPU per reading: ingest {run.cpu['ingest'] * per:.3f} ms, PostgreSQL "
          f"{run.cpu['postgres'] * per:.3f} ms, broker {run.cpu['broker'] * per:.3f} ms "
          f"= cloud {cloud * per:.3f} ms; the edges (this process) "
          f"{run.cpu['edges'] * per:.3f} ms")  # fmt: skip
    day = cycles * CYCLE_S
    print(f"  {nodes} concentrators' {cycles} cycles ({day / 3600:.0f} h) ingested in "
          f"{run.seconds:.0f} s: {day / run.seconds:.0f}× real time")  # fmt: skip
    per_core = CYCLE_S / (cloud * per / 1000 * METERS)
    print(f"  one core keeps up with {per_core:,.0f} concentrators (a batch of "
          f"{METERS} readings each per 15 min, cloud CPU); {TARGET_FLEET:,} need "
          f"{TARGET_FLEET / per_core:.1f} cores at 100 % busy")  # fmt: skip
    print(f"  stored in PostgreSQL (tables + indexes): "
          f"{run.stored['readings'] / run.readings:.0f} B per reading, "
          f"{run.stored['entries'] / run.entries:.0f} B per ledger entry")  # fmt: skip
    verdict = (
        "identical to each edge's" if not run.differs else "DIFFERS: " + "; ".join(run.differs[:5])
    )
    print(f"  cloud copy of {nodes} chains and their readings: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="5 concentrators × 4 cycles")
    parser.add_argument("--nodes", type=int, help="concentrators (default 100)")
    parser.add_argument("--cycles", type=int, help="15-minute cycles each (default 96: a day)")
    parser.add_argument(
        "--backlog", action="store_true",
        help="full batches (32 KB, up to 2000 items) as in a catch-up; default: a cycle's "
        "items per batch, as a fleet online sends them",
    )  # fmt: skip
    parser.add_argument(
        "--route", choices=("partitions", "shared"), default="partitions",
        help="how the 2 processes split the uplink: by node (default), or one shared group",
    )  # fmt: skip
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    nodes = args.nodes or (5 if args.smoke else 100)
    cycles = args.cycles or (4 if args.smoke else 96)
    if find_postgres() is None:
        print("skipped: PostgreSQL (initdb, pg_ctl) is not installed")
        return 0
    logging.basicConfig(level=logging.ERROR, format="  [%(name)s] %(message)s")
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        work = Path(tmp)
        generated = generate(work, METERS, cycles, cycles)
        template = generated.week / "data" / STORE_FILE
        (work / "nodes").mkdir()
        began = time.perf_counter()
        copies = [
            rechain(template, work / "nodes" / f"fleet-{n:04d}.sqlite", f"fleet-{n:04d}",
                    node_key(n))
            for n in range(1, nodes + 1)
        ]  # fmt: skip
        shutil.rmtree(work / "generated")
        shutil.rmtree(work / "day", ignore_errors=True)
        print(f"{nodes} concentrators × {METERS} meters × {cycles} cycles: the runtime made one "
              f"store in {generated.seconds:.1f} s ({copies[0].readings} readings, "
              f"{copies[0].head_seq} entries), re-chained per node in "
              f"{time.perf_counter() - began:.1f} s")  # fmt: skip
        cloud_seed = hashlib.sha256(b"fleet-bench cloud").digest()
        # Online, a cycle's outbox items (its readings, entries, checkpoints, events) go up as
        # one batch; a backlog goes in full batches.
        cycle_items = -(-copies[0].items // cycles)
        batch_items = UplinkLimits().max_items if args.backlog else cycle_items
        timeout = SMOKE_ACK_TIMEOUT_S if args.smoke else ACK_TIMEOUT_S
        print(f"batches of at most {batch_items} outbox items "
              f"({'a backlog' if args.backlog else 'a cycle: as online'}), window "
              f"{SessionConfig().window}, ack timeout {timeout:.0f} s, unpaced")  # fmt: skip
        with (
            ThrowawayPostgres(work / "postgres") as pg,
            MosquittoBroker(work / "mosquitto") as broker,
        ):
            migrate_template(pg, [generated.start, generated.end_week])
            fleet = Fleet(copies, pg, broker, work, cloud_seed, batch_items, timeout,
                          shared=args.route == "shared")  # fmt: skip
            runs: list[Run] = []
            for workers in (1, 2):
                runs.append(run_fleet(workers, fleet))
                report(runs[-1], runs[0] if workers > 1 else None, nodes, cycles)
    print(f"wall {time.perf_counter() - wall:.1f} s")
    if any(run.differs for run in runs):
        print("CORRECTNESS FAILURE: a cloud copy differs from what its edge sent")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
