"""The payment world under test: a real cloud (the API on uvicorn, a real database: SQLite
and PostgreSQL), the provider sandbox on loopback (`cloud.payments.sandbox`) with keys made
for the run, and the cloud configured from the `[payments]` snippet the sandbox writes.
Both share the test's settable clock, as the real ones share the wall clock.

No mocks: a notice either comes from the sandbox's notifier or is signed here with the
sandbox's keys by the providers' schemes (`wechat_scheme`, `alipay_scheme`).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.config import load_config
from cloud.db.engine import session_factory
from cloud.db.models import Alarm, Recharge
from cloud.db.payments import PaymentNotice, PaymentOrder, PaymentRefund, PaymentTransition
from cloud.payments.providers import Providers
from cloud.payments.sandbox.app import RunningSandbox, Sandbox, create_sandbox, serve_in_thread
from cloud.payments.sandbox.keys import SandboxKeys
from cloud.payments.sandbox.state import Knobs, SandboxState
from cloud.payments.sweeper import Sweeper, SweepReport
from cloud.people.auth import Role
from cloud.reports import books
from ledger.chain import NodeKey
from tests.cloud.api.conftest import Site, bearer, site, tokens  # noqa: F401 (fixtures)
from tests.cloud.conftest import Clock

ACCOUNT = "A0001"  # the merchant's (tests.cloud.api.conftest: MERCHANT_ACCOUNT)
OTHER_ACCOUNT = "A0002"
WAIT_S = 15.0


@pytest.fixture(scope="session")
def sandbox_keys() -> SandboxKeys:
    """Made once per run (RSA 2048 is slow to make); a test that rotates makes its own."""
    return SandboxKeys()


@dataclass
class Served:
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    listener: socket.socket

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.listener.close()


def bind() -> socket.socket:
    return socket.create_server(("127.0.0.1", 0))


def serve(app: FastAPI, listener: socket.socket) -> Served:
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the cloud did not start"
        time.sleep(0.01)
    return Served(f"http://127.0.0.1:{listener.getsockname()[1]}", server, thread, listener)


@dataclass
class World:
    engine: Engine
    clock: Clock
    key: NodeKey
    sandbox: Sandbox
    providers: Providers
    cloud_url: str
    client: httpx.Client  # logged in as admin-1
    merchant: httpx.Client  # logged in as the merchant of A0001
    directory: Path

    @property
    def knobs(self) -> Knobs:
        return self.sandbox.state.knobs

    def session(self) -> Session:
        return session_factory(self.engine)()

    def order(self, provider: str = "wechat", channel: str = "native", fen: int = 1990,
              account: str = ACCOUNT, **more: object) -> dict[str, object]:  # fmt: skip
        body = {"account": account, "fen": fen, "provider": provider, "channel": channel, **more}
        answer = self.client.post("/payments/orders", json=body)
        assert answer.status_code == 201, answer.text
        found: dict[str, object] = answer.json()
        return found

    def row(self, out_trade_no: str) -> PaymentOrder:
        with self.session() as session:
            row = session.get(PaymentOrder, out_trade_no)
            assert row is not None
            session.expunge(row)
            return row

    def wait_state(self, out_trade_no: str, state: str) -> PaymentOrder:
        deadline = time.monotonic() + WAIT_S
        while (row := self.row(out_trade_no)).state != state:
            assert time.monotonic() < deadline, f"{out_trade_no} stayed {row.state}, not {state}"
            time.sleep(0.02)
        return row

    def wait_for(self, condition: Callable[[], object]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            assert time.monotonic() < deadline, "waited in vain"
            time.sleep(0.02)

    def causes(self, out_trade_no: str) -> list[tuple[str | None, str, str]]:
        with self.session() as session:
            return [
                (t.from_state, t.to_state, t.cause)
                for t in session.scalars(
                    select(PaymentTransition)
                    .where(PaymentTransition.out_trade_no == out_trade_no)
                    .order_by(PaymentTransition.id)
                )
            ]

    def recharges(self, out_trade_no: str) -> list[Recharge]:
        with self.session() as session:
            rows = list(session.scalars(select(Recharge).where(Recharge.payment == out_trade_no)))
            session.expunge_all()
            return rows

    def verdicts(self, out_trade_no: str | None = None) -> list[tuple[str, str]]:
        with self.session() as session:
            query = select(PaymentNotice.verdict, PaymentNotice.reason).order_by(PaymentNotice.id)
            if out_trade_no is not None:
                query = query.where(PaymentNotice.out_trade_no == out_trade_no)
            return [(v, r) for v, r in session.execute(query)]

    def refunds(self, out_trade_no: str) -> list[tuple[str, int, str]]:
        with self.session() as session:
            found = session.execute(
                select(PaymentRefund.reason, PaymentRefund.fen, PaymentRefund.state)
                .where(PaymentRefund.out_trade_no == out_trade_no)
                .order_by(PaymentRefund.created)
            )
            return [(reason, fen, state) for reason, fen, state in found]

    def alarms(self, kind: str) -> int:
        with self.session() as session:
            return session.scalar(select(func.count()).where(Alarm.kind == kind)) or 0

    def sweep(self) -> SweepReport:
        return Sweeper(session_factory(self.engine), self.providers, self.key, self.clock).sweep()

    def books_sound(self) -> None:
        """The books hold: every invariant of `books verify`, and every recharge of a payment
        order is one credited order's (nothing credited that was not paid)."""
        with self.session() as session:
            assert books.verify(session) == []
            paid = dict(session.execute(
                select(PaymentOrder.out_trade_no, PaymentOrder.state)
                .where(PaymentOrder.credited_at.is_not(None))
            ).all())  # fmt: skip
            for recharge in session.scalars(
                select(Recharge).where(Recharge.method.in_(("wechat", "alipay")))
            ):
                assert recharge.payment in paid, recharge.payment
                order = session.get(PaymentOrder, recharge.payment)
                assert order is not None and order.paid_fen == recharge.fen == order.fen
                assert recharge.operator in ("wechat-pay", "alipay")


MakeWorld = Callable[..., World]


@pytest.fixture
def make_world(  # noqa: PLR0917 (fixtures)
    site: Site,  # noqa: F811 (the fixture)
    engine: Engine,
    cloud_key: NodeKey,
    clock: Clock,
    tokens: dict[Role, str],  # noqa: F811
    sandbox_keys: SandboxKeys,
    tmp_path: Path,
) -> Iterator[MakeWorld]:
    """`make_world(keys=…, knobs=…)`: the sandbox and the cloud, running."""
    stops: list[Callable[[], None]] = []

    def make(keys: SandboxKeys | None = None, knobs: Knobs | None = None) -> World:
        keys = keys or sandbox_keys
        sandbox = create_sandbox(keys, state=SandboxState(knobs=knobs or Knobs(time_scale=0.001)),
                                 now=clock)  # fmt: skip
        running: RunningSandbox = serve_in_thread(sandbox)
        stops.append(running.stop)
        listener = bind()
        cloud_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        directory = tmp_path / "pay"
        snippet = keys.write(directory, api_base=running.url, notify_base=cloud_url)
        config = load_config(snippet, tmp_path / "data")
        assert config.payments is not None
        providers = Providers.load(config.payments, clock)
        stops.append(providers.close)
        app = create_app(engine, cloud_key, clock, providers=providers)
        served = serve(app, listener)
        stops.append(served.stop)
        client = httpx.Client(base_url=cloud_url, headers=bearer(tokens[Role.ADMIN]), timeout=30)
        merchant = httpx.Client(base_url=cloud_url, headers=bearer(tokens[Role.MERCHANT]),
                                timeout=30)  # fmt: skip
        stops.extend((client.close, merchant.close))
        return World(engine, clock, cloud_key, sandbox, providers, cloud_url, client, merchant,
                     directory)  # fmt: skip

    yield make
    for stop in reversed(stops):
        stop()


@pytest.fixture
def world(make_world: MakeWorld) -> World:
    return make_world()
