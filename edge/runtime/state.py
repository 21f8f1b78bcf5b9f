"""The runtime's durable state: every rule's state, per meter and per account, as stored.

Each value lives under its own key in the store's state table and is written in the SAME
transaction as the transfers it produced (group commit per poll cycle), so after a crash the
rules resume exactly where the ledger is:

    rt:clock              ClockState      last known time, whether time-driven actions are held
    rt:meter:<address>    MeterRuntime    billing (register, unbilled energy), protection, relay
    rt:account:<id>       AccountRuntime  cumulative cost, subsidy periods, arrears, daily use
    rt:low_balance        LowBalanceState the day each account was last checked
    sync:config           {version, documents}  the configuration the cloud gave (config, swap)

`StateTable` keeps the text last written for each key and writes only what changed: a cycle of
256 idle meters writes little more than their billing positions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from edge.drivers.reading import RelayState
from edge.rules.arrears import ArrearsState
from edge.rules.consumption import AccountCharges, MeterBilling
from edge.rules.decisions import RelayCause
from edge.rules.protection import ProtectionState
from edge.rules.subsidy import WATER_SUBSIDY, SubsidyState
from edge.runtime.codec import CodecError, decode, encode
from edge.store import CorruptStore, Store, Transaction
from ledger.accounts import Pocket, Unit, pocket_id
from ledger.invariants import BILLING_CODES
from ledger.transfers import Code, Transfer
from ledger.units import ExactCost, Wh

T = TypeVar("T")

DAYS_KEPT = 7  # whole days of consumption kept for "days of credit left"


@dataclass(frozen=True, slots=True)
class ClockState:
    last_known: dt.datetime | None = None
    held_since: dt.datetime | None = None  # time-driven actions held since (implausible clock)
    cycles: int = 0


@dataclass(frozen=True, slots=True)
class RelayHold:
    """Why a meter's relay is held open, and whether the command to get there keeps failing."""

    held: frozenset[RelayCause] = frozenset()
    failing_since: dt.datetime | None = None
    failures: int = 0
    no_relay: bool = False  # the last order was refused: the meter has no relay to command

    @property
    def desired(self) -> RelayState:
        return RelayState.OPEN if self.held else RelayState.CLOSED


@dataclass(frozen=True, slots=True)
class MeterRuntime:
    billing: MeterBilling | None = None  # None until the meter's first good reading
    first_reg_wh: int | None = None  # the register billing started from (commissioning)
    protection: ProtectionState = field(default_factory=ProtectionState)
    relay: RelayHold = field(default_factory=RelayHold)
    read_failures: int = 0  # consecutive cycles the meter could not be read
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class GraceHold:
    """A refund's grace allowance: it keeps power on until `until`, then what is left of it
    is cleared (`edge.rules.operations.grace_expiry`); or before, when that refund is voided
    or the tenant moves out (`grace_end`). A later refund's grace replaces it."""

    refund: str  # the refund that issued it (the ids of its expiry and its end derive from it)
    until: dt.datetime


@dataclass(frozen=True, slots=True)
class AccountRuntime:
    charges: AccountCharges = field(default_factory=AccountCharges)
    subsidy: SubsidyState = field(default_factory=SubsidyState)
    arrears: ArrearsState = field(default_factory=ArrearsState)
    day: dt.date | None = None
    today_wh: int = 0
    daily_wh: tuple[int, ...] = ()  # the last whole days' consumption, oldest first
    grace: GraceHold | None = None  # a refund's grace allowance, until it expires
    moved_out: str | None = None  # the move reference once the tenant has left this node
    water_subsidy: SubsidyState = field(default_factory=SubsidyState)  # free water's periods
    water_arrears: ArrearsState = field(default_factory=ArrearsState)  # the valves' arrears
    arrived: str | None = None  # the move of the last move_in applied here

    def used(self, today: dt.date, energy_wh: int, charges: AccountCharges) -> AccountRuntime:
        """With `charges` after a reading that used `energy_wh` today (a new day closes the
        previous one into `daily_wh`)."""
        day, today_wh, days = today, self.today_wh + energy_wh, self.daily_wh
        if self.day is None:
            today_wh = energy_wh
        elif today > self.day:
            today_wh, days = energy_wh, (*self.daily_wh, self.today_wh)[-DAYS_KEPT:]
        else:
            day = self.day  # a clock stepping back does not reopen an earlier day
        return AccountRuntime(
            charges,
            self.subsidy,
            self.arrears,
            day,
            today_wh,
            days,
            self.grace,
            self.moved_out,
            self.water_subsidy,
            self.water_arrears,
            self.arrived,
        )


@dataclass(frozen=True, slots=True)
class RaisedAlarms:
    """Site conditions whose alarm is raised and not yet cleared, as of the last commit: a
    restart in the middle of one neither raises it again nor forgets to clear it."""

    buses_down: Mapping[str, str] = field(default_factory=dict)  # bus → why its port is down
    low_read_buses: frozenset[str] = frozenset()  # read success below the site's minimum
    coarse_meters: frozenset[str] = frozenset()  # float energy register too coarse


CLOCK_KEY = "rt:clock"
LOW_BALANCE_KEY = "rt:low_balance"
RAISED_KEY = "rt:raised"


def meter_key(address: str) -> str:
    return f"rt:meter:{address}"


def account_key(account: str) -> str:
    return f"rt:account:{account}"


class StateTable:
    """Reads states from the store at boot and writes the changed ones in a transaction.

    "Changed" is judged by value (the states are frozen dataclasses), so an idle meter's
    state is neither encoded nor written.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._written: dict[str, object] = {}  # committed value per key
        self._pending: dict[str, object] = {}  # written in the open transaction

    def load(self, key: str, hint: type[T], default: T) -> T:
        found = self.find(key, hint)
        return default if found is None else found

    def find(self, key: str, hint: type[T]) -> T | None:
        """The state stored under `key`, or None; CorruptStore if it does not decode."""
        raw = self._store.get_state(key)
        if raw is None:
            return None
        try:
            value = decode(hint, raw)
        except CodecError as exc:
            raise CorruptStore(
                self._store.path, None, f"rule state {key!r} does not decode ({exc})"
            ) from exc
        self._written[key] = value
        return value

    def save(self, tx: Transaction, key: str, value: object) -> bool:
        """Write `value` under `key` unless it equals what is stored; True if written."""
        if key in self._written and self._written[key] == value:
            return False
        tx.set_state(key, encode(value))
        self._pending[key] = value
        return True

    def begin(self) -> None:
        self._pending = {}

    def committed(self) -> None:
        self._written.update(self._pending)
        self._pending = {}


def rebuild_account(owner: str, transfers: Iterable[Transfer]) -> AccountRuntime:
    """An account's state from the chain alone (state lost, or a store from another release):
    the subsidy periods and the cumulative exact cost of its last fen consumption leg."""
    transfers = list(transfers)
    prepaid = pocket_id(owner, Pocket.PREPAID)
    cost = 0
    for t in transfers:
        if t.code in BILLING_CODES and t.unit is Unit.FEN and t.debit == prepaid:
            cost = int(t.refs["cost_cum"])
    return AccountRuntime(
        charges=AccountCharges(cost_cum=ExactCost(cost)),
        subsidy=SubsidyState.from_transfers(owner, transfers),
        water_subsidy=SubsidyState.from_transfers(owner, transfers, WATER_SUBSIDY),
    )


def rebuild_meter(address: str, transfers: Iterable[Transfer]) -> MeterRuntime:
    """A meter's billing position from the chain alone: billing resumes at the last register
    the chain billed, so no energy falls between the chain and the next reading."""
    last: Transfer | None = None
    for t in transfers:
        if t.code is Code.CONSUME and t.refs.get("meter") == address:
            last = t
    if last is None:
        return MeterRuntime()
    reg = Wh(int(last.refs["reg_to"]))
    at = dt.datetime.fromisoformat(last.time)
    first = MeterBilling(meter=address, reg_wh=reg, at=at)
    return MeterRuntime(billing=first)
