"""WeChat Pay's refund notifications (`POST /payments/wechat/refund-notify`), checked exactly like
payment notices: the raw body's signature by the key `Wechatpay-Serial` names, the 5-minute
window, SIGNTEST probes refused, the resource (`original_type: "refund"`) decrypted with the
APIv3 key; then the refund must be ours: mchid, out_refund_no, its order and its amount.

    event_type        REFUND.SUCCESS | REFUND.ABNORMAL | REFUND.CLOSED
    resource (plain)  {mchid, out_trade_no, transaction_id, out_refund_no, refund_id,
                       refund_status: SUCCESS|ABNORMAL|CLOSED, success_time,
                       user_received_account, amount{total, refund, payer_total, payer_refund}}

A notice is answered (204) only after what it says is in the transaction the route commits;
the same notice again, or a concurrent twin, answers 204 and changes nothing more
(`refunds.finish` is a conditional update). A notice that fails a check is answered as WeChat
Pay reads a refusal, 401 `{"code": "FAIL", "message"}` (it retries), like the payment notices
(`cloud.payments.notices`): nothing changes but its `payment_notices` row, and a mismatch of
merchant, order or amount also raises a `payment_mismatch` alarm.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from cloud.chains.alarms import raise_alarm
from cloud.db.payments import PaymentNotice, PaymentRefund
from cloud.errors import PaymentRefused
from cloud.payments import refunds, wechat_scheme
from cloud.payments.providers import WechatPay

EVENTS = {"REFUND.SUCCESS": "SUCCESS", "REFUND.ABNORMAL": "ABNORMAL", "REFUND.CLOSED": "CLOSED"}


@dataclass(frozen=True, slots=True)
class RefundNotice:
    notice_id: str
    out_refund_no: str
    out_trade_no: str
    outcome: refunds.RefundState
    refund_id: str | None
    refund_fen: int
    total_fen: int
    mchid: str


def read(
    wechat: WechatPay, headers: Mapping[str, str], body: bytes, now: dt.datetime
) -> RefundNotice:
    """The refund notice in `body`, verified and decrypted; `PaymentRefused` otherwise."""
    wechat_scheme.verify_signed(headers, body, wechat.platform_keys, int(now.timestamp()))
    envelope = wechat_scheme.json_body(body)
    event = envelope.get("event_type")
    if not isinstance(event, str) or event not in EVENTS:
        raise PaymentRefused("malformed", f"event_type {str(event)[:40]!r} is not a refund's")
    resource = envelope.get("resource")
    if not isinstance(resource, dict) or resource.get("original_type") != "refund":
        raise PaymentRefused("malformed", "the resource's original_type must be refund")
    plain = wechat_scheme.decrypt_resource(wechat.apiv3_key, resource)
    status = plain.get("refund_status")
    if status != EVENTS[event]:
        raise PaymentRefused("malformed", f"refund_status {str(status)[:20]!r} is not {event}'s")
    amount = plain.get("amount")
    if not isinstance(amount, dict):
        raise PaymentRefused("malformed", "the refund has no amount")
    return RefundNotice(
        notice_id=_text(envelope, "id"),
        out_refund_no=_text(plain, "out_refund_no"),
        out_trade_no=_text(plain, "out_trade_no"),
        outcome=refunds.WECHAT_STATUS[status],
        refund_id=plain.get("refund_id") if isinstance(plain.get("refund_id"), str) else None,
        refund_fen=_fen(amount, "refund"),
        total_fen=_fen(amount, "total"),
        mchid=_text(plain, "mchid"),
    )


def _text(source: Mapping[str, Any], name: str) -> str:
    value = source.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise PaymentRefused("malformed", f"{name} must be a text of 1–64 characters")
    return value


def _fen(amount: Mapping[str, Any], name: str) -> int:
    value = amount.get(name)
    if type(value) is not int or value < 0:
        raise PaymentRefused("malformed", f"amount.{name} must be a whole number of fen")
    return value


def accept(
    session: Session,
    wechat: WechatPay,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: dt.datetime,
    address: str = "",
) -> bool:
    """Apply a refund notice; True when it changed the refund, False for a duplicate.
    `PaymentRefused` (after its alarm, for a mismatch) when it is not one we accept."""
    notice = read(wechat, headers, body, now)
    row = session.get(PaymentRefund, notice.out_refund_no)
    problem = _mismatch(notice, row, wechat.settings.mchid)
    if problem:
        raise_alarm(
            session,
            None,
            "payment_mismatch",
            now,
            f"refund notice {notice.notice_id} for {notice.out_refund_no}: {problem}",
        )
        raise PaymentRefused("mismatch", problem)
    changed = refunds.finish(
        session,
        notice.out_refund_no,
        notice.outcome,
        provider_refund_id=notice.refund_id,
        now=now,
        cause="notice",
    )
    session.add(
        PaymentNotice(
            provider="wechat",
            received=now,
            notice_id=notice.notice_id,
            out_trade_no=notice.out_trade_no,
            verdict="accepted" if changed else "duplicate",
            reason=f"refund {notice.out_refund_no} {notice.outcome.value}",
            address=address[:64],
        )
    )
    return changed


def _mismatch(notice: RefundNotice, row: PaymentRefund | None, mchid: str) -> str:
    if notice.mchid != mchid:
        return f"mchid {notice.mchid!r} is not ours"
    if row is None:
        return "no such refund of ours"
    if row.out_trade_no != notice.out_trade_no:
        return f"it names order {notice.out_trade_no}, ours is {row.out_trade_no}"
    if row.fen != notice.refund_fen:
        return f"it refunds {notice.refund_fen} fen, ours {row.fen}"
    return ""


def handle(
    session: Session,
    wechat: WechatPay,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: dt.datetime,
    address: str = "",
) -> tuple[int, bytes]:
    """The answer to a posted refund notice: (204, b"") when taken (or already), else 401
    and WeChat's FAIL body, the refusal recorded."""
    try:
        accept(session, wechat, headers, body, now=now, address=address)
    except PaymentRefused as exc:
        reason = f"refund notice: {exc}"[:500]
        session.add(PaymentNotice(provider="wechat", received=now, notice_id=None,
                                  out_trade_no=None, verdict="refused", reason=reason,
                                  address=address[:64]))  # fmt: skip
        message = json.dumps({"code": "FAIL", "message": str(exc)[:200]}, ensure_ascii=False)
        return 401, message.encode()
    return 204, b""
