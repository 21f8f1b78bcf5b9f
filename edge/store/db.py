"""The concentrator's durable store: SQLite for the ledger, readings, events, inbox and outbox.

One file, WAL journal, `synchronous=FULL` (a commit is on the disk when it returns), ONE writer
connection guarded by an exclusive lock file, and group commit: the runtime opens one
`transaction()` per poll cycle and everything it writes there commits together or not at all.

    store = Store.open(path, node="edge-0001", accounts=configured_accounts)
    with store.transaction() as tx:
        tx.append_transfers(decisions.transfers)
        tx.insert_readings(cycle_readings)
        tx.defer(*decisions.relay_actions)
    for action in tx.released():  # reached only once the commit is durable
        run(action)

Durability rule (docs/architecture.md §6.3): nothing outside may act on state that is not yet
durable. Writes exist only on the `Transaction`, and the actions a cycle decided (relay trips,
PUBACKs, publishes) are handed back by `released()` only after the commit returned; an exception
anywhere in the block rolls back the file *and* the in-memory book and chain, and releases nothing.

At open the store creates or migrates the schema (`edge.store.schema`), runs SQLite's
`integrity_check`, recomputes the chain from the stored rows (`edge.store.integrity`) and
replays it into the book in the same pass, so the runtime has its balances at boot. With the
node's public key the open starts from the newest signed balance snapshot that checks and
recomputes only the rows after it (`edge.store.snapshots`), leaving SQLite's check of every
page to the full check; `full_check=True`, or a snapshot
that does not check, recomputes every retained row. A store pruned up to an anchor (what the
cloud acknowledged) starts there. The book keeps balances, not history: it finds a stored
transfer by id in SQLite (`ledger.transfer_id` is unique, and `pruned_ids` keeps the ids of
pruned ones), so memory stays flat however long the concentrator is offline.

Readers (`voltbook-edge accounts`, `ledger export`, `ledger verify --config`) open with
`Store.open_readonly`: no writer lock, no migration, nothing written, and ONE read transaction
from the first read of the open to `close()`, so the open-time check and every later query see
the same committed state however many cycles the writer commits meanwhile (SQLite WAL readers
never block the writer, nor it them). A reader therefore never sees a torn store: the ledger
rows, the recorded head, the checkpoints and the rule states of one snapshot always agree.

Not thread-safe: one runtime thread owns the store.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import sqlite3
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.store.errors import (
    CorruptStore,
    DiskFull,
    SchemaTooNew,
    SchemaTooOld,
    StoreBusy,
    StoreError,
    StoreUsageError,
    from_sqlite,
)
from edge.store.integrity import check_store, parse_head, scan_ledger
from edge.store.outbox import OUTBOX_SELECT, OutboxItem, OutboxReader
from edge.store.records import (
    Category,
    CommandResult,
    OutboxKind,
    StoredEvent,
    TableRow,
    TimedReading,
    event_from_row,
    from_ms,
    reading_from_row,
    reading_rows,
    to_ms,
)
from edge.store.schema import LATEST, migrate, schema_version
from edge.store.snapshots import GENESIS, Start, anchor_of, boot_start, unpack
from edge.store.writes import Transaction
from ledger.accounts import Account, AccountId, is_system
from ledger.book import Book, BookState, Outcome
from ledger.chain import Chain, Checkpoint, Entry
from ledger.encoding import GENESIS_HASH, body_version, decode_transfer
from ledger.errors import DecodeError
from ledger.export import entry_line, record_line
from ledger.key_rotation import KeyRotation, KeySchedule, schedule_of
from ledger.readings import READING_FIELDS
from ledger.signed import Rejected
from ledger.snapshot import BalanceSnapshot, decode_snapshot
from ledger.transfers import Transfer
from ledger.verify import StoredEntry

INCREMENTAL = 2  # `PRAGMA auto_vacuum` value
BUSY_TIMEOUT_MS = 5000  # a read-only exporter may briefly hold the WAL; wait, don't fail
_PAGE = 1000  # rows per fetch when streaming entries
_READING_COLUMNS = ", ".join(READING_FIELDS)  # the `readings` table's columns, in row order


class Store:
    """The durable state of one concentrator. Open with `Store.open`."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        lock_fd: int | None,
        node: str,
        accounts: Iterable[Account],
    ) -> None:
        self._path = path
        self._conn = conn
        self._lock_fd = lock_fd
        self._node = node
        self._floors: dict[AccountId, Account] = {a.id: a for a in accounts}
        self._book = Book(open_accounts=True, lookup=self._stored_transfer, pruned=self._pruned)
        self._loading = False
        self._chain = Chain(node)
        self._committed = (0, GENESIS_HASH)  # seq, head at the last commit
        self._start: Start = GENESIS  # where the boot scan started
        self._keys: KeySchedule | None = None  # with the public key the store was opened with
        self._committed_keys: KeySchedule | None = None
        self._tx: Transaction | None = None
        self._closed = False
        self._outbox = OutboxReader(path, node)

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        node: str | None = None,
        accounts: Iterable[Account] = (),
        size_limit_bytes: int | None = None,
        public_key: Ed25519PublicKey | None = None,
        read_only: bool = False,
        full_check: bool = False,
    ) -> Store:
        """Open (creating and migrating as needed), check and load the store at `path`.

        `node` is required to create a store and, when given, must match the stored one.
        `accounts` sets floors (credit limits); merchant pockets not listed get the standard
        floor of zero. `size_limit_bytes` caps the file (SQLite `max_page_count`) so that a full
        store fails with `DiskFull` before the SD card fills. With `public_key`, stored
        checkpoint signatures are verified too, and the boot starts from the newest signed
        balance snapshot that checks (`edge.store.snapshots`), replaying only what follows it;
        `full_check` replays everything retained instead (the background and `ledger verify`
        check). `read_only`: see `open_readonly`.
        """
        where = Path(path)
        if not where.parent.is_dir():
            raise StoreUsageError(f"directory {where.parent} does not exist; create it first")
        if read_only and not where.exists():
            raise StoreUsageError(f"there is no store at {where}")
        lock_fd = None if read_only else _take_lock(where)
        conn: sqlite3.Connection | None = None
        opened = False
        try:
            conn = _connect(where, read_only)
            store_node = _prepare(conn, where, node, size_limit_bytes, read_only)
            store = cls(where, conn, lock_fd, store_node, accounts)
            store._load(public_key, full_check)
            opened = True
        except sqlite3.Error as exc:
            raise from_sqlite(exc, where) from exc
        finally:
            if not opened:
                _abandon(conn, lock_fd)
        return store

    @classmethod
    def open_readonly(
        cls,
        path: str | os.PathLike[str],
        *,
        node: str | None = None,
        accounts: Iterable[Account] = (),
        public_key: Ed25519PublicKey | None = None,
        full_check: bool = False,
    ) -> Store:
        """Open one consistent snapshot of the store, for readers while the runtime writes.

        Takes no writer lock, never migrates, repairs or deletes anything, and holds one read
        transaction from the open-time check to `close()`: every read of this `Store` sees the
        state of the same commit. `CorruptStore` means the snapshot itself is damaged, never
        that a writer was mid-commit. Close it soon: while it is open the writer's WAL cannot be
        checkpointed past this snapshot.
        """
        return cls.open(
            path,
            node=node,
            accounts=accounts,
            public_key=public_key,
            read_only=True,
            full_check=full_check,
        )

    def _load(self, public_key: Ed25519PublicKey | None, full_check: bool) -> None:
        if public_key is not None:
            self._keys = self._committed_keys = self._schedule(public_key)
        start, expected = boot_start(
            self._conn, self._path, self._node, self._keys, full=full_check
        )
        if not start.snapshot:
            # Reads every page: linear in the file, so a boot from a snapshot leaves it to the
            # full check (the runtime runs that in the background at once); SQLite still
            # refuses any damaged page the runtime touches meanwhile.
            rows = self._conn.execute("PRAGMA integrity_check(20)").fetchall()
            if [r[0] for r in rows] != ["ok"]:
                details = "; ".join(str(r[0]) for r in rows)
                raise CorruptStore(self._path, None, f"SQLite integrity_check: {details}")
        if start.state is not None:
            self._book.restore(start.state)
        self._start = start
        self._loading = True
        boot = _BootReplay(self._book, expected)
        try:
            scan = check_store(self._conn, self._node, boot, (start.seq, start.head))
        finally:
            self._loading = False
        if boot.open_chain:
            scan.add(boot.open_chain, "the chain ends inside a linked chain (its end is missing)")
        for seq in boot.unmet:
            scan.add(seq, "the signed balance snapshot differs from the replayed balances")
        if self._keys is not None:
            for cp in self.checkpoints():
                if cp.seq <= start.seq and start.snapshot:
                    continue  # vouched for by the snapshot; the full check verifies them
                key = self._keys.key_for(cp.key_id, cp.seq)
                if key is None:
                    scan.add(cp.seq, f"checkpoint {self._keys.why_not(cp.key_id, cp.seq)}")
                elif not cp.verify(key):
                    scan.add(cp.seq, f"checkpoint signature by {cp.key_id} does not verify")
        if scan.problems:
            first = scan.problems[0]
            more = f" (all problems: {'; '.join(map(str, scan.problems))})"
            raise CorruptStore(
                self._path, first.seq, first.detail + (more if len(scan.problems) > 1 else "")
            )
        self._apply_floors()
        self._chain = Chain(self._node, scan.head_seq, scan.head_hash)
        self._committed = (scan.head_seq, scan.head_hash)

    def _schedule(self, public_key: Ed25519PublicKey) -> KeySchedule:
        """The node key's schedule from the stored rotations, `public_key` one of its keys;
        `CorruptStore` naming a rotation that cannot be followed."""
        schedule, refused = schedule_of(self._node, self.key_rotations(), [public_key],
                                        self.head_at)  # fmt: skip
        if refused:
            rotation, why = refused[0]
            raise CorruptStore(self._path, rotation.seq, f"key rotation: {why.detail}")
        return schedule

    @property
    def key_schedule(self) -> KeySchedule | None:
        """Which key signs which seq (`ledger.key_rotation`), when opened with a public key."""
        return self._keys

    def key_rotations(self, since: int = 0) -> list[KeyRotation]:
        """The node key's recorded rotations at seq `since` or later, in the order made."""
        rows = self._run(
            "SELECT seq, record FROM key_rotations WHERE seq >= ? ORDER BY id", (since,)
        ).fetchall()
        rotations = []
        for seq, record in rows:
            try:
                rotations.append(KeyRotation.decode(bytes(record)))
            except Rejected as exc:
                raise CorruptStore(self._path, seq, f"key rotation: {exc.detail}") from None
        return rotations

    def _stored_transfer(self, transfer_id: int) -> Transfer | None:
        """The book's memory beyond its journal: a stored transfer by id (None during the boot
        replay, which applies exactly the stored rows)."""
        if self._loading:
            return None
        row = self._run(
            "SELECT seq, body FROM ledger WHERE transfer_id = ?", (transfer_id.to_bytes(16, "big"),)
        ).fetchone()
        return None if row is None else self._entry(row[0], b"", b"", row[1]).transfer

    def _pruned(self, transfer_id: int) -> bool:
        """Whether a transfer with this id was booked and pruned (False during the boot
        replay, like `_stored_transfer`)."""
        if self._loading:
            return False
        row = self._run(
            "SELECT 1 FROM pruned_ids WHERE transfer_id = ?", (transfer_id.to_bytes(16, "big"),)
        ).fetchone()
        return row is not None

    def _apply_floors(self) -> None:
        # History is replayed without floors (it was accepted under the floors of its day);
        # today's floors apply to what comes next.
        for account in list(self._book.accounts()):
            self.ensure_account(account.id)
        for account in self._floors.values():
            self._book.open_account(account)

    def ensure_account(self, account: AccountId) -> None:
        """Give a merchant pocket its floor before the book first sees it (the store's book is
        open to unknown accounts, so without this a new pocket would have no floor)."""
        if is_system(account):
            return
        known = self._book.account(account)
        if known is None or known.floor is None:
            self._book.open_account(self._floors.get(account) or Account.for_id(account))

    def set_accounts(self, accounts: Iterable[Account]) -> None:
        """Change floors (credit limits) after a configuration change; balances are unchanged."""
        for account in accounts:
            self._floors[account.id] = account
            self._book.open_account(account)

    # -- properties -------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._path

    @property
    def node(self) -> str:
        return self._node

    @property
    def book(self) -> Book:
        """The live balances. Read it; never submit to it (only a transaction may)."""
        return self._book

    @property
    def chain(self) -> Chain:
        """A copy of the chain's head, e.g. to sign a checkpoint: `store.chain.checkpoint(key)`."""
        return Chain(self._node, self._chain.seq, self._chain.head)

    @property
    def schema_version(self) -> int:
        return schema_version(self._conn)

    # -- transactions -----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Group commit: everything written through the yielded transaction commits together
        when the block ends, or nothing does (exception, or a write that failed inside).
        """
        self._check_open()
        if self._read_only:
            raise StoreUsageError(f"store {self._path} is open read-only")
        if self._tx is not None:
            raise StoreUsageError("a transaction is already open; one per poll cycle, not nested")
        self._run("BEGIN IMMEDIATE")
        tx = Transaction(self)
        self._tx = tx
        committed = False
        try:
            yield tx
            if tx.failure is not None:
                raise StoreError(
                    f"a write in this transaction failed ({tx.failure}); the whole transaction "
                    "was rolled back. Handle that error instead of continuing the cycle."
                ) from tx.failure
            self._run("COMMIT")
            committed = True
        finally:
            self._tx = None
            if committed:
                self._committed = (self._chain.seq, self._chain.head)
                self._committed_keys = self._keys
                self._book.commit()
                tx.finish(committed=True)
            else:
                self._roll_back(tx)

    def _roll_back(self, tx: Transaction) -> None:
        tx.finish(committed=False)
        if self._conn.in_transaction:  # SQLite may already have rolled back (SQLITE_FULL)
            with suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
        seq, head = self._committed
        self._chain = Chain(self._node, seq, head)
        self._keys = self._committed_keys
        self._book.rollback()

    def _run(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise from_sqlite(exc, self._path) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUsageError(f"store {self._path} is closed")

    @property
    def _read_only(self) -> bool:
        return self._lock_fd is None

    # -- ledger reads -----------------------------------------------------------------------
    def _entry(self, seq: int, prev_hash: bytes, digest: bytes, body: bytes) -> Entry:
        body = bytes(body)
        try:
            transfer = decode_transfer(body)
        except DecodeError as exc:
            raise CorruptStore(self._path, seq, f"body is not a canonical transfer: {exc}") from exc
        return Entry(self._node, seq, bytes(prev_hash), bytes(digest), transfer, body_version(body))

    def entries(self, from_seq: int = 1) -> Iterator[Entry]:
        """Entries from `from_seq` on, in chain order (fetched in pages)."""
        for row in self.ledger_rows(from_seq):
            yield self._entry(*row)

    def ledger_rows(self, from_seq: int = 1) -> Iterator[StoredEntry]:
        """The ledger rows from `from_seq` on as stored, (seq, prev hash, hash, body), in chain
        order (fetched in pages), nothing decoded: what `ledger.verify.verify_stored` checks."""
        self._check_open()
        after = from_seq - 1
        while True:
            rows = self._run(
                "SELECT seq, prev_hash, hash, body FROM ledger WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, _PAGE),
            ).fetchall()
            for seq, prev_hash, digest, body in rows:
                yield seq, bytes(prev_hash), bytes(digest), bytes(body)
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def entry(self, seq: int) -> Entry | None:
        row = self._run(
            "SELECT seq, prev_hash, hash, body FROM ledger WHERE seq = ?", (seq,)
        ).fetchone()
        return None if row is None else self._entry(*row)

    def entry_of(self, transfer_id: int) -> Entry | None:
        """The entry that holds a transfer, by transfer id."""
        row = self._run(
            "SELECT seq, prev_hash, hash, body FROM ledger WHERE transfer_id = ?",
            (transfer_id.to_bytes(16, "big"),),
        ).fetchone()
        return None if row is None else self._entry(*row)

    def checkpoints(self) -> list[Checkpoint]:
        rows = self._run("SELECT seq, head, key_id, signature FROM checkpoints ORDER BY seq")
        return [Checkpoint(self._node, s, bytes(h), k, bytes(g)) for s, h, k, g in rows]

    def export_lines(self) -> Iterator[str]:
        """The chain as `ledger.export` JSON lines, each checkpoint right after its entry (the
        form `voltbook-edge ledger verify` reads)."""
        pending: list[Checkpoint | KeyRotation] = [*self.key_rotations(), *self.checkpoints()]
        pending.sort(key=lambda r: r.seq)  # stable: a rotation before a checkpoint at its seq
        index = 0
        for entry in self.entries():
            yield entry_line(entry)
            while index < len(pending) and pending[index].seq <= entry.seq:
                yield record_line(pending[index])
                index += 1
        yield from map(record_line, pending[index:])  # beyond the last entry: the verifier says

    def not_checkpointed(self) -> int:
        """How many entries after the last stored checkpoint: the tail the runtime signs with
        its next commit (or its checkpoint timer). Not a fault: nothing vouches for them yet."""
        row = self._run("SELECT max(seq) FROM checkpoints").fetchone()
        signed = 0 if row is None or row[0] is None else int(row[0])
        return max(0, self._chain.seq - signed)

    def acknowledged(self) -> tuple[int, bytes]:
        """The last (seq, head) the cloud acknowledged; (0, zeros) before the first."""
        row = self._run("SELECT value FROM meta WHERE key = 'ack'").fetchone()
        return parse_head(None if row is None else row[0])

    # -- snapshots and pruning (`edge.store.snapshots`) ---------------------------------------
    @property
    def boot_start(self) -> int:
        """The seq the open replayed from: 0 (genesis), the pruned anchor, or a snapshot's."""
        return self._start.seq

    def anchor(self) -> tuple[int, bytes]:
        """Where the retained chain starts: (0, zeros) until entries were pruned."""
        return anchor_of(self._conn)

    def newest_snapshot_seq(self) -> int:
        """The seq of the newest stored balance snapshot (0: none)."""
        row = self._run("SELECT max(seq) FROM snapshots").fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def head_at(self, seq: int) -> bytes | None:
        """The chain's hash at `seq` (the anchor's head for the anchor), or None when there is
        no such entry or it was pruned (before the anchor, which a verified ack covered)."""
        anchor_seq, anchor_head = self.anchor()
        if seq == anchor_seq:
            return anchor_head
        row = self._run("SELECT hash FROM ledger WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else bytes(row[0])

    def balance_snapshot(self) -> BalanceSnapshot:
        """The book at the committed head, to sign (`ledger.snapshot`); between transactions."""
        if self._tx is not None:
            raise StoreUsageError("take a balance snapshot between transactions")
        seq, head = self._committed
        return BalanceSnapshot(self._node, seq, head, self._book.state())

    def snapshot_at(self, seq: int) -> BalanceSnapshot:
        """The book as it stood at `seq`, replayed from the anchor over the retained rows (each
        row's hash and link checked on the way): what pruning up to `seq` signs."""
        anchor_seq, anchor_head = self.anchor()
        if not anchor_seq < seq <= self._committed[0]:
            raise StoreUsageError(f"seq {seq} is not in the retained chain {anchor_seq}..")
        book = Book(open_accounts=True, lookup=lambda _id: None)
        if anchor_seq:
            row = self._run("SELECT body FROM snapshots WHERE seq = ?", (anchor_seq,)).fetchone()
            if row is None:
                raise CorruptStore(self._path, anchor_seq, "the anchor's snapshot is missing")
            try:
                book.restore(decode_snapshot(unpack(bytes(row[0]))).state)
            except (DecodeError, zlib.error) as exc:
                raise CorruptStore(self._path, anchor_seq, f"anchor snapshot: {exc}") from exc
        replay = _BootReplay(book)
        scan = scan_ledger(self._conn, self._node, replay, (anchor_seq, anchor_head), seq)
        if replay.open_chain or scan.head_seq != seq:
            scan.add(seq, "a linked chain is open there, or rows are missing")
        if scan.problems:
            raise CorruptStore(self._path, scan.problems[0].seq, scan.problems[0].detail)
        return BalanceSnapshot(self._node, seq, scan.head_hash, book.state())

    def prunable_seq(self, before: dt.datetime) -> int:
        """The highest seq the store may prune to: acknowledged by the cloud, no longer in the
        outbox, after the anchor, at the end of a linked chain, and its transfer booked before
        `before` (entry times follow the chain, so a binary search); the anchor's if none."""
        low = self.anchor()[0]
        high = self.acknowledged()[0]
        unsent = self._run("SELECT min(ref) FROM outbox WHERE kind = 'entry'").fetchone()[0]
        if unsent is not None:
            high = min(high, int(unsent) - 1)
        while low < high:
            middle = (low + high + 1) // 2
            entry = self.entry(middle)
            if entry is None or _booked_at(entry) >= before:
                high = middle - 1
            else:
                low = middle
        while low > self.anchor()[0]:
            entry = self.entry(low)
            if entry is not None and not entry.transfer.linked:
                break
            low -= 1
        return low

    def readings_sent_before(self) -> dt.datetime | None:
        """Readings taken before this are acknowledged (none of them still waits in the
        outbox); None when no reading waits."""
        row = self._run(
            "SELECT payload FROM outbox WHERE kind = 'reading' ORDER BY id LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        try:
            return from_ms(min(r.time for r in reading_rows(bytes(row[0]))))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptStore(self._path, None, f"an outbox reading item: {exc}") from exc

    def vacuum(self) -> int:
        """Give the pages pruning freed back to the file system; how many were freed."""
        free = int(self._run("PRAGMA freelist_count").fetchone()[0])
        if free:
            try:
                self._conn.executescript("PRAGMA incremental_vacuum;")  # steps to the end
            except sqlite3.Error as exc:
                raise from_sqlite(exc, self._path) from exc
        return free

    # -- other reads ------------------------------------------------------------------------
    def readings(
        self,
        meter: str | None = None,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[TimedReading]:
        """Readings in time order, optionally of one meter, in [since, until)."""
        where, params = _time_filter(since, until)
        if meter is not None:
            where.append("meter = ?")
            params.append(meter)
        sql = (
            f"SELECT {_READING_COLUMNS} FROM readings"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY time, id"
            + (" LIMIT ?" if limit is not None else "")
        )
        if limit is not None:
            params.append(limit)
        rows: list[TableRow] = self._run(sql, tuple(params)).fetchall()
        return [reading_from_row(row) for row in rows]

    def latest_reading(self, meter: str) -> TimedReading | None:
        row = self._run(
            f"SELECT {_READING_COLUMNS} FROM readings WHERE meter = ? "
            "ORDER BY time DESC, id DESC LIMIT 1",
            (meter,),
        ).fetchone()
        return None if row is None else reading_from_row(row)

    def events(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        category: Category | None = None,
        meter: str | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        where, params = _time_filter(since, until)
        for column, value in (("category", category), ("meter", meter)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        sql = (
            "SELECT id, time, category, kind, meter, shop, account, detail FROM events"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY time, id"
            + (" LIMIT ?" if limit is not None else "")
        )
        if limit is not None:
            params.append(limit)
        return [event_from_row(row[0], row[1:]) for row in self._run(sql, tuple(params))]

    def command_result(self, command_id: str) -> CommandResult | None:
        row = self._run("SELECT result FROM inbox WHERE command_id = ?", (command_id,)).fetchone()
        return None if row is None else CommandResult.from_json(row[0], first_delivery=False)

    def command_delivered(self, command_id: str, payload: bytes) -> CommandResult | None:
        """The stored result of this very command — same id, same payload bytes — or None.
        A repeat is recognised without judging it again: its bytes were verified when first
        applied, and a late redelivery after its expiry is still the same command."""
        row = self._run(
            "SELECT payload, result FROM inbox WHERE command_id = ?", (command_id,)
        ).fetchone()
        if row is None or bytes(row[0]) != payload:
            return None
        return CommandResult.from_json(row[1], first_delivery=False)

    def outbox(self, after_id: int = 0, limit: int = 500) -> list[OutboxItem]:
        """The oldest items still to send, after `after_id` (`edge.store.outbox`); an entry
        comes from the ledger table (its outbox row only points at a seq: it is stored once)."""
        rows = self._run(
            f"{OUTBOX_SELECT} WHERE o.id > ? ORDER BY o.id LIMIT ?", (after_id, limit)
        ).fetchall()
        return [self._outbox.item(row) for row in rows]

    def outbox_newest(self, kind: OutboxKind, after_id: int, limit: int) -> list[OutboxItem]:
        """The newest items of one kind (not an entry) after `after_id`, newest first: during
        a long catch-up the uplink sends the latest alarms ahead of the backlog."""
        if kind is OutboxKind.ENTRY:
            raise StoreUsageError("entries go up in chain order only; use outbox()")
        rows = self._run(
            "SELECT id, kind, ref, payload, created, NULL, NULL, NULL, NULL FROM outbox "
            "WHERE kind = ? AND id > ? ORDER BY id DESC LIMIT ?",
            (kind.value, after_id, limit),
        ).fetchall()
        return [self._outbox.item(row) for row in rows]

    def outbox_id_of_entry_after(self, seq: int) -> int | None:
        """The outbox id of the first entry after ledger `seq` still in the outbox, or None:
        an acknowledgement up to `seq` may prune the outbox only below it."""
        # In id order, so the scan stops at the first match (near the front once acked items
        # are pruned).
        row = self._run(
            "SELECT id FROM outbox WHERE kind = 'entry' AND ref > ? ORDER BY id LIMIT 1", (seq,)
        ).fetchone()
        return None if row is None else int(row[0])

    def outbox_size(self) -> int:
        return int(self._run("SELECT count(*) FROM outbox").fetchone()[0])

    def get_state(self, key: str, default: Any = None) -> Any:
        """A rule-state value (decoded JSON), or `default`."""
        row = self._run("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def is_processed(self, key: str) -> bool:
        """Whether a business event key (e.g. "subsidy:A0001:2026-11") was marked processed."""
        return self.get_state("processed:" + key) is not None

    # -- closing ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        if self._tx is not None:
            raise StoreUsageError("close the transaction before closing the store")
        self._closed = True
        if self._read_only and self._conn.in_transaction:
            with suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")  # ends the reader's snapshot
        self._conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the writer lock

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _booked_at(entry: Entry) -> dt.datetime:
    """The wall time a transfer was booked at (ISO 8601 with offset; naive counts as UTC)."""
    try:
        when = dt.datetime.fromisoformat(entry.transfer.time)
    except ValueError:
        return dt.datetime.max.replace(tzinfo=dt.UTC)  # unreadable: never pruned by age
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _time_filter(
    since: dt.datetime | None, until: dt.datetime | None
) -> tuple[list[str], list[object]]:
    where: list[str] = []
    params: list[object] = []
    if since is not None:
        where.append("time >= ?")
        params.append(to_ms(since))
    if until is not None:
        where.append("time < ?")
        params.append(to_ms(until))
    return where, params


@contextmanager
def writer_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the store's writer lock without opening the store (`StoreBusy` while a runtime
    holds it): for tools that must not run beside the runtime, such as commissioning, which
    talks to the meters on the runtime's ports."""
    fd = _take_lock(Path(path))
    try:
        yield
    finally:
        os.close(fd)


def _take_lock(path: Path) -> int:
    """An exclusive lock on `<db>.lock`: the one-writer rule across processes. The kernel drops
    it when the process dies, so a crash never leaves a stale lock."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFull(lock_path) from exc
        raise StoreError(
            f"cannot create the lock file {lock_path}: {exc}. Check the directory's permissions."
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise StoreBusy(path) from exc
    return fd


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    if read_only:
        uri = path.resolve().as_uri() + "?mode=ro"
        return sqlite3.connect(uri, uri=True, isolation_level=None)
    # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT), never implicit.
    return sqlite3.connect(path, isolation_level=None)


def _prepare(
    conn: sqlite3.Connection,
    path: Path,
    node: str | None,
    size_limit_bytes: int | None,
    read_only: bool,
) -> str:
    """Pragmas, schema version and node id; returns the node id."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
    if read_only:
        # One read transaction for the reader's whole life: its snapshot is taken by the first
        # read (the schema version just below). In autocommit mode each statement saw its own
        # snapshot, and a commit between the ledger scan and the read of the recorded head
        # looked like "tail rows deleted".
        conn.execute("BEGIN")
    version = schema_version(conn)
    if version > LATEST:
        raise SchemaTooNew(path, version, LATEST)
    if read_only:
        if version < LATEST:
            raise SchemaTooOld(path, version, LATEST)
    else:
        if version == 0:
            # Before the first table (and before WAL, which writes the header): a new file
            # returns what pruning frees with `PRAGMA incremental_vacuum` (`Store.vacuum`).
            conn.execute(f"PRAGMA auto_vacuum = {INCREMENTAL:d}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(
                f"SQLite cannot use WAL for {path} (journal mode {mode}); put the store on a "
                "local filesystem (not NFS or a FAT-formatted stick without locking)."
            )
        # FULL: with WAL, every commit is fsynced before COMMIT returns (NORMAL may lose the
        # last transactions on power loss, which would un-acknowledge a PUBACK or a relay act).
        conn.execute("PRAGMA synchronous = FULL")
        if size_limit_bytes is not None:
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            conn.execute(f"PRAGMA max_page_count = {max(1, size_limit_bytes // page_size):d}")
        migrate(conn)
        if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) != INCREMENTAL:
            # A file created before schema 4: switching needs one full VACUUM (SQLite
            # rebuilds the file), once.
            conn.execute(f"PRAGMA auto_vacuum = {INCREMENTAL:d}")
            conn.execute("VACUUM")
    row = conn.execute("SELECT value FROM meta WHERE key = 'node'").fetchone()
    if row is None:
        if node is None:
            raise StoreUsageError(f"{path} is a new store: give the concentrator's node id")
        if not (node.isascii() and 0 < len(node) < 256):
            raise StoreUsageError(f"node id {node!r} must be 1-255 ASCII characters")
        if read_only:
            raise StoreUsageError(f"{path} has no node id yet; open it for writing first")
        conn.execute("INSERT INTO meta (key, value) VALUES ('node', ?)", (node,))
        return node
    stored = str(row[0])
    if node is not None and node != stored:
        raise StoreUsageError(
            f"store {path} belongs to node {stored!r}, not {node!r}: check the concentrator's "
            "identity or the store path"
        )
    return stored


def _abandon(conn: sqlite3.Connection | None, lock_fd: int | None) -> None:
    if conn is not None:
        conn.close()
    if lock_fd is not None:
        os.close(lock_fd)


class _BootReplay:
    """The boot scan's sink: rebuilds the book from the stored rows, one linked chain at a time,
    and compares it with each checked snapshot in `expected` at its seq."""

    def __init__(self, book: Book, expected: dict[int, BookState] | None = None) -> None:
        self._book = book
        self._chain: list[tuple[int, Transfer]] = []
        self._expected = expected or {}
        self.unmet: list[int] = []  # seqs whose snapshot the replay did not meet

    def __call__(self, seq: int, transfer: Transfer) -> str | None:
        self._chain.append((seq, transfer))
        if transfer.linked:
            return None
        chain, self._chain = self._chain, []
        outcomes = self._book.submit([t for _, t in chain])
        self._book.commit()
        for (_, t), outcome in zip(chain, outcomes, strict=True):
            if outcome is not Outcome.OK:
                return f"the stored transfer {t.id:032x} does not apply to the book ({outcome})"
        state = self._expected.get(seq)
        if state is not None and self._book.state() != state:
            self.unmet.append(seq)
        return None

    @property
    def open_chain(self) -> int | None:
        """The seq of the last entry if the rows end inside a linked chain."""
        return self._chain[-1][0] if self._chain else None
