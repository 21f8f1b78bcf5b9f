"""A dead concentrator replaced: what a new box takes over from the cloud's verified copy of the
old node's chain, and how a store recovered later is reconciled — pure rules, no I/O
(docs/architecture.md §7.6).

The old node's chain is trusted up to the head the cloud acknowledged (`head_seq`). From the
transfers up to there, `plan` derives, for the accounts taken over:

- each pocket's posted balance (an `Opening`);
- each meter's billing baseline: the register its last billed leg reached (`reg_to` of the last
  `consume`/`meter_settle` leg), or, for a meter never billed, the register billing started
  from (given by the caller: the old node's first reading of it, or a swap's initial register);
- each account's cumulative exact cost (the `cost_cum` of its last fen billing leg) and the
  subsidy periods issued and closed (energy and water), as `SubsidyState.from_transfers` reads
  them.

The books move in two halves that sum to zero per unit:

    cloud chain   old pocket  → sys:takeover_<unit>   balance b > 0   id takeover-close/T/pocket
                  sys:takeover_<unit> → old pocket     −b when b < 0
    new box       sys:takeover_<unit> → pocket         b > 0           id takeover-open/T/pocket
                  pocket → sys:takeover_<unit>         −b when b < 0

So over the union of chains each pocket still holds b (old chain b, cloud −b, new box +b) and
`sys:takeover_*` holds zero; the new box's own book holds b too, which is what it bills from.

**The settlement rule** (what happens to what the old node booked after its acknowledged head,
the *unsent tail*): the takeover supersedes it. Energy is settled by the registers: the new
box bills each meter from its baseline `a` (the acknowledged register) to its own readings, so
per meter the books hold exactly `last − first` Wh — the old chain's `[first, a]` and the new
box's `[a, last]`, contiguous (`ledger.invariants.check_energy_matches_registers`). Subsidy is
issued once per account and period: a period the acknowledged chain issued is carried (the new
box never issues it), a period only the tail issued is issued by the new box instead. Money the
cloud sent the old node and never saw booked is voided at the takeover (its payer is owed it
back; `cloud.operations.takeovers`).

If the old store is recovered later, `reconcile` holds its tail against the new box's chain:
nothing of the tail is booked again (it is kept as evidence), and the report shows per meter
the tail's span `[a, t]` and Wh, which the new box's span `[a, n]` covers once `n ≥ t`
(`uncovered_wh` = max(0, t − n): energy the new box has not read yet and bills at its next
reading), per account the subsidy periods the tail issued and which book holds each, and the
tail's fen and recharges. Arithmetic, per meter: books = (a − first) + (n − a) = n − first;
tail = t − a ≤ n − a, counted 0 times in the books; so no Wh is billed twice and none is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ledger import entry_ids
from ledger.accounts import (
    AccountId,
    Pocket,
    System,
    Unit,
    is_system,
    owner_of,
    pocket_id,
    system_id,
    unit_of,
)
from ledger.errors import LedgerError
from ledger.transfers import Code, Kind, RefValue, TimeSource, Transfer

BILLED = frozenset({Code.CONSUME, Code.METER_SETTLE})
TAKEOVER_ACCOUNT: Mapping[Unit, AccountId] = {
    Unit.FEN: system_id(System.TAKEOVER_FEN),
    Unit.WH: system_id(System.TAKEOVER_WH),
    Unit.L: system_id(System.TAKEOVER_L),
}


class TakeoverRefused(LedgerError):
    """The accounts cannot be taken over as they stand; the message says why."""


@dataclass(frozen=True, slots=True)
class Opening:
    pocket: AccountId
    amount: int  # the posted balance (negative for a debt)


@dataclass(frozen=True, slots=True)
class MeterBaseline:
    meter: str
    reg: int  # Wh (L for a water meter), as billed
    at: str  # when that register was read (ISO 8601): the next reading's energy is spread
    # over the tariff periods from there, and judged for plausibility over that time


@dataclass(frozen=True, slots=True)
class AccountCarry:
    account: str
    cost_cum: int = 0  # 1e-7 CNY
    subsidy_issued: tuple[str, ...] = ()
    subsidy_closed: tuple[str, ...] = ()
    water_issued: tuple[str, ...] = ()
    water_closed: tuple[str, ...] = ()
    # the month of its last billed leg (site time, "2026-11") and the energy and water billed in
    # it: a tiered tariff's tiers go on counting there (to within energy still waiting below one
    # fen, which the new box bills again from the registers)
    month: str = ""
    month_wh: int = 0
    month_l: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """What the new box takes over."""

    openings: tuple[Opening, ...]
    meters: tuple[MeterBaseline, ...]
    accounts: tuple[AccountCarry, ...]

    def args(self) -> dict[str, list[dict[str, object]]]:
        """The `openings`, `meters` and `accounts` arguments of a `takeover` command."""
        return {
            "openings": [{"pocket": o.pocket, "amount": o.amount} for o in self.openings],
            "meters": [{"meter": m.meter, "reg": m.reg, "at": m.at} for m in self.meters],
            "accounts": [
                {
                    "account": a.account,
                    "cost_cum": a.cost_cum,
                    "subsidy_issued": list(a.subsidy_issued),
                    "subsidy_closed": list(a.subsidy_closed),
                    "water_issued": list(a.water_issued),
                    "water_closed": list(a.water_closed),
                    "month": a.month,
                    "month_wh": a.month_wh,
                    "month_l": a.month_l,
                }
                for a in self.accounts
            ],
        }


def _periods(
    owner: str, pocket: Pocket, transfers: Sequence[Transfer]
) -> tuple[set[str], set[str]]:
    account = pocket_id(owner, pocket)
    issued, expired = set(), set()
    for t in transfers:
        if t.code is Code.SUBSIDY_ISSUE and t.credit == account:
            issued.add(str(t.refs["period"]))
        elif t.code is Code.SUBSIDY_EXPIRE and t.debit == account and "period" in t.refs:
            expired.add(str(t.refs["period"]))
    newest = max(issued, default="")
    return issued, expired | {p for p in issued if p < newest}


def _pending_open(transfers: Sequence[Transfer]) -> list[Transfer]:
    resolved = {t.pending_id for t in transfers if t.kind in (Kind.POST, Kind.VOID)}
    return [t for t in transfers if t.kind is Kind.PENDING and t.id not in resolved]


def plan(
    owners: Iterable[str],
    meters: Mapping[str, str],
    transfers: Sequence[Transfer],
    started: Mapping[str, tuple[int, str]] | None = None,
) -> Plan:
    """The takeover of `owners` (accounts) and `meters` (address → account) from `transfers`,
    the old node's acknowledged chain in order. `started`: the register billing started from
    and when it was read, for meters the chain never billed (a meter with neither is refused:
    its baseline is unknown, so energy would be lost or billed twice). Refused while a pending
    transfer of one of these accounts is unresolved (a refund or move out never settled)."""
    owners = sorted(set(owners))
    mine = set(owners)
    started = started or {}
    open_pendings = [
        t
        for t in _pending_open(transfers)
        if (not is_system(t.debit) and owner_of(t.debit) in mine)
        or (not is_system(t.credit) and owner_of(t.credit) in mine)
    ]
    if open_pendings:
        first = open_pendings[0]
        raise TakeoverRefused(
            f"{len(open_pendings)} pending transfer(s) of the accounts are unresolved (first "
            f"{first.id:032x}, {first.code.value} {first.debit} → {first.credit}): settle them "
            "first"
        )
    balances: dict[AccountId, int] = {}
    cost: dict[str, int] = {}
    month: dict[str, tuple[str, int, int]] = {}
    last_reg: dict[str, tuple[int, str]] = {}
    for t in transfers:
        if t.kind is Kind.PENDING or t.kind is Kind.VOID:
            continue  # none of these accounts' is open, so each was posted or voided whole
        amount = t.amount
        for account, sign in ((t.debit, -1), (t.credit, 1)):
            if not is_system(account) and owner_of(account) in mine:
                balances[account] = balances.get(account, 0) + sign * amount
        if t.code in BILLED:
            meter = str(t.refs["meter"])
            if meter in meters:
                last_reg[meter] = (int(t.refs["reg_to"]), t.time)
            owner = owner_of(t.debit)
            if t.unit is Unit.FEN and owner in mine and "cost_cum" in t.refs:
                cost[owner] = int(t.refs["cost_cum"])
            if owner in mine:
                key, wh, litres = month.get(owner, ("", 0, 0))
                if t.time[:7] != key:
                    key, wh, litres = t.time[:7], 0, 0
                wh += int(t.refs.get("energy_wh", 0))
                litres += int(t.refs.get("volume_l", 0))
                month[owner] = (key, wh, litres)
    baselines = []
    for meter in sorted(meters):
        if meters[meter] not in mine:
            raise TakeoverRefused(f"meter {meter}'s account {meters[meter]} is not taken over")
        found = last_reg.get(meter, started.get(meter))
        if found is None:
            raise TakeoverRefused(
                f"meter {meter} was never billed and its first register is unknown: read it "
                "(or import an IR reading) first"
            )
        baselines.append(MeterBaseline(meter, *found))
    carries = []
    for owner in owners:
        issued, closed = _periods(owner, Pocket.SUBSIDY, transfers)
        w_issued, w_closed = _periods(owner, Pocket.WATER_SUBSIDY, transfers)
        carries.append(
            AccountCarry(
                owner,
                cost.get(owner, 0),
                tuple(sorted(issued)),
                tuple(sorted(closed)),
                tuple(sorted(w_issued)),
                tuple(sorted(w_closed)),
                *month.get(owner, ("", 0, 0)),
            )
        )
    openings = tuple(Opening(p, b) for p, b in sorted(balances.items()) if b)
    return Plan(openings, tuple(baselines), tuple(carries))


def _move(
    ident: int,
    pocket: AccountId,
    amount: int,
    *,
    into_pocket: bool,
    time: str,
    source: TimeSource,
    refs: Mapping[str, RefValue],
) -> Transfer:
    unit = unit_of(pocket)
    other = TAKEOVER_ACCOUNT[unit]
    debit, credit = (other, pocket) if into_pocket else (pocket, other)
    return Transfer(
        id=ident,
        debit=debit,
        credit=credit,
        amount=amount,
        unit=unit,
        code=Code.TAKEOVER,
        time=time,
        time_source=source,
        refs=dict(refs),
    )


def openings(
    takeover: str,
    plan_openings: Sequence[Opening],
    *,
    from_node: str,
    time: str,
    source: TimeSource,
    command: str | None = None,
) -> list[Transfer]:
    """The new box's transfers opening each pocket at its taken-over balance."""
    refs: dict[str, RefValue] = {"takeover": takeover, "from_node": from_node}
    if command is not None:
        refs["command"] = command
    return [
        _move(
            entry_ids.takeover_open(takeover, o.pocket),
            o.pocket,
            abs(o.amount),
            into_pocket=o.amount > 0,
            time=time,
            source=source,
            refs=refs,
        )
        for o in plan_openings
        if o.amount
    ]


def closings(
    takeover: str, plan_openings: Sequence[Opening], *, old_node: str, to_node: str, time: str
) -> list[Transfer]:
    """The cloud's transfers closing the dead node's pockets (the mirror of `openings`)."""
    refs: dict[str, RefValue] = {"takeover": takeover, "from_node": old_node, "to_node": to_node}
    return [
        _move(
            entry_ids.takeover_close(takeover, o.pocket),
            o.pocket,
            abs(o.amount),
            into_pocket=o.amount < 0,
            time=time,
            source=TimeSource.NTP,
            refs=refs,
        )
        for o in plan_openings
        if o.amount
    ]


# -- a recovered store ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterSpan:
    meter: str
    reg_from: int
    reg_to: int
    billed: int  # Wh (L) billed over the span

    @property
    def registers(self) -> int:
        return self.reg_to - self.reg_from


def spans(transfers: Iterable[Transfer]) -> dict[str, MeterSpan]:
    """Per meter, the register span its billing legs cover and the quantity they billed."""
    found: dict[str, MeterSpan] = {}
    for t in transfers:
        if t.code not in BILLED:
            continue
        meter = str(t.refs["meter"])
        qty = int(t.refs.get("energy_wh", t.refs.get("volume_l", 0)))
        lo, hi = int(t.refs["reg_from"]), int(t.refs["reg_to"])
        was = found.get(meter)
        if was is None:
            found[meter] = MeterSpan(meter, lo, hi, qty)
        else:
            found[meter] = MeterSpan(
                meter, min(was.reg_from, lo), max(was.reg_to, hi), was.billed + qty
            )
    return found


@dataclass(frozen=True, slots=True)
class MeterSettlement:
    """One meter after a takeover: the tail's span `[baseline, tail_to]`, the new box's
    `[baseline, new_to]`; the tail is superseded (booked 0 times)."""

    meter: str
    baseline: int
    tail_to: int
    new_to: int

    @property
    def tail_wh(self) -> int:
        return self.tail_to - self.baseline

    @property
    def books_wh(self) -> int:
        """What the books hold after the baseline: the new box's span only."""
        return self.new_to - self.baseline

    @property
    def uncovered_wh(self) -> int:
        """Energy the tail billed that the new box has not read yet (its next reading will)."""
        return max(0, self.tail_to - self.new_to)


def settle_meter(baseline: int, tail: MeterSpan | None, new: MeterSpan | None) -> MeterSettlement:
    """The settlement rule for one meter (the module's docstring): registers decide. A span
    that does not start at the baseline is a contract breach (TakeoverRefused)."""
    meter = tail.meter if tail is not None else new.meter if new is not None else ""
    for name, span in (("recovered tail", tail), ("new box", new)):
        if span is not None and span.reg_from != baseline:
            raise TakeoverRefused(
                f"meter {meter}: the {name} bills from {span.reg_from}, not from the "
                f"acknowledged register {baseline}"
            )
    return MeterSettlement(
        meter,
        baseline,
        baseline if tail is None else tail.reg_to,
        baseline if new is None else new.reg_to,
    )


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """A recovered tail held against the new box's chain."""

    meters: tuple[MeterSettlement, ...]
    tail_entries: int
    tail_fen: int  # fen the tail charged for energy (superseded: the new box charged instead)
    subsidy: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # account:period → (in the tail, where the books hold it: "carried", "new_box" or "none")
    payments: tuple[str, ...] = ()  # recharges the tail booked (each voided at the takeover)

    def report(self) -> dict[str, object]:
        return {
            "tail_entries": self.tail_entries,
            "tail_fen": self.tail_fen,
            "meters": [
                {
                    "meter": m.meter,
                    "baseline": m.baseline,
                    "tail_to": m.tail_to,
                    "new_to": m.new_to,
                    "tail_wh": m.tail_wh,
                    "books_wh": m.books_wh,
                    "uncovered_wh": m.uncovered_wh,
                }
                for m in self.meters
            ],
            "subsidy": {k: list(v) for k, v in sorted(self.subsidy.items())},
            "payments": list(self.payments),
        }


def reconcile(
    taken: Plan, tail: Sequence[Transfer], new_chain: Sequence[Transfer]
) -> Reconciliation:
    """Hold a recovered tail (the old node's entries after its acknowledged head) against what
    the new box booked: nothing is booked again; every meter's energy is in the books once."""
    baselines = {m.meter: m.reg for m in taken.meters}
    tail_spans, new_spans = spans(tail), spans(new_chain)
    unknown = sorted(set(tail_spans) - set(baselines))
    if unknown:
        raise TakeoverRefused(f"the recovered tail bills meters not taken over: {unknown}")
    settled = tuple(
        settle_meter(baselines[m], tail_spans.get(m), new_spans.get(m)) for m in sorted(baselines)
    )
    carried = {
        f"{a.account}:{p}" for a in taken.accounts for p in (*a.subsidy_issued, *a.water_issued)
    }
    issued_new = {
        f"{owner_of(t.credit)}:{t.refs['period']}"
        for t in new_chain
        if t.code is Code.SUBSIDY_ISSUE
    }
    subsidy: dict[str, tuple[str, str]] = {}
    for t in tail:
        if t.code is Code.SUBSIDY_ISSUE:
            key = f"{owner_of(t.credit)}:{t.refs['period']}"
            where = "carried" if key in carried else "new_box" if key in issued_new else "none"
            subsidy[key] = ("tail", where)
    fen = sum(t.amount for t in tail if t.code in BILLED and t.unit is Unit.FEN)
    payments = tuple(
        sorted(
            str(t.refs["payment"]) for t in tail if t.code is Code.RECHARGE and "payment" in t.refs
        )
    )
    return Reconciliation(settled, len(tail), fen, subsidy, payments)
