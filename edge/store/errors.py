"""The store's exception tree.

`StoreError` is the root; every message ends with what to do. Two branches keep apart who is at
fault:

- the files or the machine: `CorruptStore` (the SQLite file or the ledger rows in it are damaged
  or were edited; names the seq and what is wrong), `SchemaTooNew` (written by a newer Voltbook),
  `DiskFull` (SQLite `SQLITE_FULL`, the store's size limit, or `ENOSPC`), `StoreBusy` (another
  process holds the store), `CorruptConfig` (the site configuration file is damaged);
- the caller: `StoreUsageError` (writing outside a transaction, a naive datetime, reading the
  deferred actions before the commit); `TransfersRefused` (the book refused a transfer; carries
  the outcomes); `CommandConflict` (a command id seen before arrived with a different payload);
  `AcknowledgementMismatch` (the cloud acknowledged a head this store never had: a fork);
  `BookedBefore` (a transaction with deferred lookups took a stored transfer for a new one: it
  was rolled back, to run again with lookups).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from ledger.book import Outcome
from ledger.transfers import Transfer


class StoreError(Exception):
    """Root of every error raised by `edge.store`."""


class CorruptStore(StoreError):
    """The store's file is damaged or its ledger rows do not recompute; `seq` names the entry."""

    def __init__(self, path: Path | str, seq: int | None, detail: str) -> None:
        where = f" at ledger seq {seq}" if seq is not None else ""
        super().__init__(
            f"store {path} is corrupt{where}: {detail}. Stop the runtime and do not write to this "
            "file: keep it for inspection, then restore the last backup or re-provision the "
            "concentrator from the cloud's copy of its chain."
        )
        self.path = Path(path)
        self.seq = seq
        self.detail = detail


class SchemaTooNew(StoreError):
    """The file was written by a newer schema than this program knows."""

    def __init__(self, path: Path | str, found: int, supported: int) -> None:
        super().__init__(
            f"store {path} has schema version {found}, but this Voltbook knows versions up to "
            f"{supported}. Install the Voltbook release that wrote it (or newer); never open it "
            "with an older release."
        )
        self.path = Path(path)
        self.found = found
        self.supported = supported


class SchemaTooOld(StoreError):
    """A read-only open found a schema that still needs migrating."""

    def __init__(self, path: Path | str, found: int, supported: int) -> None:
        super().__init__(
            f"store {path} has schema version {found}, this Voltbook expects {supported}. Open it "
            "once for writing (start the runtime) so that it is migrated, then retry."
        )
        self.path = Path(path)
        self.found = found
        self.supported = supported


class DiskFull(StoreError):
    """No space left for a write; nothing of the failed transaction or write was stored."""

    def __init__(self, path: Path | str, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"no space left to write {path}{extra}; nothing of this write was stored and the "
            "previous state is intact. Free space on that disk (prune acknowledged outbox rows "
            "and old readings) or raise the store's size limit, then retry."
        )
        self.path = Path(path)


class StoreBusy(StoreError):
    """Another process (or connection) holds the store for writing."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(
            f"store {path} is open for writing by another process. Only one writer is allowed: "
            "stop the other runtime, or open the store read-only for exports."
        )
        self.path = Path(path)


class StoreUsageError(StoreError, ValueError):
    """The caller used the store wrongly (a programming error, not a fault of the files)."""


class TransfersRefused(StoreError):
    """The book refused a transfer of a batch; the whole batch changed nothing.

    `outcomes` has one entry per transfer given, as `ledger.book.Book.submit` reports them.
    """

    def __init__(self, transfers: Sequence[Transfer], outcomes: Sequence[Outcome]) -> None:
        refused = [
            f"{t.id:032x}: {o.value}"
            for t, o in zip(transfers, outcomes, strict=True)
            if not o.accepted and o is not Outcome.LINKED_EVENT_FAILED
        ]
        super().__init__(
            f"the book refused {', '.join(refused)}; nothing of this batch was stored. Fix the "
            "decision that produced it (or submit independent transfers in separate batches)."
        )
        self.transfers = tuple(transfers)
        self.outcomes = tuple(outcomes)


class BookedBefore(StoreError):
    """Transfers a transaction with deferred lookups (`Store.transaction(defer_lookups=True)`)
    took for new are stored already, or were pruned: nothing of it may commit. Run it again
    without deferred lookups, where the book finds them (`exists`) as it applies them."""

    def __init__(self, transfer_ids: Iterable[int]) -> None:
        self.transfer_ids = frozenset(transfer_ids)
        listed = ", ".join(f"{i:032x}" for i in sorted(self.transfer_ids))
        super().__init__(
            f"transfers {listed} were booked before; the transaction was rolled back. Run it "
            "again without deferred lookups."
        )


class CommandConflict(StoreError):
    """A command id that was applied before arrived again with a different payload."""

    def __init__(self, command_id: str) -> None:
        super().__init__(
            f"command {command_id} was already applied with a different payload; it was not "
            "applied again. Report it to the cloud: a command id must never be reused."
        )
        self.command_id = command_id


class AcknowledgementMismatch(StoreError):
    """The cloud acknowledged a seq and head that this store's chain does not have."""

    def __init__(self, seq: int, detail: str) -> None:
        super().__init__(
            f"the cloud acknowledged seq {seq}, but {detail}. Nothing was pruned. The chains have "
            "forked: stop uplink and have an operator compare both chains."
        )
        self.seq = seq


class CorruptConfig(StoreError):
    """The site configuration file cannot be read; it was left untouched."""

    def __init__(self, path: Path | str, detail: str) -> None:
        super().__init__(
            f"site configuration {path} is unreadable: {detail}. The file was not modified. "
            "Move it aside for inspection, then restore the last backup or push the configuration "
            "again from the cloud."
        )
        self.path = Path(path)
        self.detail = detail


def from_sqlite(exc: sqlite3.Error, path: Path | str) -> StoreError:
    """Map a SQLite error to this tree (SQLite reports ENOSPC as SQLITE_FULL)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary == sqlite3.SQLITE_FULL:
        return DiskFull(path, str(exc))
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return CorruptStore(path, None, f"SQLite reports {exc}")
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreBusy(path)
    return StoreError(
        f"SQLite failed on {path}: {exc}. Check the disk, the file's permissions and the system "
        "log, then restart the runtime."
    )
