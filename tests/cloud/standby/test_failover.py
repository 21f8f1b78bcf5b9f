"""The hot standby keeps its promise (README "Operations → Hot standby"): a primary killed in
the middle of a stream of recharges and ingested batches loses and duplicates none of the
acknowledged ones, and with no synchronous standby up a write waits, unacknowledged, instead of
being accepted on one machine.

The operations go through the cloud's own code against the multi-host URL: recharges as the
desk's route books them (`cloud.db.retry.unit_of_work` around `cloud.operations.recharges.
recharge`), batches through `Ingest.handle_batch`, resent the way a concentrator resends a
batch it got no ack for. The figures (failover time, retried operations) are printed with -s.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import models
from cloud.db.retry import unit_of_work
from cloud.ingest.handler import Ingest
from cloud.keys import CLOUD_NODE
from cloud.operations import recharges
from cloud.reports import books
from cloud.services.standby import StandbyCluster
from ledger.chain import NodeKey
from ledger.wire import AckStatus
from tests.cloud.chains.test_commands import INVENTORY
from tests.cloud.conftest import Clock, RegisterEdge
from tests.cloud.fake_edge import FakeEdge
from tests.cloud.helpers import count, open_ack, stored_chain

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DESK_NODE = "edge-0001"  # its accounts (A0001, A0002) are the ones the desks recharge
LINK_NODES = ("edge-0002", "edge-0003")  # concentrators uploading while the primary dies
RECHARGES_PER_DESK = 250
BATCHES_PER_LINK = 250
OPERATIONS = 2 * RECHARGES_PER_DESK + len(LINK_NODES) * BATCHES_PER_LINK  # 1 000
KILL_AFTER = 300  # acknowledged operations before the primary dies
RESEND_S = 0.2  # a concentrator's wait before sending an unacknowledged batch again
STRICT_WAIT_S = 3.0  # how long a write must stay unacknowledged with the standby stopped
RECOVERY_S = 90.0
ALONE_S = 3.0  # how long the new primary stays without a standby before the old one returns


@dataclass
class Stream:
    """What the clients were told: every acknowledged operation, once, with when its last try
    began and how many tries it took."""

    acked: list[tuple[str, ...]] = field(default_factory=list)
    last_try: list[float] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)
    tries: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # tracebacks of the clients' failures
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, operation: tuple[str, ...], last_try: float, tries: int) -> None:
        with self.lock:
            self.acked.append(operation)
            self.last_try.append(last_try)
            self.acked_at.append(time.monotonic())
            self.tries.append(tries)

    def __len__(self) -> int:
        with self.lock:
            return len(self.acked)


def _desk(
    stream: Stream, sessions: sessionmaker[Session], key: NodeKey, clock: Clock, desk: int
) -> None:
    """A money desk booking recharges one after another, each with its payment id."""
    for n in range(RECHARGES_PER_DESK):
        payment = f"D{desk}-{n:04d}"
        tries: list[float] = []

        def book(
            session: Session, payment: str = payment, tries: list[float] = tries, fen: int = 100 + n
        ) -> str:
            tries.append(time.monotonic())
            row = recharges.recharge(
                session, account=f"A000{desk}", fen=fen, method="cash",
                operator=f"desk{desk}", payment=payment, key=key, now=clock(),
            )  # fmt: skip
            return row.payment

        with sessions() as session:
            booked = unit_of_work(session, book)
        assert booked == payment
        stream.ack(("recharge", payment), tries[-1], len(tries))


def _link(stream: Stream, ingest: Ingest, edge: FakeEdge, key: NodeKey) -> None:
    """A concentrator uploading one entry per batch, resending a batch until it is acked."""
    for outbox in range(1, BATCHES_PER_LINK + 1):
        entries = edge.book_consumption(1)
        payload = edge.payload(outbox, outbox, entries)
        sends: list[float] = []
        while True:
            sends.append(time.monotonic())
            try:
                answer = ingest.handle_batch(edge.node, payload)
                break
            except DBAPIError:
                assert len(sends) < 500, "the batch was never acknowledged"
                time.sleep(RESEND_S)  # no ack: the edge sends the same batch again
        ack = open_ack(answer, key)
        assert (ack.status, ack.seq) == (AckStatus.OK, entries[-1].seq)
        stream.ack(("batch", edge.node, str(ack.seq)), sends[-1], len(sends))


def _run(stream: Stream, target: Callable[..., None], *args: object) -> threading.Thread:
    def guarded() -> None:
        try:
            target(stream, *args)
        except BaseException:  # handed to the test thread, which asserts on it
            stream.errors.append(traceback.format_exc())

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def desk_site(ingest: Ingest, edge_of: RegisterEdge) -> FakeEdge:
    edge = edge_of(DESK_NODE)
    ingest.handle_status(DESK_NODE, edge.status(accounts=INVENTORY))
    return edge


def test_without_a_synchronous_standby_a_write_waits_unacknowledged(  # noqa: PLR0917 (fixtures)
    cluster: StandbyCluster, ingest: Ingest, edge_of: RegisterEdge, sessions, cloud_key, clock
) -> None:
    node = "edge-0101"
    edge = edge_of(node)
    accounts = {"S0001": {"meters": [{"address": "000000000101", "protocol": "dlt645"}]}}
    ingest.handle_status(node, edge.status(accounts=accounts))
    primary, standby = cluster.primary(), cluster.synchronous_standby()
    assert primary is not None and standby is not None and primary is not standby

    cluster.stop_node(standby)  # the standby's machine is cut off
    booked: list[str] = []

    def book() -> None:
        with sessions() as session:
            row = unit_of_work(session, lambda s: recharges.recharge(
                s, account="S0001", fen=500, method="cash", operator="desk", payment="S-1",
                key=cloud_key, now=clock()))  # fmt: skip
            booked.append(row.payment)

    began = time.monotonic()
    writer = threading.Thread(target=book, daemon=True)
    writer.start()
    writer.join(STRICT_WAIT_S)
    assert writer.is_alive() and not booked, "a write was acknowledged with no standby up"
    with psycopg.connect(primary.dsn, autocommit=True) as connection:
        names = connection.execute("SHOW synchronous_standby_names").fetchone()
    assert names is not None and names[0] != "", "the primary went asynchronous"

    cluster.start_node(standby)  # the standby is back: the waiting commit completes
    writer.join(RECOVERY_S)
    waited = time.monotonic() - began
    assert booked == ["S-1"]
    assert count(sessions, models.Recharge, models.Recharge.payment == "S-1") == 1
    cluster.wait_until_synchronous(RECOVERY_S)
    print(f"\nstrict: the write waited {waited:.1f} s, until the standby was back")


@pytest.mark.timeout(240)
def test_killing_the_primary_loses_and_duplicates_no_acknowledged_operation(  # noqa: PLR0917
    cluster: StandbyCluster,
    desk_site: FakeEdge,
    edge_of: RegisterEdge,
    engine,
    sessions,
    cloud_key,
    clock,
) -> None:
    stream = Stream()
    ingest = Ingest(engine, cloud_key, clock)  # the worker's patience; the edge resends beyond
    links = [edge_of(node) for node in LINK_NODES]
    threads = [_run(stream, _desk, sessions, cloud_key, clock, desk) for desk in (1, 2)]
    threads += [_run(stream, _link, ingest, edge, cloud_key) for edge in links]

    deadline = time.monotonic() + RECOVERY_S
    while len(stream) < KILL_AFTER and not stream.errors:
        assert time.monotonic() < deadline, f"only {len(stream)} operations before the kill"
        time.sleep(0.01)
    primary = cluster.primary()
    assert primary is not None
    cluster.kill(primary)  # SIGKILL: Patroni, the postmaster and every backend
    killed_at = time.monotonic()  # after the signals: no ack can come from the old primary now
    cluster.wait_for_primary(RECOVERY_S, other_than=primary)
    promoted_at = time.monotonic()
    time.sleep(ALONE_S)  # a primary with no standby: strict mode must acknowledge nothing
    restarted_at = time.monotonic()
    cluster.start_node(primary)  # the machine comes back and rejoins as the standby
    cluster.wait_until_synchronous(RECOVERY_S)
    synchronous_at = time.monotonic()
    for thread in threads:
        thread.join(RECOVERY_S)
    assert not stream.errors, "\n".join(stream.errors)
    assert len(stream) == OPERATIONS

    # Every acknowledged operation is stored exactly once.
    acked_payments = sorted(op[1] for op in stream.acked if op[0] == "recharge")
    assert len(acked_payments) == len(set(acked_payments)) == 2 * RECHARGES_PER_DESK
    with sessions() as session:
        stored = session.scalars(
            select(models.Recharge.payment).where(models.Recharge.payment.like("D%"))
        ).all()
        commands = session.scalars(
            select(models.Command.id).where(models.Command.node == DESK_NODE)
        ).all()
        problems = books.verify(session)
    assert sorted(stored) == acked_payments
    assert len(commands) == len(acked_payments)  # one recharge command each, none twice
    pending = [e.transfer.id for e in stored_chain(sessions, CLOUD_NODE)
               if e.transfer.code.name == "RECHARGE"]  # fmt: skip
    assert len(pending) == len(set(pending))
    assert set(pending) >= {recharges.pending_id(p) for p in acked_payments}
    for edge in links:
        assert stored_chain(sessions, edge.node) == edge.entries  # each entry once, in order
    assert problems == []

    alone = [ack for ack in stream.acked_at if killed_at < ack < restarted_at]
    assert alone == [], "operations acknowledged while no synchronous standby was up"
    after_kill = [ack for began, ack in zip(stream.last_try, stream.acked_at, strict=True)
                  if began > killed_at]  # fmt: skip
    retried = sum(1 for tries in stream.tries if tries > 1)
    print(
        f"\nfailover: promoted {promoted_at - killed_at:.1f} s after the kill; nothing "
        f"acknowledged while alone ({restarted_at - promoted_at:.1f} s); old primary restarted, "
        f"synchronous again {synchronous_at - restarted_at:.1f} s later; first write "
        f"acknowledged by the new primary {min(after_kill) - killed_at:.1f} s after the kill "
        f"({min(after_kill) - restarted_at:.1f} s after the restart); {retried} of "
        f"{OPERATIONS} operations retried, none lost or duplicated"
    )
