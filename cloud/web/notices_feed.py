"""The notices a merchant's phone page shows beside its alarms, from the merchant-notice outbox
(`cloud/notices/`, table `notices`): low balance, arrears warnings, cut-offs, recharges credited,
refunds paid — the account's own — and the power-off notices an operator addressed to its
merchant (maintenance or a violation), as `GET /notices` shows a merchant (`cloud.api.notices`).

Each is shown as its kind's title from the page's catalogue (`notice_<kind>`, both languages)
and the text the merchant was sent (`cloud.notices.messages`, Chinese, as the WeChat message
and the SMS were), without the SMS signature. The page reads only `notices_for`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from cloud.db.notices import Notice as NoticeRow
from cloud.db.registry import Account
from cloud.notices.messages import TEXTS
from cloud.notices.outbox import NoticeKind


@dataclass(frozen=True, slots=True)
class Notice:
    time: dt.datetime
    kind: str  # cloud.notices.outbox.NoticeKind: the page titles it from its catalogue
    body: str  # the words the merchant was sent (Chinese)


def _text(kind: str, facts: dict[str, object]) -> str:
    try:
        return TEXTS[NoticeKind(kind)](facts).strip()
    except (ValueError, KeyError, TypeError):  # a kind or facts of a later version
        return ""


def notices_for(session: Session, account: str, now: dt.datetime, limit: int = 10) -> list[Notice]:
    """The account's latest notices and its merchant's power-off notices, newest first."""
    mine = NoticeRow.account == account
    merchant = session.scalar(select(Account.merchant_id).where(Account.id == account))
    if merchant is not None:
        addressed = and_(NoticeRow.kind == NoticeKind.POWER_OFF.value,
                         NoticeRow.merchant_id == merchant)  # fmt: skip
        mine = or_(mine, addressed)
    rows = session.scalars(
        select(NoticeRow)
        .where(mine, NoticeRow.created <= now)
        .order_by(NoticeRow.created.desc(), NoticeRow.id.desc())
        .limit(limit)
    )
    return [Notice(r.created, r.kind, _text(r.kind, dict(r.facts or {}))) for r in rows]
