"""What the box keeps: balance snapshots to boot from, pruning of what the cloud holds, and the
full check of the chain in the background (issue 18, item 3).

- `take_snapshot`: sign the book at the committed head (`ledger.snapshot`) and store it; the
  next boot replays only the entries after it (`edge.store.snapshots`). The runner takes one
  with every checkpoint job and at stop.
- `prune_synced`: entries a verified cloud acknowledgement covers and older than
  `keep_synced_days` leave the store, the book at the new start is signed as its anchor, and
  readings the cloud acknowledged and older than that window go too (older than
  `keep_readings_days` they go anyway, as before); then the freed pages leave the file
  (`PRAGMA incremental_vacuum`). Without a `[cloud]` nothing is ever acknowledged, so nothing
  but the old readings and events is pruned.
- `FullCheck`: the whole retained chain replayed and compared with every snapshot, in a thread
  on a read-only snapshot of the store (`Store.open_readonly(full_check=True)`), once after
  boot; what it finds is logged and raised as an alarm by the runtime thread.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.store import Store, StoreError
from ledger.chain import NodeKey

log = logging.getLogger("edge.runtime")


def take_snapshot(store: Store, key: NodeKey) -> bool:
    """Sign and store the book at the committed head, unless the newest is already there."""
    snapshot = store.balance_snapshot()
    if snapshot.seq == 0 or snapshot.seq == store.newest_snapshot_seq():
        return False
    signed = snapshot.sign(key)
    with store.transaction() as tx:
        tx.add_snapshot(signed)
    return True


@dataclass(frozen=True, slots=True)
class Pruned:
    entries: int
    readings: int
    events: int
    pages: int  # pages given back to the file system


def prune_synced(
    store: Store,
    key: NodeKey,
    now: dt.datetime,
    *,
    keep_synced: dt.timedelta,
    keep_readings: dt.timedelta,
    keep_events: dt.timedelta,
) -> Pruned:
    """Prune what the cloud acknowledged and older than `keep_synced`, and whatever is older
    than `keep_readings` / `keep_events`; then shrink the file."""
    synced = now - keep_synced
    seq = store.prunable_seq(synced)
    anchor = store.snapshot_at(seq).sign(key) if seq > store.anchor()[0] else None
    sent_before = store.readings_sent_before()
    acknowledged = synced if sent_before is None else min(synced, sent_before)
    with store.transaction() as tx:
        entries = 0 if anchor is None else tx.prune_chain(anchor)
        readings = tx.prune_readings(max(now - keep_readings, acknowledged))
        events = tx.prune_events(now - keep_events)
    return Pruned(entries, readings, events, store.vacuum())


class FullCheck:
    """The full check of the store, in a thread of its own (`start`); `result()` is None while
    it runs, then "" when it passed or the problem it found."""

    def __init__(self, store: Store, public_key: Ed25519PublicKey) -> None:
        self._path = store.path
        self._public_key = public_key
        self._problem: str | None = None
        self._thread = threading.Thread(target=self._run, name="store-full-check", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            with Store.open_readonly(self._path, public_key=self._public_key, full_check=True):
                pass
        except StoreError as exc:
            log.error("the full check of the store found a problem: %s", exc)
            self._problem = str(exc)
            return
        log.info("the full check of the store passed")
        self._problem = ""

    def result(self) -> str | None:
        return self._problem
