"""The `takeover` command: this box replaces a dead concentrator and takes over its accounts
(`ledger.signed.CommandKind.TAKEOVER`, `ledger.takeover`; docs/architecture.md §7.6).

In the command's one transaction, or not at all:

- the configuration (`version`, `documents`, parsed as a `config` is) which names the accounts
  and meters taken over;
- one opening transfer per pocket, `sys:takeover_<unit>` ↔ pocket, of the balance the cloud's
  verified copy of the old chain holds at its acknowledged head (ids
  `entry_ids.takeover_open(takeover, pocket)`);
- each meter's billing baseline: its next reading bills from the register the old chain's last
  billed leg reached (and from the time it was read, so the energy is spread over the tariff
  periods and judged for plausibility over the days it took), so the days the old box booked
  and never sent (or that nobody booked) are billed here from the registers, once;
- each account's cumulative exact cost (charges continue without drift), the month's use a
  tiered tariff counts, and subsidy periods
  issued and closed (a period the old box issued is never issued here again; the current one is
  still closed at month end here).

Refused, changing nothing, if a meter taken over is already billed here, a pocket taken over
already holds anything here, an opening names an account the documents do not, or the
configuration does not parse. Applied once (the inbox, by command id), and a takeover once: a
later command of a takeover applied here (the cloud issued it again after the first expired)
is applied with nothing booked and nothing changed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from edge.rules.consumption import AccountCharges, MeterBilling
from edge.rules.subsidy import SubsidyState
from edge.runtime.state import AccountRuntime, MeterRuntime
from edge.sync.command_context import (
    Applied,
    CommandContext,
    Refusal,
    aware_time,
    integer,
    periods,
    reference,
    text,
    took_effect,
)
from edge.sync.configure import applied_config, checked_documents, parsed_site
from ledger import takeover as rules
from ledger.accounts import AccountId, is_system, owner_of, unit_of
from ledger.errors import InvalidValue
from ledger.units import ExactCost, Wh

_HASH = re.compile(r"[0-9a-f]{64}")
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
MAX_ITEMS = 100_000


def _rows(args: Mapping[str, Any], name: str) -> Sequence[Mapping[str, Any]]:
    value = args.get(name, [])
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise Refusal(f"{name} must be a list of at most {MAX_ITEMS} objects")
    if not all(isinstance(row, dict) for row in value):
        raise Refusal(f"{name} must be a list of objects")
    return value


def _openings(args: Mapping[str, Any], accounts: set[str]) -> list[rules.Opening]:
    out = []
    for row in _rows(args, "openings"):
        pocket = row.get("pocket")
        try:
            valid = isinstance(pocket, str) and not is_system(AccountId(pocket))
            valid = valid and unit_of(AccountId(str(pocket))) is not None
        except InvalidValue:
            valid = False
        if not valid or not isinstance(pocket, str):
            raise Refusal(f"openings: {pocket!r} is not a merchant pocket")
        if owner_of(AccountId(pocket)) not in accounts:
            raise Refusal(f"openings: {pocket} is not an account taken over")
        amount = integer(row, "amount")
        out.append(rules.Opening(AccountId(pocket), amount))
    if len({o.pocket for o in out}) != len(out):
        raise Refusal("openings name a pocket twice")
    return out


def _baselines(args: Mapping[str, Any], meters: set[str]) -> list[rules.MeterBaseline]:
    out = []
    for row in _rows(args, "meters"):
        meter = text(row, "meter")
        if meter not in meters:
            raise Refusal(f"meters: {meter!r} is not a meter of the documents")
        at = aware_time(row, "at")
        out.append(rules.MeterBaseline(meter, integer(row, "reg", low=0), at.isoformat()))
    if len({m.meter for m in out}) != len(out):
        raise Refusal("meters name a meter twice")
    missing = sorted(meters - {m.meter for m in out})
    if missing:
        raise Refusal(f"meters: no baseline for {missing}")
    return out


def _carries(args: Mapping[str, Any], accounts: set[str]) -> list[rules.AccountCarry]:
    out = []
    for row in _rows(args, "accounts"):
        account = text(row, "account")
        if account not in accounts:
            raise Refusal(f"accounts: {account!r} is not an account of the documents")
        month = row.get("month", "")
        if month != "" and not (isinstance(month, str) and _MONTH.fullmatch(month)):
            raise Refusal(f"accounts: month must be YYYY-MM or empty, got {month!r:.40}")
        issued, closed, w_issued, w_closed = (
            tuple(sorted(periods(row, name)))
            for name in ("subsidy_issued", "subsidy_closed", "water_issued", "water_closed")
        )
        out.append(
            rules.AccountCarry(
                account,
                integer(row, "cost_cum", low=0),
                issued,
                closed,
                w_issued,
                w_closed,
                month,
                integer(row, "month_wh", low=0) if "month_wh" in row else 0,
                integer(row, "month_l", low=0) if "month_l" in row else 0,
            )
        )
    if len({c.account for c in out}) != len(out):
        raise Refusal("accounts name an account twice")
    return out


def _done_key(ref: str) -> str:
    return f"takeover:{ref}"  # the command that applied takeover `ref` here


def takeover(d: CommandContext) -> Applied:
    ref = reference(d.args, "takeover")
    from_node = text(d.args, "from_node")
    done = d.runtime.store.get_state(_done_key(ref))
    if done is not None:  # sent again (the cloud saw the first expire): applied, changes nothing
        return d.apply(), [], f"took over {from_node} already (takeover {ref}, command {done})"
    head_seq = integer(d.args, "head_seq", low=0)
    head_hash = d.args.get("head_hash")
    if not isinstance(head_hash, str) or not _HASH.fullmatch(head_hash):
        raise Refusal(f"head_hash must be 64 lower-case hex digits, got {head_hash!r:.80}")
    version = integer(d.args, "version", low=1)
    documents = checked_documents(d.args.get("documents"))
    runtime = d.runtime
    if from_node == runtime.store.node:
        raise Refusal("a concentrator cannot take over its own accounts")
    applied, _ = applied_config(d)
    if version <= applied:
        raise Refusal(f"stale configuration: version {version}, version {applied} is applied")
    site = parsed_site(runtime.site, documents)
    taken_accounts = {str(row.get("account")) for row in _rows(d.args, "accounts")}
    unknown = sorted(taken_accounts - set(site.accounts))
    if unknown:
        raise Refusal(f"accounts {unknown} are not in the configuration sent")
    taken_meters = {m.address for m in site.meters if m.account in taken_accounts}
    carries = _carries(d.args, taken_accounts)
    openings = _openings(d.args, taken_accounts)
    baselines = _baselines(d.args, taken_meters)
    book = runtime.store.book
    for meter in sorted(taken_meters & set(runtime.meters)):
        if runtime.meter_state(meter).billing is not None:
            raise Refusal(f"meter {meter} is already billed here: it cannot be taken over")
    for owner in sorted(taken_accounts):
        for account in book.accounts():
            if owner_of(account.id) == owner and not is_system(account.id):
                held = book.balance(account.id)
                if held.posted or held.debits_pending or held.credits_pending:
                    raise Refusal(f"{account.id} already holds {held.posted} here")
    transfers = rules.openings(
        ref,
        openings,
        from_node=from_node,
        time=d.stamp.time,
        source=d.stamp.source,
        command=d.command.id,
    )
    runtime.store.set_accounts(site.ledger_accounts())  # the floors the openings must respect
    result = d.apply(transfers)
    if took_effect(result):
        for base in baselines:
            at = dt.datetime.fromisoformat(base.at).astimezone(runtime.site.zone)
            billing = MeterBilling(meter=base.meter, reg_wh=Wh(base.reg), at=min(at, d.now))
            meter_was = runtime.meters.get(base.meter, MeterRuntime())
            state = dataclasses.replace(meter_was, billing=billing, first_reg_wh=base.reg)
            runtime.stage_meter(d.tx, base.meter, state)
        for carry in carries:
            before = runtime.accounts.get(carry.account, AccountRuntime())
            subsidy = SubsidyState(
                before.subsidy.issued | frozenset(carry.subsidy_issued),
                before.subsidy.closed | frozenset(carry.subsidy_closed),
            )
            water = SubsidyState(
                before.water_subsidy.issued | frozenset(carry.water_issued),
                before.water_subsidy.closed | frozenset(carry.water_closed),
            )
            charges = AccountCharges(
                ExactCost(carry.cost_cum), carry.month, carry.month_wh, carry.month_l
            )
            runtime.stage_account(
                d.tx,
                carry.account,
                dataclasses.replace(before, charges=charges, subsidy=subsidy, water_subsidy=water),
            )
        runtime.stage_site(d.tx, site, version, documents)
        d.tx.set_state(_done_key(ref), d.command.id)
        d.event(
            takeover=ref,
            from_node=from_node,
            head_seq=head_seq,
            head_hash=head_hash,
            accounts=sorted(taken_accounts),
            meters=sorted(taken_meters),
            openings=len(transfers),
        )
    return result, [], f"took over {len(taken_accounts)} accounts of {from_node} at seq {head_seq}"
