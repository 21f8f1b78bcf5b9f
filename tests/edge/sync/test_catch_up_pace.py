"""A backlog drains at the pace of the acknowledgements, not of the tick, through a real
Mosquitto and the cloud peer; and a live alarm still overtakes it.

The loop here is the runner's (`edge.runtime.runner`): tick, then nap until the next tick or
until the link brings something (`SyncService.wait`, the event the runner's nap waits on).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cloud.services.broker import MosquittoBroker
from edge.store import Category, Event, OutboxKind
from edge.sync.service import SyncService
from tests.edge.sync.conftest import Edge
from tests.edge.sync.peer import CloudPeer

TICK_S = 1.0  # the fixed tick: a backlog that waited for it would take a second a batch
SMALL_BATCH = 512  # compressed bytes: a few hours of 8 meters make many batches


def run_as_the_runner(
    sync: SyncService, done: Callable[[], bool], *, watch: Callable[[], None] = lambda: None
) -> float:
    """Tick, then nap for `TICK_S` or until the link has events, until `done()`; seconds."""
    began = time.monotonic()
    while not done():
        sync.tick()
        watch()
        if time.monotonic() - began > 60:
            raise AssertionError("the backlog did not drain within a minute")
        sync.wait(TICK_S)
    return time.monotonic() - began


def test_a_backlog_goes_up_without_waiting_for_the_tick(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(12)
    head = edge.store.chain.seq
    sync = make_sync(broker.host, broker.port, tick_s=TICK_S, window=1, batch_bytes=SMALL_BATCH)
    seconds = run_as_the_runner(
        sync, lambda: edge.store.outbox_size() == 0 and edge.store.acknowledged()[0] == head
    )
    batches = len(peer.copy.batches)
    assert batches >= 8
    assert peer.copy.seq == head and len(peer.copy.readings) == 12 * 8
    # One batch in flight at a time: waiting for the tick between them would take
    # (batches - 1) × TICK_S; each goes as soon as the ack of the one before is handled.
    assert seconds < (batches - 1) * TICK_S / 4, f"{batches} batches took {seconds:.1f} s"


def test_a_live_alarm_overtakes_the_backlog(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(12)
    sync = make_sync(broker.host, broker.port, tick_s=TICK_S, window=1, batch_bytes=SMALL_BATCH)
    alarm: dict[str, int] = {}  # its outbox id, and how far the backlog was when it arrived

    def raise_alarm_mid_catch_up() -> None:
        if "id" not in alarm and peer.copy.upto > 0:
            with edge.store.transaction() as tx:
                tx.add_events([Event(edge.clock.true_now(), "test_live_alarm", Category.ALARM)])
            newest = edge.store.outbox_newest(OutboxKind.ALARM, 0, 1)[0]
            alarm["id"] = newest.id
        arrived = [e for e in peer.copy.events.values() if e.get("k") == "test_live_alarm"]
        if arrived and "upto" not in alarm:
            alarm["upto"] = peer.copy.upto

    run_as_the_runner(sync, lambda: edge.store.outbox_size() == 0, watch=raise_alarm_mid_catch_up)
    assert "upto" in alarm, "the live alarm never reached the cloud"
    # It reached the cloud while most of the backlog ahead of it was still to go.
    backlog_at_alarm = alarm["id"] - alarm["upto"]
    assert backlog_at_alarm > alarm["id"] / 2, alarm
