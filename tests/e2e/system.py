"""The whole system in one test process: a concentrator runtime and the cloud, through a real
broker.

    clock = ManualClock(DEFAULT_START)                  # the concentrator's virtual time
    cloud = start_cloud(tmp_path / "cloud", database_url, broker_host, broker_port,
                        tls=cloud_files, now=lambda: clock.true_now().astimezone(dt.UTC))
    made = write_site(tmp_path / "site", 8)             # a demo site, no [cloud] yet
    cloud.register(made.directory, NODE)                # POST /concentrators with node.pub
    edge = start_edge(made, host, port, cloud.public_key_hex, tls=edge_files, clock=clock,
                      rate_bytes_s=0, ack_timeout_s=3)  # [cloud] appended, booted, syncing
    edge.cycles(12, HOURS_2)   # poll cycles on the virtual clock, a sync tick after each
    edge.pump("the catch-up", edge.drained)   # tick sync (real time) until all acknowledged

The cloud's API is used as an admin would: `start_cloud` makes the user `e2e-admin` (with
`cloud.people.auth.create_user`, as `voltbook-cloud user add` does) and `Cloud.api` logs in through
`POST /auth/login`, sending the bearer token with every request and logging in again when the
token has expired on the shared virtual clock (`ApiLogin`).

The concentrator is `demo.site.write_demo_site` with its `[cloud]` section appended,
booted in-process on a `ManualClock` (simulated DL/T 645 meters, the real SQLite store) with
the real `SyncService` (paho). The test thread stands in for the runtime thread: it runs the
cycles and ticks sync. The cloud is `cloud.server.serve_in_thread`: migrations, the cloud key,
ingest workers on the broker (a shared subscription) and the HTTP API on a free port.

`TcpGate` is the concentrator's uplink as a network path that can be down: closed, it takes
each connection and hangs up at once (what a GPRS modem without a carrier amounts to); open, it
forwards bytes both ways untouched, TLS included.

Nothing of our code is replaced: the only things made up here are the network path and the
clock, which the cloud shares with the concentrator (`now=`) so that command expiry means the
same on both sides whatever day the tests run.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.config import ApiSettings, BrokerSettings, CloudConfig, TlsSettings
from cloud.db import models
from cloud.db.engine import session_factory
from cloud.people import auth
from cloud.server import RunningCloud, serve_in_thread
from cloud.services.pki import TlsFiles
from demo.sim.persist import SimulatedBuilding
from demo.sim.simulation import building_of
from demo.site import DemoSite, write_demo_site
from edge.runtime.boot import Booted, boot
from edge.runtime.clock import ManualClock
from edge.runtime.cycle import CycleReport, Runtime
from edge.site import Site, load_site
from edge.store import Store
from edge.sync.service import SyncService
from ledger.book import Balance
from tests.e2e.relay import TcpRelay

WAIT_S = 30.0  # real seconds any one step may take
NAP_S = 0.02


def wait_for(what: str, done: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Poll `done()` until it holds; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(NAP_S)


# --- the network path ----------------------------------------------------------------------------


class TcpGate(TcpRelay):
    """A TCP forwarder on 127.0.0.1:`port` to `target`, closed (refusing) until `open()`."""

    name = "gate"

    def __init__(self, target_host: str, target_port: int, *, is_open: bool = False) -> None:
        self.is_open = is_open
        self.refused = 0  # connections taken and hung up on while closed
        super().__init__(target_host, target_port)

    @property
    def forwarded(self) -> int:
        """Connections forwarded while open."""
        return self.connections

    def open(self) -> None:
        with self._lock:
            self.is_open = True

    def close(self) -> None:
        """Refuse new connections and drop the current ones (the carrier is lost)."""
        with self._lock:
            self.is_open = False
        self.cut()

    def admit(self) -> bool:
        with self._lock:
            if not self.is_open:
                self.refused += 1
            return self.is_open


def clear_retained(host: str, port: int, tls: TlsFiles | None, *topics: str) -> None:
    """Remove retained messages (a status an earlier test's concentrator left on a broker that
    lives for the whole session), so a new cloud does not start with a stranger's presence."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"e2e-clear-{time.time_ns()}")
    if tls is not None:
        client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.cert), keyfile=str(tls.key))
    client.connect(host, port)
    client.loop_start()
    try:
        for name in topics:
            info = client.publish(name, b"", qos=1, retain=True)
            info.wait_for_publish(5)
            assert info.is_published(), f"could not clear the retained message on {name}"
    finally:
        client.disconnect()
        client.loop_stop()


# --- the cloud -----------------------------------------------------------------------------------

ADMIN = "e2e-admin"


class ApiLogin(httpx.Auth):
    """Bearer tokens from `POST /auth/login`: logs in at the first request, and again when the
    cloud answers 401 (the token expired: the tests move the cloud's clock by days)."""

    requires_response_body = True

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.token: str | None = None

    def _login(self, request: httpx.Request) -> httpx.Request:
        url = request.url.copy_with(path="/auth/login", query=None)
        return httpx.Request("POST", url, json={"user": self.user, "password": self.password})

    def _take(self, answer: httpx.Response) -> None:
        assert answer.status_code == 200, f"login {self.user}: {answer.status_code} {answer.text}"
        self.token = answer.json()["token"]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.token is None:
            self._take((yield self._login(request)))
        request.headers["Authorization"] = f"Bearer {self.token}"
        answer = yield request
        if answer.status_code == 401:
            self._take((yield self._login(request)))
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request


@dataclass
class Cloud:
    """A running cloud, its API client and read access to its database."""

    running: RunningCloud
    api: httpx.Client
    sessions: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = session_factory(self.running.engine, read_only=True)

    @property
    def public_key_hex(self) -> str:
        return self.running.key.public_key.public_bytes_raw().hex()

    def get(self, path: str, **params: Any) -> Any:
        answer = self.api.get(path, params=params)
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def post(self, path: str, body: dict[str, Any], expect: int = 201) -> Any:
        answer = self.api.post(path, json=body)
        assert answer.status_code == expect, f"POST {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def register(self, edge_dir: Path, node: str) -> Any:
        """POST /concentrators with the node's public key (`node.pub` beside site.toml)."""
        public = (edge_dir / "node.pub").read_text().strip()
        return self.post("/concentrators", {"node": node, "public_key": public})

    def count(self, model: Any, *where: Any) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    def rows(self, model: Any, *where: Any, order: Any = None) -> list[Any]:
        with self.sessions() as session:
            query = select(model).where(*where)
            if order is not None:
                query = query.order_by(order)
            found = list(session.scalars(query))
            session.expunge_all()
            return found

    def entries(self, node: str) -> list[tuple[int, bytes, bytes, bytes]]:
        """(seq, prev_hash, hash, body) of every stored entry of `node`, in seq order."""
        with self.sessions() as session:
            found = session.execute(
                select(
                    models.LedgerEntry.seq,
                    models.LedgerEntry.prev_hash,
                    models.LedgerEntry.hash,
                    models.LedgerEntry.body,
                )
                .where(models.LedgerEntry.node == node)
                .order_by(models.LedgerEntry.seq)
            )
            return [(s, bytes(p), bytes(h), bytes(b)) for s, p, h, b in found]

    def balances(self) -> dict[str, Balance]:
        with self.sessions() as session:
            return {
                b.account: Balance(
                    b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted
                )
                for b in session.scalars(select(models.Balance))
            }

    def readings(self, node: str) -> list[tuple[str, dt.datetime, int | None, int | None]]:
        """(meter, time, energy_wh, relay) of every stored reading of `node`."""
        with self.sessions() as session:
            found = session.execute(
                select(
                    models.Reading.meter,
                    models.Reading.time,
                    models.Reading.energy_wh,
                    models.Reading.relay,
                ).where(models.Reading.node == node)
            )
            return [(m, t, e, r) for m, t, e, r in found]

    def close(self) -> None:
        try:
            self.api.close()
        finally:
            self.running.stop()


def start_cloud(
    data_dir: Path,
    database_url: str,
    broker_host: str,
    broker_port: int,
    *,
    tls: TlsFiles | None,
    now: Callable[[], dt.datetime],
    workers: int = 2,
) -> Cloud:
    """The whole cloud on an external broker (`tls`: the cloud's client certificate)."""
    config = CloudConfig(
        path=None,
        data_dir=data_dir,
        database_url=database_url,
        broker=BrokerSettings(
            embedded=False,
            host=broker_host,
            port=broker_port,
            tls=None if tls is None else TlsSettings(tls.ca, tls.cert, tls.key),
        ),
        api=ApiSettings("127.0.0.1", 0),
        cloud_key=data_dir / "cloud-key.pem",
        ingest_workers=workers,
    )
    running = serve_in_thread(config, now=now)
    try:
        assert all(w.connected for w in running.workers), "the ingest workers did not connect"
        password = secrets.token_urlsafe(16)
        with session_factory(running.engine).begin() as session:
            auth.create_user(session, ADMIN, auth.Role.ADMIN, password, now=now())
        login = ApiLogin(ADMIN, password)
        return Cloud(running, httpx.Client(base_url=running.url, timeout=10, auth=login))
    except BaseException:
        running.stop()
        raise


# --- the concentrator ----------------------------------------------------------------------------


@dataclass
class Edge:
    made: DemoSite
    site: Site
    booted: Booted
    clock: ManualClock
    sync: SyncService
    started: bool = False

    @property
    def runtime(self) -> Runtime:
        return self.booted.runtime

    @property
    def store(self) -> Store:
        return self.booted.runtime.store

    @property
    def node(self) -> str:
        return self.site.settings.node

    @property
    def building(self) -> SimulatedBuilding:
        return building_of(self.booted)

    def start_sync(self) -> None:
        self.sync.start()
        self.started = True

    def cycle(self, every: dt.timedelta) -> CycleReport:
        """One poll cycle now, a sync tick, then the clock moves on by `every`."""
        report = self.runtime.run_cycle()
        self.sync.tick()
        self.clock.advance(every)
        return report

    def cycles(self, count: int, every: dt.timedelta) -> list[CycleReport]:
        return [self.cycle(every) for _ in range(count)]

    def pump(self, what: str, done: Callable[[], bool], timeout: float = WAIT_S) -> None:
        """Tick sync as the runtime thread does between cycles until `done()` holds."""
        deadline = time.monotonic() + timeout
        while True:
            self.sync.tick()
            if done():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout:.0f} s for {what}")
            time.sleep(NAP_S)

    def drained(self) -> bool:
        """Everything acknowledged and pruned: the cloud holds the chain to its head."""
        store = self.store
        return (
            store.acknowledged() == (store.chain.seq, store.chain.head)
            and store.outbox_size() == 0
            and not self.session_in_flight()
        )

    def session_in_flight(self) -> bool:
        return bool(self.sync.session.in_flight)

    def close(self) -> None:
        try:
            if self.started:
                self.sync.stop()
        finally:
            self.booted.close()


def cloud_section(
    host: str, port: int, cloud_key_hex: str, *, tls: TlsFiles | None, **knobs: object
) -> str:
    """A `[cloud]` table for site.toml (absolute TLS paths; `knobs` as TOML scalars)."""
    lines = ["", "[cloud]", f'host = "{host}"', f"port = {port}"]
    if tls is not None:
        lines += [f'ca = "{tls.ca}"', f'cert = "{tls.cert}"', f'key = "{tls.key}"']
    lines.append(f'cloud_public_key = "{cloud_key_hex}"')
    lines += [f"{name} = {value}" for name, value in knobs.items()]
    return "\n".join(lines) + "\n"


def write_site(directory: Path, meters: int) -> DemoSite:
    """A demo site (flat tariff: cheap to bill) whose `[cloud]` section comes later."""
    return write_demo_site(directory, meters, tariff="flat")


def start_edge(
    made: DemoSite,
    host: str,
    port: int,
    cloud_key_hex: str,
    *,
    tls: TlsFiles | None,
    clock: ManualClock,
    start_sync: bool = True,
    **knobs: object,
) -> Edge:
    """Append `[cloud]` to the demo site, boot it on `clock` (which the cloud may share) and
    (unless `start_sync=False`) start its sync."""
    with made.site_toml.open("a") as toml:
        toml.write(cloud_section(host, port, cloud_key_hex, tls=tls, **knobs))
    site = load_site(made.site_toml)
    assert site.simulation is not None and site.simulation.start == clock.true_now()
    assert site.settings.cloud is not None
    booted = boot(site, clock=clock)
    try:
        edge = Edge(made, site, booted, clock, SyncService(booted.runtime, site.settings.cloud))
        if start_sync:
            edge.start_sync()
        return edge
    except BaseException:
        booted.close()
        raise
