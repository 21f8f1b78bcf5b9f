"""A configuration the cloud gives a running concentrator (a `config` command, a meter swap).

Two stores are involved: the SQLite store (ledger, inbox, rule states) and the tinydb file of
configuration documents. They cannot commit together, so the store is the truth and the file
follows it:

1. the command's transaction stores the documents and their version under `sync:config`, with
   the inbox row, the transfers and the meters' states (`Runtime.stage_site`);
2. after the commit, the file is rewritten atomically (`ConfigDB.replace_all`) and the runtime
   switches to the new site (`Runtime.use_site`): new meters start polling and billing,
   removed ones stop, meters that stay keep their state;
3. at boot (`reconcile`), documents stored but not in the file (a crash between 1 and 2, or a
   failed write) are written again before the runtime starts, so the file never lags behind a
   command the inbox says was applied.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from edge.runtime.state import (
    AccountRuntime,
    MeterRuntime,
    StateTable,
    account_key,
    meter_key,
    rebuild_account,
    rebuild_meter,
)
from edge.site.load import with_documents
from edge.site.model import Site
from edge.store import Store
from edge.store.config_db import ConfigDB, ConfigKind
from ledger.transfers import Transfer

log = logging.getLogger("edge.runtime")

CONFIG_KEY = "sync:config"  # {"version": int, "documents": {kind: [document, …]}}

Documents = dict[str, list[dict[str, Any]]]  # kind value → documents


def read_documents(site: Site) -> Documents:
    """The configuration documents of `site` as its file holds them."""
    with ConfigDB.open(site.settings.config_path) as config:
        return {kind.value: config.documents(kind) for kind in ConfigKind}


def write_documents(site: Site, documents: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Replace the file's documents in one atomic write (StoreError/DiskFull if it fails)."""
    with ConfigDB.open(site.settings.config_path) as config:
        config.replace_all({ConfigKind(kind): docs for kind, docs in documents.items()})


def stored_config(store: Store) -> tuple[int, Documents] | None:
    """The version and documents the cloud's commands last gave, or None."""
    raw = store.get_state(CONFIG_KEY)
    if raw is None:
        return None
    return int(raw["version"]), {str(k): list(v) for k, v in raw["documents"].items()}


def _same(a: Mapping[str, Sequence[Mapping[str, Any]]], b: Documents) -> bool:
    kinds = {k.value for k in ConfigKind}
    return all(
        sorted(map(repr, a.get(kind, ()))) == sorted(map(repr, b.get(kind, ()))) for kind in kinds
    )


def reconcile(site: Site, store: Store) -> Site:
    """`site` as the store says it must be: documents stored by an applied command but not in
    the file (a crash between the commit and the file write) are written again."""
    found = stored_config(store)
    if found is None:
        return site
    version, documents = found
    if _same(read_documents(site), documents):
        return site
    changed = with_documents(site, {ConfigKind(k): v for k, v in documents.items()})
    write_documents(site, documents)
    log.warning(
        "configuration version %d was applied but %s did not hold it: written again",
        version,
        site.settings.config_path,
    )
    return changed


def carry_states(
    site: Site,
    table: StateTable,
    store: Store,
    meters: Mapping[str, MeterRuntime],
    accounts: Mapping[str, AccountRuntime],
) -> tuple[dict[str, MeterRuntime], dict[str, AccountRuntime]]:
    """The runtime states for `site`: those in `meters`/`accounts` kept, the others from the
    store, or rebuilt from the chain (a meter or account seen before), or new."""
    new_meters = {
        m.address: meters[m.address]
        if m.address in meters
        else table.find(meter_key(m.address), MeterRuntime)
        for m in site.meters
    }
    new_accounts = {
        a: accounts[a] if a in accounts else table.find(account_key(a), AccountRuntime)
        for a in site.accounts
    }
    transfers: list[Transfer] | None = None

    def chain() -> Iterable[Transfer]:
        nonlocal transfers
        if transfers is None:
            transfers = [e.transfer for e in store.entries()] if store.chain.seq else []
        return transfers

    out_meters = {a: s or rebuild_meter(a, chain()) for a, s in new_meters.items()}
    out_accounts = {a: s or rebuild_account(a, chain()) for a, s in new_accounts.items()}
    return out_meters, out_accounts
