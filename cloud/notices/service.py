"""The shell of notices: plan them from the database, send the due deliveries, and a loop that
does both every `[notices] every` seconds until stopped (`cloud.server` starts it).

A round (`NoticeService.run_once`):

1. plan: every planner of `cloud.notices.planner` over rows read by `cloud.notices.sources`
   (in a read-only session; every account at most every `ACCOUNTS_EVERY`), then, in one
   transaction, each notice made once by its dedupe key (`outbox.make`);
2. send: route new notices to their first channel (`outbox.route`), release deliveries whose
   sender died, claim the due ones (committed), send each on its channel outside any
   transaction, settle each in a transaction of its own, and claim again for the fallbacks
   made on the way.

How a send's outcome settles a delivery (`settlement`, a table):

| outcome          | attempts left | next channel | event     | then                       |
|------------------|---------------|--------------|-----------|----------------------------|
| delivered        | –             | –            | delivered |                            |
| retry            | yes           | –            | retry     | next_attempt after backoff |
| retry            | no            | yes / no     | fall_back / give_up | next channel pending |
| not subscribed   | –             | yes / no     | fall_back / give_up |                  |
| refused          | –             | yes / no     | fall_back / give_up |                  |

A round never raises for a bad row, an unreachable provider or the database being away: it
logs with the traceback and the next round starts again.

One server runs the loop: WeChat invalidates an account's token five minutes after another is
fetched, so two servers' refreshers would spoil each other's tokens (each renews on 40001, so
messages still go, with extra fetches).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cloud.config import NoticesSettings
from cloud.db.notices import Notice, NoticeDelivery
from cloud.notices import messages, outbox, planner, sources
from cloud.notices.channels import FileSmsSender, HttpSmsSender, Outcome, Sent, SmsSender
from cloud.notices.outbox import Channel, Claimed, DeliveryEvent, NoticeKind, Planned
from cloud.notices.wechat_oa import OaAccount, TemplateSender

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
ACCOUNTS_EVERY = dt.timedelta(minutes=5)  # a warning's window is hours; a round is a minute
MAX_PASSES = 20  # claims per round: a backlog waits for the next round, not forever


@dataclass(frozen=True, slots=True)
class Channels:
    """The senders configured, and which kinds WeChat has a template for."""

    wechat: TemplateSender | None = None
    templates: dict[str, str] = field(default_factory=dict)
    page_url: str | None = None
    sms: SmsSender | None = None

    def routes(self, kind: NoticeKind) -> tuple[Channel, ...]:
        """The channels a notice of `kind` is tried on, in order."""
        chosen = []
        if self.wechat is not None and kind.value in self.templates:
            chosen.append(Channel.WECHAT)
        if self.sms is not None:
            chosen.append(Channel.SMS)
        return tuple(chosen)

    def send(
        self, channel: Channel, recipient: str, kind: NoticeKind, facts: dict[str, Any]
    ) -> Sent:
        if channel is Channel.WECHAT:
            template = self.templates.get(kind.value)
            if self.wechat is None or template is None:
                return Sent(Outcome.REFUSED, f"no WeChat template is configured for {kind}")
            data = messages.template_data(kind, facts)
            return self.wechat.send(recipient, template, data, self.page_url)
        if self.sms is None:
            return Sent(Outcome.REFUSED, "no SMS sender is configured")
        return self.sms.send(recipient, messages.sms_text(kind, facts))

    def close(self) -> None:
        """Close the senders' HTTP connections."""
        if self.wechat is not None:
            self.wechat.close()
        if isinstance(self.sms, HttpSmsSender):
            self.sms.close()


def channels_of(settings: NoticesSettings) -> Channels:
    """The senders `[notices]` configures."""
    wechat = None
    oa = settings.wechat_oa
    if oa is not None:
        wechat = TemplateSender(OaAccount(oa.api_base, oa.appid, oa.secret))
    sms: SmsSender | None = None
    if settings.sms is not None:
        if settings.sms.url is not None:
            sms = HttpSmsSender(settings.sms.url)
        else:
            sms = FileSmsSender(settings.sms.file or Path("sms-outbox.jsonl"))
    return Channels(
        wechat=wechat,
        templates=dict(oa.templates) if oa is not None else {},
        page_url=oa.page_url if oa is not None else None,
        sms=sms,
    )


def settlement(sent: Sent, attempts: int, has_next: bool) -> DeliveryEvent:
    """What a send's outcome does to its delivery (the table in the module docstring)."""
    if sent.outcome is Outcome.DELIVERED:
        return DeliveryEvent.DELIVERED
    if sent.outcome is Outcome.RETRY and attempts < outbox.MAX_ATTEMPTS:
        return DeliveryEvent.RETRY
    return DeliveryEvent.FALL_BACK if has_next else DeliveryEvent.GIVE_UP


def make_all(
    session: Session, planned: Sequence[Planned], now: dt.datetime, operator: str = ""
) -> int:
    """Store `planned`, each once, for the merchant it names or its account's; how many were
    new. The sender routes them."""
    if not planned:
        return 0
    dedupes = [p.dedupe for p in planned]
    existing: set[str] = set()
    for start in range(0, len(dedupes), sources.CHUNK):
        chunk = dedupes[start : start + sources.CHUNK]
        existing.update(session.scalars(select(Notice.dedupe).where(Notice.dedupe.in_(chunk))))
    fresh = [p for p in planned if p.dedupe not in existing]
    merchants = sources.merchants_of(session, [p.account for p in fresh if p.account])
    made = 0
    for item in fresh:
        merchant = item.merchant_id
        if merchant is None and item.account:
            merchant = merchants.get(item.account)
        if outbox.make(session, item, merchant, now, operator=operator) is not None:
            made += 1
    return made


class NoticeService:
    """Plans and sends notices for one database."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: NoticesSettings,
        channels: Channels,
        now: Callable[[], dt.datetime],
        *,
        batch: int = 50,
        readers: sessionmaker[Session] | None = None,
    ) -> None:
        """`readers`: sessions for the planner's reads (on SQLite, read-only ones take no write
        lock while every account is read); `sessions` by default."""
        self.sessions, self.settings, self.channels, self.now = sessions, settings, channels, now
        self.batch = batch
        self.readers = readers or sessions
        self._accounts_planned: dt.datetime | None = None

    # -- planning ----------------------------------------------------------------------------
    def plan(self) -> int:
        """Make the notices due now; how many are new."""
        now = self.now()
        zone = sources.zone(None, self.settings.zone)
        planned: list[Planned] = []
        with self.readers() as session:
            steps: Sequence[tuple[str, Callable[[], list[Planned]]]] = (
                ("accounts", lambda: self._account_plans(session, now)),
                ("cut-offs", lambda: planner.cut_offs(sources.cut_offs(session, now), zone)),
                ("recharges", lambda: planner.recharges_credited(
                    sources.recharges_posted(session, now), zone)),
                ("refunds", lambda: planner.refunds_paid(sources.refunds_paid(session, now), zone)),
            )  # fmt: skip
            for name, step in steps:
                try:
                    planned.extend(step())
                except (ValueError, TypeError, KeyError):  # a row the registry should not hold
                    log.exception("notices: planning %s failed; the other kinds go on", name)
        with self.sessions.begin() as session:
            return self.make_all(session, planned, now)

    def _account_plans(self, session: Session, now: dt.datetime) -> list[Planned]:
        """Low balance and arrears warnings: every account is read, so at most every
        `ACCOUNTS_EVERY` (the events are read every round)."""
        last = self._accounts_planned
        if last is not None and last <= now < last + ACCOUNTS_EVERY:
            return []
        self._accounts_planned = now
        views = sources.account_views(session, now, self.settings.zone)
        at = self.settings.low_balance_at
        return [
            *planner.low_balance(now, views, at, self.settings.low_balance_days),
            *planner.arrears_warnings(now, views, at, self.settings.arrears_warn_before),
        ]

    def make_all(
        self, session: Session, planned: Sequence[Planned], now: dt.datetime, operator: str = ""
    ) -> int:
        """Store `planned` (each once); how many were new."""
        return make_all(session, planned, now, operator)

    # -- sending -----------------------------------------------------------------------------
    def route_new(self) -> int:
        """Give new notices their first delivery (or mark them unreachable); how many."""
        with self.sessions.begin() as session:
            notices = outbox.unrouted(session, self.batch)
            for notice in notices:
                recipient = sources.merchant_recipient(session, notice.merchant_id)
                routes = self.channels.routes(NoticeKind(notice.kind))
                outbox.route(session, notice.id, recipient, routes, self.now())
        return len(notices)

    def send_due(self) -> int:
        """Route new notices, then send every delivery due now (a fallback made on the way
        too); how many were delivered."""
        while self.route_new() == self.batch:
            pass
        with self.sessions.begin() as session:
            released = outbox.release_expired(session, self.now())
        if released:
            log.warning("notices: %d deliveries whose sender stopped are tried again", released)
        delivered = 0
        for _ in range(MAX_PASSES):
            with self.sessions.begin() as session:
                claimed = outbox.claim_due(session, self.now(), self.batch)
            if not claimed:
                break
            delivered += sum(self.deliver(c) for c in claimed)
        return delivered

    def deliver(self, claimed: Claimed) -> bool:
        with self.sessions() as session:
            notice = session.get(Notice, claimed.notice_id)
            if notice is None:  # removed under us: nothing to send
                return False
            kind, facts = NoticeKind(notice.kind), dict(notice.facts)
        try:
            sent = self.channels.send(claimed.channel, claimed.recipient, kind, facts)
        except (ValueError, TypeError, KeyError) as exc:  # facts the message cannot be made of
            log.exception("notice %d: its message cannot be written", claimed.notice_id)
            sent = Sent(Outcome.REFUSED, f"the message cannot be written: {exc}")
        if sent.outcome is not Outcome.DELIVERED:
            log.info("notice %d via %s: %s (%s)", claimed.notice_id, claimed.channel.value,
                     sent.outcome.value, sent.detail)  # fmt: skip
        with self.sessions.begin() as session:
            route = self._next_route(session, claimed, kind)
            event = settlement(sent, claimed.attempts, route is not None)
            now = self.now()
            if not outbox.settle(session, claimed, event, now, error=sent.detail,
                                 provider_id=sent.provider_id):  # fmt: skip
                log.warning("notice %d via %s: settled by another sender", claimed.notice_id,
                            claimed.channel.value)  # fmt: skip
                return False
            if event is DeliveryEvent.FALL_BACK and route is not None:
                outbox.add_delivery(session, claimed.notice_id, route, now)
                outbox.refresh_state(session, claimed.notice_id)
        return event is DeliveryEvent.DELIVERED

    def _next_route(
        self, session: Session, claimed: Claimed, kind: NoticeKind
    ) -> tuple[Channel, str] | None:
        notice = session.get(Notice, claimed.notice_id)
        recipient = (
            None if notice is None else sources.merchant_recipient(session, notice.merchant_id)
        )
        if recipient is None:
            return None
        tried = set(session.scalars(select(NoticeDelivery.channel).where(
            NoticeDelivery.notice_id == claimed.notice_id)))  # fmt: skip
        routes = [c for c in self.channels.routes(kind) if c.value not in tried]
        return outbox.first_route(recipient, routes)

    def run_once(self) -> None:
        """One round: plan, then send; a failure is logged, never raised."""
        try:
            made = self.plan()
            if made:
                log.info("notices: %d new", made)
        except SQLAlchemyError:
            log.exception("notices: planning failed; the next round tries again")
        try:
            self.send_due()
        except SQLAlchemyError:
            log.exception("notices: sending failed; the next round tries again")


class NoticeLoop:
    """`NoticeService.run_once` every `every` seconds on a thread of its own; `stop()` ends it."""

    def __init__(self, service: NoticeService, every: float) -> None:
        self.service, self.every = service, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="voltbook-notices", daemon=True)

    def start(self) -> NoticeLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.service.run_once()
            if self._stop.wait(self.every):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("the notices loop did not stop within %.0f s", STOP_TIMEOUT_S)
