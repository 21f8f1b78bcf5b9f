"""The outbox of notices: made once, each delivery sent by one sender, retried with backoff.

A notice is made by `make` from a `Planned` (the planner's or an operator's): one row per
`dedupe` key — the insert does nothing when the key exists, so a planner that runs twice, or
two that race, make one notice. The sender then `route`s it (the channels configured are the
sender's business, not the maker's): its first delivery goes on the first channel the merchant
can be reached on (WeChat needs an openid, SMS a phone); none, and the notice is `unreachable`,
kept so an operator sees it.

A delivery's life, one transition table (`DELIVERY`, the model of `cloud.operations.states`):

    pending ─claim→ sending ─delivered→ sent
                    sending ─retry→ pending        (attempts left; next_attempt = now + backoff)
                    sending ─give_up→ failed       (attempts exhausted, or refused for good)
                    sending ─fall_back→ fallback   (the next channel takes over: 43101, …)
                    sending ─lease_expired→ pending (its sender died while sending)

Only `claim` moves a row out of pending, by a conditional update (`… WHERE state = 'pending'`)
that stamps the sender's token: of two senders racing for it one updates a row and sends, the
other updates none. Only the holder of the token settles it (`… AND claim = token`). The send
itself happens between two transactions, never inside one. A sender that dies mid-send leaves
the row `sending` until its lease ends; it is then tried again (at least once: the provider
may have sent it already, the one case a merchant can get a message twice).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.db.notices import Notice, NoticeDelivery
from cloud.db.sql import upsert
from cloud.operations.states import Machine


class NoticeKind(StrEnum):
    LOW_BALANCE = "low_balance"  # days of credit left, at the configured time of day
    ARREARS_WARNING = "arrears_warning"  # power will be cut at the cut-off unless topped up
    CUT_OFF = "cut_off"  # the concentrator cut the power for arrears
    RECHARGE_CREDITED = "recharge_credited"  # a recharge was booked on the concentrator
    REFUND_PAID = "refund_paid"  # a refund was paid out
    POWER_OFF = "power_off"  # an operator announces a cut: maintenance or a violation


class NoticeState(StrEnum):
    PENDING = "pending"  # a delivery is pending or sending
    SENT = "sent"  # a channel delivered it
    FAILED = "failed"  # every channel tried gave up
    UNREACHABLE = "unreachable"  # no channel reaches the merchant (no openid, no phone)


class Channel(StrEnum):
    WECHAT = "wechat"  # Official Account template message to the merchant's openid
    SMS = "sms"  # text message to the merchant's phone


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    FALLBACK = "fallback"


class DeliveryEvent(StrEnum):
    CLAIM = "claim"
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"
    FALL_BACK = "fall_back"
    LEASE_EXPIRED = "lease_expired"


DELIVERY = Machine(
    "notice delivery", DeliveryState, DeliveryEvent, frozenset({DeliveryState.PENDING}),
    {
        DeliveryState.PENDING: {DeliveryEvent.CLAIM: DeliveryState.SENDING},
        DeliveryState.SENDING: {DeliveryEvent.DELIVERED: DeliveryState.SENT,
                                DeliveryEvent.RETRY: DeliveryState.PENDING,
                                DeliveryEvent.GIVE_UP: DeliveryState.FAILED,
                                DeliveryEvent.FALL_BACK: DeliveryState.FALLBACK,
                                DeliveryEvent.LEASE_EXPIRED: DeliveryState.PENDING},
        DeliveryState.SENT: {},
        DeliveryState.FAILED: {},
        DeliveryState.FALLBACK: {},
    },
)  # fmt: skip

# The wait before attempt n + 1 after n failed ones; after the last, the channel gives up.
BACKOFF = (
    dt.timedelta(seconds=30),
    dt.timedelta(minutes=2),
    dt.timedelta(minutes=10),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=2),
)
MAX_ATTEMPTS = len(BACKOFF) + 1
LEASE = dt.timedelta(minutes=2)  # a send takes seconds; a sender silent this long has died
MAX_ERROR = 500  # characters of a provider's error kept


def backoff(attempts: int) -> dt.timedelta:
    """The wait after `attempts` failed attempts (1 → 30 s … 5 → 2 h)."""
    return BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]


@dataclass(frozen=True, slots=True)
class Planned:
    """A notice to make: its kind, its dedupe key, for whom, and the facts to write it from."""

    kind: NoticeKind
    dedupe: str
    account: str | None
    facts: dict[str, Any] = field(default_factory=dict)
    shop: str = ""
    merchant_id: int | None = None  # None: the account's merchant, looked up by the caller


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a notice reaches, as the registry names the merchant."""

    merchant_id: int | None
    openid: str | None = None
    phone: str | None = None

    def address(self, channel: Channel) -> str | None:
        return self.openid if channel is Channel.WECHAT else self.phone


def first_route(
    recipient: Recipient, routes: Sequence[Channel], after: Channel | None = None
) -> tuple[Channel, str] | None:
    """The first channel of `routes` (after `after`, if given) the recipient has an address on."""
    start = 0 if after is None or after not in routes else routes.index(after) + 1
    for channel in routes[start:]:
        address = recipient.address(channel)
        if address:
            return channel, address
    return None


def make(
    session: Session,
    planned: Planned,
    merchant_id: int | None,
    now: dt.datetime,
    *,
    operator: str = "",
) -> int | None:
    """Store the notice, pending and not yet routed, unless its dedupe key exists; the new
    notice's id, or None."""
    return session.execute(
        upsert(session, Notice.__table__)
        .values(
            kind=planned.kind.value, dedupe=planned.dedupe, account=planned.account,
            merchant_id=merchant_id, shop=planned.shop, facts=planned.facts,
            state=NoticeState.PENDING.value, operator=operator, created=now,
        )
        .on_conflict_do_nothing(index_elements=["dedupe"])
        .returning(Notice.__table__.c.id)
    ).scalar_one_or_none()  # fmt: skip


def unrouted(session: Session, limit: int) -> list[Notice]:
    """Pending notices with no delivery yet (made by a planner or an operator)."""
    return list(
        session.scalars(
            select(Notice)
            .where(Notice.state == NoticeState.PENDING.value,
                   ~select(NoticeDelivery.notice_id)
                   .where(NoticeDelivery.notice_id == Notice.id).exists())
            .order_by(Notice.id)
            .limit(limit)
        )
    )  # fmt: skip


def route(
    session: Session,
    notice_id: int,
    recipient: Recipient | None,
    routes: Sequence[Channel],
    now: dt.datetime,
) -> Channel | None:
    """Give a new notice its first delivery: the first channel of `routes` the merchant can be
    reached on; none, and the notice is `unreachable`. The channel, or None."""
    found = None if recipient is None else first_route(recipient, routes)
    if found is None:
        session.execute(
            update(Notice)
            .where(Notice.id == notice_id, Notice.state == NoticeState.PENDING.value)
            .values(state=NoticeState.UNREACHABLE.value)
        )
        return None
    add_delivery(session, notice_id, found, now)
    return found[0]


def add_delivery(
    session: Session, notice_id: int, route: tuple[Channel, str], now: dt.datetime
) -> None:
    """A pending delivery on `route` (channel, address); nothing if that channel has one."""
    channel, address = route
    session.execute(
        upsert(session, NoticeDelivery.__table__)
        .values(
            notice_id=notice_id, channel=channel.value, recipient=address,
            state=DELIVERY.start(DeliveryState.PENDING), attempts=0, next_attempt=now,
            claim=None, claimed_until=None, last_error="", provider_id=None, sent=None,
            updated=now,
        )
        .on_conflict_do_nothing(index_elements=["notice_id", "channel"])
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this sender holds: send it, then `settle` it with the same token."""

    notice_id: int
    channel: Channel
    recipient: str
    attempts: int  # this attempt's number (1 for the first)
    token: str


def release_expired(session: Session, now: dt.datetime) -> int:
    """Deliveries whose sender died mid-send go back to pending; how many."""
    target = DELIVERY.next(DeliveryState.SENDING, DeliveryEvent.LEASE_EXPIRED)
    result = session.execute(
        update(NoticeDelivery)
        .where(
            NoticeDelivery.state == DeliveryState.SENDING.value,
            NoticeDelivery.claimed_until < now,
        )
        .values(
            state=target.value,
            claim=None,
            claimed_until=None,
            updated=now,
            last_error="the sender stopped while sending; tried again",
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def claim_due(session: Session, now: dt.datetime, limit: int = 50) -> list[Claimed]:
    """Take up to `limit` pending deliveries that are due, each by a conditional update: the
    ones another sender took first are skipped. Commit before sending."""
    token = secrets.token_hex(16)
    target = DELIVERY.next(DeliveryState.PENDING, DeliveryEvent.CLAIM)
    due = session.execute(
        select(NoticeDelivery.notice_id, NoticeDelivery.channel, NoticeDelivery.recipient,
               NoticeDelivery.attempts)
        .where(NoticeDelivery.state == DeliveryState.PENDING.value,
               NoticeDelivery.next_attempt <= now)
        .order_by(NoticeDelivery.next_attempt, NoticeDelivery.notice_id)
        .limit(limit)
    ).all()  # fmt: skip
    claimed = []
    for notice_id, channel, recipient, attempts in due:
        result = session.execute(
            update(NoticeDelivery)
            .where(NoticeDelivery.notice_id == notice_id, NoticeDelivery.channel == channel,
                   NoticeDelivery.state == DeliveryState.PENDING.value,
                   NoticeDelivery.attempts == attempts)
            .values(state=target.value, claim=token, claimed_until=now + LEASE,
                    attempts=attempts + 1, updated=now)
        )  # fmt: skip
        if getattr(result, "rowcount", 0) == 1:
            claimed.append(Claimed(notice_id, Channel(channel), recipient, attempts + 1, token))
    return claimed


def settle(
    session: Session,
    claimed: Claimed,
    event: DeliveryEvent,
    now: dt.datetime,
    *,
    error: str = "",
    provider_id: str | None = None,
) -> bool:
    """Record how the send went (`event` from sending); False when this sender no longer holds
    the delivery (its lease ended and another took it). The notice's state follows."""
    target = DELIVERY.next(DeliveryState.SENDING, event)
    values: dict[str, Any] = {"state": target.value, "claim": None, "claimed_until": None,
                              "updated": now, "last_error": error[:MAX_ERROR]}  # fmt: skip
    if target is DeliveryState.SENT:
        values.update(sent=now, provider_id=provider_id)
    if event is DeliveryEvent.RETRY:
        values["next_attempt"] = now + backoff(claimed.attempts)
    result = session.execute(
        update(NoticeDelivery)
        .where(NoticeDelivery.notice_id == claimed.notice_id,
               NoticeDelivery.channel == claimed.channel.value,
               NoticeDelivery.state == DeliveryState.SENDING.value,
               NoticeDelivery.claim == claimed.token)
        .values(**values)
    )  # fmt: skip
    if getattr(result, "rowcount", 0) != 1:
        return False
    refresh_state(session, claimed.notice_id)
    return True


def refresh_state(session: Session, notice_id: int) -> NoticeState:
    """The notice's state from its deliveries: sent if one was, pending while one may be."""
    states = set(
        session.scalars(
            select(NoticeDelivery.state).where(NoticeDelivery.notice_id == notice_id)
        ).all()
    )
    if DeliveryState.SENT.value in states:
        state = NoticeState.SENT
    elif states & {DeliveryState.PENDING.value, DeliveryState.SENDING.value}:
        state = NoticeState.PENDING
    elif states:
        state = NoticeState.FAILED
    else:
        state = NoticeState.UNREACHABLE
    session.execute(update(Notice).where(Notice.id == notice_id).values(state=state.value))
    return state
