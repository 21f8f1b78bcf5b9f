"""The service infrastructure itself: PKI, Mosquitto with TLS and ACLs, the embedded broker,
the throwaway PostgreSQL and the chaos proxy, each against the real program."""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud.services import postgres as postgres_module
from cloud.services.broker import CLOUD_ACL, MosquittoBroker, find_mosquitto
from cloud.services.errors import ServiceNotFound
from cloud.services.pki import TlsFiles, create_ca, issue_client_cert, load_certificate
from cloud.services.postgres import ThrowawayPostgres
from tests.conftest import service_missing
from tests.e2e.conftest import MqttClientFactory, MqttProbe, Pki
from tests.e2e.mqtt_proxy import (
    ChaosRates,
    MalformedPacket,
    MqttChaosProxy,
    PacketSplitter,
    as_retransmission,
)

mosquitto = pytest.mark.mosquitto


# --- PKI ---------------------------------------------------------------------------------------


def test_pki_certificates_chain_to_the_ca_and_name_the_device(pki: Pki) -> None:
    ca = load_certificate(pki.ca.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for device, files in pki.clients.items():
        cert = load_certificate(files.cert)
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == device
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    server = load_certificate(pki.server.cert)
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert stat.S_IMODE(pki.ca.key.stat().st_mode) == 0o600


def test_pki_refuses_device_names_that_would_escape_the_acl_patterns(
    pki: Pki, tmp_path: Path
) -> None:
    for bad in ("", "edge/0001", "edge+", "#"):
        with pytest.raises(ValueError, match="device name"):
            issue_client_cert(pki.ca, tmp_path, bad)


# --- Mosquitto with TLS and ACLs ------------------------------------------------------------------


@mosquitto
def test_device_publish_reaches_cloud_through_shared_subscription(
    pki: Pki, mosquitto_tls: MosquittoBroker, mqtt_client: MqttClientFactory
) -> None:
    cloud = mqtt_client("cloud", pki.clients["cloud"]).connect(
        mosquitto_tls.host, mosquitto_tls.cloud_port
    )
    assert cloud.subscribe("$share/ingest/vb/+/up") == [1]
    edge = mqtt_client("edge-0001", pki.clients["edge-0001"]).connect(
        mosquitto_tls.host, mosquitto_tls.port
    )
    edge.publish("vb/edge-0001/up", b"entry 1")
    assert cloud.expect() == ("vb/edge-0001/up", b"entry 1")


@mosquitto
def test_device_cannot_publish_as_another_device(
    pki: Pki, mosquitto_tls: MosquittoBroker, mqtt_client: MqttClientFactory
) -> None:
    cloud = mqtt_client("cloud", pki.clients["cloud"]).connect(
        mosquitto_tls.host, mosquitto_tls.cloud_port
    )
    cloud.subscribe("$share/ingest/vb/+/up")
    edge = mqtt_client("edge-0001", pki.clients["edge-0001"]).connect(
        mosquitto_tls.host, mosquitto_tls.port
    )
    # Mosquitto acknowledges an unauthorised PUBLISH and drops it; the authorised one sent
    # after it proves the cloud was listening, so the forged one really was dropped.
    edge.publish("vb/edge-0002/up", b"forged")
    edge.publish("vb/edge-0001/up", b"genuine")
    assert cloud.expect() == ("vb/edge-0001/up", b"genuine")
    cloud.expect_nothing()


@mosquitto
def test_device_cannot_read_another_devices_commands(
    pki: Pki, mosquitto_tls: MosquittoBroker, mqtt_client: MqttClientFactory
) -> None:
    host, port = mosquitto_tls.host, mosquitto_tls.port
    edge1 = mqtt_client("edge-0001", pki.clients["edge-0001"]).connect(host, port)
    edge2 = mqtt_client("edge-0002", pki.clients["edge-0002"]).connect(host, port)
    cloud = mqtt_client("cloud", pki.clients["cloud"]).connect(host, mosquitto_tls.cloud_port)
    # Mosquitto 2.0's acl_file grants the SUBSCRIBE and checks each delivery instead; a broker
    # may also refuse it (0x80). Either way nothing for edge-0002 may reach edge-0001.
    [code] = edge1.subscribe("vb/edge-0002/cmd")
    assert code in (1, 0x80, 0x87)
    assert edge1.subscribe("vb/edge-0001/cmd") == [1]
    assert edge2.subscribe("vb/edge-0002/cmd") == [1]
    cloud.publish("vb/edge-0002/cmd", b"for 0002")
    cloud.publish("vb/edge-0001/cmd", b"for 0001")
    assert edge2.expect() == ("vb/edge-0002/cmd", b"for 0002")
    assert edge1.expect() == ("vb/edge-0001/cmd", b"for 0001")
    edge1.expect_nothing()


@mosquitto
def test_client_without_a_valid_certificate_is_refused(
    pki: Pki, mosquitto_tls: MosquittoBroker, mqtt_client: MqttClientFactory, tmp_path: Path
) -> None:
    host = mosquitto_tls.host
    rogue_ca = create_ca(tmp_path, "Rogue CA")
    forged = issue_client_cert(rogue_ca, tmp_path, "edge-0001")
    for port in (mosquitto_tls.port, mosquitto_tls.cloud_port):
        assert not mqtt_client("anonymous", ca_only=pki.ca.cert).try_connect(host, port)
        assert not mqtt_client("plain").try_connect(host, port)
        impostor = mqtt_client("impostor", TlsFiles(pki.ca.cert, forged.cert, forged.key))
        assert not impostor.try_connect(host, port)
        # The same broker still takes a genuine device.
        assert mqtt_client("edge-0001", pki.clients["edge-0001"]).try_connect(host, port)


@mosquitto
def test_a_device_cannot_take_over_another_devices_client_id(
    pki: Pki, mosquitto_tls: MosquittoBroker, mqtt_client: MqttClientFactory
) -> None:
    host, port = mosquitto_tls.host, mosquitto_tls.port
    cloud = mqtt_client("cloud", pki.clients["cloud"]).connect(host, mosquitto_tls.cloud_port)
    assert cloud.subscribe("vb/edge-0001/status") == [1]
    victim = MqttProbe("edge-0001", pki.clients["edge-0001"])
    victim.client.will_set("vb/edge-0001/status", b"offline", qos=1)
    # The impostor holds a genuine certificate, its own (edge-0002), and the victim's client id.
    impostor = MqttProbe("edge-0001", pki.clients["edge-0002"])
    try:
        victim.connect(host, port)
        assert victim.subscribe("vb/edge-0001/cmd") == [1]
        assert impostor.try_connect(host, port)  # as edge-0002: its id is its certificate's CN
        # Taking the session over would have dropped the victim (and paho's reconnect would
        # have dropped the impostor in turn, again and again) and published its last will.
        assert not victim.disconnected.wait(2.5), "the victim was disconnected"
        cloud.expect_nothing(within=0.1)
        cloud.publish("vb/edge-0001/cmd", b"for 0001")
        assert victim.expect() == ("vb/edge-0001/cmd", b"for 0001")
        impostor.expect_nothing()
    finally:
        impostor.close()
        victim.close()


@mosquitto
def test_a_device_with_another_devices_client_id_gets_none_of_its_topics(
    pki: Pki, mosquitto_tls: MosquittoBroker, mqtt_client: MqttClientFactory
) -> None:
    host, port = mosquitto_tls.host, mosquitto_tls.port
    cloud = mqtt_client("cloud", pki.clients["cloud"]).connect(host, mosquitto_tls.cloud_port)
    assert cloud.subscribe("vb/edge-0001/#") == [1]
    impostor = MqttProbe("edge-0001", pki.clients["edge-0002"])  # %c would say edge-0001
    try:
        impostor.connect(host, port)
        for leaf in ("cmd", "ack"):
            [code] = impostor.subscribe(f"vb/edge-0001/{leaf}")
            assert code in (1, 0x80, 0x87)  # granted but never delivered, or refused
        for leaf in ("up", "status"):
            impostor.publish(f"vb/edge-0001/{leaf}", b"forged")  # acknowledged, dropped
        cloud.publish("vb/edge-0001/cmd", b"for 0001")
        cloud.publish("vb/edge-0001/ack", b"ack 0001")
        # The cloud gets back exactly its own two messages: nothing the impostor published.
        assert sorted(cloud.expect() for _ in range(2)) == [
            ("vb/edge-0001/ack", b"ack 0001"),
            ("vb/edge-0001/cmd", b"for 0001"),
        ]
        cloud.expect_nothing()
        impostor.expect_nothing()
    finally:
        impostor.close()


def listening_addresses(port: int) -> set[str]:
    """The local addresses (IPv4 and IPv6, as the kernel shows them) listening on TCP `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@mosquitto
def test_only_the_devices_listener_may_face_the_network(
    pki: Pki, tmp_path: Path, mqtt_client: MqttClientFactory
) -> None:
    if find_mosquitto() is None:
        service_missing("mosquitto", "not on PATH, /usr/sbin or /usr/local/sbin")
    loopback, anywhere = "0100007F", "00000000"  # 127.0.0.1 and 0.0.0.0 in /proc/net/tcp
    broker = MosquittoBroker(
        tmp_path, tls=pki.server, acl_users=CLOUD_ACL, listen="0.0.0.0", plain_port=0
    )
    with broker:
        assert broker.plain_port is not None
        assert listening_addresses(broker.port) == {anywhere}
        assert listening_addresses(broker.cloud_port) == {loopback}
        assert listening_addresses(broker.plain_port) == {loopback}
        # The plain listener takes anonymous clients (the demo's), on loopback.
        demo = mqtt_client("demo").connect("127.0.0.1", broker.plain_port)
        assert demo.subscribe("vb/edge-0001/up") == [1]
        device = mqtt_client("edge-0001", pki.clients["edge-0001"]).connect(
            broker.host, broker.port
        )
        device.publish("vb/edge-0001/up", b"entry")
        assert demo.expect() == ("vb/edge-0001/up", b"entry")


@mosquitto
def test_broker_restart_keeps_the_port(tmp_path: Path, mqtt_client: MqttClientFactory) -> None:
    if find_mosquitto() is None:
        service_missing("mosquitto", "not on PATH, /usr/sbin or /usr/local/sbin")
    with MosquittoBroker(tmp_path) as broker:
        port = broker.port
        first = mqtt_client("before").connect(broker.host, port)
        broker.restart()
        assert broker.port == port
        assert first.disconnected.wait(5), "the old connection survived a restart"
        second = mqtt_client("after").connect(broker.host, port)
        second.subscribe("t")
        second.publish("t", b"again")
        assert second.expect() == ("t", b"again")


# --- Embedded broker -----------------------------------------------------------------------------


def test_embedded_broker_round_trip(mqtt_client: MqttClientFactory) -> None:
    pytest.importorskip("amqtt")
    from cloud.services.embedded_broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        receiver = mqtt_client("receiver").connect(broker.host, broker.port)
        assert receiver.subscribe("vb/+/up") == [1]
        sender = mqtt_client("sender").connect(broker.host, broker.port)
        sender.publish("vb/edge-0001/up", b"hello")
        assert receiver.expect() == ("vb/edge-0001/up", b"hello")
        port = broker.port
        broker.restart()
        assert broker.port == port
        again = mqtt_client("again").connect(broker.host, port)
        again.subscribe("x")
        again.publish("x", b"y")
        assert again.expect() == ("x", b"y")


def test_start_broker_falls_back_to_the_embedded_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    pytest.importorskip("amqtt")
    from cloud.services import broker as broker_module
    from cloud.services.embedded_broker import EmbeddedBroker

    monkeypatch.setattr(broker_module, "find_mosquitto", lambda: None)
    with pytest.raises(ServiceNotFound, match="TLS, ACLs and client ids bound"):
        broker_module.start_broker(tmp_path, tls=pki.server, acl_users=CLOUD_ACL)
    with broker_module.start_broker(tmp_path) as broker:
        assert isinstance(broker, EmbeddedBroker)
    # A TLS broker with a demo listener: without mosquitto, only the demo's plain listener.
    with broker_module.start_broker(
        tmp_path, tls=pki.server, acl_users=CLOUD_ACL, plain_port=0
    ) as broker:
        assert isinstance(broker, EmbeddedBroker)
        assert broker.host == "127.0.0.1"
        assert listening_addresses(broker.port) == {"0100007F"}


# --- PostgreSQL ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_throwaway_postgres_serves_and_survives_restart(postgres: ThrowawayPostgres) -> None:
    psycopg = pytest.importorskip("psycopg")
    assert postgres.url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/voltbook"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        conn.execute("create table if not exists restart_probe (n int)")
        conn.execute("insert into restart_probe values (7)")
    open_conn = psycopg.connect(postgres.dsn, autocommit=True)
    port = postgres.port
    postgres.restart()
    assert postgres.port == port
    with pytest.raises(psycopg.OperationalError):
        open_conn.execute("select 1")  # the old server really went away
    open_conn.close()
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("select n from restart_probe").fetchall() == [(7,)]
        assert conn.execute("select current_database()").fetchone() == ("voltbook",)


def test_throwaway_postgres_says_what_to_do_when_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_module, "find_postgres", lambda: None)
    with pytest.raises(ServiceNotFound, match="install postgresql or set VOLTBOOK_DATABASE_URL"):
        ThrowawayPostgres(tmp_path).start()


# --- The chaos proxy ----------------------------------------------------------------------------


def publish_packet(topic: bytes, payload: bytes, qos: int = 1, packet_id: int = 1) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += packet_id.to_bytes(2, "big")
    body += payload
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([0x30 | qos << 1]) + bytes(encoded) + body


def test_splitter_cuts_whole_packets_fed_whole_or_byte_by_byte() -> None:
    pingreq = bytes([0xC0, 0x00])
    big = publish_packet(b"vb/edge-0001/up", b"x" * 300)  # two-byte remaining length
    stream = pingreq + big + publish_packet(b"t", b"") + pingreq
    whole = PacketSplitter()
    whole.feed(stream)
    expected = [pingreq, big, publish_packet(b"t", b""), pingreq]
    assert list(whole.packets()) == expected
    trickle, got = PacketSplitter(), []
    for byte in stream:
        trickle.feed(bytes([byte]))
        got += list(trickle.packets())
    assert got == expected


def test_splitter_rejects_a_five_byte_length() -> None:
    splitter = PacketSplitter()
    splitter.feed(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]))
    with pytest.raises(MalformedPacket):
        list(splitter.packets())


def test_retransmission_sets_dup_only_for_qos_above_zero() -> None:
    assert as_retransmission(publish_packet(b"t", b"p", qos=1))[0] == 0x3A
    assert as_retransmission(publish_packet(b"t", b"p", qos=0))[0] == 0x30


def test_chaos_rates_must_be_probabilities() -> None:
    with pytest.raises(ValueError):
        ChaosRates(drop=0.6, duplicate=0.6)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _payloads(n: int) -> list[bytes]:
    return [f"m{i:03d}".encode() for i in range(n)]


@mosquitto
def test_proxy_at_rate_zero_passes_everything_unchanged(
    mosquitto_plain: MosquittoBroker, mqtt_client: MqttClientFactory
) -> None:
    with MqttChaosProxy(mosquitto_plain.host, mosquitto_plain.port, seed=1) as proxy:
        receiver = mqtt_client("receiver").connect(proxy.host, proxy.port)
        receiver.subscribe("chaos/zero")
        sender = mqtt_client("sender").connect(proxy.host, proxy.port)
        for payload in _payloads(30):
            sender.publish("chaos/zero", payload)
        assert [receiver.expect()[1] for _ in range(30)] == _payloads(30)
        receiver.expect_nothing()
        for counters in (proxy.counters.to_broker, proxy.counters.to_client):
            assert counters.publishes == 30
            assert (counters.dropped, counters.duplicated, counters.reordered) == (0, 0, 0)


@mosquitto
def test_proxy_duplicates_publishes_as_retransmissions(
    mosquitto_plain: MosquittoBroker, mqtt_client: MqttClientFactory
) -> None:
    receiver = mqtt_client("receiver").connect(mosquitto_plain.host, mosquitto_plain.port)
    receiver.subscribe("chaos/dup")
    with MqttChaosProxy(
        mosquitto_plain.host, mosquitto_plain.port, to_broker=ChaosRates(duplicate=1.0)
    ) as proxy:
        sender = mqtt_client("sender").connect(proxy.host, proxy.port)
        for payload in _payloads(5):
            sender.publish("chaos/dup", payload)
        got = [receiver.expect()[1] for _ in range(10)]
        receiver.expect_nothing()
    assert sorted(got) == sorted(_payloads(5) * 2)
    assert proxy.counters.to_broker.duplicated == 5


@mosquitto
def test_proxy_drops_only_publishes(
    mosquitto_plain: MosquittoBroker, mqtt_client: MqttClientFactory
) -> None:
    with MqttChaosProxy(
        mosquitto_plain.host, mosquitto_plain.port, to_client=ChaosRates(drop=1.0)
    ) as proxy:
        # CONNACK and SUBACK come through the dropping direction untouched.
        receiver = mqtt_client("receiver").connect(proxy.host, proxy.port)
        assert receiver.subscribe("chaos/drop") == [1]
        sender = mqtt_client("sender").connect(mosquitto_plain.host, mosquitto_plain.port)
        for payload in _payloads(5):
            sender.publish("chaos/drop", payload)
        receiver.expect_nothing(within=0.5)
        assert proxy.counters.to_client.dropped == 5
        proxy.set_rates(to_client=ChaosRates())
        sender.publish("chaos/drop", b"after")
        assert receiver.expect() == ("chaos/drop", b"after")


@mosquitto
def test_proxy_reorders_adjacent_publishes(
    mosquitto_plain: MosquittoBroker, mqtt_client: MqttClientFactory
) -> None:
    receiver = mqtt_client("receiver").connect(mosquitto_plain.host, mosquitto_plain.port)
    receiver.subscribe("chaos/order")
    with MqttChaosProxy(
        mosquitto_plain.host, mosquitto_plain.port, to_broker=ChaosRates(reorder=1.0)
    ) as proxy:
        sender = mqtt_client("sender").connect(proxy.host, proxy.port)
        infos = [sender.client.publish("chaos/order", p, qos=1) for p in _payloads(6)]
        for info in infos:
            info.wait_for_publish(5)
        got = [receiver.expect()[1] for _ in range(6)]
    m = _payloads(6)
    assert got == [m[1], m[0], m[3], m[2], m[5], m[4]]
    assert proxy.counters.to_broker.reordered == 3


@mosquitto
def test_proxy_counters_match_what_arrives_under_mixed_faults(
    mosquitto_plain: MosquittoBroker, mqtt_client: MqttClientFactory
) -> None:
    receiver = mqtt_client("receiver").connect(mosquitto_plain.host, mosquitto_plain.port)
    receiver.subscribe("chaos/mixed", qos=0)
    rates = ChaosRates(drop=0.2, duplicate=0.2, reorder=0.2)
    with MqttChaosProxy(
        mosquitto_plain.host, mosquitto_plain.port, to_broker=rates, seed=7
    ) as proxy:
        sender = mqtt_client("sender").connect(proxy.host, proxy.port)
        for payload in _payloads(50):
            sender.client.publish("chaos/mixed", payload, qos=0)
        sender.close()  # its DISCONNECT also releases a PUBLISH still held for reordering
        counters = proxy.counters.to_broker
        assert wait_until(lambda: counters.publishes == 50), counters
        arriving = 50 - counters.dropped + counters.duplicated
        got = [receiver.expect()[1] for _ in range(arriving)]
        receiver.expect_nothing()
    assert counters.dropped and counters.duplicated and counters.reordered, counters
    assert len(set(got)) == 50 - counters.dropped
    assert set(got) <= set(_payloads(50))
    assert got != sorted(got)


@mosquitto
def test_proxy_cut_drops_every_connection(
    mosquitto_plain: MosquittoBroker, mqtt_client: MqttClientFactory
) -> None:
    with MqttChaosProxy(mosquitto_plain.host, mosquitto_plain.port) as proxy:
        client = mqtt_client("victim").connect(proxy.host, proxy.port)
        proxy.cut()
        assert client.disconnected.wait(5)
        assert proxy.counters.cuts == 1
        assert proxy.counters.connections >= 1
