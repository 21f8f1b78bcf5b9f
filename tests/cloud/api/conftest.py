"""The API under test: a real migrated database (the `engine` fixture of `tests/cloud`: SQLite,
and PostgreSQL when it can be started), data put there by the real domain code — concentrators
registered, a status with the inventory, signed uplink batches through `cloud.ingest.handler.Ingest`
— and FastAPI's TestClient in front. No mocks of our own code.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.app import create_app
from cloud.db.auth import Token, User
from cloud.db.engine import session_factory
from cloud.ingest import concentrators
from cloud.ingest.handler import Ingest
from cloud.people import auth
from cloud.people.auth import Role
from ledger.accounts import Pocket, System, pocket_id, system_id, unit_of
from ledger.chain import NodeKey
from ledger.ids import derive_id
from ledger.readings import ReadingRow
from ledger.transfers import Code, Kind, RefValue, TimeSource, Transfer
from ledger.wire import Ack, AckStatus
from tests.cloud.conftest import Clock
from tests.cloud.fake_edge import T0, FakeEdge, ms
from tests.cloud.helpers import open_ack

NODE = "edge-0001"
OTHER = "edge-0002"
EDGE_KEYS = {NODE: NodeKey.from_seed(b"1" * 32), OTHER: NodeKey.from_seed(b"2" * 32)}
M1, M2, M3, M9 = "000000000001", "000000000002", "000000000003", "000000000901"

INVENTORY: dict[str, dict[str, Any]] = {
    NODE: {
        "A0001": {"shop": "S101", "building": "B1", "floor": "1F",
                  "meters": [{"address": M1, "protocol": "dlt645"},
                             {"address": M2, "protocol": "dlt645"}]},
        "A0002": {"shop": "S102", "building": "B1", "floor": "1F",
                  "meters": [{"address": M3, "protocol": "modbus"}]},
    },
    OTHER: {
        "A0101": {"shop": "S201", "building": "B2", "floor": "2F",
                  "meters": [{"address": M9, "protocol": "dlt645"}]},
    },
}  # fmt: skip


def transfer(
    number: int,
    debit: str,
    credit: str,
    amount: int,
    code: Code,
    *,
    node: str = NODE,
    kind: Kind = Kind.SINGLE,
    refs: Mapping[str, RefValue] | None = None,
    transfer_id: int | None = None,
) -> Transfer:
    return Transfer(
        id=transfer_id or derive_id("test", node, number),
        debit=debit,  # type: ignore[arg-type]
        credit=credit,  # type: ignore[arg-type]
        amount=amount,
        unit=unit_of(debit),  # type: ignore[arg-type]
        code=code,
        time=T0.isoformat(),
        time_source=TimeSource.NTP,
        kind=kind,
        refs=dict(refs or {}),
    )


def reading(
    meter: str,
    when: dt.datetime,
    energy_wh: int,
    *,
    relay: int = 1,
    tariff: str | None = None,
    voltage: float | None = 220.1,
) -> ReadingRow:
    """A reading as the edge sends it."""
    return ReadingRow(
        meter, ms(when), energy_wh, tariff, voltage, 1.5, 330.0, 0.98, relay, None, None
    )


@dataclass
class Site:
    """The concentrators as the API tests see them: each a `FakeEdge` with its outbox ids,
    uploading through the real ingest."""

    engine: Engine
    ingest: Ingest
    key: NodeKey  # the cloud's
    edges: dict[str, FakeEdge]
    outbox: dict[str, int] = field(default_factory=dict)

    def upload(
        self,
        node: str,
        transfers: Sequence[Transfer] = (),
        *,
        readings: Sequence[ReadingRow] = (),
        events: Sequence[Mapping[str, Any]] = (),
        results: Sequence[Mapping[str, Any]] = (),
        key: NodeKey | None = None,
    ) -> Ack:
        """Book `transfers` on the edge's chain and send them with the rest in one batch."""
        edge = self.edges[node]
        entries = edge.book(*transfers)
        first = self.outbox.get(node, 0) + 1
        upto = first - 1 + max(1, len(entries) + len(readings) + len(events) + len(results))
        self.outbox[node] = upto
        payload = edge.payload(
            first, upto, entries, readings=readings, events=events, results=results, key=key
        )
        return self.send(node, payload)

    def send(self, node: str, payload: bytes) -> Ack:
        return open_ack(self.ingest.handle_batch(node, payload), self.key)

    def status(self, node: str, *, online: bool = True, commands: int = 0) -> list[bytes]:
        payload = self.edges[node].status(online, accounts=INVENTORY[node], commands=commands)
        return self.ingest.handle_status(node, payload)


SUBSIDY_ISSUED = system_id(System.SUBSIDY_ISSUED)
SUBSIDY_USED = system_id(System.SUBSIDY_USED)
CASH = system_id(System.CASH_IN_TRANSIT)
SALES = system_id(System.ENERGY_SALES)
GRACE = system_id(System.GRACE_ISSUED)
REFUNDS = system_id(System.REFUNDS_PAYABLE)


def opening_transfers(node: str) -> list[Transfer]:
    """A month's start on a concentrator: subsidies, a desk recharge, consumption, a grace
    allowance, and a refund still pending."""
    a1, a2 = "A0001", "A0002"
    meter = {"meter": M1, "reg_from": 100_000, "reg_to": 101_200}
    return [
        transfer(1, SUBSIDY_ISSUED, pocket_id(a1, Pocket.SUBSIDY), 50_000, Code.SUBSIDY_ISSUE,
                 node=node, refs={"period": "2026-11"}),
        transfer(2, SUBSIDY_ISSUED, pocket_id(a2, Pocket.SUBSIDY), 50_000, Code.SUBSIDY_ISSUE,
                 node=node, refs={"period": "2026-11"}),
        transfer(3, CASH, pocket_id(a1, Pocket.PREPAID), 10_000, Code.RECHARGE,
                 node=node, refs={"payment": "DESK-0001"}),
        transfer(4, pocket_id(a1, Pocket.SUBSIDY), SUBSIDY_USED, 1_200, Code.CONSUME,
                 node=node, refs=meter),
        transfer(5, pocket_id(a1, Pocket.PREPAID), SALES, 837, Code.CONSUME,
                 node=node, refs=meter),
        transfer(6, GRACE, pocket_id(a2, Pocket.GRACE), 2_000, Code.GRACE_ISSUE, node=node),
        transfer(7, pocket_id(a1, Pocket.PREPAID), REFUNDS, 1_000, Code.REFUND,
                 node=node, kind=Kind.PENDING),
    ]  # fmt: skip


# -- the site and the client ----------------------------------------------------------------


@pytest.fixture
def site(engine: Engine, cloud_key: NodeKey, clock: Clock) -> Site:
    """Two registered concentrators with their inventory; edge-0001 has uploaded a month's
    opening (ledger, readings, an event)."""
    with session_factory(engine).begin() as session:
        for node, key in EDGE_KEYS.items():
            concentrators.register(session, node, key.public_key, name=f"Site {node}", now=T0)
    edges = {node: FakeEdge(node, key) for node, key in EDGE_KEYS.items()}
    built = Site(engine, Ingest(engine, cloud_key, clock), cloud_key, edges)
    for node in EDGE_KEYS:
        built.status(node)
    readings = [
        reading(M1, T0 - dt.timedelta(hours=2), 100_000, tariff="1000,20000,40000,39000"),
        reading(M2, T0 - dt.timedelta(hours=2), 5_000),
        reading(M1, T0 - dt.timedelta(hours=1), 101_200, tariff="1000,20500,40700,39000"),
        reading(M3, T0 - dt.timedelta(minutes=30), 7_000, relay=0, voltage=None),
    ]
    events = [
        {"id": 1, "t": ms(T0 - dt.timedelta(minutes=30)), "c": "relay", "k": "relay_tripped",
         "m": M3, "a": "A0002", "d": {"why": "arrears"}},
    ]  # fmt: skip
    ack = built.upload(NODE, opening_transfers(NODE), readings=readings, events=events)
    assert ack.status is AckStatus.OK, ack
    return built


# -- logins ----------------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"
MERCHANT_ACCOUNT = "A0001"
TOKEN_LIFE = dt.timedelta(days=30)


@functools.cache
def _password_hash() -> str:
    return auth.hash_password(PASSWORD)  # argon2 is slow on purpose: hash once per run


def issue_token(engine: Engine, user: str) -> str:
    """A bearer token for an existing user, issued directly (the login endpoint itself is
    tested in `test_auth.py`)."""
    token = secrets.token_urlsafe(24)
    with session_factory(engine).begin() as session:
        session.add(Token(digest=hashlib.sha256(token.encode()).hexdigest(), user=user,
                          created=T0, expires=T0 + TOKEN_LIFE, revoked=False))  # fmt: skip
    return token


def add_user(engine: Engine, name: str, role: Role, account: str | None = None) -> str:
    """A user with `PASSWORD`; returns a token for it."""
    with session_factory(engine).begin() as session:
        session.add(User(name=name, role=role.value, password_hash=_password_hash(),
                         account=account, display_name=name, active=True, failed_logins=0,
                         locked_until=None, created=T0))  # fmt: skip
    return issue_token(engine, name)


@pytest.fixture
def tokens(engine: Engine) -> dict[Role, str]:
    """One user per role (`admin-1`, `operator-1`, …; the merchant owns A0001) → its token."""
    return {
        role: add_user(engine, f"{role.value}-1", role,
                       MERCHANT_ACCOUNT if role is Role.MERCHANT else None)
        for role in Role
    }  # fmt: skip


def invalid_fields(answer: Any) -> list[str]:
    """The fields a 422 names, in order (`{"error": "invalid", "detail": "body.fen: …; …"}`)."""
    body = answer.json()
    assert body["error"] == "invalid", body
    return [part.split(": ", 1)[0] for part in body["detail"].split("; ")]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(
    site: Site, engine: Engine, cloud_key: NodeKey, clock: Clock, tokens: dict[Role, str]
) -> Iterator[TestClient]:
    """The API, logged in as `admin-1` (pass `headers=bearer(tokens[role])` to be another)."""
    with TestClient(create_app(engine, cloud_key, clock)) as test_client:
        test_client.headers.update(bearer(tokens[Role.ADMIN]))
        yield test_client
