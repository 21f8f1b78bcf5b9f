"""Ingest follows a concentrator's node key rotation (`ledger.key_rotation`) on every backend:
the batch carrying it makes the new key the node's from that seq on, the old key still stands
for what it signed before and is refused after; a forged rotation is refused and changes
nothing. Then the whole path: a real edge store rotated by `voltbook-edge keys rotate`'s own
function, its batches built by the real uplink, through a real Mosquitto to the ingest workers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cloud.backups.books_check import check_books
from cloud.db import models
from cloud.ingest import concentrators
from cloud.ingest.worker import IngestWorker
from edge.cli_keys import rotate_node_key
from edge.store import Store
from edge.sync.uplink import BatchBuilder
from ledger import key_files
from ledger.chain import NodeKey
from ledger.key_rotation import KeyRotation
from ledger.transfers import Transfer
from ledger.wire import KEY_ROTATIONS, AckStatus, Status
from tests.cloud.fake_edge import FakeEdge, consume, edge_recharge
from tests.cloud.helpers import count, node_row, open_ack, stored_chain
from tests.cloud.ingest.test_worker import WAIT_S, Device, broker  # noqa: F401 (fixture)

NODE = "edge-0001"


def _rotate(edge: FakeEdge, signer: NodeKey | None = None) -> tuple[NodeKey, KeyRotation]:
    new = NodeKey.generate()
    rotation = KeyRotation.sign(
        signer or edge.key, edge.node, edge.chain.seq, edge.chain.head, new.public_key
    )
    return new, rotation


def _send(ingest, edge: FakeEdge, cloud_key, *args, **kwargs):
    return open_ack(ingest.handle_batch(edge.node, edge.payload(*args, **kwargs)), cloud_key)


def test_a_rotation_mid_chain_is_followed(ingest, edge_of, sessions, cloud_key) -> None:
    edge = edge_of(NODE)
    old = edge.key
    first = edge.book_consumption(3)
    assert _send(ingest, edge, cloud_key, 1, 1, first).status is AckStatus.OK
    new, rotation = _rotate(edge)
    later = edge.book_consumption(3)
    ack = _send(ingest, edge, cloud_key, 2, 2, later, key=new, rotations=[rotation])
    assert (ack.status, ack.seq) == (AckStatus.OK, 6)
    row = node_row(sessions, NODE)
    assert (row.public_key, row.key_id) == (new.public_key.public_bytes_raw().hex(), new.key_id)
    assert stored_chain(sessions, NODE) == first + later
    with sessions() as session:
        assert [bytes(r) for r in session.scalars(select(models.NodeKeyRotation.record))] == [
            rotation.payload
        ]
        books = check_books(session, cloud_key.public_key)
    assert books.ok, books.problems  # the stored chain verifies with both keys' checkpoints

    # the same batch again, and an old one the old key signed: acknowledged, nothing twice
    assert _send(ingest, edge, cloud_key, 2, 2, later, key=new, rotations=[rotation]).seq == 6
    assert _send(ingest, edge, cloud_key, 1, 1, first, key=old).status is AckStatus.OK
    assert count(sessions, models.NodeKeyRotation) == 1
    # and the new key goes on without the rotation once the cloud has it
    assert _send(ingest, edge, cloud_key, 3, 3, edge.book_consumption(1), key=new).seq == 7

    # the retired key signing after the rotation's seq: refused as a forgery
    ack = _send(ingest, edge, cloud_key, 4, 4, edge.book_consumption(1), key=old)
    assert ack.status is AckStatus.QUARANTINED
    assert "retired at seq 3" in node_row(sessions, NODE).quarantine_reason
    assert len(stored_chain(sessions, NODE)) == 7


def test_a_forged_rotation_is_refused_and_changes_nothing(
    ingest, edge_of, sessions, cloud_key
) -> None:
    edge = edge_of(NODE)
    registered = edge.key
    assert _send(ingest, edge, cloud_key, 1, 1, edge.book_consumption(2)).status is AckStatus.OK
    before = node_row(sessions, NODE)
    stranger = NodeKey.generate()
    new, forged = _rotate(edge, signer=stranger)
    ack = _send(ingest, edge, cloud_key, 2, 2, edge.book_consumption(2), key=new,
                rotations=[forged])  # fmt: skip
    assert ack.status is AckStatus.REFUSED and "not by the node's current key" in ack.reason
    after = node_row(sessions, NODE)
    assert (after.public_key, after.head_seq, after.status, after.upto) == (
        before.public_key, 2, models.NodeStatus.ACTIVE.value, before.upto
    )  # fmt: skip
    assert after.public_key == registered.public_key.public_bytes_raw().hex()
    assert count(sessions, models.NodeKeyRotation) == 0
    assert len(stored_chain(sessions, NODE)) == 2
    assert count(sessions, models.Alarm, models.Alarm.kind == "refused_batch") == 1


def test_a_rotation_ahead_of_its_entry_is_held_to_it_when_it_arrives(
    ingest, edge_of, sessions, cloud_key
) -> None:
    """A box rotated with entries not yet sent: its first batch, cut before the rotation's seq,
    is signed by the new key; the rotation's head is checked when its entry arrives."""
    edge = edge_of(NODE)
    entries = edge.book_consumption(4)
    new, rotation = _rotate(edge)  # at seq 4
    ack = _send(ingest, edge, cloud_key, 1, 2, entries[:2], key=new, rotations=[rotation])
    assert (ack.status, ack.seq) == (AckStatus.OK, 2)
    ack = _send(ingest, edge, cloud_key, 3, 4, entries[2:], key=new, rotations=[rotation])
    assert (ack.status, ack.seq) == (AckStatus.OK, 4)

    other = edge_of("edge-0002")  # the same, but the rotation names a head the chain lacks
    entries = other.book_consumption(4)
    new, wrong = _rotate(other)
    wrong = KeyRotation.sign(other.key, other.node, 4, entries[1].hash, new.public_key)
    assert _send(ingest, other, cloud_key, 1, 2, entries[:2], key=new, rotations=[wrong]).seq == 2
    ack = _send(ingest, other, cloud_key, 3, 4, entries[2:], key=new, rotations=[wrong])
    assert ack.status is AckStatus.REFUSED and "head" in ack.reason
    assert node_row(sessions, "edge-0002").head_seq == 2


def test_a_status_signed_by_the_new_key_carries_its_rotation(
    ingest, edge_of, sessions, cloud_key
) -> None:
    """Before any batch has carried the rotation, the box's status (signed with the new key)
    brings it along; without it, or with a forged one, the status is refused."""
    edge = edge_of(NODE)
    assert _send(ingest, edge, cloud_key, 1, 1, edge.book_consumption(2)).status is AckStatus.OK
    new, rotation = _rotate(edge)
    forged = KeyRotation.sign(
        NodeKey.generate(), NODE, edge.chain.seq, edge.chain.head, new.public_key
    )

    def status(*carried: KeyRotation) -> bytes:
        extra = {KEY_ROTATIONS: [r.fields() for r in carried]} if carried else {}
        return Status(NODE, True, edge.chain.seq, 2, 0, extra).signed(new)

    def refused() -> int:
        return count(sessions, models.Alarm, models.Alarm.kind == "refused_status")

    ingest.handle_status(NODE, status())
    ingest.handle_status(NODE, status(forged))
    assert refused() == 2 and not node_row(sessions, NODE).online
    ingest.handle_status(NODE, status(rotation))
    assert refused() == 2 and node_row(sessions, NODE).online
    assert node_row(sessions, NODE).key_id == edge.key.key_id  # a status stores no rotation


class _Box:
    """A real edge store and uplink, speaking to the cloud through the broker."""

    def __init__(self, store: Store, device: Device, cloud_key: NodeKey) -> None:
        self.store, self.device, self.cloud_key = store, device, cloud_key
        self.sent = 0  # the outbox id acknowledged

    def book(self, *transfers: Transfer) -> None:
        with self.store.transaction() as tx:
            tx.append_transfers(transfers)

    def sync(self, signer: NodeKey) -> tuple[AckStatus, int]:
        built = BatchBuilder(self.store, signer).build(self.sent)
        assert built is not None
        self.device.publish("up", built.payload)
        ack = open_ack(self.device.next("ack"), self.cloud_key)
        if ack.status is AckStatus.OK:
            with self.store.transaction() as tx:
                tx.acknowledge(ack.seq, ack.head)
                tx.prune_outbox(ack.upto)
            self.sent = ack.upto
        return ack.status, ack.seq


@pytest.mark.mosquitto
def test_a_real_edge_rotates_and_the_workers_follow(  # noqa: PLR0917 (fixtures)
    broker,  # noqa: F811 (the module's Mosquitto)
    engine: Engine,
    sessions,
    cloud_key,
    clock,
    tmp_path: Path,
) -> None:
    old = NodeKey.generate()
    with sessions.begin() as session:
        concentrators.register(session, NODE, old.public_key, now=clock())
    worker = IngestWorker(broker.host, broker.port, engine=engine, key=cloud_key,
                          client_id="rotation-1", group="rotation", now=clock)  # fmt: skip
    worker.start()
    device = Device(broker, FakeEdge(NODE, old))
    store = Store.open(tmp_path / "store.db", node=NODE, public_key=old.public_key)
    box = _Box(store, device, cloud_key)
    try:
        assert worker.wait_connected(WAIT_S)
        box.book(edge_recharge("A0001", 10_000, "P1"), *(consume(NODE, n) for n in range(3)))
        assert box.sync(old) == (AckStatus.OK, 4)

        staged = tmp_path / "node.key.next"
        rotation = rotate_node_key(store, old, staged, None)  # `voltbook-edge keys rotate`
        new = key_files.load_node_key(staged, None, encrypt_hint="")
        box.book(*(consume(NODE, n) for n in range(3, 6)))
        assert box.sync(new) == (AckStatus.OK, 7)
        row = node_row(sessions, NODE)
        assert (row.key_id, rotation.seq) == (new.key_id, 4)
        with sessions() as session:
            books = check_books(session, cloud_key.public_key)
        assert books.ok, books.problems
        assert [e.hash for e in stored_chain(sessions, NODE)] == [e.hash for e in store.entries()]

        box.book(consume(NODE, 6))  # a box still signing with the retired key
        assert box.sync(old) == (AckStatus.QUARANTINED, 7)
        assert "retired at seq 4" in node_row(sessions, NODE).quarantine_reason
    finally:
        store.close()
        device.close()
        worker.stop()
