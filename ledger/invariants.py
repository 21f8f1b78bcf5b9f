"""The ledger invariants (docs/architecture.md §5.6), as functions every test scenario (and the
cloud) can call.

Each `check_*` returns a list of human-readable violations (empty when the invariant holds);
`assert_ledger_sound` runs them all and raises `InvariantViolated`.

Conventions the rules follow so that these can be checked from transfers alone:
- consumption transfers (`code=consume`, and `meter_settle`: the last bill of a meter taken out
  at a swap), paid from a pocket or booked as debt, carry refs `meter`, `reg_from`, `reg_to`
  (Wh registers) and `energy_wh` (the part of that interval this transfer bills) — a water
  meter's legs `volume_l` instead, their registers in litres; the fen legs also carry
  `cost_cum` (the account's cumulative exact cost in 1e-7 CNY after this interval, energy and
  water together: one account, one running total);
- subsidy issues carry `period` (e.g. "2026-11"); recharges from payments carry `payment`;
  transfers caused by a cloud command carry `command`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

from ledger.accounts import AccountId, Pocket, Unit, owner_of, unit_of
from ledger.book import Balance
from ledger.chain import Entry
from ledger.errors import InvariantViolated
from ledger.transfers import Code, Kind, Transfer
from ledger.units import ExactCost, fen_rounded

BILLING_CODES = frozenset({Code.CONSUME, Code.METER_SETTLE})  # energy read from a meter, billed
# The ref naming a billing leg's share of its register span, and that register's unit: an
# electricity meter's legs carry `energy_wh`, a water meter's `volume_l`.
QUANTITY_REFS: tuple[tuple[str, str], ...] = (("energy_wh", "Wh"), ("volume_l", "L"))


def billed_quantity(transfer: Transfer) -> tuple[int, str]:
    """A billing leg's share of its register span, and the span's unit ("Wh" or "L")."""
    for ref, unit in QUANTITY_REFS:
        if ref in transfer.refs:
            return int(transfer.refs[ref]), unit
    raise KeyError(f"billing transfer {transfer.id:032x} names no quantity")


def check_balances_sum_to_zero(balances: Mapping[AccountId, Balance]) -> list[str]:
    """Per unit, posted balances sum to zero and so do pending ones."""
    totals: dict[Unit, list[int]] = defaultdict(lambda: [0, 0])
    for account, balance in balances.items():
        total = totals[unit_of(account)]
        total[0] += balance.posted
        total[1] += balance.credits_pending - balance.debits_pending
    return [
        f"{unit.value}: posted balances sum to {posted}, pending to {pending}"
        for unit, (posted, pending) in totals.items()
        if posted or pending
    ]


def check_no_transfer_twice(transfers: Sequence[Transfer]) -> list[str]:
    seen: set[int] = set()
    out = []
    for t in transfers:
        if t.id in seen:
            out.append(f"transfer {t.id:032x} applied twice")
        seen.add(t.id)
    return out


def check_no_command_twice(transfers: Iterable[Transfer]) -> list[str]:
    """A command's legs are distinct; the same leg twice means the command ran twice."""
    legs: set[tuple[object, ...]] = set()
    out = []
    for t in transfers:
        command = t.refs.get("command")
        if command is None:
            continue
        leg = (command, t.code, t.kind, t.debit, t.credit)
        if leg in legs:
            out.append(f"command {command} applied twice ({t.code.value} {t.debit}->{t.credit})")
        legs.add(leg)
    return out


def check_payments_credited_once(
    transfers: Iterable[Transfer], paid_orders: Iterable[str] | None = None
) -> list[str]:
    """Every payment order is credited exactly once (and, if given, every paid order is)."""
    credited: dict[str, int] = defaultdict(int)
    for t in transfers:
        payment = t.refs.get("payment")
        # A pending recharge later posted counts once: count singles and pendings only.
        if (
            t.code is Code.RECHARGE
            and payment is not None
            and t.kind in (Kind.SINGLE, Kind.PENDING)
        ):
            credited[str(payment)] += 1
    out = [f"payment {p} credited {n} times" for p, n in credited.items() if n > 1]
    for order in paid_orders or ():
        if order not in credited:
            out.append(f"payment {order} never credited")
    return out


def check_subsidy_once_per_period(transfers: Iterable[Transfer]) -> list[str]:
    seen: set[tuple[str, object]] = set()
    out = []
    for t in transfers:
        if t.code is Code.SUBSIDY_ISSUE:
            key = (t.credit, t.refs.get("period"))
            if key in seen:
                out.append(f"subsidy for {t.credit} issued twice in period {key[1]}")
            seen.add(key)
    return out


def check_energy_matches_registers(transfers: Iterable[Transfer]) -> list[str]:
    """Per meter: billed energy (or water) equals last register minus first, with no gap or
    overlap."""
    intervals: dict[str, dict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))
    units: dict[str, str] = {}
    for t in transfers:
        if t.code in BILLING_CODES:
            meter = str(t.refs["meter"])
            span = (int(t.refs["reg_from"]), int(t.refs["reg_to"]))
            billed, units[meter] = billed_quantity(t)
            intervals[meter][span] += billed
    out = []
    for meter, spans in intervals.items():
        ordered = sorted(spans)
        unit = units[meter]
        for (start, end), billed in zip(ordered, (spans[s] for s in ordered), strict=True):
            if billed != end - start:
                out.append(
                    f"meter {meter}: {start}..{end} billed {billed} {unit}, not {end - start}"
                )
        for (_, end), (start, _) in pairwise(ordered):
            if start != end:
                out.append(f"meter {meter}: registers jump from {end} to {start} unbilled")
    return out


def check_charges_never_drift(transfers: Iterable[Transfer]) -> list[str]:
    """Per account: fen charged so far (paid or booked as debt) equals its cumulative exact
    cost rounded once."""
    charged: dict[str, int] = defaultdict(int)
    out = []
    for t in transfers:
        if t.code in BILLING_CODES and t.unit is Unit.FEN:
            owner = owner_of(t.debit)
            charged[owner] += t.amount
            cumulative = fen_rounded(ExactCost(int(t.refs["cost_cum"])))
            if charged[owner] != cumulative:
                out.append(
                    f"account {owner}: charged {charged[owner]} fen, cumulative cost rounds to "
                    f"{cumulative}"
                )
    return out


_DEBT_SUFFIX = ":" + Pocket.DEBT.value


def check_debt_never_credit(balances: Mapping[AccountId, Balance]) -> list[str]:
    """A debt pocket holds what a merchant owes: it is paid back down to zero, never beyond."""
    return [
        f"{account}: debt paid back beyond zero ({balance.posted} fen)"
        for account, balance in balances.items()
        if account.endswith(_DEBT_SUFFIX) and balance.posted > 0
    ]


def check_prefix_unchanged(acknowledged: Sequence[Entry], current: Sequence[Entry]) -> list[str]:
    """The acknowledged prefix of a chain is still the prefix of the chain now."""
    if len(current) < len(acknowledged):
        return [f"chain shrank from {len(acknowledged)} to {len(current)} entries"]
    return [
        f"acknowledged entry {old.seq} changed"
        for old, new in zip(acknowledged, current, strict=False)
        if old != new
    ]


def ledger_violations(
    transfers: Sequence[Transfer],
    balances: Mapping[AccountId, Balance],
    paid_orders: Iterable[str] | None = None,
) -> list[str]:
    return [
        *check_balances_sum_to_zero(balances),
        *check_debt_never_credit(balances),
        *check_no_transfer_twice(transfers),
        *check_no_command_twice(transfers),
        *check_payments_credited_once(transfers, paid_orders),
        *check_subsidy_once_per_period(transfers),
        *check_energy_matches_registers(transfers),
        *check_charges_never_drift(transfers),
    ]


def assert_ledger_sound(
    transfers: Sequence[Transfer],
    balances: Mapping[AccountId, Balance],
    paid_orders: Iterable[str] | None = None,
) -> None:
    violations = ledger_violations(transfers, balances, paid_orders)
    if violations:
        raise InvariantViolated(violations)
