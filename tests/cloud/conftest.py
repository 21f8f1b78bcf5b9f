"""Fixtures for the cloud's tests: a migrated database on every backend, the cloud key, a
settable clock, and the sync domain (`Ingest`) over them.

`engine` is parametrised: each test using it runs on SQLite (a copy of a database migrated
once per session) and on PostgreSQL (a fresh database cloned from a migrated template on a
throwaway server started once per session; skipped, or failed under REQUIRE_REAL_SERVICES=1,
when PostgreSQL is not installed).
"""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.engine import make_engine, session_factory, upgrade
from cloud.ingest import concentrators
from cloud.ingest.handler import Ingest
from cloud.services.errors import ServiceError
from cloud.services.postgres import ThrowawayPostgres, find_postgres
from ledger.chain import NodeKey
from tests.cloud.fake_edge import T0, FakeEdge
from tests.conftest import service_missing

TEMPLATE = "voltbook_template"
_numbers = itertools.count(1)


@dataclass
class Clock:
    now: dt.datetime = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


class PostgresDatabases:
    """Fresh databases, each a copy of one migrated template, on one throwaway server."""

    def __init__(self, server: ThrowawayPostgres) -> None:
        self.server = server
        base = server.url.rsplit("/", 1)[0]
        self._url = lambda name: f"{base}/{name}"
        self._admin_dsn = server.dsn.rsplit("/", 1)[0] + "/postgres"
        self._admin = psycopg.connect(self._admin_dsn, autocommit=True)
        self._execute(f"CREATE DATABASE {TEMPLATE}")
        engine = make_engine(self._url(TEMPLATE))
        upgrade(engine)
        engine.dispose()

    def create(self) -> str:
        name = f"voltbook_test_{next(_numbers)}"
        self._execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self._url(name)

    def drop(self, url: str) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def _execute(self, statement: str) -> None:
        """Run an admin statement, reconnecting once if a test restarted the server."""
        try:
            self._admin.execute(statement)
        except psycopg.OperationalError:
            self._admin.close()
            self._admin = psycopg.connect(self._admin_dsn, autocommit=True)
            self._admin.execute(statement)

    def close(self) -> None:
        self._admin.close()


@pytest.fixture(scope="session")
def pg_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresDatabases]:
    if find_postgres() is None:
        service_missing("postgres", "initdb/pg_ctl not on PATH or in /usr/lib/postgresql/*/bin")
    server = ThrowawayPostgres(tmp_path_factory.mktemp("cloud-pg"))
    try:
        server.start()
    except ServiceError as exc:
        service_missing("postgres", str(exc))
    with server:
        databases = PostgresDatabases(server)
        yield databases
        databases.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cloud-sqlite") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty cloud database (each test runs once per backend)."""
    if request.param == "sqlite":
        path = tmp_path / "cloud.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        engine = make_engine(f"sqlite:///{path}")
        yield engine
        engine.dispose()
        return
    databases: PostgresDatabases = request.getfixturevalue("pg_databases")
    url = databases.create()
    engine = make_engine(url)
    yield engine
    engine.dispose()
    databases.drop(url)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture(scope="session")
def cloud_key() -> NodeKey:
    return NodeKey.from_seed(bytes(range(32)))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ingest(engine: Engine, cloud_key: NodeKey, clock: Clock) -> Ingest:
    return Ingest(engine, cloud_key, clock)


RegisterEdge = Callable[..., FakeEdge]


@pytest.fixture
def edge_of(sessions: sessionmaker[Session], clock: Clock) -> RegisterEdge:
    """`edge_of("edge-0001")` → a FakeEdge registered with the cloud."""

    def make(node: str = "edge-0001", key: NodeKey | None = None) -> FakeEdge:
        edge = FakeEdge(node, key or NodeKey.generate())
        with sessions.begin() as session:
            concentrators.register(session, node, edge.key.public_key, now=clock())
        return edge

    return make
