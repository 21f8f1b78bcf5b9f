"""The ingest worker: an MQTT client that feeds `Ingest` and publishes what it answers.

Each worker takes the uplinks of its nodes (`cloud.ingest.routing`: a partition of the nodes by
a stable hash, or a `$share` group whose broker routes by node), so every batch of a node is
handled by one worker, in the order the node sent them:

    vb/+/up      → Ingest.handle_batch   → publish the ack on vb/{node}/ack
    vb/+/status  → Ingest.handle_status  → publish commands on vb/{node}/cmd

paho's network thread only sorts: a message of another worker's node is dropped, one of ours
goes into a bounded queue that one handler thread works through in order. The network thread
never waits for the database, so it keeps answering the broker's keepalive however slow a batch
is. A full queue (the database is slower than the fleet) sheds the message, counted in `shed`
and logged: it was not acknowledged, and its edge sends it again after its ack timeout.

The ack is published only after the batch's database transaction committed. If the database
fails (it restarts, the disk is full) the worker logs it and publishes nothing: the edge, seeing
no ack, sends the batch again, and storing is idempotent. No error ends the handler thread.

A dispatcher thread wakes every 0.5 s and publishes the pending commands of online nodes;
a command becomes `delivered` when the broker acknowledges its publish (PUBACK, `on_publish`).
The session is clean (MQTT clean session) and paho reconnects by itself: nothing depends on
the broker remembering anything. Retained messages (a status a node left on the broker, maybe
long ago) are not taken for news: a shared subscription never receives them (MQTT 5),
and a plain one gets them at every connect.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cloud.ingest.handler import RETRY_PATIENCE_S, Ingest
from cloud.ingest.routing import EVERY_NODE, Route
from cloud.services.pki import TlsFiles
from ledger.chain import NodeKey
from ledger.wire import TOPIC_ROOT, topic

log = logging.getLogger(__name__)

DISPATCH_INTERVAL_S = 0.5
EXPIRE_INTERVAL_S = 60.0
REPUBLISH_AFTER_S = 30.0  # a command published but not PUBACKed by then is published again
KEEPALIVE_S = 30
QOS = 1
QUEUE_SIZE = 256  # messages waiting for the handler thread (a batch is at most 32 KB)
TlsTriple = tuple[str, str, str] | TlsFiles


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


Message = tuple[str, str, bytes]  # node, leaf (up, status), payload


def _node_and_leaf(name: str) -> tuple[str, str] | None:
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != TOPIC_ROOT or not parts[1]:
        return None
    return parts[1], parts[2]


class IngestWorker:
    """One MQTT client taking its route's nodes, with its handler thread and command
    dispatcher."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        engine: Engine,
        key: NodeKey,
        client_id: str,
        tls: TlsTriple | None = None,
        route: Route = EVERY_NODE,
        now: Callable[[], dt.datetime] = _utc_now,
        patience: float = RETRY_PATIENCE_S,
        keepalive: int = KEEPALIVE_S,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.host, self.port, self.route, self.client_id = host, port, route, client_id
        self.keepalive, self.queue_size = keepalive, queue_size
        self.ingest = Ingest(engine, key, now, patience=patience)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if tls is not None:
            ca, cert, private = (tls.ca, tls.cert, tls.key) if isinstance(tls, TlsFiles) else tls
            self.client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(private))
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._dispatcher: threading.Thread | None = None
        self._handler: threading.Thread | None = None
        self._inbox: queue.Queue[Message | None] = queue.Queue(queue_size)  # None: wake up
        self._lock = threading.Lock()  # guards the two maps below
        self._in_flight: dict[int, str] = {}  # publish mid -> command id
        self._published: dict[str, float] = {}  # command id -> when we last published it
        self._pubacks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.batches = 0  # handled and acknowledged (for tests and metrics)
        self.failures = 0  # not acknowledged because the database failed
        self.shed = 0  # dropped unhandled: the queue was full

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscriptions(self) -> tuple[str, str]:
        return f"{self.route.topic_filter}/up", f"{self.route.topic_filter}/status"

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Connect (in the background; paho retries until the broker answers), handle what
        arrives and dispatch commands."""
        self._stop.clear()
        self._inbox = queue.Queue(self.queue_size)
        self._handler = threading.Thread(
            target=self._handle_loop, name=f"ingest-{self.client_id}", daemon=True
        )
        self._handler.start()
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name=f"dispatch-{self.client_id}", daemon=True
        )
        self._dispatcher.start()
        log.info("ingest worker %s (%s): connecting to %s:%d", self.client_id, self.route,
                 self.host, self.port)  # fmt: skip

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Finish the message in hand (its ack still goes out), leave the queued ones (their
        edges send them again), stop dispatching, disconnect."""
        self._stop.set()
        with contextlib.suppress(queue.Full):  # full: the handler is not waiting for one
            self._inbox.put_nowait(None)
        if self._handler is not None:
            self._handler.join(self.ingest.patience + 5)  # a batch retries that long at most
            self._handler = None
        if left := self._inbox.qsize():
            log.info("ingest worker %s: %d queued messages left to their edges' resend",
                     self.client_id, left)  # fmt: skip
        if self._dispatcher is not None:
            self._dispatcher.join(5)
            self._dispatcher = None
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()
        log.info("ingest worker %s stopped", self.client_id)

    # -- paho callbacks (network thread) --------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.error("ingest worker %s: connection refused: %s", self.client_id, reason)
            return
        with self._lock:  # a clean session forgets in-flight publishes: resend them
            self._in_flight.clear()
            self._published.clear()
        client.subscribe([(name, QOS) for name in self.subscriptions])
        self._connected.set()
        log.info("ingest worker %s: connected, subscribed %s", self.client_id, self.subscriptions)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("ingest worker %s: disconnected (%s); reconnecting", self.client_id,
                        reason)  # fmt: skip

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        self._pubacks.put(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        where = _node_and_leaf(message.topic)
        if where is None:
            log.warning("ingest worker %s: message on %r ignored", self.client_id, message.topic)
            return
        node, leaf = where
        if message.retain or not self.route.owns(node):
            return  # old news (see the module's docstring), or another worker's node
        try:
            self._inbox.put_nowait((node, leaf, bytes(message.payload)))
        except queue.Full:
            self.shed += 1
            log.warning("ingest worker %s: queue full (%d); node %s's %s dropped, the edge "
                        "resends", self.client_id, self.queue_size, node, leaf)  # fmt: skip

    # -- the handler thread ---------------------------------------------------------------------
    def _handle_loop(self) -> None:
        inbox = self._inbox
        while not self._stop.is_set():
            message = inbox.get()
            if message is not None and not self._stop.is_set():
                self._handle(*message)

    def _handle(self, node: str, leaf: str, payload: bytes) -> None:
        try:
            if leaf == "up":
                ack = self.ingest.handle_batch(node, payload)
                self.client.publish(topic(node, "ack"), ack, qos=QOS)
                self.batches += 1
            elif leaf == "status":
                for command in self.ingest.handle_status(node, payload):
                    self._publish_command(node, command)
        except SQLAlchemyError:
            self.failures += 1
            log.exception("node %s: %s not stored (database error); no ack, the edge resends",
                          node, leaf)  # fmt: skip
        except Exception:
            # One bad message must not end the handler thread (and with it all ingest); the
            # traceback is logged, the edge gets no ack and resends.
            self.failures += 1
            log.exception("node %s: %s handling failed", node, leaf)

    # -- commands -------------------------------------------------------------------------------
    def _publish_command(self, node: str, payload: bytes, command_id: str | None = None) -> None:
        if command_id is None:
            command_id = str(json.loads(payload)["id"])
        info = self.client.publish(topic(node, "cmd"), payload, qos=QOS)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("node %s: command %s not published (%s)", node, command_id,
                        mqtt.error_string(info.rc))  # fmt: skip
            return
        # Not holding the lock during publish(): paho calls on_publish under its own lock.
        with self._lock:
            self._in_flight[info.mid] = command_id
            self._published[command_id] = time.monotonic()
        log.info("node %s: command %s published", node, command_id)

    def _dispatch_loop(self) -> None:
        next_expiry = 0.0
        while not self._stop.wait(DISPATCH_INTERVAL_S):
            try:
                self._record_pubacks()
                if not self.connected:
                    continue
                if time.monotonic() >= next_expiry:
                    self.ingest.expire_commands()
                    self.ingest.issue_due()  # what a crash after an ingest's commit left due
                    self.ingest.advance_updates()  # the next wave of a fleet update, when due
                    next_expiry = time.monotonic() + EXPIRE_INTERVAL_S
                self._publish_pending()
            except SQLAlchemyError:
                log.exception("command dispatcher: database error; retrying")

    def _publish_pending(self) -> None:
        now = time.monotonic()
        for node, command_id, payload in self.ingest.deliverable():
            with self._lock:
                last = self._published.get(command_id)
            if last is None or now - last > REPUBLISH_AFTER_S:
                self._publish_command(node, payload, command_id)

    def _record_pubacks(self) -> None:
        delivered = []
        with self._lock:
            while True:
                try:
                    mid = self._pubacks.get_nowait()
                except queue.Empty:
                    break
                command_id = self._in_flight.pop(mid, None)  # None: an ack, not a command
                if command_id is not None:
                    delivered.append(command_id)
        if delivered:
            self.ingest.mark_delivered(delivered)
            log.info("commands delivered to the broker: %s", ", ".join(delivered))
