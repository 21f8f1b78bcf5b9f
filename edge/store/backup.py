"""A copy of the store on a second medium (`[site] backup_dir`, e.g. a USB stick or a second
SD card), so a concentrator whose card dies keeps its unsent entries (docs/architecture.md §7.6:
a store recovered after a takeover is reconciled, not lost).

`backup_store(store, directory)` copies the live SQLite store with SQLite's online backup API
from a read-only connection of its own (one consistent snapshot while the runtime writes, WAL
included), checks the copy (`PRAGMA quick_check`), fsyncs it and renames it over
`<directory>/store.sqlite`, then fsyncs the directory: at any moment the directory holds the
previous complete copy or the new one, never half of one. A failure leaves the previous copy and
raises `BackupFailed` (a `StoreError`) saying what to do.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from edge.store.config_db import fsync_directory
from edge.store.errors import StoreError

BACKUP_FILE = "store.sqlite"
_PAGES_PER_STEP = 1024  # the runtime's writer waits at most one step's copy


class BackupFailed(StoreError):
    """The backup could not be written; the previous copy (if any) is kept."""

    def __init__(self, directory: Path, detail: str) -> None:
        super().__init__(
            f"store backup to {directory} failed: {detail}. The previous copy is kept; check the "
            "second medium is mounted, writable and not full (site.toml [site] backup_dir)."
        )
        self.directory = directory


def backup_store(store: Path, directory: Path) -> Path:
    """Copy the store at `store` to `directory`/store.sqlite atomically; the copy's path."""
    target = directory / BACKUP_FILE
    temporary = directory / f".{BACKUP_FILE}.tmp-{os.getpid()}"
    try:
        if not directory.is_dir():
            raise BackupFailed(directory, "the folder does not exist (is the medium mounted?)")
        source = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
        try:
            copy = sqlite3.connect(temporary)
            try:
                source.backup(copy, pages=_PAGES_PER_STEP)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
                if verdict != "ok":
                    raise BackupFailed(directory, f"the copy does not check: {verdict}")
            finally:
                copy.close()
        finally:
            source.close()
        with temporary.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
        fsync_directory(directory)
    except (OSError, sqlite3.Error) as exc:
        raise BackupFailed(directory, str(exc)) from exc
    finally:
        temporary.unlink(missing_ok=True)
    return target
