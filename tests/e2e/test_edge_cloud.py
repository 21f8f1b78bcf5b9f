"""End to end: a real concentrator runtime and the real cloud, through a real Mosquitto.

The concentrator is a demo site (simulated DL/T 645 meters, the SQLite store, the signed chain)
booted in-process on a virtual clock, with its real MQTT sync (paho). The cloud is the whole
server (`serve_in_thread`): Alembic-migrated PostgreSQL, two ingest workers each taking the
nodes of its partition, the command dispatcher and the HTTP API. Between them a
Mosquitto with per-device TLS certificates and the production ACLs, or a plain one behind the
chaos proxy. Nothing of ours is mocked; see `tests.e2e.system` for the harness.

1. A week offline, then the catch-up: the cloud's copy equals the edge's — every entry, every
   reading and event, every balance — and the edge has pruned its outbox.
2. The same under chaos: duplicated, reordered and dropped PUBLISHes both ways, a cut
   connection and a broker restart in the middle of the catch-up; nothing stored twice.
3. A top-up through the API closes a relay cut off for arrears; the command is applied once,
   even when delivered again.
4. Commands the edge must refuse (expired, for another node, signed by an unknown key) change
   nothing on the edge, and the cloud learns why.
5. A forged batch quarantines the concentrator; nothing of it, or after it, is stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.chains import commands
from cloud.db import models
from cloud.db.engine import session_factory
from cloud.keys import CLOUD_NODE
from cloud.services.broker import MosquittoBroker
from cloud.services.pki import TlsFiles, issue_client_cert
from cloud.services.postgres import ThrowawayPostgres
from demo.site import DEFAULT_START, NODE
from edge.rules.decisions import RelayCommand
from edge.runtime.clock import ManualClock
from edge.store import Category
from edge.sync.commands import REJECTED
from edge.sync.session import SyncAlarm
from edge.sync.uplink import BatchBuilder
from ledger.accounts import Pocket, Unit, pocket_id, unit_of
from ledger.book import Balance, Book
from ledger.chain import Checkpoint, NodeKey, load_public_key
from ledger.encoding import GENESIS_HASH, body_version, decode_transfer, encode_body
from ledger.signed import ACK_TAG, CommandKind, open_signed, trusted
from ledger.transfers import Code, Transfer
from ledger.wire import Ack, AckStatus, decode_batch, encode_batch, topic
from tests.e2e.conftest import MqttClientFactory, Pki
from tests.e2e.mqtt_proxy import ChaosRates, MqttChaosProxy
from tests.e2e.system import (
    Cloud,
    Edge,
    TcpGate,
    clear_retained,
    start_cloud,
    start_edge,
    wait_for,
    write_site,
)

pytestmark = [pytest.mark.postgres, pytest.mark.mosquitto]

HOUR = dt.timedelta(hours=1)
TWO_HOURS = dt.timedelta(hours=2)
OTHER_NODE = "edge-0002"
_databases = itertools.count(1)


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def database_url(postgres: ThrowawayPostgres) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL (the cloud migrates it at start)."""
    name = f"e2e_{os.getpid()}_{next(_databases)}"
    admin = postgres.dsn.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield postgres.url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def clock() -> ManualClock:
    """The virtual clock the concentrator runs on; the cloud reads the same time."""
    return ManualClock(DEFAULT_START)


@dataclass
class Base:
    """What every test here starts from: a work directory, a fresh database, the virtual clock,
    and an exit stack that stops what the test starts (the edge before the cloud before the
    network, all before the database is dropped)."""

    tmp_path: Path
    database_url: str
    clock: ManualClock
    stack: ExitStack


@pytest.fixture
def base(tmp_path: Path, database_url: str, clock: ManualClock) -> Iterator[Base]:
    with ExitStack() as stack:
        yield Base(tmp_path, database_url, clock, stack)


def utc_of(clock: ManualClock) -> Callable[[], dt.datetime]:
    return lambda: clock.true_now().astimezone(dt.UTC)


@dataclass
class TlsWorld:
    """The production shape: Mosquitto with TLS client certificates and ACLs, the cloud on
    PostgreSQL (its workers with the `cloud` certificate), and a concentrator certificate
    whose CN is the demo site's node id."""

    base: Base
    broker: MosquittoBroker
    pki: Pki
    edge_tls: TlsFiles
    cloud: Cloud

    @property
    def clock(self) -> ManualClock:
        return self.base.clock

    @property
    def address(self) -> tuple[str, int]:
        """The devices listener."""
        return self.broker.host, self.broker.port

    @property
    def cloud_address(self) -> tuple[str, int]:
        """The cloud's listener (client ids of its own choosing, for several workers)."""
        return self.broker.host, self.broker.cloud_port

    def edge(
        self,
        host_port: tuple[str, int] | None = None,
        *,
        meters: int = 8,
        start_sync: bool = True,
        **knobs: object,
    ) -> Edge:
        """The demo site, registered through the API, its sync on the broker (or `host_port`)."""
        made = write_site(self.base.tmp_path / "site", meters)
        registered = self.cloud.register(made.directory, NODE)
        assert registered["status"] == "active" and registered["head_seq"] == 0
        settings: dict[str, Any] = {"rate_bytes_s": 0, "ack_timeout_s": 3, "tick_s": 0.05, **knobs}
        edge = start_edge(
            made,
            *(host_port or self.address),
            self.cloud.public_key_hex,
            tls=self.edge_tls,
            clock=self.clock,
            start_sync=start_sync,
            **settings,
        )
        self.base.stack.callback(edge.close)
        return edge


@pytest.fixture
def world(base: Base, mosquitto_tls: MosquittoBroker, pki: Pki) -> TlsWorld:
    host, port = mosquitto_tls.host, mosquitto_tls.cloud_port
    cloud_tls = pki.clients["cloud"]
    clear_retained(host, port, cloud_tls, topic(NODE, "status"))
    cloud = start_cloud(
        base.tmp_path / "cloud", base.database_url, host, port, tls=cloud_tls,
        now=utc_of(base.clock),
    )  # fmt: skip
    base.stack.callback(cloud.close)
    edge_tls = issue_client_cert(pki.ca, base.tmp_path / "edge-tls", NODE)
    return TlsWorld(base, mosquitto_tls, pki, edge_tls, cloud)


# --- what "the cloud's copy equals the edge's" means ---------------------------------------------


def _plus(a: Balance, b: Balance) -> Balance:
    return Balance(
        *(x + y for x, y in zip(dataclasses.astuple(a), dataclasses.astuple(b), strict=True))
    )


def _cloud_chain_balances(cloud: Cloud) -> dict[str, Balance]:
    """What the cloud's own chain (pending and posted recharges) adds to `balances`."""
    book = Book(open_accounts=True)
    for _, _, _, body in cloud.entries(CLOUD_NODE):
        outcomes = book.submit([decode_transfer(body)])
        assert all(o.accepted for o in outcomes), outcomes
    return {str(account): balance for account, balance in book.balances().items()}


def assert_cloud_copy_equals_edge(cloud: Cloud, edge: Edge) -> None:
    store, node = edge.store, edge.node
    seq, head = store.chain.seq, store.chain.head
    assert seq > 0
    # Every ledger entry: seq, prev hash, hash and the very bytes that were hashed.
    mine = [(e.seq, e.prev_hash, e.hash, encode_body(e.transfer, e.version))
            for e in store.entries()]  # fmt: skip
    theirs = cloud.entries(node)
    assert [s for s, *_ in theirs] == list(range(1, seq + 1)), "gaps or duplicates in the cloud"
    assert theirs == mine
    # The acknowledged head is the chain's head, on both sides, and the edge pruned its outbox.
    row = cloud.get(f"/concentrators/{node}")
    assert (row["status"], row["head_seq"], row["head_hash"]) == ("active", seq, head.hex())
    assert store.acknowledged() == (seq, head)
    assert store.outbox_size() == 0
    # The cloud keeps the edge's signed checkpoint of its head, and it verifies.
    checkpoints = cloud.rows(models.Checkpoint, models.Checkpoint.node == node)
    last = max(checkpoints, key=lambda c: c.seq)
    signed = Checkpoint(node, last.seq, bytes(last.head), last.key_id, bytes(last.signature))
    assert last.seq == seq and signed.verify(edge.runtime.key.public_key)
    # Readings: the same rows, once each (meter, time, register, relay).
    edge_readings = sorted(
        (r.reading.address, r.time.astimezone(dt.UTC), r.reading.energy_wh)
        for r in store.readings()
    )
    cloud_readings = sorted((m, t, e) for m, t, e, _ in cloud.readings(node))
    assert len(cloud_readings) == len(edge_readings) > 0
    assert cloud_readings == edge_readings
    # Events and alarms, by the edge's event id.
    edge_events = {s.id: s.event.kind for s in store.events()}
    stored = cloud.rows(models.Event, models.Event.node == node)
    assert {e.event_id: e.kind for e in stored} == edge_events
    # Balances: the projection of every chain = the edge's book + the cloud chain's part.
    expected = {str(a): b for a, b in store.book.balances().items()}
    for account, balance in _cloud_chain_balances(cloud).items():
        expected[account] = _plus(expected.get(account, Balance()), balance)
    projected = cloud.balances()
    for account in sorted(set(expected) | set(projected)):
        assert projected.get(account, Balance()) == expected.get(account, Balance()), account
    # … and every unit sums to zero over the cloud's projection (docs/architecture.md §5.5).
    for unit in Unit:
        total = sum(b.posted for a, b in projected.items() if unit_of(a) is unit)
        assert total == 0, f"{unit.value} balances sum to {total}"


def head_seq(cloud: Cloud, node: str = NODE) -> int:
    rows = cloud.rows(models.Concentrator, models.Concentrator.node == node)
    return rows[0].head_seq if rows else 0


def recharges_of(edge: Edge, payment: str) -> list[Transfer]:
    return [
        e.transfer
        for e in edge.store.entries()
        if e.transfer.code is Code.RECHARGE and e.transfer.refs.get("payment") == payment
    ]


# --- 1. a week offline, then the catch-up -------------------------------------------------------


def test_a_week_offline_catches_up_over_tls_into_postgres(world: TlsWorld) -> None:
    cloud = world.cloud
    gate = world.base.stack.enter_context(TcpGate(*world.address))
    edge = world.edge((gate.host, gate.port), meters=12, batch_bytes=4096)
    # Seven days of hourly polls with the uplink down: the concentrator bills on regardless.
    edge.cycles(7 * 24, HOUR)
    assert gate.refused >= 1 and gate.forwarded == 0  # it kept trying; nothing got through
    assert cloud.count(models.LedgerEntry, models.LedgerEntry.node == NODE) == 0
    assert cloud.count(models.Reading, models.Reading.node == NODE) == 0
    seq = edge.store.chain.seq
    assert seq > 1000 and len(edge.store.readings()) == 7 * 24 * 12
    assert edge.store.acknowledged() == (0, GENESIS_HASH)
    backlog = edge.store.outbox_size()

    gate.open()  # the link is back; the clock stands still from here on
    edge.pump("the week's backlog to be acknowledged", edge.drained, timeout=45)

    assert edge.store.chain.seq == seq  # no cycle ran during the catch-up
    assert_cloud_copy_equals_edge(cloud, edge)
    workers = cloud.running.workers
    # One node: the worker of its partition took every batch, the other none.
    assert [w.batches > 0 for w in workers] == [w.route.owns(NODE) for w in workers]
    assert len(workers) == 2
    assert sum(w.batches for w in workers) >= 10, f"a backlog of {backlog} items in few batches"
    assert sum(w.failures for w in workers) == 0
    # The inventory arrived with the status: every account of the site, at this node.
    listed = cloud.get("/accounts", node=NODE, limit=100)
    assert sorted(a["account"] for a in listed["items"]) == sorted(edge.site.accounts)


# --- 2. chaos on the wire ------------------------------------------------------------------------


def test_duplicates_reorders_drops_a_cut_and_a_broker_restart_store_everything_once(
    base: Base, mosquitto_plain: MosquittoBroker
) -> None:
    stack, clock = base.stack, base.clock
    clear_retained(mosquitto_plain.host, mosquitto_plain.port, None, topic(NODE, "status"))
    cloud = start_cloud(
        base.tmp_path / "cloud",
        base.database_url,
        mosquitto_plain.host,
        mosquitto_plain.port,
        tls=None,
        now=utc_of(clock),
    )
    stack.callback(cloud.close)
    chaos = ChaosRates(drop=0.2, duplicate=0.2, reorder=0.2)
    proxy = stack.enter_context(
        MqttChaosProxy(
            mosquitto_plain.host, mosquitto_plain.port, to_broker=chaos, to_client=chaos, seed=11
        )
    )
    made = write_site(base.tmp_path / "site", 8)
    cloud.register(made.directory, NODE)
    edge = start_edge(
        made, proxy.host, proxy.port, cloud.public_key_hex, tls=None, clock=clock,
        start_sync=False, rate_bytes_s=0, ack_timeout_s=1, batch_bytes=2048, tick_s=0.05,
    )  # fmt: skip
    stack.callback(edge.close)
    # Calm the wire before the edge says goodbye, or its farewell may be dropped and waited for.
    stack.callback(proxy.set_rates, to_broker=ChaosRates(), to_client=ChaosRates())
    edge.cycles(3 * 12, TWO_HOURS)  # three days of backlog before the link comes up
    edge.start_sync()

    edge.pump("the first batches to be stored", lambda: head_seq(cloud) > 0)
    assert head_seq(cloud) < edge.store.chain.seq  # mid-sync
    proxy.cut()
    acked = edge.store.acknowledged()[0]
    edge.pump(
        "the edge to reconnect and be acknowledged again",
        lambda: proxy.counters.connections >= 2 and edge.store.acknowledged()[0] > acked,
    )
    assert not edge.drained()  # still mid-sync
    mosquitto_plain.restart()
    edge.cycles(12, TWO_HOURS)  # a day more of polls while the link comes and goes
    edge.pump("everything to be acknowledged through the chaos", edge.drained, timeout=50)

    assert_cloud_copy_equals_edge(cloud, edge)
    assert cloud.count(models.LedgerEntry, models.LedgerEntry.node == NODE) == edge.store.chain.seq
    assert cloud.count(models.Reading, models.Reading.node == NODE) == 4 * 12 * 8
    # The chaos really happened, both ways.
    counters = proxy.counters
    for direction in (counters.to_broker, counters.to_client):
        assert direction.dropped > 0 and direction.duplicated > 0, counters
    assert counters.to_broker.reordered > 0, counters
    assert counters.cuts == 1 and counters.connections >= 3, counters


# --- 3. a top-up through the API ---------------------------------------------------------------


def test_a_recharge_through_the_api_closes_the_relay_and_is_applied_once(
    world: TlsWorld, mqtt_client: MqttClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = world.cloud
    edge = world.edge()
    runtime = edge.runtime
    for _ in range(7 * 12):
        edge.cycle(TWO_HOURS)
        dry = sorted(o for o, a in runtime.accounts.items() if a.arrears.tripped)
        if dry:
            break
    else:
        pytest.fail("nobody was cut off for arrears in a simulated week")
    owner = dry[0]
    (meter,) = (m.address for m in edge.site.meters_of(owner))
    assert edge.building.meters[meter].state.relay_closed is False
    edge.pump("the cloud to know the account", lambda: edge.drained() and owner in _known(cloud))
    before = cloud.get(f"/accounts/{owner}")
    assert before["node"] == NODE and before["prepaid_fen"] <= 0

    payment, fen = "wx-e2e-0001", 20_000
    made = cloud.post(
        "/recharges",
        {
            "account": owner,
            "fen": fen,
            "method": "wechat",
            "payment": payment,
        },
    )
    assert made["status"] == "pending" and made["command_id"]
    command_id = made["command_id"]

    def applied() -> bool:
        return edge.store.command_result(command_id) is not None

    edge.pump("the edge to apply the command", applied)
    result = edge.store.command_result(command_id)
    assert result is not None and result.status.value == "applied"
    (booked,) = recharges_of(edge, payment)
    assert (booked.credit, booked.amount) == (pocket_id(owner, Pocket.PREPAID), fen)

    # The next poll finds the account in credit and closes the relay, confirmed by read-back.
    closed = []
    for _ in range(3):
        report = edge.cycle(TWO_HOURS)
        closed = [
            o
            for o in report.outcomes
            if o.order.meter.address == meter and o.order.command is RelayCommand.CLOSE
        ]
        if closed:
            break
    assert closed and all(o.confirmed for o in closed), closed
    assert edge.building.meters[meter].state.relay_closed is True
    edge.cycle(TWO_HOURS)  # a reading with the relay closed

    def settled() -> bool:
        return (
            edge.drained()
            and cloud.get(f"/recharges/{payment}")["status"] == "posted"
            and cloud.get(f"/commands/{command_id}")["status"] == "applied"
        )

    edge.pump("the recharge to be posted and the command applied", settled)
    (row,) = cloud.rows(models.Command, models.Command.id == command_id)
    assert (row.node, row.status, row.kind) == (NODE, "applied", "recharge")
    assert row.result is not None and row.result["status"] == "applied"
    account = cloud.get(f"/accounts/{owner}")
    prepaid = edge.store.book.balance(pocket_id(owner, Pocket.PREPAID)).posted
    assert account["prepaid_fen"] == prepaid > before["prepaid_fen"]
    assert account["recharging_fen"] == 0
    (shown,) = cloud.get("/meters", node=NODE, account=owner)["items"]
    assert (shown["address"], shown["relay"]) == (meter, "closed")
    assert_cloud_copy_equals_edge(cloud, edge)

    # The cloud resends the same signed command (say, it never saw the PUBACK): a no-op.
    resender = mqtt_client("cloud-resend", world.pki.clients["cloud"]).connect(*world.cloud_address)
    seq = edge.store.chain.seq
    with caplog.at_level(logging.INFO, logger="edge.sync"):
        resender.publish(topic(NODE, "cmd"), bytes(row.payload))
        edge.pump("the edge to see the resent command", lambda: _repeated(caplog, command_id))
    assert edge.store.chain.seq == seq
    assert len(recharges_of(edge, payment)) == 1
    again = edge.store.command_result(command_id)
    assert again is not None and again.status.value == "applied"
    edge.pump("nothing left to send", edge.drained)
    assert cloud.get(f"/commands/{command_id}")["status"] == "applied"
    posted = cloud.rows(models.LedgerEntry, models.LedgerEntry.node == NODE)
    assert sum(e.code == "recharge" and e.refs.get("payment") == payment for e in posted) == 1
    assert_cloud_copy_equals_edge(cloud, edge)


def test_a_swapped_in_meter_is_in_the_clouds_view_within_one_sync(world: TlsWorld) -> None:
    """Issue 13: the concentrator sent its inventory once, at boot, so after a swap the cloud
    had the new meter with no account (reports lost its shop) until a restart. Now its signed
    status goes up again when the swap changes it, and the cloud's view follows."""
    cloud = world.cloud
    edge = world.edge()
    edge.cycles(2, TWO_HOURS)
    edge.pump("the cloud to hold every reading", edge.drained)
    meter = next(m for m in edge.site.meters if m.protocol == "dlt645" and m.account)
    owner, billing = meter.account, edge.runtime.meters[meter.address].billing
    assert billing is not None and owner in _known(cloud)
    new = "209901000001"
    final_wh = -(-(billing.reg_wh + 10) // 10) * 10
    cloud.post("/meter-swaps", {"old": meter.address, "final_wh": final_wh, "initial_wh": 0,
                                "new": {"address": new, "protocol": "dlt645"}})  # fmt: skip

    def view() -> dict[str, str]:
        return {m["address"]: m["account"] for m in cloud.get("/meters", node=NODE)["items"]}

    edge.pump("the swap to reach the cloud's view", lambda: view().get(new) == owner)
    assert view()[meter.address] == ""  # the old meter is nobody's now
    assert cloud.get(f"/accounts/{owner}")["node"] == NODE
    # What went up is a signed status with the new meter (the cloud took nothing unsigned).
    refusals = models.Alarm.kind.in_(["refused_status", "inventory_mismatch"])
    assert cloud.count(models.Alarm, refusals) == 0


def _known(cloud: Cloud) -> set[str]:
    return {a["account"] for a in cloud.get("/accounts", node=NODE, limit=100)["items"]}


def _repeated(caplog: pytest.LogCaptureFixture, command_id: str) -> bool:
    return any(
        f"command {command_id[:8]}… repeated" in record.getMessage() for record in caplog.records
    )


# --- 4. commands the edge refuses -------------------------------------------------------------


def test_expired_misaddressed_and_untrusted_commands_change_nothing_and_the_cloud_learns_why(
    world: TlsWorld, mqtt_client: MqttClientFactory
) -> None:
    cloud, clock = world.cloud, world.clock
    edge = world.edge()
    edge.cycles(4, TWO_HOURS)
    edge.pump("the first cycles to be acknowledged", edge.drained)
    other = NodeKey.generate().public_key.public_bytes_raw().hex()
    cloud.post("/concentrators", {"node": OTHER_NODE, "public_key": other})
    owner = sorted(edge.site.accounts)[0]
    prepaid = pocket_id(owner, Pocket.PREPAID)
    balance = edge.store.book.balance(prepaid)

    def recharge(payment: str) -> dict[str, object]:
        return {"account": owner, "fen": 5_000, "payment": payment, "method": "cash"}

    now = clock.true_now().astimezone(dt.UTC)
    rogue = NodeKey.generate()  # a key this concentrator was never told to trust
    sessions = session_factory(cloud.running.engine)
    with sessions.begin() as session:
        late = commands.issue(
            session, NODE, CommandKind.RECHARGE, recharge("e2e-expired"),
            key=cloud.running.key, now=now - dt.timedelta(days=2), ttl=dt.timedelta(days=1),
        )  # fmt: skip
        elsewhere = commands.issue(
            session, OTHER_NODE, CommandKind.RECHARGE, recharge("e2e-elsewhere"),
            key=cloud.running.key, now=now,
        )  # fmt: skip
        forged = commands.issue(
            session, NODE, CommandKind.RECHARGE, recharge("e2e-rogue"), key=rogue, now=now
        )
        sent = {c.id: bytes(c.payload) for c in (late, elsewhere, forged)}
    expected = {late.id: "expired", elsewhere.id: "wrong_target", forged.id: "unknown_key"}

    # Delivered on this concentrator's command topic by a client with the cloud's rights (the
    # dispatcher may deliver the rogue one as well: it is pending for an online node).
    sender = mqtt_client("cloud-sender", world.pki.clients["cloud"]).connect(*world.cloud_address)
    for payload in sent.values():
        sender.publish(topic(NODE, "cmd"), payload)

    def reported() -> set[str]:
        rows = cloud.rows(models.Event, models.Event.node == NODE, models.Event.kind == REJECTED)
        return {str(e.detail.get("command_id")) for e in rows}

    edge.pump(
        "the rejections to reach the cloud", lambda: edge.drained() and reported() >= set(sent)
    )

    # Nothing happened on the edge: no transfer, no inbox entry, the balance untouched.
    for payment in ("e2e-expired", "e2e-elsewhere", "e2e-rogue"):
        assert recharges_of(edge, payment) == []
    for command_id in sent:
        assert edge.store.command_result(command_id) is None
    assert edge.store.book.balance(prepaid) == balance
    alarms = edge.store.events(category=Category.ALARM)
    reasons = {
        str(a.event.detail["command_id"]): a.event.detail["reason"]
        for a in alarms
        if a.event.kind == REJECTED
    }
    assert reasons == expected
    # The cloud holds the edge's reasons, and settles the commands that were this node's.
    rows = cloud.rows(models.Event, models.Event.node == NODE, models.Event.kind == REJECTED)
    assert {str(e.detail["command_id"]): e.detail["reason"] for e in rows} == expected
    assert all(e.category == "alarm" for e in rows)
    status = {c.id: c for c in cloud.rows(models.Command, models.Command.id.in_(list(sent)))}
    assert status[late.id].status == "expired"
    assert status[late.id].result is not None and status[late.id].result["rejected"] == "expired"
    assert status[forged.id].status == "failed"
    assert status[forged.id].result is not None
    assert status[forged.id].result["rejected"] == "unknown_key"
    # A concentrator cannot settle another's command: edge-0002's stays open for edge-0002.
    assert (status[elsewhere.id].status, status[elsewhere.id].result) == ("pending", None)
    assert cloud.get(f"/concentrators/{OTHER_NODE}")["pending_commands"] == 1
    assert_cloud_copy_equals_edge(cloud, edge)


# --- 5. a forged batch -------------------------------------------------------------------------


def test_a_forged_batch_quarantines_the_concentrator_and_nothing_of_it_is_stored(
    world: TlsWorld, mqtt_client: MqttClientFactory
) -> None:
    cloud = world.cloud
    edge = world.edge(start_sync=False)
    edge.cycles(6, TWO_HOURS)
    # The edge's own first batch, then one body edited: a seed top-up of 3 yuan made 30 000.
    built = BatchBuilder(edge.store, edge.runtime.key).build(0)
    assert built is not None and built.batch.ledger is not None and built.readings > 0
    part = built.batch.ledger
    bodies = list(part.bodies)
    index, seed = next(
        (i, t)
        for i, t in enumerate(decode_transfer(b) for b in bodies)
        if t.code is Code.RECHARGE and t.amount < 1_000
    )
    richer = dataclasses.replace(seed, amount=3_000_000)
    bodies[index] = encode_body(richer, body_version(bodies[index]))  # canonical, as stored
    forged = dataclasses.replace(
        built.batch, ledger=dataclasses.replace(part, bodies=tuple(bodies))
    )
    payload = encode_batch(forged)
    assert decode_batch(payload) == forged  # a well-formed batch; only its content lies

    # Published with the concentrator's own certificate (a stolen one, say).
    forger = mqtt_client("forger", world.edge_tls).connect(*world.address)
    assert forger.subscribe(topic(NODE, "ack")) == [1]
    forger.publish(topic(NODE, "up"), payload)
    _, answer = forger.expect(timeout=10)
    cloud_keys = trusted(load_public_key(cloud.public_key_hex.encode()))
    ack = Ack.from_fields(open_signed(ACK_TAG, answer, cloud_keys))
    assert (ack.node, ack.status, ack.seq) == (NODE, AckStatus.QUARANTINED, 0)
    assert ack.reason.startswith("bad_signature")

    shown = cloud.get(f"/concentrators/{NODE}")
    assert (shown["status"], shown["head_seq"], shown["upto"]) == ("quarantined", 0, 0)
    assert shown["reason"].startswith("bad_signature")
    alarms = cloud.rows(models.Alarm, models.Alarm.node == NODE)
    assert [a.kind for a in alarms] == ["quarantined"]
    listed = cloud.get("/alarms")
    assert any(a["node"] == NODE and a["kind"] == "quarantined" for a in listed["items"])

    def nothing_stored() -> None:
        for model in (models.LedgerEntry, models.Reading, models.Event, models.Checkpoint):
            assert cloud.count(model, model.node == NODE) == 0, model.__tablename__
        assert pocket_id(seed.credit.split(":")[0], Pocket.PREPAID) not in cloud.balances()

    nothing_stored()
    # The forger leaves. (Its certificate is the concentrator's, so the broker gives it the
    # concentrator's client id: while both are connected they take the session from each other.)
    forger.close()

    # The genuine concentrator comes online: its true batches are refused too, until an
    # operator clears the quarantine; it keeps everything and raises an alarm.
    outbox = edge.store.outbox_size()
    edge.start_sync()
    edge.pump("the edge to learn it is quarantined", lambda: bool(edge.sync.session.paused))
    assert "quarantined" in edge.sync.session.paused
    wait_for("the status to arrive", lambda: cloud.get(f"/concentrators/{NODE}")["online"])
    nothing_stored()
    assert edge.store.acknowledged() == (0, GENESIS_HASH)
    assert edge.store.outbox_size() >= outbox  # nothing pruned (an alarm added)
    kinds = [e.event.kind for e in edge.store.events(category=Category.ALARM)]
    assert SyncAlarm.QUARANTINED in kinds
