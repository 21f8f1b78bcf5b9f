"""Payment orders: made here, opened at the provider, closed when unpaid.

    create(session, providers, account=…, fen=…, provider=…, channel=…, created_by=…, now=…)
        the order row (state `created`) is COMMITTED before the provider is called, so a
        notification that overtakes the provider's answer finds it; then what the phone
        needs (`row.pay`) is stored and committed. A provider that refuses: `failed`; one
        that does not answer: the order stays `created` and the sweeper settles it.
    transition(session, row, event, cause=…, facts=…, now=…)
        the one way an order's state changes: a conditional UPDATE (only from the state the
        row holds), and a `payment_transitions` row with the cause and the facts. False
        when another transaction moved the order first (the caller re-reads it).
    close(session, providers, row, event=…, cause=…, key=…, now=…)
        closes an unpaid order at the provider, then here; one the provider says was paid
        is settled instead (`cloud.payments.settle`).

`create` and `close` commit the session (they talk to a provider between two commits);
everything else leaves committing to the caller.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from cloud.db.models import ReportedAccount
from cloud.db.payments import PaymentOrder, PaymentTransition
from cloud.errors import Conflict, Invalid, NotFound, ProviderUnavailable
from cloud.operations.recharges import MAX_RECHARGE_FEN
from cloud.payments import gateways
from cloud.payments.providers import Providers
from cloud.payments.states import ORDER, OrderEvent, OrderState
from ledger.chain import NodeKey

OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_\-]{6,32}")
MAX_URL = 1024
NOT_CONFIGURED = "online payments are not configured ([payments] in cloud.toml)"


def new_out_trade_no(now: dt.datetime) -> str:
    """`VB` + UTC time to the second + 12 random hex digits: 26 characters, unique, sortable."""
    return f"VB{now.astimezone(dt.UTC):%y%m%d%H%M%S}{secrets.token_hex(6).upper()}"


def configured(providers: Providers | None) -> Providers:
    if providers is None:
        raise Conflict(NOT_CONFIGURED)
    return providers


def get(session: Session, out_trade_no: str, *, lock: bool = False) -> PaymentOrder:
    row = session.get(PaymentOrder, out_trade_no, with_for_update=lock, populate_existing=True)
    if row is None:
        raise NotFound(f"no payment order {out_trade_no!r}")
    return row


def transition(
    session: Session,
    row: PaymentOrder,
    event: OrderEvent,
    *,
    cause: str,
    now: dt.datetime,
    facts: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> bool:
    """Move `row` by `event` (and set `values` with it) if it still holds the state it was
    read with; record the transition. False: another transaction moved it first."""
    before = row.state
    after = ORDER.next(before, event)
    result = session.execute(
        update(PaymentOrder)
        .where(PaymentOrder.out_trade_no == row.out_trade_no, PaymentOrder.state == before)
        .values(state=after.value, **(values or {}))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(
        PaymentTransition(out_trade_no=row.out_trade_no, at=now, from_state=before,
                          to_state=after.value, cause=cause, facts=facts or {})
    )  # fmt: skip
    session.flush()
    session.refresh(row)
    return True


def _check(
    session: Session, providers: Providers, *, account: str, fen: object, provider: str,
    channel: str, payer: str | None, return_url: str | None,
) -> None:  # fmt: skip
    if type(fen) is not int or not 0 < fen <= MAX_RECHARGE_FEN:
        raise Invalid(f"fen must be an integer between 1 and {MAX_RECHARGE_FEN}, got {fen!r}")
    gateways.check_channel(providers.settings, provider, channel)
    (gateways.wechat if provider == "wechat" else gateways.alipay)(providers)
    if session.get(ReportedAccount, account) is None:
        raise NotFound(f"account {account!r} is not known (no concentrator reported it)")
    if channel == "jsapi" and not (payer and 0 < len(payer) <= 128 and payer.isprintable()):
        raise Invalid("a WeChat JSAPI payment needs the payer's openid (payer)")
    if return_url is not None and (
        not return_url.startswith(("https://", "http://")) or len(return_url) > MAX_URL
        or any(c.isspace() for c in return_url)
    ):  # fmt: skip
        raise Invalid(f"return_url must be an http(s) URL of at most {MAX_URL} characters")


def create(
    session: Session,
    providers: Providers | None,
    *,
    account: str,
    fen: int,
    provider: str,
    channel: str,
    created_by: str,
    payer: str | None = None,
    return_url: str | None = None,
    now: dt.datetime,
    client_ip: str | None = None,
) -> PaymentOrder:
    """A new payment order, opened at `provider`; `row.pay` is what the phone needs. Commits."""
    providers = configured(providers)
    _check(session, providers, account=account, fen=fen, provider=provider, channel=channel,
           payer=payer, return_url=return_url)  # fmt: skip
    ttl = providers.settings.order_ttl_s
    row = PaymentOrder(
        out_trade_no=new_out_trade_no(now), account=account, fen=fen, provider=provider,
        channel=channel, state=ORDER.start(OrderState.CREATED), created_by=created_by,
        payer=payer if channel == "jsapi" else None, pay={}, transaction_id=None, paid_fen=None,
        refunded_fen=0, created=now, expires=now + dt.timedelta(seconds=ttl),
        paid_at=None, credited_at=None, closed_at=None,
    )  # fmt: skip
    session.add(row)
    session.add(PaymentTransition(out_trade_no=row.out_trade_no, at=now, from_state=None,
                                  to_state=row.state, cause="created",
                                  facts={"by": created_by, "channel": channel}))  # fmt: skip
    session.commit()  # before the provider is asked: its notice may come before its answer
    try:
        pay = gateways.open_order(providers, row, return_url=return_url, client_ip=client_ip)
    except gateways.ProviderRefused as exc:
        session.rollback()
        row = get(session, row.out_trade_no)
        transition(session, row, OrderEvent.FAILED, cause="provider_refused", now=now,
                   facts={"code": exc.code, "detail": str(exc)})  # fmt: skip
        session.commit()
        raise
    except ProviderUnavailable:
        session.rollback()  # stays `created`: the sweeper asks the provider at expiry
        raise
    session.execute(
        update(PaymentOrder).where(PaymentOrder.out_trade_no == row.out_trade_no).values(pay=pay)
    )
    session.commit()
    return get(session, row.out_trade_no)


def close(
    session: Session,
    providers: Providers,
    row: PaymentOrder,
    *,
    event: OrderEvent,
    cause: str,
    key: NodeKey,
    now: dt.datetime,
    facts: dict[str, Any] | None = None,
) -> PaymentOrder:
    """Close an unpaid order at its provider and here (`event`: expired or cancelled). If
    the provider says it was paid, it is settled as a notice would (cause `query`). Commits."""
    from cloud.payments import settle  # settle builds on this module

    if row.state != OrderState.CREATED:
        raise Conflict(f"payment order {row.out_trade_no} is {row.state}, not open")
    session.commit()  # nothing held while the provider answers
    closed = gateways.close(providers, row)
    trade = None if closed else gateways.query(providers, row)
    row = get(session, row.out_trade_no)
    if trade is not None and trade.status == gateways.PAID:
        settle.settle_trade(session, providers, row, trade, cause="query", key=key, now=now)
    elif row.state == OrderState.CREATED:
        transition(session, row, event, cause=cause, now=now, facts=facts,
                   values={"closed_at": now})  # fmt: skip
    session.commit()
    return get(session, row.out_trade_no)
