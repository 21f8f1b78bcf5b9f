"""Real services for end-to-end tests: a PKI, Mosquitto with and without TLS, PostgreSQL.

Session-scoped, because each test wants a broker or a database but none needs a fresh one:
starting Mosquitto takes milliseconds, PostgreSQL about half a second (initdb included).
A missing program is a skip, or a failure under `REQUIRE_REAL_SERVICES=1`
(`tests.conftest.service_missing`). Tests using the `postgres` fixture are marked `postgres`,
those using a Mosquitto fixture `mosquitto`, so `-m "not postgres"` selects without them.

`mqtt_client` makes paho clients that connect, subscribe and publish synchronously (each call
waits for its CONNACK, SUBACK or PUBACK) and collect what they receive in a queue.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud.services.broker import CLOUD_ACL, MosquittoBroker, find_mosquitto
from cloud.services.errors import ServiceError
from cloud.services.pki import CaFiles, TlsFiles, create_ca, issue_client_cert, issue_server_cert
from cloud.services.postgres import ThrowawayPostgres, find_postgres
from tests.conftest import service_missing

DEVICES = ("edge-0001", "edge-0002", "cloud")
WAIT_S = 5.0

_MARKS_BY_FIXTURE = {
    "postgres": "postgres",
    "mosquitto_tls": "mosquitto",
    "mosquitto_plain": "mosquitto",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, mark in _MARKS_BY_FIXTURE.items():
            if fixture in fixtures and item.get_closest_marker(mark) is None:
                item.add_marker(getattr(pytest.mark, mark))


@dataclass(frozen=True, slots=True)
class Pki:
    """The test PKI: a CA, the broker's certificate and one client certificate per device."""

    ca: CaFiles
    server: TlsFiles
    clients: dict[str, TlsFiles] = field(default_factory=dict)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = create_ca(directory)
    return Pki(
        ca=ca,
        server=issue_server_cert(ca, directory),
        clients={device: issue_client_cert(ca, directory, device) for device in DEVICES},
    )


def _started_mosquitto(broker: MosquittoBroker) -> MosquittoBroker:
    if find_mosquitto() is None:
        service_missing("mosquitto", "not on PATH, /usr/sbin or /usr/local/sbin")
    try:
        return broker.start()
    except ServiceError as exc:
        service_missing("mosquitto", str(exc))
        raise  # not reached: service_missing skips or fails


@pytest.fixture(scope="session")
def mosquitto_tls(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """Mosquitto with client certificates required and the production ACLs."""
    broker = MosquittoBroker(
        tmp_path_factory.mktemp("mosquitto-tls"), tls=pki.server, acl_users=CLOUD_ACL
    )
    with _started_mosquitto(broker):
        yield broker


@pytest.fixture(scope="session")
def mosquitto_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """Mosquitto on plain TCP, anonymous clients allowed (for the chaos proxy)."""
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto-plain"))
    with _started_mosquitto(broker):
        yield broker


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayPostgres]:
    """A throwaway PostgreSQL with an empty `voltbook` database."""
    if find_postgres() is None:
        service_missing("postgres", "initdb/pg_ctl not on PATH or in /usr/lib/postgresql/*/bin")
    server = ThrowawayPostgres(tmp_path_factory.mktemp("postgres"))
    try:
        server.start()
    except ServiceError as exc:
        service_missing("postgres", str(exc))
    with server:
        yield server


class MqttProbe:
    """A paho client whose operations wait for the broker's answer."""

    def __init__(
        self, client_id: str, tls: TlsFiles | None = None, *, ca_only: Path | None = None
    ) -> None:
        self.client_id = client_id
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        # paho sleeps in steps of up to min_delay while waiting to reconnect, and close() waits
        # for that sleep; sub-second delays (paho accepts floats) keep teardown and reconnects
        # after a broker restart fast.
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=1)  # type: ignore[arg-type]
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.cert), keyfile=str(tls.key))
        elif ca_only is not None:
            self.client.tls_set(ca_certs=str(ca_only))
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self._answered = threading.Event()
        self._subacks: dict[int, list[int]] = {}
        self._suback_event = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = lambda client, userdata: self._on_disconnect(
            client, userdata, None, None, None
        )
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda client, userdata, msg: self.messages.put(
            (msg.topic, bytes(msg.payload))
        )

    def try_connect(self, host: str, port: int, timeout: float = WAIT_S) -> bool:
        """True when the broker accepted the connection (CONNACK success) within `timeout`."""
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError:  # includes ssl.SSLError: the handshake itself was refused
            return False
        self.client.loop_start()
        # Either CONNACK, or the broker hanging up (a TLS alert, a refused CONNECT).
        self._answered.wait(timeout)
        return self.connected.is_set()

    def connect(self, host: str, port: int) -> MqttProbe:
        assert self.try_connect(host, port), f"{self.client_id!r} could not connect"
        return self

    def subscribe(self, topic: str, qos: int = 1) -> list[int]:
        """Subscribe and return the SUBACK reason codes (granted QoS, or >= 0x80 refused)."""
        result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None, f"subscribe failed: {result}"
        with self._suback_event:
            assert self._suback_event.wait_for(lambda: mid in self._subacks, WAIT_S), "no SUBACK"
            return self._subacks.pop(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos)
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), f"publish to {topic} not acknowledged"

    def expect(self, timeout: float = WAIT_S) -> tuple[str, bytes]:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout} s") from None

    def expect_nothing(self, within: float = 0.3) -> None:
        try:
            message = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {message}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            self.disconnected.set()
        else:
            self.connected.set()
        self._answered.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        self.connected.clear()
        self.disconnected.set()
        self._answered.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        codes: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        with self._suback_event:
            self._subacks[mid] = [code.value for code in codes]
            self._suback_event.notify_all()


MqttClientFactory = Callable[..., MqttProbe]
_client_numbers = itertools.count(1)


@pytest.fixture
def mqtt_client() -> Iterator[MqttClientFactory]:
    """`mqtt_client(name, tls=None)` → an unconnected MqttProbe, closed after the test.

    Client ids get a serial suffix so two tests' clients never take over each other's session;
    with TLS the MQTT username is still the certificate CN.
    """
    probes: list[MqttProbe] = []

    def make(name: str, tls: TlsFiles | None = None, *, ca_only: Path | None = None) -> MqttProbe:
        probe = MqttProbe(f"{name}-{next(_client_numbers)}", tls, ca_only=ca_only)
        probes.append(probe)
        return probe

    yield make
    for probe in probes:
        probe.close()
