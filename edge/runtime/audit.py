"""`voltbook-edge ledger verify --config`: is this site's ledger sound?

All of it reads one snapshot of the store (`Store.open_readonly`: one read transaction), so it
runs while the runtime writes and judges the state of one commit, never a half-seen one.

Checks, in order, and stops at the first that fails:

1. the store opens read-only: SQLite's integrity check and the replay of every retained row
   (each body decoded, so a body that is not a transfer is named by its seq even when its
   hash was recomputed to match), its hash and link (a row edited inside the SQLite file is
   named by its seq), and every stored checkpoint signature verifies with the node's key;
2. the stored rows verify as an outsider would verify the chain (`ledger.verify.verify_stored`,
   the bytes as stored, either format, not re-encoded): sequence, links and signatures, each
   by the node key of its seq (the key rotations recorded in the store, `ledger.key_rotation`).
   Entries after the last checkpoint are not a fault here: the runtime signs its head with its
   next commit, so they are reported as `not_checkpointed`, not refused;
3. the ledger invariants (`ledger.invariants`, docs/architecture.md §5.6): balances sum to zero per
   unit, no transfer or command twice, payments credited once, subsidy once per account and period,
   billed energy contiguous per meter, charges never drift from the cumulative exact cost;
4. per meter, energy (or water) billed plus what was read but not yet billed (the rule state)
   equals the last register read minus the register billing started from.

The open is the full check (`full_check=True`): every retained entry is replayed, whatever
snapshot the runtime booted from, and each signed balance snapshot must meet the replay. A store
pruned up to an anchor (what the cloud acknowledged, `edge.runtime.retention`) is verified from
the anchor's signed (seq, head, balances); the invariants that need the whole history
(`PRUNED_SKIPS`: charges against the cumulative cost, billed against the registers since
billing started) are then the cloud's to judge on its full copy, and the summary says so.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.rules.tariffs import energy_of
from edge.runtime.codec import CodecError, decode
from edge.runtime.state import MeterRuntime, meter_key
from edge.site.model import Site
from edge.store import CorruptStore, Store
from ledger.invariants import (
    billed_quantity,
    check_balances_sum_to_zero,
    check_debt_never_credit,
    check_energy_matches_registers,
    check_no_command_twice,
    check_no_transfer_twice,
    check_payments_credited_once,
    check_subsidy_once_per_period,
    ledger_violations,
)
from ledger.transfers import Code, Transfer
from ledger.verify import Problem, TrustedHead, verify_stored

INVARIANTS = (
    "store_integrity",
    "chain_links_and_signatures",
    "balances_sum_to_zero",
    "no_transfer_twice",
    "no_command_twice",
    "payments_credited_once",
    "subsidy_once_per_period",
    "energy_matches_registers",
    "charges_never_drift",
    "billed_plus_unbilled_equals_register_delta",
)
PRUNED_SKIPS = ("charges_never_drift", "billed_plus_unbilled_equals_register_delta")


@dataclass(slots=True)
class Audit:
    ok: bool
    summary: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


def meter_balance_problems(site: Site, store: Store) -> tuple[int, list[str]]:
    """Meters checked, and per meter where billed + unbilled ≠ register delta."""
    billed: dict[str, int] = defaultdict(int)
    for entry in store.entries():
        t = entry.transfer
        if t.code is Code.CONSUME:
            billed[str(t.refs["meter"])] += billed_quantity(t)[0]
    checked, problems = 0, []
    for meter in site.meters:
        raw = store.get_state(meter_key(meter.address))
        if raw is None:
            continue
        try:
            state = decode(MeterRuntime, raw)
        except CodecError as exc:
            problems.append(f"meter {meter.address}: rule state does not decode ({exc})")
            continue
        if state.billing is None or state.first_reg_wh is None:
            continue
        checked += 1
        delta = state.billing.reg_wh - state.first_reg_wh
        unit = "L" if site.is_water(meter) else "Wh"
        unbilled = energy_of(state.billing.unbilled)
        if billed[meter.address] + unbilled != delta:
            problems.append(
                f"meter {meter.address}: billed {billed[meter.address]} {unit} + unbilled "
                f"{unbilled} {unit}, but the registers rose {delta} {unit}"
            )
    return checked, problems


def audit_store(site: Site, key: Ed25519PublicKey) -> Audit:
    path = site.settings.store_path
    try:
        store = Store.open_readonly(path, public_key=key, full_check=True)
    except CorruptStore as exc:
        return Audit(False, {"ok": False, "store": str(path)}, str(exc))
    with store:
        anchor_seq, anchor_head = store.anchor()
        trusted = TrustedHead(anchor_seq, anchor_head) if anchor_seq else None
        verdict = verify_stored(
            site.settings.node,
            store.ledger_rows(),
            store.checkpoints(),
            [key],
            rotations=store.key_rotations(),
            trusted=trusted,
        )
        findings = [f for f in verdict.findings if f.problem is not Problem.UNSIGNED_TAIL]
        summary = verdict.summary()
        summary.pop("problems")
        summary["store"] = str(path)
        summary["not_checkpointed"] = store.not_checkpointed()
        summary["pruned_through"] = anchor_seq
        if findings:
            return Audit(False, {**summary, "ok": False}, f"chain: {findings[0]}")
        summary["ok"] = True
        transfers = [e.transfer for e in store.entries()]
        if anchor_seq:
            violations = _retained_violations(transfers, store)
            checked, meter_problems = 0, list[str]()
        else:
            violations = ledger_violations(transfers, store.book.balances())
            checked, meter_problems = meter_balance_problems(site, store)
    skipped = PRUNED_SKIPS if anchor_seq else ()
    summary["invariants"] = [i for i in INVARIANTS if i not in skipped]
    if skipped:
        summary["left_to_the_cloud"] = list(skipped)
    summary["meters_checked"] = checked
    problems = violations + meter_problems
    if problems:
        return Audit(False, {**summary, "ok": False}, f"invariant violated: {problems[0]}")
    return Audit(True, summary)


def _retained_violations(transfers: list[Transfer], store: Store) -> list[str]:
    """The invariants the retained part of a pruned chain can judge on its own (with the
    balances, which the signed anchor carries from the pruned part)."""
    balances = store.book.balances()
    return [
        *check_balances_sum_to_zero(balances),
        *check_debt_never_credit(balances),
        *check_no_transfer_twice(transfers),
        *check_no_command_twice(transfers),
        *check_payments_credited_once(transfers, None),
        *check_subsidy_once_per_period(transfers),
        *check_energy_matches_registers(transfers),
    ]
