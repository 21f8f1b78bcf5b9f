"""Monthly subsidy: free energy issued once per account per period, cleared or carried at month
end (docs/architecture.md §5, §6.2).

**Schedule.** A period is a calendar month of the site's zone, keyed "2026-11". Period P's
subsidy is due on `issue_day` (clamped to the month's last day) at `issue_at`; P's month end is
the midnight that starts P+1. Each call of `run_subsidy(now, …)`, in this order:

1. *month end* of every period issued and not yet closed that ended before `now`'s month:
   `clear` expires the whole subsidy pocket; `carry_over` expires only what is above the cap
   (nothing without a cap). `<A>:subsidy → sys:subsidy_expired`, code `subsidy_expire`.
2. *issue* of `now`'s period, once it is due and if it was not issued yet:
   `sys:subsidy_issued → <A>:subsidy`, code `subsidy_issue`.

Expire-then-issue: at a month boundary the old subsidy goes before the new one arrives, so a
clear never eats the new month's energy and a cap applies to the carried energy only.

**Exactly once.** The state holds the *set* of periods issued and the set closed, not a
high-water mark: a clock that jumps to 2036 and back must not stop subsidies until 2036. Both
transfers carry `period` in refs and take their ids from `derive_id("subsidy_issue" |
"subsidy_expire", owner, period)`, and are stamped with the moment they belong to (the due
time, the month boundary) rather than `now`, so a re-run after a crash derives byte-identical
transfers and the book answers `exists`. `SubsidyState.from_transfers` rebuilds the state from
the chain.

**Across moves.** A tenant moving in from another concentrator brings the periods it was
issued there (`move_in`'s `subsidy_periods`, `SubsidyState.issued_elsewhere`): once per account
per period holds across concentrators, not only on one.

**Catch-up; missed periods.** The rule needs nothing but `now`, its state and the pocket's
balance: no network. A box that boots on the 20th issues that month's subsidy. Only `now`'s
period is ever issued: never a future one, and never one that passed entirely while the box
was off. Reasons: under `clear` it would have expired unused at its own month end anyway; the
energy used during the outage reaches the book as one reading after boot and cannot be
attributed to the missed months; and a clock that jumped years ahead then issues one wrong
period, not a decade of them. A `subsidy_missed` alarm names the skipped periods, so that under
`carry_over` (where skipping does cost the merchant) the operator can grant them by correction.

**Water.** The same rule issues free water (litres) when the site configures it: run with
`books=WATER_SUBSIDY` and its own state and policy, it books `sys:water_subsidy_issued →
<A>:water_subsidy` and `<A>:water_subsidy → sys:water_subsidy_expired` (amounts and the
carry-over cap in litres), with ids `derive_id(code, owner, period, "water")`, so an account's
water and energy subsidies of one period never share an id. `SubsidyBooks` is the row.

**Amount hook.** `SubsidyPolicy.amount` is any callable `(SubsidyAccount, period) -> Wh`. The
default, `SubsidyTable`, takes the amount per account (`by_account`, as the cloud computed it
from its registry), else from the shop category, else the account type. The
cloud can replace it (rules by area, by season…) without touching this module; it must be
deterministic for a given configuration, since a different amount under the same derived id is
an id conflict in the book, never a second issue.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from edge.rules.decisions import Alarm, AlarmKind, Decided, Decisions, Severity
from edge.rules.errors import PolicyError
from edge.rules.times import month_key, month_start, next_month, parse_month, require_aware, stamp
from ledger.accounts import POCKET_UNIT, Pocket, System, pocket_id, system_id
from ledger.ids import derive_id
from ledger.transfers import Code, TimeSource, Transfer
from ledger.units import Wh


@dataclass(frozen=True, slots=True)
class SubsidyAccount:
    """What a subsidy amount may depend on."""

    owner: str
    account_type: str
    shop_category: str | None = None


SubsidyHook = Callable[[SubsidyAccount, str], int]


@dataclass(frozen=True, slots=True)
class SubsidyTable:
    """The default amount hook: Wh per account (the amounts the cloud decided, see
    `cloud.registry.subsidy_rules`), else per shop category, else per account type, else none."""

    by_type: Mapping[str, int] = field(default_factory=dict)
    by_category: Mapping[str, int] = field(default_factory=dict)
    by_account: Mapping[str, int] = field(default_factory=dict)

    def __call__(self, account: SubsidyAccount, period: str) -> int:
        if account.owner in self.by_account:
            return self.by_account[account.owner]
        if account.shop_category is not None and account.shop_category in self.by_category:
            return self.by_category[account.shop_category]
        return self.by_type.get(account.account_type, 0)


@dataclass(frozen=True, slots=True)
class SubsidyBooks:
    """Where a kind of subsidy is booked: the pocket it fills, the system accounts it is issued
    from and expires to, and the facts its entry ids add after (code, owner, period)."""

    pocket: Pocket
    issued: System
    expired: System
    id_facts: tuple[str, ...] = ()


ENERGY_SUBSIDY = SubsidyBooks(Pocket.SUBSIDY, System.SUBSIDY_ISSUED, System.SUBSIDY_EXPIRED)
WATER_SUBSIDY = SubsidyBooks(
    Pocket.WATER_SUBSIDY, System.WATER_SUBSIDY_ISSUED, System.WATER_SUBSIDY_EXPIRED, ("water",)
)


class MonthEnd(StrEnum):
    CLEAR = "clear"  # unused subsidy expires at month end
    CARRY_OVER = "carry_over"  # unused subsidy stays (above `carry_cap_wh`, it expires)


@dataclass(frozen=True, slots=True)
class SubsidyPolicy:
    amount: SubsidyHook
    issue_day: int = 1
    issue_at: dt.time = dt.time(0, 0)
    month_end: MonthEnd = MonthEnd.CLEAR
    carry_cap_wh: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.issue_day <= 31:
            raise PolicyError(f"issue day must be 1..31, got {self.issue_day}")
        if self.carry_cap_wh is not None and (
            self.month_end is MonthEnd.CLEAR or self.carry_cap_wh < 0
        ):
            raise PolicyError("a carry-over cap needs month_end=carry_over and must be >= 0")

    def due(self, period: str, zone: dt.tzinfo | None) -> dt.datetime:
        """When `period`'s subsidy is due: the issue day (or the month's last day) and time."""
        year, month = parse_month(period)
        day = min(self.issue_day, calendar.monthrange(year, month)[1])
        return dt.datetime.combine(dt.date(year, month, day), self.issue_at, tzinfo=zone)


@dataclass(frozen=True, slots=True)
class SubsidyState:
    issued: frozenset[str] = frozenset()
    closed: frozenset[str] = frozenset()  # periods whose month end has run

    @classmethod
    def from_transfers(
        cls, owner: str, transfers: Iterable[Transfer], books: SubsidyBooks = ENERGY_SUBSIDY
    ) -> SubsidyState:
        """Rebuild from the chain: issued periods, and as closed every expired period and every
        issued period older than the newest issue (closing comes before the next issue; a
        carry-over month end that expired nothing leaves no transfer). A period whose amount
        was zero left no transfer either: it is decided again, to zero again."""
        pocket = pocket_id(owner, books.pocket)
        issued, expired = set(), set()
        for t in transfers:
            if t.code is Code.SUBSIDY_ISSUE and t.credit == pocket:
                issued.add(str(t.refs["period"]))
            elif t.code is Code.SUBSIDY_EXPIRE and t.debit == pocket:
                expired.add(str(t.refs["period"]))
        newest = max(issued, default="")
        return cls(frozenset(issued), frozenset(expired | {p for p in issued if p < newest}))

    def issued_elsewhere(self, periods: Iterable[str]) -> SubsidyState:
        """With `periods` issued to the account on another concentrator (a move brings them,
        `CommandKind.MOVE_IN`): never issued again here, and nothing of them to close here
        (the source cleared what was left when the tenant moved out)."""
        elsewhere = frozenset(periods) - self.issued
        return SubsidyState(self.issued | elsewhere, self.closed | elsewhere)


def _transfer(
    code: Code,
    owner: str,
    period: str,
    amount: int,
    at: dt.datetime,
    *,
    source: TimeSource,
    books: SubsidyBooks,
) -> Transfer:
    """An issue (sys → pocket) or an expiry (pocket → sys) of `owner`'s subsidy for `period`."""
    pocket = pocket_id(owner, books.pocket)
    issued, expired = system_id(books.issued), system_id(books.expired)
    debit, credit = (issued, pocket) if code is Code.SUBSIDY_ISSUE else (pocket, expired)
    return Transfer(
        id=derive_id(code.value, owner, period, *books.id_facts),
        debit=debit,
        credit=credit,
        amount=amount,
        unit=POCKET_UNIT[books.pocket],
        code=code,
        time=stamp(at),
        time_source=source,
        refs={"period": period},
    )


def _months_between(first: str, last: str) -> int:
    (y0, m0), (y1, m1) = parse_month(first), parse_month(last)
    return (y1 - y0) * 12 + m1 - m0 + 1


def run_subsidy(
    now: dt.datetime,
    account: SubsidyAccount,
    state: SubsidyState,
    subsidy_wh: Wh,
    policy: SubsidyPolicy,
    *,
    source: TimeSource,
    books: SubsidyBooks = ENERGY_SUBSIDY,
) -> Decided[SubsidyState]:
    """Month ends and the issue due at `now` for one account.

    `subsidy_wh` is the subsidy pocket's available balance in the book (`books.pocket`: litres
    for water). The transfers returned are independent (not linked): post them in order.
    """
    zone = require_aware(now).tzinfo
    current = month_key(now)
    transfers: list[Transfer] = []
    alarms: list[Alarm] = []
    balance = int(subsidy_wh)

    closed = set(state.closed)
    for period in sorted(state.issued - state.closed):
        if period >= current:
            continue  # not ended yet (or the clock stepped back into an earlier month)
        keep = 0 if policy.month_end is MonthEnd.CLEAR else policy.carry_cap_wh
        expire = 0 if keep is None else balance - keep
        if expire > 0:
            boundary = month_start(next_month(period), zone)
            transfers.append(
                _transfer(
                    Code.SUBSIDY_EXPIRE,
                    account.owner,
                    period,
                    expire,
                    boundary,
                    source=source,
                    books=books,
                )
            )
            balance -= expire
        closed.add(period)

    issued = set(state.issued)
    due = policy.due(current, zone)
    if current not in issued and now >= due:
        latest = max(issued, default=None)
        if latest is not None and latest < current and next_month(latest) != current:
            skipped = _months_between(next_month(latest), current) - 1
            alarms.append(
                Alarm(
                    AlarmKind.SUBSIDY_MISSED,
                    Severity.WARNING,
                    f"{skipped} subsidy period(s) after {latest} passed while the box was off "
                    "and were not issued",
                    account=account.owner,
                )
            )
        amount = policy.amount(account, current)
        if type(amount) is not int or amount < 0:
            raise PolicyError(f"subsidy hook gave {amount!r} for {account.owner} {current}")
        if amount:
            transfers.append(
                _transfer(
                    Code.SUBSIDY_ISSUE,
                    account.owner,
                    current,
                    amount,
                    due,
                    source=source,
                    books=books,
                )
            )
        issued.add(current)
    return Decided(
        SubsidyState(frozenset(issued), frozenset(closed)),
        Decisions(tuple(transfers), alarms=tuple(alarms)),
    )
