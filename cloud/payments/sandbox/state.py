"""What the sandbox remembers: its orders (both providers', by out_trade_no), the knobs a test
or the demo turns, and every notification attempt made.

An order is `waiting` until a person pays (`paid`) or it is closed (`closed`); each provider
names these states its own way (`WECHAT_STATE`, `ALIPAY_STATE`). All of it sits behind one lock:
the sandbox's handlers run on a thread pool and the notifier on its own thread.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any


class SandboxRefused(Exception):
    """What a person cannot do on the sandbox's page (pay a closed order, an unknown one)."""


WAITING, PAID, CLOSED = "waiting", "paid", "closed"
WECHAT_STATE = {WAITING: "NOTPAY", PAID: "SUCCESS", CLOSED: "CLOSED"}
ALIPAY_STATE = {WAITING: "WAIT_BUYER_PAY", PAID: "TRADE_SUCCESS", CLOSED: "TRADE_CLOSED"}
WECHAT_TRADE_TYPE = {"jsapi": "JSAPI", "native": "NATIVE", "h5": "MWEB"}


@dataclass
class Knobs:
    """How the sandbox misbehaves, as the real providers do now and then.

    `time_scale` multiplies every wait of the retry schedules (0.001: a day in 86 s);
    `duplicates` extra copies of every notification sent at once; `delay_s` before the first
    attempt (scaled too); `drop` never sends notifications (the cloud must query);
    `alipay_charset` the charset of Alipay's notifications (`utf-8` or `gbk`);
    `notify_before_answer`: an order is paid and notified *while* its create call is still
    being answered (the notice overtakes the answer)."""

    time_scale: float = 1.0
    duplicates: int = 0
    delay_s: float = 0.0
    drop: bool = False
    alipay_charset: str = "utf-8"
    notify_before_answer: bool = False


@dataclass
class SandboxOrder:
    provider: str  # wechat, alipay
    out_trade_no: str
    channel: str  # jsapi, native, h5; wap, precreate
    merchant: str  # WeChat mchid, Alipay app_id
    appid: str  # WeChat appid ("" for Alipay)
    fen: int
    description: str
    notify_url: str
    return_url: str
    created: dt.datetime
    time_expire: str = ""
    payer: str = ""  # WeChat openid; Alipay buyer_id once paid
    state: str = WAITING
    transaction_id: str = ""
    paid_at: dt.datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # what other parts keep (refunds, …)


@dataclass
class Attempt:
    """One notification sent (or dropped), and what came back."""

    provider: str
    out_trade_no: str
    kind: str  # transaction, refund, …
    number: int  # 0: the first attempt
    at: dt.datetime
    status: int | None  # HTTP status; None: no answer (or dropped)
    answer: str
    accepted: bool


@dataclass
class SandboxState:
    knobs: Knobs = field(default_factory=Knobs)
    orders: dict[str, SandboxOrder] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def order(self, out_trade_no: str) -> SandboxOrder | None:
        with self.lock:
            return self.orders.get(out_trade_no)

    def accepted(self, out_trade_no: str, kind: str = "transaction") -> list[Attempt]:
        with self.lock:
            return [
                a for a in self.attempts
                if a.out_trade_no == out_trade_no and a.kind == kind and a.accepted
            ]  # fmt: skip


def transaction_id(provider: str, now: dt.datetime) -> str:
    """A provider's transaction number: WeChat `4200…` (28 digits), Alipay `yyyymmdd22…`."""
    digits = f"{secrets.randbelow(10**20):020d}"
    if provider == "wechat":
        return "4200" + now.strftime("%Y") + digits
    return now.strftime("%Y%m%d") + "22" + digits[:18]
