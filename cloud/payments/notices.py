"""Notifications from the providers: verified over the raw bytes, checked against our order,
settled exactly once (`cloud.payments.settle`), and every one recorded in `payment_notices`.

    wechat_notice(session, providers, headers=…, body=…, address=…, key=…, now=…)
        `verify_signed` (platform key by Wechatpay-Serial, 5-minute window, SIGNTEST fails),
        `decrypt_resource` (APIv3 key), then mchid, appid, out_trade_no, amount.total and
        currency against the order; only trade_state SUCCESS pays
    alipay_notice(session, providers, body=…, address=…, key=…, now=…)
        `parse_form` (in the posted charset), `verify(notification=True)` (Alipay's key), then
        app_id, seller_id, out_trade_no, total_amount; only TRADE_SUCCESS / TRADE_FINISHED pay

Each answers a `NoticeAnswer`: accepted or duplicate → the provider's success (WeChat 204,
Alipay `success`), sent only after the credit was committed here; refused → WeChat 401
`{"code":"FAIL"}`, Alipay `fail`, and nothing changed but the notice's row (and, for a
verified notice that does not match the order, a `payment_mismatch` alarm).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.db.payments import PaymentNotice, PaymentOrder
from cloud.errors import PaymentRefused
from cloud.payments import alipay_scheme, gateways, settle, wechat_scheme
from cloud.payments.gateways import Trade
from cloud.payments.providers import Providers
from ledger.chain import NodeKey

ACCEPTED, DUPLICATE, REFUSED = "accepted", "duplicate", "refused"
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class NoticeAnswer:
    verdict: str  # accepted, duplicate, refused
    status: int
    body: bytes
    media_type: str | None
    reason: str = ""


def _wechat_answer(verdict: str, reason: str = "") -> NoticeAnswer:
    if verdict == REFUSED:
        body = json.dumps({"code": "FAIL", "message": reason[:200]}, ensure_ascii=False)
        return NoticeAnswer(verdict, 401, body.encode(), "application/json", reason)
    return NoticeAnswer(verdict, 204, b"", None, reason)


def _alipay_answer(verdict: str, reason: str = "") -> NoticeAnswer:
    text = b"fail" if verdict == REFUSED else b"success"
    return NoticeAnswer(verdict, 200, text, "text/plain", reason)


@dataclass
class _Seen:
    """What is known of a notice so far, for its row."""

    provider: str
    address: str
    notice_id: str | None = None
    out_trade_no: str | None = None


def _record(session: Session, seen: _Seen, verdict: str, reason: str, now: dt.datetime) -> None:
    session.add(PaymentNotice(
        provider=seen.provider, received=now, notice_id=(seen.notice_id or "")[:64] or None,
        out_trade_no=(seen.out_trade_no or "")[:64] or None, verdict=verdict,
        reason=reason[:MAX_REASON], address=seen.address[:64],
    ))  # fmt: skip


def _refuse(session: Session, seen: _Seen, exc: PaymentRefused, now: dt.datetime) -> str:
    """Undo anything of this notice but its row (and the alarm of a mismatch); commit."""
    session.rollback()
    if isinstance(exc, settle.Mismatch):
        settle.alarm(session, seen.out_trade_no, seen.provider, str(exc), now)
    _record(session, seen, REFUSED, str(exc), now)
    session.commit()
    return str(exc)


def _settle(
    session: Session, providers: Providers, seen: _Seen, trade: Trade, *, paid: bool,
    key: NodeKey, now: dt.datetime,
) -> str:  # fmt: skip
    """Check `trade` against our order and settle it when `paid`; the verdict. Commits."""
    seen.out_trade_no = trade.out_trade_no
    row = session.get(PaymentOrder, trade.out_trade_no)
    if row is None:
        raise PaymentRefused("unknown_order", f"{trade.out_trade_no[:64]!r} is not our order")
    settle.check(providers, row, trade)
    if not paid:  # WAIT_BUYER_PAY, TRADE_CLOSED, …: nothing to do, and no need to hear it again
        verdict, reason = ACCEPTED, f"not a payment ({trade.facts.get('provider_state')})"
    else:
        verdict = settle.settle_trade(session, providers, row, trade, cause="notice", key=key,
                                      now=now, facts={"notice": seen.notice_id})  # fmt: skip
        reason = ""
    _record(session, seen, verdict, reason, now)
    session.commit()  # the credit is stored before the provider hears success
    return verdict


def wechat_notice(
    session: Session,
    providers: Providers | None,
    *,
    headers: Mapping[str, str],
    body: bytes,
    address: str,
    key: NodeKey,
    now: dt.datetime,
) -> NoticeAnswer:
    seen = _Seen("wechat", address)
    try:
        if providers is None or providers.wechat is None:
            raise PaymentRefused("not_configured", "WeChat Pay is not configured")
        client = providers.wechat
        wechat_scheme.verify_signed(headers, body, client.platform_keys, int(now.timestamp()))
        envelope = wechat_scheme.json_body(body)
        seen.notice_id = str(envelope.get("id", ""))
        event = envelope.get("event_type")
        if not isinstance(event, str) or not event.startswith("TRANSACTION."):
            raise PaymentRefused("unexpected", f"event {str(event)[:40]!r} is not a transaction")
        content = wechat_scheme.decrypt_resource(client.apiv3_key, envelope.get("resource"))
        seen.out_trade_no = str(content.get("out_trade_no", ""))[:64] or None
        trade = gateways.wechat_trade(content)
        paid = trade.facts.get("provider_state") == "SUCCESS"
        return _wechat_answer(_settle(session, providers, seen, trade, paid=paid, key=key, now=now))
    except PaymentRefused as exc:
        return _wechat_answer(REFUSED, _refuse(session, seen, exc, now))
    except IntegrityError:  # the transaction id is another order's
        reason = "the transaction id already paid another order"
        return _wechat_answer(REFUSED, _refuse(session, seen, settle.Mismatch(reason), now))


def alipay_notice(
    session: Session,
    providers: Providers | None,
    *,
    body: bytes,
    address: str,
    key: NodeKey,
    now: dt.datetime,
) -> NoticeAnswer:
    seen = _Seen("alipay", address)
    try:
        if providers is None or providers.alipay is None:
            raise PaymentRefused("not_configured", "Alipay is not configured")
        client = providers.alipay
        params = alipay_scheme.parse_form(body)
        seen.notice_id = params.get("notify_id")
        seen.out_trade_no = params.get("out_trade_no", "")[:64] or None
        alipay_scheme.verify(client.alipay_key, params, notification=True)
        trade = gateways.alipay_trade(params, params.get("app_id", ""), params.get("seller_id", ""))
        paid = params.get("trade_status") in alipay_scheme.PAID
        return _alipay_answer(_settle(session, providers, seen, trade, paid=paid, key=key, now=now))
    except PaymentRefused as exc:
        return _alipay_answer(REFUSED, _refuse(session, seen, exc, now))
    except IntegrityError:
        reason = "the trade number already paid another order"
        return _alipay_answer(REFUSED, _refuse(session, seen, settle.Mismatch(reason), now))
