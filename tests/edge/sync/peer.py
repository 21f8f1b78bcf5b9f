"""A test peer that speaks the sync contract as the cloud does — not a mock of the edge code.

A real paho client on a real broker: it subscribes to `vb/+/up` and `vb/+/status`, decodes
every batch with `ledger.wire.decode_batch`, recomputes every entry hash from the batch's
`prev`, checks the checkpoint signature with the edge's public key, keeps its own copy of the
chain, the readings, events and results (idempotently: a resent batch changes nothing), and
answers with an `Ack` signed by the test cloud key. Commands go down signed the same way.

Knobs make it misbehave the ways a test needs: `mode` (answer ok, stay silent, forge the
signature, claim another head, refuse, answer gap to everything), `drop_batches` (lose the
next N batches unseen) and `lose_first` (lose the batches starting at outbox id X, N times).
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion

from ledger.chain import Checkpoint, NodeKey, entry_hash
from ledger.encoding import GENESIS_HASH
from ledger.signed import ACK_TAG, Command, CommandKind, sign, trusted
from ledger.wire import Ack, AckStatus, Batch, Status, WireError, decode_batch, topic

_ids = itertools.count(1)


@dataclass
class PeerCopy:
    """What the peer holds of one node."""

    seq: int = 0
    head: bytes = GENESIS_HASH
    heads: dict[int, bytes] = field(default_factory=dict)
    bodies: dict[int, bytes] = field(default_factory=dict)
    upto: int = 0  # highest outbox id stored (contiguously)
    readings: dict[tuple[str, int], tuple[Any, ...]] = field(default_factory=dict)
    events: dict[int, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: list[Batch] = field(default_factory=list)
    payload_bytes: int = 0


class CloudPeer:
    def __init__(
        self,
        host: str,
        port: int,
        node: str,
        edge_key: Ed25519PublicKey,
        cloud_key: NodeKey,
        *,
        tls: Any = None,
    ) -> None:
        self.node = node
        self.edge_key = edge_key
        self.cloud_key = cloud_key
        self.copy = PeerCopy()
        self.mode = "ok"  # ok | silent | forge | wrong_head | refuse | gap
        self.drop_batches = 0
        self.lose_first: dict[int, int] = {}  # outbox id a batch starts at: times to lose it
        self.statuses: list[Status] = []
        self.acks_sent: list[Ack] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cloud-peer-{next(_ids)}")
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.cert), keyfile=str(tls.key))
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._connected = threading.Event()
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(5):
            raise RuntimeError("the test peer could not connect to the broker")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # -- receiving --------------------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        client.subscribe([(topic(self.node, "up"), 1), (topic(self.node, "status"), 1)])
        time.sleep(0.1)  # let the SUBACK land before anyone publishes
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/status"):
            with self.lock:
                self.statuses.append(Status.open(message.payload, trusted(self.edge_key)))
            return
        with self.lock:
            if self.drop_batches:
                self.drop_batches -= 1
                return
            try:
                batch = decode_batch(message.payload)
            except WireError as exc:
                self._ack(AckStatus.REFUSED, str(exc))
                return
            if self.lose_first.get(batch.first):
                self.lose_first[batch.first] -= 1
                return
            self.copy.payload_bytes += len(message.payload)
            self.copy.batches.append(batch)
            status, reason = self._store(batch)
            self._ack(status, reason)

    def _store(self, batch: Batch) -> tuple[AckStatus, str]:
        copy = self.copy
        if batch.node != self.node:
            return AckStatus.REFUSED, "another node's batch"
        if batch.first > copy.upto + 1 or self.mode == "gap":
            return AckStatus.GAP, f"batch starts at {batch.first}, we hold up to {copy.upto}"
        part = batch.ledger
        if part is not None:
            if part.from_seq > copy.seq + 1:
                return AckStatus.GAP, f"ledger starts at {part.from_seq}, we hold {copy.seq}"
            expected_prev = GENESIS_HASH if part.from_seq == 1 else copy.heads[part.from_seq - 1]
            if part.prev != expected_prev:
                return AckStatus.QUARANTINED, f"prev of {part.from_seq} differs (fork)"
            head = part.prev
            hashes = []
            for offset, body in enumerate(part.bodies):
                seq = part.from_seq + offset
                head = entry_hash(self.node, seq, head, body)
                if seq in copy.heads and copy.heads[seq] != head:
                    return AckStatus.QUARANTINED, f"entry {seq} differs (fork)"
                hashes.append((seq, head, body))
            checkpoint = Checkpoint(self.node, part.last_seq, head, part.key_id, part.signature)
            if not checkpoint.verify(self.edge_key):
                return AckStatus.REFUSED, "checkpoint signature does not verify"
            for seq, digest, body in hashes:
                if seq > copy.seq:
                    copy.heads[seq], copy.bodies[seq] = digest, body
                    copy.seq, copy.head = seq, digest
        for row in batch.readings:
            copy.readings[(row[0], row[1])] = row
        for event in batch.events:
            copy.events[int(event["id"])] = dict(event)
        for result in batch.results:
            copy.results[str(result["command_id"])] = dict(result)
        copy.upto = max(copy.upto, batch.upto)
        return AckStatus.OK, ""

    def _ack(self, status: AckStatus, reason: str) -> None:
        if self.mode == "silent":
            return
        copy = self.copy
        head = copy.head
        if self.mode == "wrong_head" and copy.seq:
            head = bytes(32 - 1) + b"\x01"
        if self.mode == "refuse":
            status, reason = AckStatus.REFUSED, "the test peer refuses"
        ack = Ack(self.node, copy.seq, head, copy.upto, status, _now(), reason)
        key = NodeKey.generate() if self.mode == "forge" else self.cloud_key
        self.acks_sent.append(ack)
        self.client.publish(topic(self.node, "ack"), sign(ACK_TAG, ack.fields(), key), qos=1)

    # -- sending commands -------------------------------------------------------------------
    def command(
        self,
        kind: CommandKind,
        args: dict[str, Any],
        *,
        seq: int = 1,
        target: str | None = None,
        expires_in: dt.timedelta = dt.timedelta(days=3),
        issued: dt.datetime | None = None,
        command_id: str | None = None,
    ) -> Command:
        issued = issued or dt.datetime.now(dt.UTC)
        return Command(
            id=command_id or f"{next(_ids):032x}",
            seq=seq,
            target=target or self.node,
            kind=kind,
            issued=issued,
            expires=issued + expires_in,
            args=args,
        )

    def send(self, payload: bytes) -> None:
        info = self.client.publish(topic(self.node, "cmd"), payload, qos=1)
        info.wait_for_publish(5)

    # -- looking ----------------------------------------------------------------------------
    def holds(self, predicate: Callable[[PeerCopy], bool]) -> bool:
        with self.lock:
            return predicate(self.copy)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
