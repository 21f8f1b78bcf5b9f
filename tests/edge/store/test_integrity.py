"""Rows edited inside the SQLite file with another tool are found at open, and named."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.store import CorruptStore, Store
from ledger.chain import NodeKey, entry_hash
from ledger.encoding_v2 import FORMAT_V2
from tests.edge.store.conftest import NODE, recharge, with_amount
from tests.ledger.factories import sample_transfers

KEY = NodeKey.from_seed(bytes(range(32)))
Edit = Callable[[sqlite3.Connection], None]


@pytest.fixture
def sealed(db_path: Path) -> Path:
    """A closed store of 8 entries with signed checkpoints at seq 4 and 8."""
    with Store.open(db_path, node=NODE) as store:
        with store.transaction() as tx:
            tx.append_transfers(sample_transfers()[:4])
            tx.add_checkpoint(store.chain.checkpoint(KEY))
        with store.transaction() as tx:
            tx.append_transfers([*sample_transfers()[4:], recharge(7), recharge(8)])
            tx.add_checkpoint(store.chain.checkpoint(KEY))
    return db_path


def _row(conn: sqlite3.Connection, seq: int) -> tuple[bytes, bytes, bytes]:
    body, prev, digest = conn.execute(
        "SELECT body, prev_hash, hash FROM ledger WHERE seq = ?", (seq,)
    ).fetchone()
    return bytes(body), bytes(prev), bytes(digest)


def edit_amount(conn: sqlite3.Connection) -> None:
    body, _, _ = _row(conn, 2)
    conn.execute("UPDATE ledger SET body = ? WHERE seq = 2", (with_amount(body, 2900),))


def edit_amount_and_rehash(conn: sqlite3.Connection) -> None:
    """A careful forger also recomputes the edited row's hash."""
    body, prev, _ = _row(conn, 2)
    forged = with_amount(body, 2900)
    conn.execute(
        "UPDATE ledger SET body = ?, hash = ? WHERE seq = 2",
        (forged, entry_hash(NODE, 2, prev, forged)),
    )


def delete_row(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM ledger WHERE seq = 5")


def delete_tail(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM ledger WHERE seq = 8")
    conn.execute("DELETE FROM checkpoints WHERE seq = 8")


def swap_rows(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE ledger SET seq = 1000 WHERE seq = 3")
    conn.execute("UPDATE ledger SET seq = 3 WHERE seq = 6")
    conn.execute("UPDATE ledger SET seq = 6 WHERE seq = 1000")


def reformat_body(conn: sqlite3.Connection) -> None:
    """The same transfer in bytes that are not its canonical encoding."""
    body, _, _ = _row(conn, 7)
    assert body[0] == FORMAT_V2  # a trailing byte; a version-1 body would gain a space
    conn.execute("UPDATE ledger SET body = ? WHERE seq = 7", (body + b"\x00",))


def edit_transfer_id_column(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE ledger SET transfer_id = ? WHERE seq = 1", (bytes(15) + b"\x09",))


def rewrite_signed_tail(conn: sqlite3.Connection) -> None:
    """Rewrite the last entry coherently (hash and recorded head): only the signature knows."""
    body, prev, _ = _row(conn, 8)
    forged = with_amount(body, 1)
    digest = entry_hash(NODE, 8, prev, forged)
    conn.execute("UPDATE ledger SET body = ?, hash = ? WHERE seq = 8", (forged, digest))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'head'", (f"8:{digest.hex()}",))


def append_foreign_row(conn: sqlite3.Connection) -> None:
    _, _, head = _row(conn, 8)
    body = with_amount(_row(conn, 7)[0], 5)
    conn.execute(
        "INSERT INTO ledger (seq, transfer_id, body, prev_hash, hash) VALUES (9, ?, ?, ?, ?)",
        (bytes(16), body, head, entry_hash(NODE, 9, head, body)),
    )


CASES = [
    (edit_amount, 2, "content does not match its hash"),
    (edit_amount_and_rehash, 3, "prev_hash does not match the hash of seq 2"),
    (delete_row, 5, "seq 5 missing"),
    (delete_tail, 8, "tail rows deleted"),
    (swap_rows, 3, "row holds the entry of seq 6"),
    (reformat_body, 7, "not a canonical transfer"),
    (edit_transfer_id_column, 1, "transfer_id column differs"),
    (rewrite_signed_tail, 8, "signed checkpoint head differs"),
    (append_foreign_row, 9, "rows after the recorded head"),
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("edit", "seq", "what"), CASES, ids=[c[0].__name__ for c in CASES])
def test_an_edited_row_is_found_and_named(sealed: Path, edit: Edit, seq: int, what: str) -> None:
    conn = sqlite3.connect(sealed)
    with conn:
        edit(conn)
    conn.close()
    before = _sha(sealed)
    with pytest.raises(CorruptStore) as found:
        Store.open(sealed)
    assert found.value.seq == seq
    assert what in found.value.detail
    message = str(found.value)
    assert f"at ledger seq {seq}" in message and "restore the last backup" in message
    assert _sha(sealed) == before, "a refused open must not write to the evidence"


def test_swapped_rows_name_both_ends(sealed: Path) -> None:
    conn = sqlite3.connect(sealed)
    with conn:
        swap_rows(conn)
    conn.close()
    with pytest.raises(CorruptStore) as found:
        Store.open(sealed)
    assert "seq 6: row holds the entry of seq 3" in found.value.detail


def test_the_acknowledged_prefix_may_not_change(sealed: Path) -> None:
    with Store.open(sealed) as store, store.transaction() as tx:
        entry = store.entry(8)
        assert entry is not None
        tx.acknowledge(8, entry.hash)
    conn = sqlite3.connect(sealed)
    with conn:
        conn.execute("DELETE FROM checkpoints")
        rewrite_signed_tail(conn)
    conn.close()
    with pytest.raises(CorruptStore, match="acknowledged has changed") as found:
        Store.open(sealed)
    assert found.value.seq == 8


def test_signatures_are_checked_when_the_key_is_given(sealed: Path) -> None:
    conn = sqlite3.connect(sealed)
    with conn:
        conn.execute("UPDATE checkpoints SET signature = ? WHERE seq = 4", (bytes(64),))
    conn.close()
    Store.open(sealed).close()  # without the key only heads are compared
    with pytest.raises(CorruptStore, match="signature") as found:
        Store.open(sealed, public_key=KEY.public_key)
    assert found.value.seq == 4


def test_a_damaged_file_is_refused(sealed: Path) -> None:
    data = bytearray(sealed.read_bytes())
    data[:16] = b"not a database!!"
    sealed.write_bytes(bytes(data))
    with pytest.raises(CorruptStore, match="SQLite reports"):
        Store.open(sealed)
