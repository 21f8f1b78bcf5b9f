"""Uplink against a real Mosquitto and the cloud peer: batches flow, acknowledgements prune, and
nothing but a verified acknowledgement of our own chain ever prunes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from cloud.services.broker import MosquittoBroker
from edge.store import Category
from edge.sync.service import SyncService
from edge.sync.session import GAP_RESENDS, SyncAlarm
from tests.edge.sync.conftest import Edge, pump
from tests.edge.sync.peer import CloudPeer


def _stored_bodies(edge: Edge) -> dict[int, bytes]:
    uri = edge.store.path.resolve().as_uri() + "?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        return {seq: bytes(body) for seq, body in conn.execute("SELECT seq, body FROM ledger")}


def _alarms(edge: Edge, kind: str) -> int:
    return sum(e.event.kind == kind for e in edge.store.events(category=Category.ALARM))


def _settle(sync: SyncService, seconds: float) -> None:
    pump(sync, lambda: False, timeout=seconds)


def test_batches_flow_and_are_pruned_only_after_verified_acks(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(3)
    queued = edge.store.outbox_size()
    head = edge.store.chain.seq
    peer.mode = "silent"
    sync = make_sync(broker.host, broker.port)
    assert pump(sync, lambda: peer.holds(lambda c: c.seq == head))
    _settle(sync, 0.5)
    assert edge.store.outbox_size() == queued  # no acknowledgement, nothing pruned
    assert edge.store.acknowledged()[0] == 0

    peer.mode = "ok"  # the next resend (after the 3 s ack timeout) is acknowledged
    assert pump(sync, lambda: edge.store.outbox_size() == 0)
    chain = edge.store.chain
    assert edge.store.acknowledged() == (chain.seq, chain.head)
    assert peer.copy.bodies == _stored_bodies(edge)  # the stored canonical bytes, every one
    assert len(peer.copy.readings) == 3 * 8

    edge.cycles(2)  # more work while connected: it follows, and is pruned in turn
    assert pump(
        sync, lambda: edge.store.outbox_size() == 0 and peer.copy.seq == edge.store.chain.seq
    )
    assert len(peer.copy.readings) == 5 * 8
    assert peer.copy.bodies == _stored_bodies(edge)


def test_a_forged_ack_prunes_nothing_and_raises_an_alarm(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(2)
    queued = edge.store.outbox_size()
    peer.mode = "forge"  # signed by a key the edge does not trust
    sync = make_sync(broker.host, broker.port)
    assert pump(sync, lambda: _alarms(edge, SyncAlarm.ACK_REJECTED) > 0)
    _settle(sync, 0.3)
    assert edge.store.acknowledged()[0] == 0
    # Nothing pruned: the queue only grew by the alarm itself.
    assert edge.store.outbox_size() == queued + 1
    alarm = next(
        e
        for e in edge.store.events(category=Category.ALARM)
        if e.event.kind == SyncAlarm.ACK_REJECTED
    )
    assert "unknown_key" in str(alarm.event.detail["message"])


def test_an_ack_with_another_head_prunes_nothing_and_pauses(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(2)
    queued = edge.store.outbox_size()
    peer.mode = "wrong_head"
    sync = make_sync(broker.host, broker.port)
    assert pump(sync, lambda: _alarms(edge, SyncAlarm.COPY_DIFFERS) == 1)
    assert sync.session.paused
    sent = len(peer.copy.batches)
    edge.cycles(1)
    _settle(sync, 0.5)
    assert len(peer.copy.batches) == sent  # paused: nothing more goes up
    assert edge.store.acknowledged()[0] == 0
    assert edge.store.outbox_size() > queued  # nothing pruned (and the new cycle queued)


def test_a_lost_batch_is_answered_with_a_gap_and_resent(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(4)
    peer.drop_batches = 1  # the first batch is lost on the way: the next one leaves a hole
    sync = make_sync(broker.host, broker.port, batch_items=20, window=4, ack_timeout_s=30)
    assert pump(sync, lambda: edge.store.outbox_size() == 0)
    assert any(a.status.value == "gap" for a in peer.acks_sent)
    assert peer.copy.bodies == _stored_bodies(edge)
    assert len(peer.copy.readings) == 4 * 8


def test_a_gap_answer_to_a_resend_is_resent_at_once_not_after_the_ack_timeout(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    """The first batch is lost, and so is its resend after the gap answer: the gap answer to
    the batch behind the resend rewinds again at once (not after the 60 s ack timeout)."""
    edge.cycles(4)
    peer.lose_first = {1: 2}
    sync = make_sync(broker.host, broker.port, batch_items=20, window=2, ack_timeout_s=60)
    began = time.monotonic()
    assert pump(sync, lambda: edge.store.outbox_size() == 0, timeout=20)
    assert time.monotonic() - began < 20
    assert sum(a.status.value == "gap" for a in peer.acks_sent) >= 2
    assert peer.copy.bodies == _stored_bodies(edge)
    assert len(peer.copy.readings) == 4 * 8


def test_a_cloud_answering_gap_to_everything_gets_no_resend_storm(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    """Gap answers rewind at most `GAP_RESENDS` times in a row without progress; then only the
    ack timeout resends."""
    edge.cycles(4)
    peer.mode = "gap"
    sync = make_sync(broker.host, broker.port, batch_items=20, window=2, ack_timeout_s=60)
    assert pump(sync, lambda: sum(a.status.value == "gap" for a in peer.acks_sent) >= 2)
    _settle(sync, 1.5)
    sent = len(peer.copy.batches)
    assert 2 < sent <= 2 * (1 + GAP_RESENDS)
    _settle(sync, 1.0)
    assert len(peer.copy.batches) == sent  # quiet until the ack timeout
    assert edge.store.acknowledged()[0] == 0


def test_a_broker_restart_mid_sync_resumes_and_the_peer_ends_with_the_whole_chain(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(6)
    sync = make_sync(broker.host, broker.port, batch_items=15, window=1, ack_timeout_s=2)
    assert pump(sync, lambda: len(peer.copy.batches) >= 2)
    broker.restart()
    edge.cycles(2)  # billing goes on while the link is down
    assert pump(sync, lambda: edge.store.outbox_size() == 0, timeout=30)
    assert peer.copy.bodies == _stored_bodies(edge)
    assert peer.copy.seq == edge.store.chain.seq
    assert len(peer.copy.readings) == 8 * 8
    time.sleep(0)  # (the peer reconnected by itself: paho's loop)
