"""Durable state of the concentrator (docs/architecture.md §6.3).

- `db`: `Store` — SQLite (WAL, synchronous=FULL, one writer) for the ledger chain, checkpoints,
  readings, events and alarms, the inbox of cloud commands, the outbox and rule state; checked
  and replayed into a `ledger.book.Book` at every open.
- `writes`: `Transaction` — the group commit of one poll cycle, the only way to write.
- `schema`: numbered migrations recorded in `PRAGMA user_version`.
- `integrity`: recomputes the chain from the stored rows and names any edited row.
- `snapshots`: signed balance snapshots: where an open starts, and the anchor pruning leaves.
- `records`: the values the store takes and returns, and their compact forms.
- `outbox`: the typed items the outbox hands the uplink (`EntryItem`, `ReadingsItem`, …).
- `config_db`: the site configuration documents in tinydb, written atomically.
- `errors`: the `StoreError` tree.
"""

from edge.store.db import Store
from edge.store.errors import (
    AcknowledgementMismatch,
    BookedBefore,
    CommandConflict,
    CorruptConfig,
    CorruptStore,
    DiskFull,
    SchemaTooNew,
    SchemaTooOld,
    StoreBusy,
    StoreError,
    StoreUsageError,
    TransfersRefused,
)
from edge.store.outbox import (
    CheckpointItem,
    EntryItem,
    EventItem,
    OutboxItem,
    ReadingsItem,
    ResultItem,
)
from edge.store.records import (
    Category,
    CommandResult,
    CommandStatus,
    Event,
    OutboxKind,
    StoredEvent,
    TimedReading,
)
from edge.store.writes import Transaction

__all__ = [
    "AcknowledgementMismatch",
    "BookedBefore",
    "Category",
    "CheckpointItem",
    "CommandConflict",
    "CommandResult",
    "CommandStatus",
    "CorruptConfig",
    "CorruptStore",
    "DiskFull",
    "EntryItem",
    "Event",
    "EventItem",
    "OutboxItem",
    "OutboxKind",
    "ReadingsItem",
    "ResultItem",
    "SchemaTooNew",
    "SchemaTooOld",
    "Store",
    "StoreBusy",
    "StoreError",
    "StoreUsageError",
    "StoredEvent",
    "TimedReading",
    "Transaction",
    "TransfersRefused",
]
