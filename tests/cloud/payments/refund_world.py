"""What the refund and reconciliation tests share: the provider sandbox (both providers, keys
made in the test) and the cloud's API, each served by uvicorn on loopback, the cloud's
`Providers` loaded from the `[payments]` snippet the sandbox wrote, one clock for all; and
paid orders as both sides hold them (the sandbox took the money; our order row, and its
recharge when credited).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.app import create_app
from cloud.config import parse_config
from cloud.db.engine import session_factory
from cloud.db.models import Alarm, Recharge, RechargeStatus
from cloud.db.payments import PaymentOrder, PaymentRefund
from cloud.payments.providers import Providers
from cloud.payments.sandbox import refunds as sandbox_refunds
from cloud.payments.sandbox.app import RunningSandbox, Sandbox, create_sandbox, serve_in_thread
from cloud.payments.sandbox.state import SandboxOrder
from ledger.chain import NodeKey
from tests.cloud.conftest import Clock

LOOPBACK = "127.0.0.1"


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """`app` on a free loopback port (uvicorn, a thread) for the block; its URL."""
    listener = socket.create_server((LOOPBACK, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the cloud did not start"
        time.sleep(0.01)
    try:
        yield f"http://{LOOPBACK}:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@dataclass
class World:
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    sandbox: Sandbox
    running: RunningSandbox
    providers: Providers
    cloud_url: str
    app: FastAPI
    numbers: Iterator[int] = field(default_factory=lambda: iter(range(1, 10_000)))

    @property
    def desk(self) -> sandbox_refunds.RefundDesk:
        return sandbox_refunds.desk(self.sandbox)

    def sandbox_paid(self, provider: str, fen: int, no: str | None = None) -> SandboxOrder:
        """A payment the provider took (the person paid on the sandbox's page)."""
        no = no or f"VB{provider[:2].upper()}{next(self.numbers):08d}"
        order = SandboxOrder(
            provider=provider,
            out_trade_no=no,
            channel="native" if provider == "wechat" else "precreate",
            merchant=self.sandbox.keys.mchid if provider == "wechat" else self.sandbox.keys.app_id,
            appid=self.sandbox.keys.appid if provider == "wechat" else "",
            fen=fen,
            description="电费充值",
            notify_url=f"{self.cloud_url}/payments/{provider}/notify",
            return_url="",
            created=self.clock(),
        )
        with self.sandbox.state.lock:
            self.sandbox.state.orders[no] = order
        return self.sandbox.pay(no, notify=False)

    def paid_order(
        self,
        provider: str,
        fen: int,
        *,
        state: str = "credited",
        credited: bool = True,
        ours_fen: int | None = None,
        account: str = "A0001",
    ) -> str:
        """An order paid at the sandbox and (by default) credited here: its out_trade_no."""
        taken = self.sandbox_paid(provider, fen)
        now = self.clock()
        with self.sessions.begin() as session:
            session.add(
                PaymentOrder(
                    out_trade_no=taken.out_trade_no,
                    account=account,
                    fen=fen,
                    provider=provider,
                    channel=taken.channel,
                    state=state,
                    created_by="merchant-1",
                    payer=None,
                    pay={},
                    transaction_id=taken.transaction_id,
                    paid_fen=ours_fen or fen,
                    refunded_fen=0,
                    created=now,
                    expires=now + dt.timedelta(minutes=30),
                    paid_at=taken.paid_at,
                    credited_at=now if credited else None,
                    closed_at=None,
                )
            )
            if credited:
                session.add(
                    Recharge(
                        payment=taken.out_trade_no,
                        account=account,
                        fen=ours_fen or fen,
                        method=provider,
                        operator="merchant-1",
                        status=RechargeStatus.POSTED.value,
                        pending_transfer=f"{next(self.numbers):032x}",
                        command_id=None,
                        created=now,
                        posted=now,
                        voided=None,
                        reason="",
                    )
                )
        return taken.out_trade_no

    def order(self, no: str) -> PaymentOrder:
        with self.sessions() as session:
            row = session.get(PaymentOrder, no)
            assert row is not None
            session.expunge(row)
            return row

    def refund(self, no: str) -> PaymentRefund:
        with self.sessions() as session:
            row = session.get(PaymentRefund, no)
            assert row is not None
            session.expunge(row)
            return row

    def alarms(self, kind: str) -> list[str]:
        with self.sessions() as session:
            return list(session.scalars(select(Alarm.detail).where(Alarm.kind == kind)))


def providers_for(
    sandbox: Sandbox,
    directory: Path,
    *,
    api_base: str,
    notify_base: str,
    clock: Callable[[], dt.datetime],
) -> Providers:
    """The cloud's providers as `[payments]` (the sandbox's snippet) configures them."""
    snippet = sandbox.keys.write(directory, api_base=api_base, notify_base=notify_base)
    data: dict[str, Any] = tomllib.loads(snippet.read_text())
    config = parse_config(snippet, data, directory)
    assert config.payments is not None
    return Providers.load(config.payments, clock)


@contextlib.contextmanager
def world_on(engine: Engine, cloud_key: NodeKey, clock: Clock, directory: Path) -> Iterator[World]:
    sandbox = create_sandbox(now=clock)
    sandbox_refunds.desk(sandbox).settle_after_s = 0.05
    app = create_app(engine, cloud_key, clock)
    with serve_in_thread(sandbox) as running, serve(app) as cloud_url:
        providers = providers_for(
            sandbox, directory, api_base=running.url, notify_base=cloud_url, clock=clock
        )
        app.state.providers = providers
        try:
            yield World(
                engine, session_factory(engine), clock, sandbox, running, providers, cloud_url, app
            )
        finally:
            providers.close()
