"""The operator log's anchor outside the database: its head, signed with the cloud's key.

The hash chain of `cloud.people.oplog` shows an edited row, but not someone who can write the
database and recomputes every hash, moves the head back or deletes the whole log. So every
`SIGN_EVERY` (and at start and stop, `cloud.server`) the head — rows 1..seq chain to hash — is
signed with the cloud's Ed25519 key (`ledger.signed.OplogHead`; the key lives in its PEM file,
never in the database) and

- appended to the **heads file** (`[oplog] heads`, default `oplog-heads.jsonl` in the data
  dir; one signed head per line, a line only when the head moved), which backups take with
  the database;
- carried by every **ack** the cloud sends a concentrator (`ledger.wire.Ack.oplog`), which
  keeps the highest it saw (`edge.sync.session`).

`check` then holds the log to every signed head it is given (`oplog verify`, `--heads FILE` for
a backup's or a concentrator's copy): a signed head whose seq the log does not reach means rows
were deleted or the head moved back (a wiped log reaches none), and a row whose hash differs
from its signed head means the log was rewritten. A head that does not verify with the cloud's
key is named as such (the heads file was edited).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.auth import OperatorLogHead
from cloud.errors import Invalid
from ledger.chain import NodeKey
from ledger.signed import OplogHead, Rejected
from ledger.untrusted import load_json

SIGN_EVERY = dt.timedelta(minutes=5)
GENESIS = bytes(32)


def current(session: Session, key: NodeKey, now: dt.datetime) -> OplogHead:
    """The log's head as the database has it now, signed."""
    row = session.get(OperatorLogHead, 1)
    seq, digest = (0, GENESIS) if row is None else (row.seq, bytes(row.hash))
    return OplogHead.sign(seq, digest, now.astimezone(dt.UTC).isoformat(), key)


class Anchor:
    """Signs the head (`sign`, called by the server every `[oplog] sign_every` seconds) into
    the heads file, and keeps the latest signed head for the acks (`latest`)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        key: NodeKey,
        heads: HeadsFile,
        now: Callable[[], dt.datetime],
    ) -> None:
        self._sessions, self._key, self.heads, self._now = sessions, key, heads, now
        self._latest: OplogHead | None = None

    def sign(self) -> OplogHead:
        with self._sessions() as session:
            head = current(session, self._key, self._now())
        self.heads.append(head)
        self._latest = head
        return head

    def latest(self) -> OplogHead | None:
        return self._latest


class HeadsFile:
    """The append-only file of signed heads (JSON lines). Thread-safe within a process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._last: tuple[int, bytes] | None = None

    def append(self, head: OplogHead) -> bool:
        """Add `head` unless it is the last one written (same seq and hash); synced to disk.
        Whether a line was written."""
        with self._lock:
            if self._last is None:
                read = read_heads(self.path) if self.path.exists() else []
                self._last = (read[-1].seq, read[-1].hash) if read else None
            if self._last == (head.seq, head.hash):
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            with os.fdopen(descriptor, "ab") as out:
                out.write(head.encode() + b"\n")
                out.flush()
                os.fsync(out.fileno())
            self._last = (head.seq, head.hash)
            return True


def read_heads(path: Path) -> list[OplogHead]:
    """Every signed head in a heads file, in file order; `Invalid` naming a malformed line."""
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise Invalid(f"cannot read the heads file {path}: {exc.strerror or exc}") from exc
    heads = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            heads.append(OplogHead.from_fields(load_json(line)))
        except (Rejected, ValueError) as exc:
            raise Invalid(f"{path} line {number} is not a signed head: {exc}") from None
    return heads


def check(
    heads: Iterable[OplogHead],
    hashes: Mapping[int, bytes],
    rows: int,
    keys: Mapping[str, Ed25519PublicKey],
) -> str:
    """The first way the log (`rows` rows chaining correctly, `hashes` by seq) contradicts a
    signed head, or "" when it holds every one."""
    for head in sorted(heads, key=lambda h: h.seq):
        when = f"the head signed at {head.time}"
        try:
            head.verify(keys)
        except Rejected as exc:
            return f"{when} (row {head.seq}) does not verify with the cloud's key: {exc}"
        if head.seq > rows:
            return (
                f"the log ends at row {rows} but {when} vouches for row {head.seq}: rows were "
                "deleted or the head moved back"
            )
        if head.seq and hashes.get(head.seq) != head.hash:
            return f"row {head.seq} differs from {when}: the log was rewritten"
    return ""
