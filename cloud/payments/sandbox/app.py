"""The sandbox as one FastAPI app: `create_sandbox` builds it around a `Sandbox` (keys, state,
notifier, clock), and `serve_in_thread` runs it with uvicorn on loopback.

    sandbox = create_sandbox()                    # keys made now; knobs in sandbox.state.knobs
    with serve_in_thread(sandbox) as running:     # any free port; sandbox.base_url is set
        sandbox.keys.write(directory, api_base=running.url, notify_base=cloud_url)
        ...
        sandbox.pay(out_trade_no)                 # what the /pay page's button does

Parts plug in through `PARTS`: each is `routes(sandbox) -> APIRouter`, called once when the
app is made (the refunds and bills parts add theirs to this tuple). An Alipay open-API method
is a row of `sandbox.alipay_methods` (method name → handler), which a part may add to.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import uvicorn
from fastapi import APIRouter, FastAPI

from cloud.payments.sandbox import alipay, bills, pages, refunds, wechat
from cloud.payments.sandbox.keys import SandboxKeys
from cloud.payments.sandbox.notifier import Notifier
from cloud.payments.sandbox.state import (
    CLOSED,
    PAID,
    WAITING,
    SandboxOrder,
    SandboxRefused,
    SandboxState,
    transaction_id,
)

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 10.0


def expiry(order: SandboxOrder) -> dt.datetime | None:
    """An order's `time_expire` (WeChat RFC 3339, Alipay `yyyy-MM-dd HH:mm:ss` Beijing)."""
    try:
        if "T" in order.time_expire:
            return dt.datetime.fromisoformat(order.time_expire)
        if order.time_expire:
            local = dt.datetime.strptime(order.time_expire, "%Y-%m-%d %H:%M:%S")
            return local.replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))
    except ValueError:
        return None
    return None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


AlipayMethod = Callable[["Sandbox", dict[str, str], dict[str, Any]], dict[str, Any]]


@dataclass
class Sandbox:
    """Everything the sandbox's parts share."""

    keys: SandboxKeys
    state: SandboxState
    now: Callable[[], dt.datetime]
    notifier: Notifier
    base_url: str = "http://127.0.0.1"  # where it is served (`serve_in_thread` sets it)
    alipay_methods: dict[str, AlipayMethod] = field(default_factory=dict)
    app: FastAPI = field(default_factory=FastAPI)

    def include_router(self, router: APIRouter) -> None:
        self.app.include_router(router)

    def pay_url(self, out_trade_no: str) -> str:
        """The page where a person pays (what a QR code or an H5 link opens)."""
        return f"{self.base_url}/pay/{out_trade_no}"

    def pay(
        self, out_trade_no: str, *, even_closed: bool = False, notify: bool = True
    ) -> SandboxOrder:
        """A person pays the order (`even_closed`: as if the provider took a payment for an
        order the merchant had closed, which happens when the close crosses the payment); the
        notification goes out unless `notify` is False. Paying a paid order again does nothing."""
        with self.state.lock:
            order = self.state.orders.get(out_trade_no)
            if order is None:
                raise SandboxRefused(f"no order {out_trade_no}")
            if order.state == PAID:
                return order
            if order.state == CLOSED and not even_closed:
                raise SandboxRefused(f"order {out_trade_no} is closed")
            now = self.now()
            expires = expiry(order)
            if expires is not None and now > expires and not even_closed:
                order.state = CLOSED  # the providers close an order at its time_expire
                raise SandboxRefused(f"order {out_trade_no} expired at {order.time_expire}")
            order.state = PAID
            order.paid_at = now
            order.transaction_id = transaction_id(order.provider, now)
            if not order.payer:
                order.payer = (
                    "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" if order.provider == "wechat"
                    else "2088102177846880"
                )  # fmt: skip
        if notify:
            self.notify(order)
        return order

    def notify(self, order: SandboxOrder, *, now: bool = False) -> bool:
        """Send the order's paid notification (on the notifier; `now`: one attempt here
        first). Whether that first attempt was taken (False when queued)."""
        notice = (wechat.transaction_notice if order.provider == "wechat"
                  else alipay.trade_notice)(self, order)  # fmt: skip
        if now:
            return self.notifier.send_now(notice)
        self.notifier.send(notice)
        return False

    def cancel(self, out_trade_no: str) -> SandboxOrder:
        """The person walks away: the order stays unpaid (the providers do not close it)."""
        order = self.state.order(out_trade_no)
        if order is None:
            raise SandboxRefused(f"no order {out_trade_no}")
        return order

    def close(self, out_trade_no: str) -> SandboxOrder | None:
        """The merchant closes an unpaid order; a paid one stays paid. The order, if any."""
        with self.state.lock:
            order = self.state.orders.get(out_trade_no)
            if order is not None and order.state == WAITING:
                order.state = CLOSED
            return order

    def stop(self) -> None:
        self.notifier.stop()


PARTS: tuple[Callable[[Sandbox], APIRouter], ...] = (
    wechat.routes,
    alipay.routes,
    pages.routes,
    refunds.routes,
    bills.routes,
)


def create_sandbox(
    keys: SandboxKeys | None = None,
    *,
    state: SandboxState | None = None,
    now: Callable[[], dt.datetime] = utc_now,
) -> Sandbox:
    """A sandbox with `keys` (made now if None): its app is `sandbox.app`."""
    state = state or SandboxState()
    sandbox = Sandbox(
        keys=keys or SandboxKeys(),
        state=state,
        now=now,
        notifier=Notifier(state, now),
        app=FastAPI(title="Voltbook payment sandbox", docs_url=None, redoc_url=None),
    )
    sandbox.alipay_methods.update(alipay.METHODS)
    for part in PARTS:
        sandbox.include_router(part(sandbox))
    return sandbox


@dataclass
class RunningSandbox:
    sandbox: Sandbox
    url: str
    _server: uvicorn.Server
    _thread: threading.Thread
    _listener: socket.socket

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(START_TIMEOUT_S)
        self._listener.close()
        self.sandbox.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_in_thread(sandbox: Sandbox, host: str = LOOPBACK, port: int = 0) -> RunningSandbox:
    """Serve `sandbox` on `host`:`port` (0: any free port) on a background thread; its
    `base_url` becomes the served URL."""
    listener = socket.create_server((host, port))
    url = f"http://{host}:{listener.getsockname()[1]}"
    sandbox.base_url = url
    server = uvicorn.Server(
        uvicorn.Config(sandbox.app, host=host, port=0, log_config=None, lifespan="off")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="payment-sandbox", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            with contextlib.suppress(OSError):
                listener.close()
            raise RuntimeError("the payment sandbox did not start")
        time.sleep(0.01)
    return RunningSandbox(sandbox, url, server, thread, listener)
