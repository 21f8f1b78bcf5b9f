"""Fixtures for the sync tests: a real Mosquitto (plain TCP), a demo site's runtime in-process,
the edge's `SyncService` driven from the test thread (standing in for the runtime thread), and
the `CloudPeer` speaking the contract as the cloud.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud.services.broker import MosquittoBroker, find_mosquitto
from cloud.services.errors import ServiceError
from edge.runtime.boot import Booted
from edge.runtime.clock import ManualClock
from edge.runtime.cycle import Runtime
from edge.site import load_site
from edge.site.model import CloudSettings
from edge.store import Store
from edge.sync.service import SyncService
from ledger.chain import NodeKey
from ledger.signed import trusted
from tests.conftest import service_missing
from tests.edge.runtime.conftest import booted_at, demo
from tests.edge.sync.peer import CloudPeer

QUARTER = dt.timedelta(minutes=15)
CLOUD_KEY = NodeKey.from_seed(bytes(range(32)))
WAIT_S = 15.0


def started(broker: MosquittoBroker) -> MosquittoBroker:
    if find_mosquitto() is None:
        service_missing("mosquitto", "not on PATH, /usr/sbin or /usr/local/sbin")
    try:
        return broker.start()
    except ServiceError as exc:
        service_missing("mosquitto", str(exc))
        raise


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with started(MosquittoBroker(tmp_path / "mosquitto")) as running:
        yield running


@dataclass
class Edge:
    booted: Booted
    clock: ManualClock

    @property
    def runtime(self) -> Runtime:
        return self.booted.runtime

    @property
    def store(self) -> Store:
        return self.booted.runtime.store

    def cycles(self, count: int) -> None:
        for _ in range(count):
            self.booted.runtime.run_cycle()
            self.clock.advance(QUARTER)


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    site = demo(tmp_path, 8, tariff="flat")
    booted, clock = booted_at(load_site(site.site_toml))
    try:
        yield Edge(booted, clock)
    finally:
        booted.close()


def cloud_settings(host: str, port: int, **knobs: object) -> CloudSettings:
    base = CloudSettings(
        host=host,
        port=port,
        tls=None,
        cloud_keys=trusted(CLOUD_KEY.public_key),
        window=4,
        ack_timeout_s=3.0,
        rate_bytes_s=0,
        tick_s=0.05,
    )
    return dataclasses.replace(base, **knobs)  # type: ignore[arg-type]


@pytest.fixture
def make_sync(edge: Edge) -> Iterator[Callable[..., SyncService]]:
    made: list[SyncService] = []

    def make(host: str, port: int, **knobs: object) -> SyncService:
        sync = SyncService(edge.runtime, cloud_settings(host, port, **knobs))
        sync.start()
        made.append(sync)
        return sync

    yield make
    for sync in made:
        sync.stop()


@pytest.fixture
def peer(broker: MosquittoBroker, edge: Edge) -> Iterator[CloudPeer]:
    cloud = CloudPeer(
        broker.host, broker.port, edge.store.node, edge.runtime.key.public_key, CLOUD_KEY
    )
    yield cloud
    cloud.close()


def pump(sync: SyncService, until: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    """Tick `sync` as the runtime thread would until `until()` holds (or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sync.tick()
        if until():
            return True
        time.sleep(0.02)
    return False


def wait(until: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until():
            return True
        time.sleep(0.02)
    return False
