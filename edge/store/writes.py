"""The write side of the store: a `Transaction` is the only thing that can change it.

`Store.transaction()` yields one. Every write — ledger entries, checkpoints, readings, events,
commands, rule state, outbox pruning — goes through it and commits with the others at the end of
the block. Actions the cycle decided (relay trips, PUBACKs) are `defer`red and handed back by
`released()` only after the commit is durable.

If a SQLite write fails inside (a full disk), the transaction is poisoned: SQLite may already
have rolled back, so any further write raises and the block cannot commit — a caller that
swallowed the error still gets nothing half-written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Any

from edge.store.errors import (
    AcknowledgementMismatch,
    CommandConflict,
    StoreError,
    StoreUsageError,
    TransfersRefused,
    from_sqlite,
)
from edge.store.integrity import format_head
from edge.store.records import (
    CommandResult,
    CommandStatus,
    Event,
    OutboxKind,
    TimedReading,
    compact_json,
    event_payload,
    event_row,
    from_ms,
    reading_row,
    readings_payload,
    table_row,
    to_ms,
)
from edge.store.snapshots import pack
from ledger.book import Outcome
from ledger.chain import Checkpoint, Entry, entry_hash
from ledger.encoding_v2 import FORMAT_V2, encode_transfer_v2
from ledger.export import record_line
from ledger.key_rotation import KeyRotation
from ledger.readings import READING_FIELDS
from ledger.signed import Rejected
from ledger.snapshot import BalanceSnapshot, SignedSnapshot
from ledger.transfers import Transfer

if TYPE_CHECKING:
    import datetime as dt

    from edge.store.db import Store

_INSERT_ENTRY = (
    "INSERT INTO ledger (seq, transfer_id, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?)"
)
_INSERT_OUTBOX = "INSERT INTO outbox (kind, ref, payload, created) VALUES (?, ?, ?, ?)"
_INSERT_READING = (
    f"INSERT INTO readings ({', '.join(READING_FIELDS)}) "
    f"VALUES ({', '.join('?' * len(READING_FIELDS))})"
)
_INSERT_EVENT = (
    "INSERT INTO events (time, category, kind, meter, shop, account, detail) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
PROCESSED_PREFIX = "processed:"


class _Phase(Enum):
    OPEN = "open"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled back"


class Transaction:
    """One group commit. Obtain it from `Store.transaction()`; never construct it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn: sqlite3.Connection = store._conn
        self._actions: list[Any] = []
        self._phase = _Phase.OPEN
        self.failure: StoreError | None = None  # the SQLite write that poisoned this transaction

    # -- life cycle (driven by Store.transaction) -----------------------------------------------
    def finish(self, *, committed: bool) -> None:
        self._phase = _Phase.COMMITTED if committed else _Phase.ROLLED_BACK

    def _check(self) -> None:
        if self._phase is not _Phase.OPEN:
            raise StoreUsageError(f"this transaction is already {self._phase.value}")
        if self.failure is not None:
            raise StoreUsageError(
                f"an earlier write of this transaction failed ({self.failure}); nothing more can "
                "be written in it. Let the error end the transaction."
            ) from self.failure

    @contextmanager
    def _sql(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._conn
        except sqlite3.Error as exc:
            self.failure = from_sqlite(exc, self._store.path)
            raise self.failure from exc

    # -- actions released after commit ----------------------------------------------------------
    def defer(self, *actions: Any) -> None:
        """Keep actions (relay commands, PUBACKs, publishes) until the commit is durable."""
        self._check()
        self._actions.extend(actions)

    def released(self) -> list[Any]:
        """The deferred actions, in order; only once the transaction has committed."""
        if self._phase is not _Phase.COMMITTED:
            raise StoreUsageError(
                f"the transaction is {self._phase.value}: deferred actions are released only "
                "after a successful commit"
            )
        return list(self._actions)

    # -- ledger ---------------------------------------------------------------------------------
    def append_transfers(self, transfers: Iterable[Transfer]) -> list[Entry]:
        """Submit a batch to the book and append what it accepts to the chain.

        All or nothing: if the book refuses any transfer, `TransfersRefused` is raised (with
        every outcome) and the batch changed nothing. Transfers the book already holds
        (identical retries, `exists`) are skipped. Returns the new entries, in order.
        """
        entries, _ = self._append(list(transfers))
        return entries

    def _append(self, batch: list[Transfer]) -> tuple[list[Entry], list[Outcome]]:
        self._check()
        store = self._store
        mark = store.book.mark()
        for t in batch:
            store.ensure_account(t.debit)
            store.ensure_account(t.credit)
        outcomes = store.book.submit(batch)
        new = [t for t, o in zip(batch, outcomes, strict=True) if o is Outcome.OK]
        refused = not all(o.accepted for o in outcomes)
        # A stored chain must not end in a linked transfer (its partner already existed): at the
        # next boot, replay would find the chain open.
        dangling = bool(new) and new[-1].linked
        if refused or dangling:
            store.book.rollback(mark)  # undo the chains of this batch the book did accept
            if refused:
                raise TransfersRefused(batch, outcomes)
            raise StoreUsageError(
                f"transfer {new[-1].id:032x} is linked to one that is already stored; submit "
                "the new transfers as a complete chain of their own"
            )
        return self._persist(new), outcomes

    def _persist(self, new: list[Transfer]) -> list[Entry]:
        store = self._store
        node, chain = store.node, store._chain
        seq, head = chain.seq, chain.head
        entries: list[Entry] = []
        rows = []
        for t in new:
            body = encode_transfer_v2(t)  # new entries in format 2; older rows stay as stored
            seq += 1
            digest = entry_hash(node, seq, head, body)
            entries.append(Entry(node, seq, head, digest, t, FORMAT_V2))
            rows.append((seq, t.id.to_bytes(16, "big"), body, head, digest))
            head = digest
        if not entries:
            return entries
        with self._sql() as conn:
            conn.executemany(_INSERT_ENTRY, rows)
            conn.executemany(
                _INSERT_OUTBOX,
                [(OutboxKind.ENTRY.value, e.seq, None, e.transfer.time) for e in entries],
            )
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('head', ?)",
                (format_head(seq, head),),
            )
        chain.seq, chain.head = seq, head
        return entries

    def add_key_rotation(self, rotation: KeyRotation) -> None:
        """Record a rotation of the node key at this chain's head, signed by the key the store
        was opened with (`Store.key_schedule`): checkpoints and snapshots after it are the new
        key's (`ledger.key_rotation`)."""
        self._check()
        store = self._store
        schedule = store.key_schedule
        if schedule is None:
            raise StoreUsageError("open the store with the node's public key to rotate it")
        chain = store.chain
        if (rotation.seq, rotation.head) != (chain.seq, chain.head):
            raise StoreUsageError(f"a key rotation must be bound to the head, seq {chain.seq}")
        try:
            followed = schedule.follow(rotation, chain.head)
        except Rejected as exc:
            raise StoreUsageError(f"key rotation refused: {exc.detail}") from None
        with self._sql() as conn:
            conn.execute(
                "INSERT INTO key_rotations (seq, record) VALUES (?, ?)",
                (rotation.seq, rotation.payload),
            )
        store._keys = followed  # undone by a rollback (`Store._roll_back`)

    def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Store a signed head of this chain; False if that very checkpoint is already stored."""
        self._check()
        store = self._store
        if checkpoint.node != store.node:
            raise StoreUsageError(f"checkpoint of node {checkpoint.node!r}, not {store.node!r}")
        with self._sql() as conn:
            row = conn.execute(
                "SELECT hash FROM ledger WHERE seq = ?", (checkpoint.seq,)
            ).fetchone()
            if row is None or bytes(row[0]) != checkpoint.head:
                raise StoreUsageError(
                    f"checkpoint for seq {checkpoint.seq} does not match this chain's entry; "
                    "sign `store.chain` instead"
                )
            known = conn.execute(
                "SELECT head, key_id, signature FROM checkpoints WHERE seq = ?", (checkpoint.seq,)
            ).fetchone()
            if known is not None:
                if (bytes(known[0]), known[1], bytes(known[2])) == (
                    checkpoint.head,
                    checkpoint.key_id,
                    checkpoint.signature,
                ):
                    return False
                raise StoreUsageError(f"another checkpoint for seq {checkpoint.seq} is stored")
            conn.execute(
                "INSERT INTO checkpoints (seq, head, key_id, signature) VALUES (?, ?, ?, ?)",
                (checkpoint.seq, checkpoint.head, checkpoint.key_id, checkpoint.signature),
            )
            conn.execute(
                _INSERT_OUTBOX,
                (
                    OutboxKind.CHECKPOINT.value,
                    checkpoint.seq,
                    record_line(checkpoint).encode(),
                    "",
                ),
            )
        return True

    # -- cloud commands -------------------------------------------------------------------------
    def apply_command(
        self,
        command_id: str,
        payload: bytes,
        transfers: Sequence[Transfer],
        received: dt.datetime,
    ) -> CommandResult:
        """Apply a cloud command exactly once, with its transfers, in this transaction.

        The first delivery submits the transfers (all or nothing) and records the result —
        `applied`, or `refused` with the book's outcomes — keyed by the command id. Any later
        delivery returns that stored result (`first_delivery=False`) and changes nothing, even
        if the book would now judge it differently. The same id with another payload raises
        `CommandConflict`. The result is queued for uplink.
        """
        self._check()
        known = self._known_command(command_id, payload)
        if known is not None:
            return known
        try:
            entries, outcomes = self._append(list(transfers))
            result = CommandResult(
                command_id,
                CommandStatus.APPLIED,
                tuple(e.seq for e in entries),
                tuple(outcomes),
            )
        except TransfersRefused as refusal:
            why = "; ".join(
                f"{t.code.value} {t.debit} → {t.credit} {t.amount} {t.unit.value}: {o.value}"
                for t, o in zip(refusal.transfers, refusal.outcomes, strict=True)
                if not o.accepted and o is not Outcome.LINKED_EVENT_FAILED
            )
            result = CommandResult(
                command_id,
                CommandStatus.REFUSED,
                (),
                refusal.outcomes,
                reason=f"the book refused {why}",
            )
        self._record_command(payload, received, result)
        return result

    def refuse_command(
        self, command_id: str, payload: bytes, reason: str, received: dt.datetime
    ) -> CommandResult:
        """Record a cloud command as `refused` for `reason` (an unknown account, bad arguments)
        without submitting anything, exactly once like `apply_command`: a later delivery gets
        the stored result back, whatever it was."""
        self._check()
        known = self._known_command(command_id, payload)
        if known is not None:
            return known
        result = CommandResult(command_id, CommandStatus.REFUSED, (), (), reason=reason)
        self._record_command(payload, received, result)
        return result

    def _known_command(self, command_id: str, payload: bytes) -> CommandResult | None:
        with self._sql() as conn:
            known = conn.execute(
                "SELECT payload, result FROM inbox WHERE command_id = ?", (command_id,)
            ).fetchone()
        if known is None:
            return None
        if bytes(known[0]) != payload:
            raise CommandConflict(command_id)
        return CommandResult.from_json(known[1], first_delivery=False)

    def _record_command(self, payload: bytes, received: dt.datetime, result: CommandResult) -> None:
        received_ms = to_ms(received)
        text = result.to_json()
        with self._sql() as conn:
            conn.execute(
                "INSERT INTO inbox (command_id, received, payload, result) VALUES (?, ?, ?, ?)",
                (result.command_id, received_ms, payload, text),
            )
            conn.execute(
                _INSERT_OUTBOX,
                (OutboxKind.COMMAND_RESULT.value, None, text.encode(), received.isoformat()),
            )

    # -- readings and events --------------------------------------------------------------------
    def insert_readings(self, readings: Iterable[TimedReading]) -> int:
        """Store a cycle's readings (one prepared statement, executemany) and queue them for
        uplink as one compact batch. Returns how many were stored."""
        self._check()
        rows = [reading_row(r) for r in readings]
        if not rows:
            return 0
        created = from_ms(max(row.time for row in rows)).isoformat()
        payload = readings_payload(rows)
        table = [table_row(row) for row in rows]
        with self._sql() as conn:
            conn.executemany(_INSERT_READING, table)
            conn.execute(_INSERT_OUTBOX, (OutboxKind.READING.value, None, payload, created))
        return len(rows)

    def add_events(self, events: Iterable[Event]) -> list[int]:
        """Store events and alarms and queue each for uplink; returns their ids."""
        self._check()
        ids = []
        for event in events:
            row = event_row(event)
            with self._sql() as conn:
                cursor = conn.execute(_INSERT_EVENT, row)
                event_id = int(cursor.lastrowid or 0)
                conn.execute(
                    _INSERT_OUTBOX,
                    (row[1], event_id, event_payload(event_id, row), event.time.isoformat()),
                )
            ids.append(event_id)
        return ids

    # -- rule state -----------------------------------------------------------------------------
    def set_state(self, key: str, value: object) -> None:
        """Set a rule-state value (anything JSON can hold; integers of any size stay exact)."""
        self._check()
        text = compact_json(value)
        with self._sql() as conn:
            conn.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, text))

    def delete_state(self, key: str) -> None:
        self._check()
        with self._sql() as conn:
            conn.execute("DELETE FROM state WHERE key = ?", (key,))

    def mark_processed(self, key: str) -> bool:
        """Mark a business event key (e.g. "subsidy:A0001:2026-11") done; False if it was."""
        self._check()
        with self._sql() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO state (key, value) VALUES (?, 'true')",
                (PROCESSED_PREFIX + key,),
            )
        return cursor.rowcount == 1

    # -- uplink bookkeeping ---------------------------------------------------------------------
    def acknowledge(self, seq: int, head: bytes) -> None:
        """Record the cloud's acknowledgement of the chain up to `seq` with head `head`.

        Refuses (`AcknowledgementMismatch`) a head this chain does not have. The acknowledged
        prefix is then checked at every boot: it must never change.
        """
        self._check()
        if seq < self._store.anchor()[0]:
            return  # a late duplicate: what it covers was pruned after a newer verified ack
        ours = self._store.head_at(seq)
        if ours is None:
            raise AcknowledgementMismatch(seq, f"this chain ends at seq {self._store.chain.seq}")
        if ours != head:
            raise AcknowledgementMismatch(seq, f"this chain's entry {seq} has another hash")
        if seq <= self._store.acknowledged()[0]:
            return  # a late duplicate of an older acknowledgement
        with self._sql() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('ack', ?)",
                (format_head(seq, head),),
            )

    # -- balance snapshots and pruning (`edge.store.snapshots`) ---------------------------------
    def _snapshot_row(self, signed: SignedSnapshot) -> BalanceSnapshot:
        snapshot = signed.snapshot
        store = self._store
        if snapshot.node != store.node:
            raise StoreUsageError(f"snapshot of node {snapshot.node!r}, not {store.node!r}")
        if store.head_at(snapshot.seq) != snapshot.head or snapshot.seq == 0:
            raise StoreUsageError(
                f"the snapshot at seq {snapshot.seq} does not match this chain's entry"
            )
        with self._sql() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO snapshots (seq, head, body, key_id, signature) "
                "VALUES (?, ?, ?, ?, ?)",
                (snapshot.seq, snapshot.head, pack(signed), signed.key_id, signed.signature),
            )
        return snapshot

    def add_snapshot(self, signed: SignedSnapshot) -> None:
        """Store a signed balance snapshot (`Store.balance_snapshot`, signed with the node key):
        the next boot starts from it. The snapshots between the anchor and it are dropped."""
        self._check()
        snapshot = self._snapshot_row(signed)
        anchor = self._store.anchor()[0]
        with self._sql() as conn:
            conn.execute("DELETE FROM snapshots WHERE seq > ? AND seq <> ?", (anchor, snapshot.seq))

    def prune_chain(self, signed: SignedSnapshot) -> int:
        """Prune the chain up to the signed snapshot's seq (`Store.snapshot_at`, signed with
        the node key), which becomes the anchor; returns the entries deleted.

        Only what a verified cloud acknowledgement covers and the outbox no longer holds: the
        cloud keeps the full chain, and the snapshot keeps this one verifiable from its head.
        """
        self._check()
        store = self._store
        seq = signed.snapshot.seq
        if not store.anchor()[0] < seq <= store.acknowledged()[0]:
            raise StoreUsageError(
                f"seq {seq} is not between the anchor and the cloud's acknowledged head"
            )
        with self._sql() as conn:
            unsent = conn.execute(
                "SELECT 1 FROM outbox WHERE kind = 'entry' AND ref <= ? LIMIT 1", (seq,)
            ).fetchone()
        if unsent is not None:
            raise StoreUsageError(f"entries up to seq {seq} are still in the outbox")
        snapshot = self._snapshot_row(signed)
        with self._sql() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO pruned_ids SELECT transfer_id FROM ledger WHERE seq <= ?",
                (seq,),
            )
            cursor = conn.execute("DELETE FROM ledger WHERE seq <= ?", (seq,))
            conn.execute("DELETE FROM checkpoints WHERE seq < ?", (seq,))
            conn.execute("DELETE FROM snapshots WHERE seq < ?", (seq,))
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('anchor', ?)",
                (format_head(seq, snapshot.head),),
            )
        return cursor.rowcount

    def prune_readings(self, before: dt.datetime) -> int:
        """Delete readings taken before `before` (their uplink copies live in the outbox, so
        this never loses what the cloud has not received); returns how many."""
        self._check()
        with self._sql() as conn:
            cursor = conn.execute("DELETE FROM readings WHERE time < ?", (to_ms(before),))
        return cursor.rowcount

    def prune_events(self, before: dt.datetime) -> int:
        """Delete events and alarms older than `before`; returns how many."""
        self._check()
        with self._sql() as conn:
            cursor = conn.execute("DELETE FROM events WHERE time < ?", (to_ms(before),))
        return cursor.rowcount

    def prune_outbox(self, up_to_id: int) -> int:
        """Delete outbox items with id ≤ `up_to_id` (acknowledged); returns how many."""
        self._check()
        with self._sql() as conn:
            cursor = conn.execute("DELETE FROM outbox WHERE id <= ?", (up_to_id,))
        return cursor.rowcount
