"""The whole cloud in one process (`cloud.server.serve_in_thread`): it starts with the embedded
broker, answers HTTP, ingests what a concentrator publishes, and stops within seconds."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import queue
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.config import ApiSettings, CloudConfig, IngestRouting, load_config
from cloud.db.engine import make_engine, session_factory
from cloud.db.models import Alarm, Concentrator
from cloud.ingest import concentrators
from cloud.operations import silence
from cloud.people import auth, oplog
from cloud.people.oplog_heads import read_heads
from cloud.server import RunningCloud, StartFailed, listen, serve_in_thread
from cloud.services.broker import MosquittoBroker
from cloud.services.pki import issue_client_cert, load_or_create_ca
from ledger.chain import NodeKey
from ledger.signed import ACK_TAG, open_signed, trusted
from ledger.wire import Ack, AckStatus, Status, topic
from tests.cloud.api.conftest import PASSWORD, opening_transfers
from tests.cloud.conftest import Clock
from tests.cloud.fake_edge import T0, FakeEdge

pytestmark = pytest.mark.slow  # the whole cloud in threads and processes, started and stopped

NODE = "edge-0001"
START_LIMIT_S = 10.0
STOP_LIMIT_S = 5.0


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def config(tmp_path: Path) -> CloudConfig:
    """All defaults (SQLite, embedded broker) in a fresh data dir; the API on any free port."""
    return dataclasses.replace(
        load_config(None, tmp_path / "data"), api=ApiSettings("127.0.0.1", 0)
    )


def test_serve_in_thread_starts_serves_and_stops(config: CloudConfig) -> None:
    began = time.monotonic()
    cloud = serve_in_thread(config)
    started = time.monotonic() - began
    try:
        assert started < START_LIMIT_S
        health = httpx.get(cloud.url + "/health", timeout=5).json()
        assert health == {"status": "ok", "database": True, "broker": True}
        assert httpx.get(cloud.url + "/docs", timeout=5).status_code == 200
        api_port = int(cloud.url.rsplit(":", 1)[1])
        assert config.cloud_key.exists()
    finally:
        began = time.monotonic()
        cloud.stop()
        stopped = time.monotonic() - began
    assert stopped < STOP_LIMIT_S
    assert not listening("127.0.0.1", api_port)
    assert not listening(cloud.broker_host, cloud.broker_port)
    cloud.stop()  # a second stop does nothing


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The embedded default takes mosquitto from PATH (TLS, client certificates); without it,
    only the demo's plain loopback listener, on the in-process amqtt broker (which has no
    shared subscriptions; the ingest workers' partitions need none)."""
    if request.param == "amqtt":
        monkeypatch.setattr("cloud.services.broker.find_mosquitto", lambda: None)
    return str(request.param)


def device_client(cloud: RunningCloud, node: str, *, client_id: str | None = None) -> mqtt.Client:
    """A paho client for `node`: over TLS with a certificate from the cloud's own CA (CN
    `node`) on the devices listener; plain on the demo listener when there is no TLS one."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or node)
    if isinstance(cloud.broker, MosquittoBroker):
        files = issue_client_cert(
            load_or_create_ca(cloud.config.pki_dir), cloud.config.data_dir / "devices", node
        )
        client.tls_set(ca_certs=str(files.ca), certfile=str(files.cert), keyfile=str(files.key))
    return client


def log_in(cloud: RunningCloud) -> dict[str, str]:
    with session_factory(cloud.engine).begin() as session:
        auth.create_user(session, "admin", auth.Role.ADMIN, PASSWORD, now=T0)
    login = httpx.post(cloud.url + "/auth/login",
                       json={"user": "admin", "password": PASSWORD}, timeout=5)  # fmt: skip
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['token']}"}


def register(cloud: RunningCloud, headers: dict[str, str], node: str, key: NodeKey) -> None:
    raw = key.public_key.public_bytes_raw().hex()
    made = httpx.post(cloud.url + "/concentrators", json={"node": node, "public_key": raw},
                      headers=headers, timeout=5)  # fmt: skip
    assert made.status_code == 201, made.text


def test_a_concentrator_syncs_through_the_running_cloud(
    config: CloudConfig, broker_kind: str
) -> None:
    config = dataclasses.replace(config, broker=dataclasses.replace(config.broker, plain_port=0))
    edge_key = NodeKey.from_seed(b"1" * 32)
    with serve_in_thread(config) as cloud:
        headers = log_in(cloud)
        register(cloud, headers, NODE, edge_key)

        acks: queue.Queue[bytes] = queue.Queue()
        subscribed = threading.Event()
        client = device_client(cloud, NODE)
        client.on_message = lambda _c, _u, message: acks.put(bytes(message.payload))
        client.on_subscribe = lambda *_args: subscribed.set()
        client.connect(cloud.broker_host, cloud.broker_port)
        client.loop_start()
        try:
            client.subscribe(topic(NODE, "ack"), qos=1)
            assert subscribed.wait(5)
            inventory = {"A0001": {"shop": "S101", "meters": [{"address": "000000000001"}]}}
            status = Status(NODE, True, extra={"accounts": inventory}).signed(edge_key)
            client.publish(topic(NODE, "status"), status, qos=1).wait_for_publish(5)
            edge = FakeEdge(NODE, edge_key)
            uplink = edge.payload(1, 7, edge.book(*opening_transfers(NODE)))
            client.publish(topic(NODE, "up"), uplink, qos=1).wait_for_publish(5)
            signed = acks.get(timeout=10)
        finally:
            client.loop_stop()
            client.disconnect()
        ack = Ack.from_fields(open_signed(ACK_TAG, signed, trusted(cloud.key.public_key)))
        assert (ack.status, ack.seq) == (AckStatus.OK, 7)
        assert ack.oplog is not None  # the operator log's head signed at start
        ack.oplog.verify(trusted(cloud.key.public_key))

        found = httpx.get(f"{cloud.url}/concentrators/{NODE}", headers=headers, timeout=5)
        assert (found.json()["head_seq"], found.json()["online"]) == (7, True)
        account = httpx.get(f"{cloud.url}/accounts/A0001", headers=headers, timeout=5).json()
        assert account["prepaid_fen"] == 10_000 - 837
        key = cloud.key
    # Stopping signed the head once more: the heads file vouches for every row logged.
    heads = read_heads(config.oplog_heads)
    engine = make_engine(config.database_url)
    try:
        with session_factory(engine)() as session:
            verdict = oplog.verify(session, heads, trusted(key.public_key))
    finally:
        engine.dispose()
    assert verdict.ok and verdict.rows >= 3 and heads[-1].seq == verdict.rows, verdict


def _wrong_logins(url: str, spoofed: list[str]) -> list[int]:
    return [
        httpx.post(url + "/auth/login", json={"user": "admin", "password": "wrong password"},
                   headers={"X-Forwarded-For": address}, timeout=5).status_code
        for address in spoofed
    ]  # fmt: skip


def test_a_forwarded_for_header_is_believed_only_from_a_trusted_proxy(
    config: CloudConfig,
) -> None:
    """The per-address login limit counts the peer's address: an X-Forwarded-For from a client
    on loopback (uvicorn believes one by default) does not give it an address per attempt."""
    spoofed = [f"203.0.113.{n}" for n in range(auth.ADDRESS_ATTEMPTS + 1)]
    with serve_in_thread(config) as cloud:
        with session_factory(cloud.engine).begin() as session:
            auth.create_user(session, "admin", auth.Role.ADMIN, PASSWORD, now=T0)
        assert _wrong_logins(cloud.url, spoofed)[-1] == 429
    proxied = dataclasses.replace(config, api=dataclasses.replace(
        config.api, trusted_proxies=("127.0.0.1",)))  # fmt: skip
    with serve_in_thread(proxied) as cloud:  # behind a proxy on loopback: it names the client
        assert _wrong_logins(cloud.url, [f"198.51.100.{n}" for n in range(3)]) == [401] * 3
        with session_factory(cloud.engine)() as session:
            rows = session.scalars(oplog.entries(action="login.failed", sort="-seq").limit(1))
            assert [row.address for row in rows] == ["198.51.100.2"]


def online(cloud: RunningCloud, headers: dict[str, str], node: str) -> bool:
    answer = httpx.get(f"{cloud.url}/concentrators/{node}", headers=headers, timeout=5)
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["online"])


def test_a_device_using_another_nodes_client_id_does_not_knock_it_offline(
    config: CloudConfig,
) -> None:
    """The embedded broker binds client ids to certificates: edge-0002, with its own genuine
    certificate and edge-0001's client id, connects as edge-0002 and edge-0001 stays on."""
    victim_node, other = NODE, "edge-0002"
    with serve_in_thread(config) as cloud:
        assert isinstance(cloud.broker, MosquittoBroker), "needs mosquitto (TLS, ACLs)"
        headers = log_in(cloud)
        victim_key = NodeKey.from_seed(b"1" * 32)
        register(cloud, headers, victim_node, victim_key)
        register(cloud, headers, other, NodeKey.from_seed(b"2" * 32))
        dropped = threading.Event()
        victim = device_client(cloud, victim_node)
        victim.on_disconnect = lambda *_args: dropped.set()
        victim.will_set(topic(victim_node, "status"), Status(victim_node, False).signed(victim_key),
                        qos=1, retain=True)  # fmt: skip
        victim.connect(cloud.broker_host, cloud.broker_port)
        victim.loop_start()
        impostor = device_client(cloud, other, client_id=victim_node)
        try:
            status = Status(victim_node, True).signed(victim_key)
            victim.publish(topic(victim_node, "status"), status, qos=1, retain=True)
            assert wait_for(lambda: online(cloud, headers, victim_node))
            connected = threading.Event()
            impostor.on_connect = lambda _c, _u, _f, reason, _p: (
                connected.set() if not reason.is_failure else None
            )
            impostor.connect(cloud.broker_host, cloud.broker_port)
            impostor.loop_start()
            assert connected.wait(5)  # let in, as edge-0002
            # A takeover dropped the victim at once (paho reconnecting, the two took turns).
            assert not dropped.wait(2.5), "the victim was knocked off the broker"
            assert online(cloud, headers, victim_node)
        finally:
            impostor.loop_stop()
            impostor.disconnect()
            victim.loop_stop()
            victim.disconnect()


def test_without_mosquitto_the_embedded_broker_is_only_a_demo_on_loopback(
    config: CloudConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("amqtt")
    monkeypatch.setattr("cloud.services.broker.find_mosquitto", lambda: None)
    with pytest.raises(StartFailed, match=r"apt-get install mosquitto.*plain_port"):
        serve_in_thread(config)
    demo = dataclasses.replace(config, broker=dataclasses.replace(config.broker, plain_port=0))
    with serve_in_thread(demo) as cloud:
        assert (cloud.broker_host, cloud.broker_port) == ("127.0.0.1", cloud.plain_port)
    # amqtt has no shared subscriptions: the ingest's partitions, yes; a `$share` group, no.
    shared = dataclasses.replace(demo, ingest_routing=IngestRouting(broker=True))
    with pytest.raises(StartFailed, match='routing = "broker" needs a broker with shared'):
        serve_in_thread(shared)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_answers_are_not_held_back_by_nagle() -> None:
    # asyncio sets TCP_NODELAY only on sockets that say they are TCP; without it every answer
    # on a kept-alive connection waited for the client's delayed ACK (40 ms).
    listener = listen("127.0.0.1", 0)
    nodelay: list[int] = []

    async def accept_one() -> None:
        done = asyncio.Event()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                done.set()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        async with server:
            client = socket.create_connection(listener.getsockname()[:2])
            await asyncio.wait_for(done.wait(), 5)
            client.close()

    asyncio.run(accept_one())
    assert nodelay and nodelay[0] != 0


def test_several_api_processes_share_the_port(config: CloudConfig) -> None:
    config = dataclasses.replace(config, api=dataclasses.replace(config.api, workers=3))
    with serve_in_thread(config) as cloud:
        assert len(cloud.api_processes) == 2
        assert all(p.is_alive() for p in cloud.api_processes)
        answers = []
        for _ in range(20):  # a new connection each: the kernel hands them to any process
            with httpx.Client() as client:
                answers.append(client.get(cloud.url + "/health", timeout=5).json())
        assert answers == [{"status": "ok", "database": True, "broker": True}] * 20
        api_port = int(cloud.url.rsplit(":", 1)[1])
    assert not any(p.is_alive() for p in cloud.api_processes)
    assert not listening("127.0.0.1", api_port)


def test_api_processes_keep_the_system_clock(config: CloudConfig) -> None:
    config = dataclasses.replace(config, api=dataclasses.replace(config.api, workers=2))
    with pytest.raises(StartFailed, match="system clock"):
        serve_in_thread(config, now=lambda: T0)


def test_the_cloud_sweeps_silent_concentrators_with_its_clock(
    config: CloudConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep (`cloud.operations.silence`) runs on its own in the service, with the `now`
    it was given: a node last heard at T0 is alarmed once the clock passes silent_after."""
    monkeypatch.setattr(silence, "SWEEP_EVERY_S", 0.05)
    clock = Clock(T0)
    with serve_in_thread(config, now=clock) as cloud:
        sessions = session_factory(cloud.engine)
        with sessions.begin() as session:
            concentrators.register(session, "edge-0001", NodeKey.generate().public_key, now=T0)
            session.execute(update(Concentrator).values(online=True, last_seen=T0))
        time.sleep(0.3)  # sweeps at T0: on line, nothing to raise
        clock.advance(seconds=config.silent_after.total_seconds() + 1)
        deadline = time.monotonic() + 10
        while not (found := _silences(sessions)):
            assert time.monotonic() < deadline, "no sweep raised the silent node's alarm"
            time.sleep(0.05)
        time.sleep(0.3)  # more sweeps: still one
        assert [(a.node, a.cleared) for a in _silences(sessions)] == [("edge-0001", False)]
        assert found[0].time == T0 + config.silent_after


def _silences(sessions: Callable[[], Session]) -> list[Alarm]:
    with sessions() as session:
        return list(session.scalars(select(Alarm).where(Alarm.kind == silence.KIND)))


def test_a_running_cloud_sets_its_long_lived_heap_aside_and_gives_it_back(
    config: CloudConfig,
) -> None:
    """Full collections skip what lives as long as the service (`cloud.heap`): the API's p99
    was their pauses."""
    assert gc.get_freeze_count() == 0
    with serve_in_thread(config) as cloud:
        assert gc.get_freeze_count() > 10_000  # modules, routes, templates, mappers
        assert httpx.get(cloud.url + "/health", timeout=5).status_code == 200
    assert gc.get_freeze_count() == 0
