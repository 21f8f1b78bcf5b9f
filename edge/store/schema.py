"""The store's SQLite schema as numbered migration steps, recorded in `PRAGMA user_version`.

Step n brings a file from version n−1 to n. Steps are applied in order, each in its own
transaction together with the new `user_version`, so a crash mid-migration leaves the file at the
previous version, never half-migrated. Steps are append-only: a released step is never edited;
a change is a new step.

| table | holds |
|---|---|
| `meta` | `node` (chain owner), `head` ("seq:hash" of the last entry), `ack` (cloud's head) |
| `ledger` | per entry: seq, transfer id (16 bytes, unique), canonical body, prev_hash, hash |
| `checkpoints` | signed heads: seq, head, key id, signature |
| `state` | key → JSON: last known time, registers per meter, rule state, processed event keys |
| `readings` | one compact row per meter read; rarer fields in `extra` JSON |
| `events` | events and alarms: time, category, kind, meter, shop, account, detail JSON |
| `inbox` | cloud commands applied, by command id, with their payload and result |
| `outbox` | what still has to go up: monotonic id, kind, ref (ledger seq for entries), payload |
| `snapshots` | signed balance snapshots (`ledger.snapshot`): seq, head, zlib'd body, signature |
| `pruned_ids` | the transfer ids of pruned entries (16 bytes each), so none is booked twice |
| `key_rotations` | the node key's rotations (`ledger.key_rotation`): seq, the signed record |

`meta.anchor` ("seq:hash", from version 4) is where the retained chain starts once entries the
cloud acknowledged were pruned: rows begin at anchor+1, and the snapshot at the anchor's seq
holds the balances up to it. Version 4 also turns on `auto_vacuum = INCREMENTAL` (`db`, once,
with a VACUUM for a file created before) so that what pruning frees leaves the file.

`meta.head` is what finds a deleted tail row; `meta.ack` is the prefix that must never change.
Times in `readings`, `events` and `inbox` are integer milliseconds since the Unix epoch (UTC):
compact, and ordered the way SQLite compares them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "ledger chain, checkpoints, store facts and rule state",
        (
            """CREATE TABLE meta (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            ) WITHOUT ROWID""",
            """CREATE TABLE ledger (
                seq INTEGER PRIMARY KEY CHECK (seq >= 1),
                transfer_id BLOB NOT NULL UNIQUE CHECK (length(transfer_id) = 16),
                body BLOB NOT NULL,
                prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),
                hash BLOB NOT NULL CHECK (length(hash) = 32)
            )""",
            """CREATE TABLE checkpoints (
                seq INTEGER PRIMARY KEY CHECK (seq >= 1),
                head BLOB NOT NULL CHECK (length(head) = 32),
                key_id TEXT NOT NULL,
                signature BLOB NOT NULL
            )""",
            """CREATE TABLE state (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        2,
        "meter readings, events and alarms",
        (
            """CREATE TABLE readings (
                id INTEGER PRIMARY KEY,
                meter TEXT NOT NULL,
                time INTEGER NOT NULL,
                energy_wh INTEGER,
                tariff_wh TEXT,
                voltage REAL,
                current REAL,
                power REAL,
                pf REAL,
                relay INTEGER,
                status TEXT,
                extra TEXT
            )""",
            "CREATE INDEX readings_by_meter ON readings (meter, time)",
            "CREATE INDEX readings_by_time ON readings (time)",  # pruning by age
            """CREATE TABLE events (
                id INTEGER PRIMARY KEY,
                time INTEGER NOT NULL,
                category TEXT NOT NULL CHECK (category IN ('event', 'alarm')),
                kind TEXT NOT NULL,
                meter TEXT,
                shop TEXT,
                account TEXT,
                detail TEXT NOT NULL
            )""",
            "CREATE INDEX events_by_time ON events (time)",
        ),
    ),
    Migration(
        3,
        "inbox of cloud commands and outbox for uplink (backfilled with existing entries)",
        (
            """CREATE TABLE inbox (
                command_id TEXT PRIMARY KEY,
                received INTEGER NOT NULL,
                payload BLOB NOT NULL,
                result TEXT NOT NULL
            ) WITHOUT ROWID""",
            # AUTOINCREMENT: an id is never reused after a prune, so an acknowledgement of an
            # old id can never delete a newer row.
            """CREATE TABLE outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL CHECK (kind IN
                    ('entry', 'checkpoint', 'reading', 'event', 'alarm', 'command_result')),
                ref INTEGER,
                payload BLOB,
                created TEXT NOT NULL
            )""",
            # Entries written before the outbox existed must still go up: nothing is ever lost.
            """INSERT INTO outbox (kind, ref, payload, created)
               SELECT 'entry', seq, NULL, json_extract(CAST(body AS TEXT), '$.time')
               FROM ledger ORDER BY seq""",
        ),
    ),
    Migration(
        4,
        "signed balance snapshots: boot from the last one, prune what the cloud holds",
        (
            """CREATE TABLE snapshots (
                seq INTEGER PRIMARY KEY CHECK (seq >= 1),
                head BLOB NOT NULL CHECK (length(head) = 32),
                body BLOB NOT NULL,
                key_id TEXT NOT NULL,
                signature BLOB NOT NULL
            )""",
            # The ids of pruned entries: an id booked again (the seed at every start, a rule
            # run again) is still recognised as booked, though its row is gone.
            """CREATE TABLE pruned_ids (
                transfer_id BLOB PRIMARY KEY CHECK (length(transfer_id) = 16)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        5,
        "the node key's rotations, recorded in its chain",
        (
            """CREATE TABLE key_rotations (
                id INTEGER PRIMARY KEY,
                seq INTEGER NOT NULL CHECK (seq >= 0),
                record BLOB NOT NULL
            )""",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, target: int = LATEST) -> list[int]:
    """Apply every step above the file's version up to `target`; return the versions applied.

    `conn` must be in autocommit mode (`isolation_level=None`): each step is its own explicit
    transaction. The caller checks for a version newer than `LATEST` first.
    """
    applied: list[int] = []
    for step in MIGRATIONS:
        if step.version > target:
            break
        # Re-read inside the write lock: another opener may have migrated meanwhile.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) < step.version:
                for statement in step.statements:
                    conn.execute(statement)
                # user_version lives in the file header and is part of this transaction.
                conn.execute(f"PRAGMA user_version = {step.version:d}")
                applied.append(step.version)
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    return applied
