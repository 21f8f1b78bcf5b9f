"""Power-off notices an operator issues: the power of some shops will be off from one time to
another, for maintenance or because of a violation. One notice per merchant concerned, naming
that merchant's shops among them.

The announcement's id (`order`) is a digest of what it says (reason, note, shops, times), so
the same announcement posted twice makes the same notices once and logs once; another note or
time is another announcement. Shops are the registry's shop numbers (unique per site; with
several sites, `site` names the one meant). A shop with no account or merchant is reported
back (`without_merchant`), not silently dropped. The times the merchants read are in their
site's zone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.config import DEFAULT_ZONE
from cloud.db.notices import Notice
from cloud.db.registry import Account, Shop, Site
from cloud.errors import Invalid
from cloud.notices import sources
from cloud.notices.outbox import NoticeKind, Planned
from cloud.notices.service import make_all
from cloud.people import oplog

MAX_SHOPS = 500
MAX_NOTE = 200
MAX_SPAN = dt.timedelta(days=31)


class Reason(StrEnum):
    MAINTENANCE = "maintenance"
    VIOLATION = "violation"


@dataclass(frozen=True, slots=True)
class PowerOff:
    reason: Reason
    note: str
    shops: tuple[str, ...]
    start: dt.datetime
    end: dt.datetime
    site: int | None = None

    @property
    def order(self) -> str:
        """The announcement's id: a digest of what it says."""
        said = [self.reason.value, self.note, sorted(self.shops), self.start.isoformat(),
                self.end.isoformat(), self.site]  # fmt: skip
        return hashlib.sha256(json.dumps(said, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Issued:
    order: str
    notices: tuple[int, ...]  # the notices of this announcement (made now or before)
    without_merchant: tuple[str, ...]  # shops no merchant's account is in
    new: bool


def check(order: PowerOff, now: dt.datetime) -> None:
    """Refuse an announcement that cannot be meant (Invalid, naming what is wrong)."""
    if not order.shops:
        raise Invalid("name at least one shop")
    if len(set(order.shops)) != len(order.shops):
        raise Invalid("a shop is named twice")
    if order.end <= order.start:
        raise Invalid("`to` must be after `from`")
    if order.end <= now:
        raise Invalid("the power-off is already over: `to` is in the past")
    if order.end - order.start > MAX_SPAN:
        raise Invalid(f"a power-off lasts at most {MAX_SPAN.days} days")


def _shops(session: Session, order: PowerOff) -> list[Shop]:
    query = select(Shop).where(Shop.number.in_(order.shops))
    if order.site is not None:
        query = query.where(Shop.site_id == order.site)
    found = list(session.scalars(query.order_by(Shop.site_id, Shop.number)))
    numbers = [s.number for s in found]
    unknown = sorted(set(order.shops) - set(numbers))
    if unknown:
        raise Invalid(f"unknown shop(s): {', '.join(unknown)}")
    twice = sorted({n for n in numbers if numbers.count(n) > 1})
    if twice:
        raise Invalid(f"shop(s) {', '.join(twice)} exist on several sites: name the site")
    return found


def issue(session: Session, order: PowerOff, actor: oplog.Actor, now: dt.datetime) -> Issued:
    """Make one notice per merchant of the shops (each once) and log the announcement."""
    check(order, now)
    shops = _shops(session, order)
    accounts = {
        account.shop_id: account
        for account in session.scalars(
            select(Account).where(Account.shop_id.in_([s.id for s in shops]))
        )
    }
    by_merchant: dict[int, list[tuple[Shop, Account]]] = {}
    without = []
    for shop in shops:
        account = accounts.get(shop.id)
        if account is None:
            without.append(shop.number)
        else:
            by_merchant.setdefault(account.merchant_id, []).append((shop, account))
    zones = {site: name for site, name in session.execute(select(Site.id, Site.time_zone))}
    planned = [
        _planned(order, merchant, held, sources.zone(zones.get(held[0][0].site_id), DEFAULT_ZONE))
        for merchant, held in sorted(by_merchant.items())
    ]
    made = make_all(session, planned, now, operator=actor.user)
    ids = tuple(session.scalars(
        select(Notice.id).where(Notice.dedupe.in_([p.dedupe for p in planned])).order_by(Notice.id)
    ))  # fmt: skip
    if made:
        oplog.record(session, actor, "notice.power_off", f"power-off:{order.order}", None,
                     {"reason": order.reason.value, "note": order.note, "shops": list(order.shops),
                      "from": order.start.isoformat(), "to": order.end.isoformat(),
                      "site": order.site, "notices": list(ids),
                      "without_merchant": without}, now)  # fmt: skip
    return Issued(order.order, ids, tuple(without), new=made > 0)


def _planned(
    order: PowerOff, merchant: int, held: Sequence[tuple[Shop, Account]], zone: ZoneInfo
) -> Planned:
    """The merchant's notice, its times in the site's zone (what the merchant's clock says)."""
    first_shop, first_account = held[0]
    facts = {"reason": order.reason.value, "note": order.note, "order": order.order,
             "shops": [shop.number for shop, _ in held],
             "accounts": [account.id for _, account in held],
             "from": order.start.astimezone(zone).isoformat(timespec="minutes"),
             "to": order.end.astimezone(zone).isoformat(timespec="minutes")}  # fmt: skip
    return Planned(NoticeKind.POWER_OFF, f"power_off:{order.order}:{merchant}", first_account.id,
                   facts, first_shop.number, merchant_id=merchant)  # fmt: skip
