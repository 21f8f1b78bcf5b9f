"""Ingest workers against a real Mosquitto: two workers split the uplinks of the nodes (by
partition, or a shared subscription), every batch is stored once and acknowledged, each node's
batches go to one worker in order, a slow database does not cost the worker its connection,
commands go down."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import Engine, select, text

from cloud.chains import commands
from cloud.chains.locks import lock
from cloud.db import models
from cloud.ingest.routing import Partition, Route, SharedGroup, owner
from cloud.ingest.worker import IngestWorker
from cloud.services.broker import MosquittoBroker, find_mosquitto
from cloud.services.errors import ServiceError
from ledger.signed import CommandKind, open_command, trusted
from ledger.wire import AckStatus, topic
from tests.cloud.fake_edge import T0, FakeEdge, reading
from tests.cloud.helpers import count, open_ack, stored_chain
from tests.conftest import service_missing

pytestmark = pytest.mark.mosquitto
WAIT_S = 20.0
NODES = ("edge-0001", "edge-0002")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    if find_mosquitto() is None:
        service_missing("mosquitto", "not on PATH, /usr/sbin or /usr/local/sbin")
    server = MosquittoBroker(tmp_path_factory.mktemp("worker-mosquitto"))
    try:
        server.start()
    except ServiceError as exc:
        service_missing("mosquitto", str(exc))
    with server:
        yield server


class Device:
    """An edge's MQTT side: publishes batches and status, collects acks and commands."""

    def __init__(self, broker: MosquittoBroker, edge: FakeEdge) -> None:
        self.edge = edge
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{edge.node}-t")
        self.client.on_message = lambda c, u, m: self.inbox.put((m.topic, m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.subscribe([(topic(edge.node, "ack"), 1), (topic(edge.node, "cmd"), 1)])
        assert subscribed.wait(5), "no SUBACK"

    def publish(self, leaf: str, payload: bytes) -> None:
        self.client.publish(topic(self.edge.node, leaf), payload, qos=1).wait_for_publish(5)

    def next(self, leaf: str, timeout: float = WAIT_S) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{self.edge.node}: nothing on {leaf} within {timeout} s"
            try:
                name, payload = self.inbox.get(timeout=remaining)
            except queue.Empty:
                continue
            if name.endswith("/" + leaf):
                return payload

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


StartWorkers = Callable[..., list[IngestWorker]]


@pytest.fixture
def start_workers(broker, engine: Engine, cloud_key, clock) -> Iterator[StartWorkers]:
    """`start_workers(name, routes, **options)`: connected workers, stopped after the test."""
    started: list[IngestWorker] = []

    def start(name: str, routes: list[Route], **options: Any) -> list[IngestWorker]:
        workers = [
            IngestWorker(
                broker.host,
                broker.port,
                engine=engine,
                key=cloud_key,
                client_id=f"{name}-{n}",
                route=route,
                now=clock,
                patience=0.5,  # a stopped database fails the batch within the test's wait
                **options,
            )
            for n, route in enumerate(routes, 1)
        ]
        started.extend(workers)
        for worker in workers:
            worker.start()
        for worker in workers:
            assert worker.wait_connected(WAIT_S)
        time.sleep(0.2)  # SUBACKs
        return workers

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def workers(start_workers: StartWorkers, request) -> list[IngestWorker]:
    """Two workers: partitions 0 and 1 of 2 (the default), or (param "shared") one `$share`
    group, which Mosquitto serves round robin."""
    name = f"ingest-{request.node.name}".replace("[", "-").replace("]", "")
    if getattr(request, "param", "partitions") == "shared":
        return start_workers(name, [SharedGroup(name)] * 2)
    return start_workers(name, [Partition(0, 2), Partition(1, 2)])


def _sync(device: Device, batches: list[tuple[int, int, bytes]], cloud_key) -> list[AckStatus]:
    """Publish every batch, then resend after gaps the way an edge does, until all are acked."""
    statuses = []
    for *_, payload in batches:
        device.publish("up", payload)
    last = batches[-1][1]
    acked = 0
    while acked < last:
        ack = open_ack(device.next("ack"), cloud_key)
        statuses.append(ack.status)
        assert ack.status in (AckStatus.OK, AckStatus.GAP), ack
        if ack.status is AckStatus.GAP:
            for first, _, payload in batches:
                if first > ack.upto:
                    device.publish("up", payload)
        acked = max(acked, ack.upto)
    return statuses


@pytest.mark.parametrize("workers", ["partitions", "shared"], indirect=True)
def test_two_workers_store_every_batch_of_two_nodes_once(
    broker, workers, sessions, cloud_key, edge_of
) -> None:
    assert owner(NODES[0], 2) != owner(NODES[1], 2), "partitions: a node for each worker"
    devices, expected = [], {}
    for node in NODES:
        edge = edge_of(node)
        batches = []
        for number in range(8):
            entries = edge.book_consumption(3)
            rows = [reading("000000000001", T0.replace(minute=number), number)]
            first = number * 4 + 1
            batches.append((first, first + 3, edge.payload(first, first + 3, entries,
                                                           readings=rows)))  # fmt: skip
        devices.append((Device(broker, edge), batches))
        expected[node] = edge.entries
    results = {}

    def sync(device: Device, batches: list[tuple[int, int, bytes]]) -> None:
        results[device.edge.node] = _sync(device, batches, cloud_key)

    threads = [threading.Thread(target=sync, args=pair) for pair in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S * 2)
    for device, _ in devices:
        device.close()
    assert set(results) == set(NODES)
    for node in NODES:
        assert stored_chain(sessions, node) == expected[node]
        assert count(sessions, models.Reading, models.Reading.node == node) == 8
    assert sum(w.batches for w in workers) >= 16
    assert all(w.batches for w in workers), "the two workers shared the work"
    assert sum(w.failures for w in workers) == 0


def _wait_for(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)


def test_commands_go_down_and_are_marked_delivered(broker, workers, sessions, edge_of) -> None:
    cloud_key, clock = workers[0].ingest.key, workers[0].ingest._now
    node = NODES[0]
    device = Device(broker, edge_of(node))
    with sessions.begin() as session:
        early = commands.issue(session, node, CommandKind.TIME, {}, key=cloud_key, now=clock())

    def next_command_id() -> str:
        payload = device.next("cmd")
        return open_command(payload, trusted(cloud_key.public_key), node, clock()).id

    # Online: the status answer carries the open command.
    device.publish("status", device.edge.status())
    assert next_command_id() == early.id

    def status_of(command_id: str) -> str:
        with sessions() as session:
            return session.scalar(select(models.Command.status).where(
                models.Command.id == command_id))  # fmt: skip

    _wait_for(lambda: status_of(early.id) == "delivered", "delivery of the resent command")
    # A command issued while the node is online goes down through the dispatcher.
    with sessions.begin() as session:
        later = commands.issue(session, node, CommandKind.TIME, {}, key=cloud_key, now=clock())
    received = next_command_id()
    if received == early.id:  # the dispatcher raced the status answer: a harmless second copy
        received = next_command_id()
    assert received == later.id
    _wait_for(lambda: status_of(later.id) == "delivered", "delivery by the dispatcher")
    device.close()


@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
def test_a_database_outage_loses_no_batch(broker, workers, sessions, edge_of, request) -> None:
    """The database stops under the workers: no ack, no crash; the resent batch is stored."""
    cloud_key = workers[0].ingest.key
    server = request.getfixturevalue("pg_databases").server
    node = NODES[0]
    edge = edge_of(node)
    device = Device(broker, edge)
    first = edge.payload(1, 2, edge.book_consumption(2))
    device.publish("up", first)
    assert open_ack(device.next("ack"), cloud_key).seq == 2
    second = edge.payload(3, 4, edge.book_consumption(2))
    server.stop()
    try:
        device.publish("up", second)
        _wait_for(lambda: sum(w.failures for w in workers) == 1, "the failed attempt")
        with pytest.raises(AssertionError, match="nothing on ack"):
            device.next("ack", timeout=0.5)
    finally:
        server.start()
    device.publish("up", second)  # the edge resends after its ack timeout
    ack = open_ack(device.next("ack"), cloud_key)
    assert (ack.status, ack.seq) == (AckStatus.OK, 4)
    assert stored_chain(sessions, node) == edge.entries
    assert all(w.connected for w in workers)
    device.close()


ROUTED = ("edge-0001", "edge-0002", "edge-0003", "edge-0004")  # partitions 0, 1, 0, 0 of 2


def test_each_node_goes_whole_and_in_order_to_its_partitions_worker(
    broker, workers, sessions, cloud_key, edge_of
) -> None:
    """Four nodes publish 8 batches each at once, interleaved (more than an edge's window):
    the worker of a node's partition handles all of them, in the order sent, so every ack is
    `ok` and acknowledges the next batch (a round robin answers `gap`s and splits nodes)."""
    owners = {node: owner(node, 2) for node in ROUTED}
    assert sorted(owners.values()) == [0, 0, 0, 1]
    devices, sent = [], {}
    for node in ROUTED:
        edge = edge_of(node)
        devices.append(Device(broker, edge))
        sent[node] = [edge.payload(4 * n + 1, 4 * n + 4, edge.book_consumption(4))
                      for n in range(8)]  # fmt: skip
    for n in range(8):
        for device in devices:
            device.publish("up", sent[device.edge.node][n])
    for device in devices:
        acks = [open_ack(device.next("ack"), cloud_key) for _ in range(8)]
        assert [(a.status, a.upto) for a in acks] == [(AckStatus.OK, 4 * n + 4)
                                                      for n in range(8)]  # fmt: skip
        assert stored_chain(sessions, device.edge.node) == device.edge.entries
        device.close()
    assert [w.batches for w in workers] == [8 * 3, 8 * 1]
    assert [w.failures + w.shed for w in workers] == [0, 0]


def waiting_for_a_lock(sessions) -> bool:
    with sessions() as session:
        return bool(session.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")))  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
def test_a_slow_batch_does_not_cost_the_worker_its_connection(  # noqa: PLR0917 (fixtures)
    broker, start_workers, sessions, cloud_key, edge_of, caplog
) -> None:
    """The node's row is locked elsewhere, so its batch waits 9 s in the handler; with a 4 s
    keepalive the broker drops a client silent for 6 s, yet the worker stays connected (its
    network thread never waits for the database) and acknowledges once the lock goes."""
    [worker] = start_workers("ingest-slow", [Partition()], keepalive=4)
    node = NODES[0]
    edge = edge_of(node)
    device = Device(broker, edge)
    try:
        with caplog.at_level(logging.WARNING, logger="cloud.ingest.worker"):
            with sessions.begin() as session:
                lock(session, node)
                device.publish("up", edge.payload(1, 2, edge.book_consumption(2)))
                _wait_for(lambda: waiting_for_a_lock(sessions), "the handler waiting")
                time.sleep(9)
            ack = open_ack(device.next("ack"), cloud_key)
            time.sleep(0.5)  # a dropped client would be noticed by now (the ack went out)
        assert (ack.status, ack.upto) == (AckStatus.OK, 2)
        assert worker.connected
        assert [r.getMessage() for r in caplog.records if "disconnected" in r.getMessage()] == []
    finally:
        device.close()


@pytest.mark.slow
@pytest.mark.parametrize("engine", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
def test_a_full_queue_sheds_a_batch_and_its_resend_is_stored(
    broker, start_workers, sessions, cloud_key, edge_of
) -> None:
    """A queue of one: while the handler waits on the database with the first batch, the
    second waits in the queue and the third is shed (counted, never acknowledged); the edge's
    resend of it is stored."""
    [worker] = start_workers("ingest-full", [Partition()], queue_size=1)
    node = NODES[0]
    edge = edge_of(node)
    device = Device(broker, edge)
    batches = [edge.payload(2 * n + 1, 2 * n + 2, edge.book_consumption(2)) for n in range(3)]
    try:
        with sessions.begin() as session:
            lock(session, node)
            device.publish("up", batches[0])
            _wait_for(lambda: waiting_for_a_lock(sessions), "the handler waiting")
            device.publish("up", batches[1])
            device.publish("up", batches[2])
            _wait_for(lambda: worker.shed == 1, "the third batch shed")
        assert [open_ack(device.next("ack"), cloud_key).upto for _ in range(2)] == [2, 4]
        with pytest.raises(AssertionError, match="nothing on ack"):
            device.next("ack", timeout=0.5)
        device.publish("up", batches[2])  # after the edge's ack timeout
        ack = open_ack(device.next("ack"), cloud_key)
        assert (ack.status, ack.upto) == (AckStatus.OK, 6)
        assert stored_chain(sessions, node) == edge.entries
        assert (worker.batches, worker.shed, worker.failures) == (3, 1, 0)
    finally:
        device.close()


def test_a_retained_status_is_not_taken_for_news(broker, start_workers, sessions, edge_of) -> None:
    """A status left retained on the broker (here saying 5 commands applied) reaches a plain
    subscription at every connect; the worker lets it be, and handles the live one (retained
    too, as an edge publishes it: the broker forwards it to a subscriber as news)."""
    node = NODES[0]
    edge = edge_of(node)
    device = Device(broker, edge)
    name = topic(node, "status")
    device.client.publish(name, edge.status(commands=5), qos=1, retain=True).wait_for_publish(5)
    start_workers("ingest-news", [Partition()])
    try:
        device.client.publish(name, edge.status(commands=0), qos=1, retain=True).wait_for_publish(5)

        def row() -> models.Concentrator:
            with sessions() as session:
                return session.get_one(models.Concentrator, node)

        _wait_for(lambda: row().last_seen is not None, "the live status handled")
        assert row().commands_applied == 0
    finally:
        device.client.publish(name, b"", qos=1, retain=True).wait_for_publish(5)
        device.close()
