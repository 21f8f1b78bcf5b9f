"""The cloud's configuration commands: a whole new configuration (`config`), and a meter swap
(`meter_swap`), which bills the old meter to its final register and replaces it.

Both build the candidate document set, parse it with the parser the boot uses
(`edge.site.load.with_documents`) and refuse it, changing nothing, if it does not parse. The
documents are stored with the command in its transaction; the file and the running site follow
after the commit (`edge.runtime.reconfigure`).

- `config` {version, documents[, cloud_keys, retired_cloud_keys]}: applied only if `version` is
  above the version applied (stored under `sync:config`); a configuration that drops an account
  whose pockets still hold anything (posted or pending) is refused. The cloud keys it pushes
  (`ledger.cloud_trust`) are stored under `edge.sync.trust.TRUST_KEY`: the commands and acks
  after it are opened with them (a rotation of the cloud's command key needs no site.toml edit).
- `meter_swap` {swap, old, final_wh, meter, initial_wh}: `final_wh` and `initial_wh` are
  registers as billed (after the meter's multiplier). The old meter is billed from where its
  billing stands to `final_wh` (`edge.rules.consumption.bill_final`, code meter_settle); the
  new meter's document inherits the old one's shop and account (and its bus and protocol
  unless it names them) and its billing starts at `initial_wh`: its first reading bills from
  there. The relay hold of the old meter (arrears, an operator's trip) carries over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from edge.rules.consumption import ConsumptionState, MeterBilling, bill_final
from edge.rules.pockets import Pockets
from edge.runtime.reconfigure import Documents, read_documents, stored_config
from edge.runtime.state import MeterRuntime
from edge.site.errors import SiteConfigError
from edge.site.load import with_documents
from edge.site.model import Site
from edge.store.config_db import ConfigKind
from edge.sync.command_context import (
    Applied,
    CommandContext,
    Refusal,
    integer,
    reference,
    text,
    took_effect,
)
from edge.sync.trust import TRUST_KEY, pushed
from ledger import cloud_trust
from ledger.accounts import Pocket, pocket_id
from ledger.errors import InvalidValue
from ledger.invariants import billed_quantity
from ledger.transfers import Transfer
from ledger.units import Wh

_KINDS = tuple(k.value for k in ConfigKind)


def checked_documents(raw: object) -> Documents:
    """A command's `documents` argument as document lists by kind (`config`, `takeover`)."""
    if not isinstance(raw, dict):
        raise Refusal(f"documents must be an object of {', '.join(_KINDS)}, got {raw!r:.80}")
    unknown = sorted(set(raw) - set(_KINDS))
    if unknown:
        raise Refusal(f"unknown document kinds {unknown}; known: {', '.join(_KINDS)}")
    out: Documents = {}
    for kind in _KINDS:
        docs = raw.get(kind, [])
        if not isinstance(docs, list) or not all(isinstance(doc, dict) for doc in docs):
            raise Refusal(f"documents.{kind} must be a list of objects")
        out[kind] = [dict(doc) for doc in docs]
    return out


def parsed_site(site: Site, documents: Documents) -> Site:
    """`site` running on `documents`, parsed as at boot; Refusal if they do not parse."""
    try:
        return with_documents(site, {ConfigKind(k): v for k, v in documents.items()})
    except SiteConfigError as exc:
        raise Refusal(f"the configuration is not valid: {exc.problem}") from None


def applied_config(d: CommandContext) -> tuple[int, Documents]:
    """The version applied, and the documents the runtime runs on now."""
    found = stored_config(d.runtime.store)
    if found is not None:
        return found
    return 0, read_documents(d.runtime.site)


def _trust(d: CommandContext) -> dict[str, Any] | None:
    """The cloud keys a configuration pushes (`ledger.cloud_trust`), to store under
    `TRUST_KEY`; None when it pushes none. Refused if it names no key it keeps trusting."""
    if "cloud_keys" not in d.args and "retired_cloud_keys" not in d.args:
        return None
    lists = {name: d.args.get(name, []) for name in ("cloud_keys", "retired_cloud_keys")}
    try:
        kept = cloud_trust.ring({}, *pushed(lists))
    except InvalidValue as exc:
        raise Refusal(str(exc)) from None
    if not kept:
        raise Refusal("cloud_keys names no key it keeps: this concentrator would trust none")
    return lists


def config(d: CommandContext) -> Applied:
    version = integer(d.args, "version", low=1)
    documents = checked_documents(d.args.get("documents"))
    runtime = d.runtime
    applied, _ = applied_config(d)
    if version <= applied:
        raise Refusal(f"stale configuration: version {version}, version {applied} is applied")
    trust = _trust(d)
    site = parsed_site(runtime.site, documents)
    book = runtime.store.book
    for owner in sorted(set(runtime.site.accounts) - set(site.accounts)):
        held = {
            pocket.value: book.balance(pocket_id(owner, pocket))
            for pocket in (Pocket.PREPAID, Pocket.SUBSIDY, Pocket.GRACE)
        }
        left = {
            name: (b.posted, b.debits_pending + b.credits_pending)
            for name, b in held.items()
            if b.posted or b.debits_pending or b.credits_pending
        }
        if left:
            raise Refusal(
                f"the configuration drops account {owner}, which still holds "
                + ", ".join(f"{n} {p} posted/{q} pending" for n, (p, q) in left.items())
            )
    result = d.apply()
    before = {m.address for m in runtime.site.meters}
    after = {m.address for m in site.meters}
    if took_effect(result):
        runtime.stage_site(d.tx, site, version, documents)
        if trust is not None:
            d.tx.set_state(TRUST_KEY, trust)
        d.event(
            version=version,
            meters_added=sorted(after - before),
            meters_removed=sorted(before - after),
            accounts_added=sorted(set(site.accounts) - set(runtime.site.accounts)),
            accounts_removed=sorted(set(runtime.site.accounts) - set(site.accounts)),
        )
    return result, [], f"version {version} ({len(site.meters)} meters)"


def _new_meter_document(old: Mapping[str, Any], raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise Refusal(f"meter must be a meters document, got {raw!r:.80}")
    doc = {"bus": old["bus"], "protocol": old["protocol"], **raw}
    for inherited in ("shop", "account"):
        if doc.get(inherited, old[inherited]) != old[inherited]:
            raise Refusal(
                f"the new meter's {inherited} {doc[inherited]!r} is not the old meter's "
                f"{old[inherited]!r}: a swap keeps the shop and account"
            )
        doc[inherited] = old[inherited]
    return doc


def meter_swap(d: CommandContext) -> Applied:
    swap = reference(d.args, "swap")
    old = text(d.args, "old")
    final_wh = integer(d.args, "final_wh", low=0)
    initial_wh = integer(d.args, "initial_wh", low=0)
    runtime = d.runtime
    if old not in {m.address for m in runtime.site.meters}:
        raise Refusal(f"meter {old!r} is not on this concentrator")
    old_config = runtime.site.meter(old)
    owner = old_config.account
    account_state = runtime.account_state(owner)
    if account_state.moved_out is not None:
        raise Refusal(f"meter {old}'s account {owner} moved out: give the shop a tenant first")
    version, documents = applied_config(d)
    old_doc = next((m for m in documents["meters"] if m.get("id") == old), None)
    if old_doc is None:
        raise Refusal(f"meter {old!r} has no document in the applied configuration")
    new_doc = _new_meter_document(old_doc, d.args.get("meter"))
    if new_doc.get("id") == old:
        raise Refusal(f"the new meter must have another address than the old one ({old})")
    candidate = {
        **documents,
        "meters": [m for m in documents["meters"] if m.get("id") != old] + [new_doc],
    }
    site = parsed_site(runtime.site, candidate)
    new = next(m for m in site.meters if m.address not in {x.address for x in runtime.site.meters})
    state = runtime.meter_state(old)
    billing = state.billing
    transfers: tuple[Transfer, ...] = ()
    charges = account_state.charges
    if billing is not None:
        if final_wh < billing.reg_wh:
            raise Refusal(
                f"final register {final_wh} Wh of meter {old} is below its last billed "
                f"register {billing.reg_wh} Wh"
            )
        bill = bill_final(
            d.now,
            Wh(final_wh),
            ConsumptionState(billing, charges),
            runtime.policies[old],
            owner=owner,
            pockets=Pockets.from_book(runtime.store.book, owner),
            source=runtime.guard.clock.source,
            swap=swap,
        )
        transfers, charges = bill.transfers, bill.charges
    result = d.apply(transfers)
    if took_effect(result):
        if billing is not None:
            closed = dataclasses.replace(billing, reg_wh=Wh(final_wh), at=d.now, unbilled=())
            runtime.stage_meter(d.tx, old, dataclasses.replace(state, billing=closed))
            runtime.stage_account(d.tx, owner, dataclasses.replace(account_state, charges=charges))
        start = MeterBilling(meter=new.address, reg_wh=Wh(initial_wh), at=d.now)
        fresh = MeterRuntime(billing=start, first_reg_wh=initial_wh, relay=state.relay)
        runtime.stage_meter(d.tx, new.address, fresh)
        runtime.stage_site(d.tx, site, version, candidate)
        d.event(
            account=owner,
            meter=old,
            swap=swap,
            new_meter=new.address,
            final_wh=final_wh,
            initial_wh=initial_wh,
            billed_wh=sum(billed_quantity(t)[0] for t in transfers),
        )
    return result, [], f"meter {old} → {new.address} at {final_wh}/{initial_wh} Wh"
