"""One account's turn in a poll cycle: consumption, protection, subsidy, arrears, relays.

Runs inside the cycle's store transaction, in the order the rules' contract asks for:

0. money that arrived since the last cycle pays the account's debt back first (`repay`);
1. each of the account's meters, one after another: bill its reading (`bill_reading`), posting
   the linked chain as one batch, so the next meter sees the pockets that chain left (pockets
   are read from the book again before every meter); then `protect` the meter (it needs the
   voltage, which the `basic` block reads). A water meter is billed by its volume, with the
   site's water policy (`Site.consumption_policy`; without the `water` rules it is read, not
   billed), and is not protected: there is no load to judge;
2. a refund's grace allowance whose time has passed is cleared (after consumption, which
   paid from it up to now); then the monthly subsidy (`run_subsidy`), after consumption, so at
   a month boundary the energy up to the boundary is paid from the old month's subsidy before
   it expires; then the water subsidy, the same way, for an account with a billed water meter;
3. arrears (`judge_arrears`), on the pockets after all of that: the relays of the electricity
   meters, then, judged apart with their own state, the valves of the water meters (a trip
   closes a valve, a close opens it; the read-back of `Reading.valve` confirms it);
4. per meter, `settle_relay` over every relay action of arrears and protection: a trip when the
   first cause appears, a close only when the last one is gone.

An account that moved out (`AccountRuntime.moved_out`) takes no turn: its meters are read
but not billed, and their relays are held open (`RelayCause.VACANT`); once a configuration
gives a meter to an account that has not moved out, the next turn releases the hold and bills
the meter from its last register.

An account arriving by a move (its configuration names the move, `AccountConfig.arriving`) is
billed but issued no subsidy until that move's move_in is applied here (`AccountRuntime.arrived`):
the move_in brings the periods the tenant was issued at the source.

Time-driven actions wait while the clock is implausible: the grace end, the subsidy, the scheduled
cut-off (a relay already open may still close: closing is never held back). Consumption is
billed regardless: register deltas do not need to know the time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.drivers.reading import Reading, RelayState, ValveState
from edge.rules.arrears import ArrearsAccount, ArrearsMode, ArrearsState, judge_arrears
from edge.rules.commodities import ENERGY
from edge.rules.consumption import (
    AccountCharges,
    ConsumptionPolicy,
    ConsumptionState,
    MeterBilling,
    bill_reading,
)
from edge.rules.debt import repay
from edge.rules.decisions import Alarm, RelayAction, RelayCause, RelayCommand, settle_relay
from edge.rules.operations import Stamp, grace_expiry
from edge.rules.pockets import Pockets
from edge.rules.protection import protect
from edge.rules.subsidy import (
    ENERGY_SUBSIDY,
    WATER_SUBSIDY,
    SubsidyAccount,
    SubsidyBooks,
    SubsidyPolicy,
    SubsidyState,
    run_subsidy,
)
from edge.rules.times import month_key, stamp
from edge.runtime.polling import MeterRead
from edge.runtime.relays import RelayOrder
from edge.runtime.state import AccountRuntime, MeterRuntime
from edge.site.model import AccountConfig, MeterConfig, Site
from edge.store import Transaction
from ledger.accounts import Pocket, owner_of, pocket_id
from ledger.book import Book, linked_batches
from ledger.transfers import TimeSource, Transfer
from ledger.units import Wh

log = logging.getLogger("edge.runtime")

# What a valve's read-back says of the supply, in the relay's sense (a closed valve cuts it).
VALVE_SUPPLY: Mapping[ValveState, RelayState] = {
    ValveState.OPEN: RelayState.CLOSED,
    ValveState.CLOSED: RelayState.OPEN,
}


def supply_seen(reading: Reading) -> RelayState | None:
    """Where the meter's supply switch stands: its relay, or its valve; None if it says not."""
    if reading.relay is not None:
        return reading.relay
    return None if reading.valve is None else VALVE_SUPPLY.get(reading.valve)


@dataclass(slots=True)
class CycleWork:
    """What the accounts of one cycle decided, gathered for the cycle's transaction."""

    now: dt.datetime
    source: TimeSource
    plausible: bool
    alarms: list[Alarm] = field(default_factory=list)
    orders: list[RelayOrder] = field(default_factory=list)
    transfers: int = 0
    unreadable: list[MeterConfig] = field(default_factory=list)


def scaled(reading: Reading, multiplier: int) -> Reading:
    """The reading behind a current transformer of ratio `multiplier` (registers and power)."""
    if multiplier == 1:
        return reading

    def times(value: float | None) -> float | None:
        return None if value is None else value * multiplier

    return dataclasses.replace(
        reading,
        energy_wh=None if reading.energy_wh is None else Wh(reading.energy_wh * multiplier),
        energy_by_tariff_wh=tuple(Wh(x * multiplier) for x in reading.energy_by_tariff_wh),
        energy_error_wh=reading.energy_error_wh * multiplier,
        current_a=times(reading.current_a),
        power_w=times(reading.power_w),
        reactive_var=times(reading.reactive_var),
    )


def _tenant_back(address: str, state: MeterRuntime) -> list[RelayAction]:
    """Release a vacant meter's hold: an account that has not moved out bills it now."""
    if RelayCause.VACANT not in state.relay.held:
        return []
    why = "a tenant's account bills the meter again"
    return [RelayAction(address, RelayCommand.CLOSE, RelayCause.VACANT, why)]


class AccountTurn:
    """Runs the rules for one account inside the cycle's transaction."""

    def __init__(
        self,
        site: Site,
        tx: Transaction,
        book: Book,
        work: CycleWork,
        policies: Mapping[str, ConsumptionPolicy],
    ) -> None:
        self.site = site
        self.policies = policies  # per meter address
        self.tx = tx
        self.book = book  # the store's live book: it sees each batch as soon as it is posted
        self.work = work
        self._pockets: dict[str, Pockets] = {}  # per owner, until a batch touches it

    def post(self, transfers: tuple[Transfer, ...]) -> None:
        for batch in linked_batches(transfers):
            self.work.transfers += len(self.tx.append_transfers(batch))
            for t in batch:
                self._pockets.pop(owner_of(t.debit), None)
                self._pockets.pop(owner_of(t.credit), None)

    def pockets(self, owner: str) -> Pockets:
        """The account's pockets in the book now (read again after each of its batches)."""
        found = self._pockets.get(owner)
        if found is None:
            found = self._pockets[owner] = Pockets.from_book(self.book, owner)
        return found

    def run(
        self,
        account: AccountConfig,
        state: AccountRuntime,
        meters: dict[str, MeterRuntime],
        reads: Mapping[str, MeterRead],
    ) -> AccountRuntime:
        """The account's new state; `meters` (this account's) is updated in place."""
        work, owner = self.work, account.id
        configs = self.site.meters_of(owner)
        if state.moved_out is not None:
            self.vacant(owner, state.moved_out, configs, meters, reads)
            return state
        actions: dict[str, list[RelayAction]] = {
            m.address: _tenant_back(m.address, meters[m.address]) for m in configs
        }
        self.repay(owner)
        for meter in configs:
            read = reads.get(meter.address)
            if read is None or read.reading is None:
                continue
            reading = scaled(read.reading, meter.multiplier)
            policy = self.policies.get(meter.address)
            if policy is None:
                continue  # a water meter on a site that bills no water: read only
            register = policy.commodity.register(reading)
            if register is None:
                continue  # a block without the billed register: nothing to bill from
            before = meters[meter.address]
            billing, charges, used = self.bill(meter, before.billing, state, reading)
            protection = before.protection
            if policy.commodity is ENERGY:
                protected = protect(work.now, reading, protection, self.site.rules.protection)
                work.alarms += protected.decisions.alarms
                actions[meter.address] += protected.decisions.relays
                protection = protected.state
            # The constructor, not dataclasses.replace: this runs for every meter every cycle.
            meters[meter.address] = MeterRuntime(
                billing,
                register if before.billing is None else before.first_reg_wh,
                protection,
                before.relay,
                before.read_failures,
                before.last_error,
            )
            # Daily use (days of credit left) counts energy only.
            state = state.used(work.now.date(), used if policy.commodity is ENERGY else 0, charges)
        state = self.grace(account, state)
        state = self.subsidy(account, state)
        state = self.arrears(account, state, meters, actions)
        for meter in configs:
            self.settle(meter, meters, actions[meter.address], reads.get(meter.address))
        return state

    def bill(
        self,
        meter: MeterConfig,
        before: MeterBilling | None,
        state: AccountRuntime,
        reading: Reading,
    ) -> tuple[MeterBilling, AccountCharges, int]:
        """Bill one reading: the meter's billing, the account's charges, and the Wh (or litres)
        used."""
        policy = self.policies[meter.address]
        if before is None:
            return MeterBilling.first(reading, self.work.now, policy.commodity), state.charges, 0
        decided = bill_reading(
            self.work.now,
            reading,
            ConsumptionState(before, state.charges),
            policy,
            owner=meter.account,
            pockets=self.pockets(meter.account),
            source=self.work.source,
        )
        self.post(decided.decisions.transfers)
        self.work.alarms += decided.decisions.alarms
        used = max(0, decided.state.meter.reg_wh - before.reg_wh)
        return decided.state.meter, decided.state.charges, used

    def repay(self, owner: str) -> None:
        """Money that arrived since the last cycle pays the account's debt first."""
        pockets = self.pockets(owner)
        if not pockets.debt_fen:
            return
        repaid = self.book.balance(pocket_id(owner, Pocket.DEBT)).credits_posted
        transfer = repay(self.work.now, owner, pockets, repaid, source=self.work.source)
        if transfer is not None:
            self.post((transfer,))

    def vacant(
        self,
        owner: str,
        move: str,
        configs: tuple[MeterConfig, ...],
        meters: dict[str, MeterRuntime],
        reads: Mapping[str, MeterRead],
    ) -> None:
        """A tenant that moved out: nothing is billed, issued or judged any more; its meters'
        relays are held open (`VACANT`) until a configuration gives them a new account."""
        why = f"vacant: {owner} moved out (move {move})"
        for meter in configs:
            trip = RelayAction(meter.address, RelayCommand.TRIP, RelayCause.VACANT, why)
            self.settle(meter, meters, [trip], reads.get(meter.address))

    def grace(self, account: AccountConfig, state: AccountRuntime) -> AccountRuntime:
        """Once a refund's grace time has passed, clear what is left of its allowance."""
        hold = state.grace
        if hold is None or not self.work.plausible or self.work.now < hold.until:
            return state  # running, or the clock cannot say (time-driven: held)
        left = self.book.balance(pocket_id(account.id, Pocket.GRACE))
        stamped = Stamp(stamp(self.work.now), self.work.source)
        expiry = grace_expiry(stamped, account=account.id, reference=hold.refund, grace=left)
        if expiry is not None:
            self.post((expiry,))
        log.info(
            "account %s: grace of refund %s ended at %s, %d Wh left cleared",
            account.id,
            hold.refund,
            hold.until.isoformat(),
            0 if expiry is None else expiry.amount,
        )
        return dataclasses.replace(state, grace=None)

    def subsidy(self, account: AccountConfig, state: AccountRuntime) -> AccountRuntime:
        if not self.work.plausible:
            return state  # held: the month and the due time are not known
        if account.arriving not in (None, state.arrived):
            return state  # held: the move_in brings the periods issued at the source
        # A state is replaced only when the rule changed it: most cycles it did not.
        subsidy = self.issue(account, state.subsidy, self.site.rules.subsidy, ENERGY_SUBSIDY)
        if subsidy is not state.subsidy:
            state = dataclasses.replace(state, subsidy=subsidy)
        water = self.site.rules.water_subsidy
        if water is not None and self.water_meters(account.id):
            issued = self.issue(account, state.water_subsidy, water, WATER_SUBSIDY)
            if issued is not state.water_subsidy:
                state = dataclasses.replace(state, water_subsidy=issued)
        return state

    def issue(
        self,
        account: AccountConfig,
        state: SubsidyState,
        policy: SubsidyPolicy,
        books: SubsidyBooks,
    ) -> SubsidyState:
        """One kind of subsidy's month ends and issue for the account."""
        issued, closed = state.issued, state.closed
        if month_key(self.work.now) in issued and issued - closed <= {month_key(self.work.now)}:
            # This month issued and every earlier one closed: the rule would decide nothing
            # (the common case, every cycle but one a month; skipping it saves a book read).
            return state
        shop = self.site.shop_of(account.id)
        pockets = self.pockets(account.id)
        decided = run_subsidy(
            self.work.now,
            SubsidyAccount(account.id, account.type, None if shop is None else shop.category),
            state,
            Wh(pockets.water_subsidy_l if books is WATER_SUBSIDY else pockets.subsidy_wh),
            policy,
            source=self.work.source,
            books=books,
        )
        for transfer in decided.decisions.transfers:  # independent transfers: one batch each
            self.post((transfer,))
        self.work.alarms += decided.decisions.alarms
        return decided.state

    def water_meters(self, owner: str) -> tuple[str, ...]:
        """The account's billed water meters."""
        return tuple(
            m.address
            for m in self.site.meters_of(owner)
            if m.address in self.policies and self.site.is_water(m)
        )

    def arrears(
        self,
        account: AccountConfig,
        state: AccountRuntime,
        meters: Mapping[str, MeterRuntime],
        actions: dict[str, list[RelayAction]],
    ) -> AccountRuntime:
        water = self.water_meters(account.id)
        electric = tuple(
            m.address for m in self.site.meters_of(account.id) if m.address not in water
        )
        if electric or not water:
            judged = self.judge(account, electric, state.arrears, actions, water=False)
            if judged is not state.arrears:
                state = dataclasses.replace(state, arrears=judged)
        if water:
            judged = self.judge(account, water, state.water_arrears, actions, water=True)
            if judged is not state.water_arrears:
                state = dataclasses.replace(state, water_arrears=judged)
        return state

    def judge(
        self,
        account: AccountConfig,
        owned: tuple[str, ...],
        state: ArrearsState,
        actions: dict[str, list[RelayAction]],
        *,
        water: bool,
    ) -> ArrearsState:
        """Arrears of one kind of the account's meters (relays, or valves)."""
        policy = self.site.rules.arrears
        scheduled = policy.mode is ArrearsMode.SCHEDULED
        if scheduled and not self.work.plausible and not state.tripped:
            return state  # a scheduled cut-off is time-driven: held (closing is not)
        judged = ArrearsAccount(
            account.id, owned, self.pockets(account.id), account.keep_power, water=water
        )
        if policy.mode is ArrearsMode.AT_ZERO and not state.tripped and not judged.in_arrears:
            return state  # in credit and not tripped: the rule would leave it alone
        decided = judge_arrears(self.work.now, judged, state, policy)
        self.work.alarms += decided.decisions.alarms
        for action in decided.decisions.relays:
            actions[action.meter].append(action)
        return decided.state

    def settle(
        self,
        meter: MeterConfig,
        meters: dict[str, MeterRuntime],
        actions: list[RelayAction],
        read: MeterRead | None,
    ) -> None:
        """Fold the rules' actions into the relay's causes; order what must be sent."""
        before = meters[meter.address]
        held, commands = settle_relay(before.relay.held, actions)
        hold = before.relay
        if held != hold.held:
            hold = dataclasses.replace(hold, held=held)
            meters[meter.address] = dataclasses.replace(before, relay=hold)
        now = self.work.now
        for command in commands:
            self.work.orders.append(
                RelayOrder(meter, command.command, command.cause, command.reason, now)
            )
        if commands:
            return
        # Nothing new decided: does the relay stand where the rules want it? A command that
        # failed, or was lost in a crash between commit and send, is sent again (not to a meter
        # that has no relay to command: its refusal would only repeat).
        seen = None if read is None or read.reading is None else supply_seen(read.reading)
        if (seen is not None and seen is not hold.desired) or (
            seen is None and hold.failing_since is not None and not hold.no_relay
        ):
            retry = RelayCommand.TRIP if held else RelayCommand.CLOSE
            why = f"relay is {seen or 'unconfirmed'}, rules want it {hold.desired}"
            self.work.orders.append(RelayOrder(meter, retry, None, why, now))
