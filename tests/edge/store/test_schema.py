"""Schema migrations: from an empty file, from every older version, and refusals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.store import SchemaTooNew, SchemaTooOld, Store
from edge.store import schema as schema_module
from edge.store.integrity import format_head
from edge.store.records import OutboxKind
from edge.store.schema import LATEST, MIGRATIONS, Migration, migrate, schema_version
from ledger.chain import Chain
from ledger.encoding import encode_transfer
from tests.edge.store.conftest import NODE
from tests.ledger.factories import sample_transfers


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def test_steps_are_numbered_one_to_latest() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))


def test_an_empty_file_is_migrated_to_the_latest_version(db_path: Path) -> None:
    db_path.touch()
    with Store.open(db_path, node=NODE) as store:
        assert store.schema_version == LATEST
    expected = {"meta", "ledger", "checkpoints", "state", "readings", "events", "inbox", "outbox"}
    assert expected <= _tables(db_path)


def _old_store(path: Path, version: int) -> Chain:
    """A file as release `version` left it, holding the sample chain if the ledger existed."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=version)
    chain = Chain(NODE)
    if version >= 1:
        conn.execute("INSERT INTO meta (key, value) VALUES ('node', ?)", (NODE,))
        for t in sample_transfers():
            e = chain.append(t)
            conn.execute(
                "INSERT INTO ledger VALUES (?, ?, ?, ?, ?)",
                (e.seq, t.id.to_bytes(16, "big"), encode_transfer(t), e.prev_hash, e.hash),
            )
            if version >= 3:  # releases with an outbox queued each entry as they wrote it
                conn.execute(
                    "INSERT INTO outbox (kind, ref, payload, created) VALUES ('entry', ?, NULL, ?)",
                    (e.seq, t.time),
                )
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('head', ?)",
            (format_head(chain.seq, chain.head),),
        )
    conn.close()
    return chain


@pytest.mark.parametrize("version", range(LATEST))
def test_an_older_file_is_migrated_keeping_its_data(db_path: Path, version: int) -> None:
    chain = _old_store(db_path, version)
    with Store.open(db_path, node=NODE) as store:
        assert store.schema_version == LATEST
        assert (store.chain.seq, store.chain.head) == (chain.seq, chain.head)
        # Entries written before the outbox existed are still queued for uplink.
        entries = [i for i in store.outbox() if i.kind is OutboxKind.ENTRY]
        assert len(entries) == chain.seq
        if entries:
            assert b'"time":"2026-11-01T08:00:00+08:00"' in entries[0].body
            first = store.entry(1)
            assert first is not None
            assert (entries[0].seq, entries[0].hash) == (1, first.hash)
            assert store.outbox()[0].created == "2026-11-01T08:00:00+08:00"


def test_migrating_from_the_previous_version_applies_one_step(db_path: Path) -> None:
    _old_store(db_path, LATEST - 1)
    conn = sqlite3.connect(db_path, isolation_level=None)
    assert migrate(conn) == [LATEST]
    assert migrate(conn) == []
    assert schema_version(conn) == LATEST
    conn.close()


def test_a_failing_step_leaves_the_previous_version(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(db_path, node=NODE).close()
    broken = Migration(
        LATEST + 1, "broken", ("CREATE TABLE half (x)", "INSERT INTO nowhere VALUES (1)")
    )
    monkeypatch.setattr(schema_module, "MIGRATIONS", (*MIGRATIONS, broken))
    conn = sqlite3.connect(db_path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        migrate(conn, target=LATEST + 1)
    assert schema_version(conn) == LATEST
    conn.close()
    assert "half" not in _tables(db_path)


def test_a_newer_file_is_refused_untouched(db_path: Path) -> None:
    Store.open(db_path, node=NODE).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(SchemaTooNew, match=f"schema version {LATEST + 1}") as refused:
        Store.open(db_path)
    assert "Install the Voltbook release" in str(refused.value)
    assert db_path.read_bytes() == before


def test_read_only_open_does_not_migrate(db_path: Path) -> None:
    _old_store(db_path, LATEST - 1)
    with pytest.raises(SchemaTooOld, match="start the runtime"):
        Store.open(db_path, read_only=True)


def _auto_vacuum(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])
    finally:
        conn.close()


def test_a_new_file_vacuums_incrementally(db_path: Path) -> None:
    Store.open(db_path, node=NODE).close()
    assert _auto_vacuum(db_path) == 2  # INCREMENTAL


def test_an_older_file_is_switched_to_incremental_vacuum_once(db_path: Path) -> None:
    chain = _old_store(db_path, LATEST - 1)
    assert _auto_vacuum(db_path) == 0
    with Store.open(db_path, node=NODE) as store:
        assert (store.chain.seq, store.chain.head) == (chain.seq, chain.head)
    assert _auto_vacuum(db_path) == 2
    with Store.open(db_path, node=NODE) as store:
        assert store.chain.seq == chain.seq
