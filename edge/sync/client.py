"""The MQTT link to the cloud (paho-mqtt 2.x): TLS with the concentrator's own certificate, a
last will, reconnects with backoff, and a queue between paho's thread and the runtime's.

paho runs its network loop in its own thread (`loop_start`). Its callbacks only put events on a
thread-safe queue — `Connected`, `Disconnected`, `Delivery` — and re-subscribe after a connect;
the runtime thread (the store's only user) drains the queue with `events()` (woken by an event
set on every arrival, `wake_on_events`), handles each event
and only then calls `ack(delivery)`, so a PUBACK leaves only once what the message did is
durable (`manual_ack=True`). A delivery from an earlier connection is never acknowledged on a
later one (its packet id would name another message there).

Clean sessions: nothing here relies on the broker remembering anything. A command lost with a
session is resent by the cloud after the `commands` seq in our retained status; an uplink
batch lost with a connection is resent after the session's acknowledgement timeout.

    Status(node, online=False)  ──► last will, retained, on vb/{node}/status
    Status(node, online=True, head, acked, commands, accounts)  ──► published by the caller
                                                                    on every Connected
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge.site.model import CloudSettings, TlsFiles
from edge.site.site_file import ENCRYPT_HINT
from ledger import key_files
from ledger.wire import topic

log = logging.getLogger("edge.sync")

QOS = 1
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
STOP_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class Connected:
    generation: int  # counts the connections of this link


@dataclass(frozen=True, slots=True)
class Disconnected:
    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class Delivery:
    generation: int
    topic: str
    payload: bytes
    mid: int
    qos: int

    @property
    def leaf(self) -> str:
        """The last topic level: `ack` or `cmd`."""
        return self.topic.rsplit("/", 1)[-1]


LinkEvent = Connected | Disconnected | Delivery


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    """The box's TLS client side: the broker's certificate checked against the CA (and its
    name), our certificate and key presented, the key opened with the key passphrase if it is
    encrypted (`ledger.key_files`; `edge.site.site_file` has checked it opens)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, host names checked
    context.load_verify_locations(cafile=str(files.ca))
    secret = key_files.passphrase()
    encrypted = key_files.is_encrypted(files.key.read_bytes())
    if encrypted and secret is None:  # never let OpenSSL ask on a terminal nobody watches
        raise key_files.KeyFileError(
            f"{files.key} is encrypted and no key passphrase is configured: set {key_files.WHERE}"
        )
    if not encrypted:
        log.warning("%s is stored unencrypted: configure a key passphrase and run `%s`",
                    files.key, ENCRYPT_HINT)  # fmt: skip
    context.load_cert_chain(str(files.cert), str(files.key), secret if encrypted else None)
    return context


class MqttLink:
    """One concentrator's MQTT connection. `start()`, then `events()` / `publish()` / `ack()`
    from the runtime thread; `stop()` says goodbye (retained offline status) and disconnects."""

    def __init__(self, settings: CloudSettings, node: str, will: bytes) -> None:
        self.settings = settings
        self.node = node
        self._events: queue.SimpleQueue[LinkEvent] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._wakers: list[threading.Event] = []  # set whenever `events()` has something
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=node,
            clean_session=True,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        client.will_set(topic(node, "status"), will, qos=QOS, retain=True)
        if settings.tls is not None:
            client.tls_set_context(tls_context(settings.tls))
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    # -- paho's thread: enqueue only ------------------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        if reason.is_failure:
            log.warning("sync: the broker refused the connection: %s", reason)
            return
        client.subscribe([(topic(self.node, "ack"), QOS), (topic(self.node, "cmd"), QOS)])
        with self._lock:
            self._generation += 1
            self._connected = True
            generation = self._generation
        self._put(Connected(generation))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        with self._lock:
            was, self._connected = self._connected, False
            generation = self._generation
        if was:
            self._put(Disconnected(generation, str(reason)))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            generation = self._generation
        self._put(
            Delivery(generation, message.topic, bytes(message.payload), message.mid, message.qos)
        )

    def _put(self, event: LinkEvent) -> None:
        self._events.put(event)
        for waker in self._wakers:
            waker.set()

    # -- the runtime thread ---------------------------------------------------------------------
    def wake_on_events(self, waker: threading.Event) -> None:
        """Set `waker` whenever an event arrives (the runtime thread naps on it, so an ack is
        handled, and the batch it makes room for sent, at once rather than at the next tick)."""
        self._wakers.append(waker)

    def start(self) -> None:
        """Connect in the background; paho retries (with backoff) until the broker answers."""
        self._client.connect_async(
            self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s
        )
        self._client.loop_start()
        log.info(
            "sync: connecting to %s:%d (%s)",
            self.settings.host,
            self.settings.port,
            "TLS" if self.settings.tls else "plain TCP",
        )

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def events(self) -> list[LinkEvent]:
        """Everything that happened since the last call, in order."""
        out: list[LinkEvent] = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def publish(self, leaf: str, payload: bytes, *, retain: bool = False) -> bool:
        """Hand a message to paho (QoS 1); False when offline (the caller sends it again)."""
        if not self.connected:
            return False
        info = self._client.publish(topic(self.node, leaf), payload, qos=QOS, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack(self, delivery: Delivery) -> None:
        """PUBACK `delivery`: call only once what it did is committed."""
        with self._lock:
            current = self._connected and delivery.generation == self._generation
        if delivery.qos > 0 and current:
            self._client.ack(delivery.mid, delivery.qos)

    def stop(self, farewell: bytes | None = None) -> None:
        """Publish `farewell` (retained status) if connected, disconnect, stop paho's thread.
        A clean disconnect suppresses the last will, hence the explicit farewell."""
        if farewell is not None and self.connected:
            info = self._client.publish(topic(self.node, "status"), farewell, qos=QOS, retain=True)
            try:
                info.wait_for_publish(STOP_WAIT_S)
            except (RuntimeError, ValueError) as exc:
                log.warning("sync: the offline status did not go out: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
