"""A full disk during a write: a clear error, and the previous state intact.

SQLite: a tmpfs small enough to fill is not available here, so the store's own size limit
(`PRAGMA max_page_count`) makes the database full; SQLite then fails the write with
`SQLITE_FULL`, exactly the code it returns when `write()` reports ENOSPC. The configuration file:
`os.write` / `os.fsync` are replaced at the OS boundary by ones that fail with ENOSPC.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from edge.store import DiskFull, Store, StoreError
from edge.store.config_db import ConfigDB, ConfigKind
from tests.edge.store.conftest import NODE, reading, recharge, table_dump

LIMIT = 160 * 1024  # bytes: room for the schema and a few cycles


def _fill(store: Store) -> tuple[int, DiskFull]:
    """Run poll cycles until the disk is full; return the cycles committed and the error."""
    for cycle in range(1, 10_000):
        try:
            with store.transaction() as tx:
                tx.append_transfers([recharge(cycle, amount=cycle)])
                tx.insert_readings([reading(f"m{m}", cycle) for m in range(40)])
                tx.defer(f"close relay after cycle {cycle}")
        except DiskFull as full:
            return cycle - 1, full
        assert tx.released() == [f"close relay after cycle {cycle}"]
    raise AssertionError("the size limit never filled the store")


def test_sqlite_full_is_a_clear_error_and_loses_nothing_committed(db_path: Path) -> None:
    with Store.open(db_path, node=NODE, size_limit_bytes=LIMIT) as store:
        committed, full = _fill(store)
        assert committed > 2
        message = str(full)
        assert "no space left" in message and "previous state is intact" in message
        assert "prune acknowledged outbox rows" in message
        # The failed cycle left nothing, in the file or in memory.
        snapshot = table_dump(db_path)
        assert store.chain.seq == committed
        assert store.book.get(recharge(committed + 1).id) is None
        assert store.book.balance(recharge(1).credit).posted == sum(range(1, committed + 1))
        # Pruning what the cloud acknowledged frees room; the failed cycle then goes through,
        # its transfer booked anew (the in-memory book had been rolled back with the file).
        with store.transaction() as tx:
            tx.prune_outbox(store.outbox()[-1].id)
        with store.transaction() as tx:
            entries = tx.append_transfers([recharge(committed + 1, amount=committed + 1)])
        assert [e.seq for e in entries] == [committed + 1]
    assert len(snapshot["ledger"]) == committed
    with Store.open(db_path) as reopened:  # integrity check passes
        assert reopened.chain.seq == committed + 1


def test_a_swallowed_disk_full_cannot_commit_half_a_cycle(db_path: Path) -> None:
    with Store.open(db_path, node=NODE, size_limit_bytes=LIMIT) as store:
        committed, _ = _fill(store)
        before = table_dump(db_path)
        with pytest.raises(StoreError, match="rolled back"), store.transaction() as tx:
            with pytest.raises(DiskFull):
                tx.append_transfers([recharge("extra")])
                tx.insert_readings([reading(f"m{m}", 0) for m in range(400)])
            # SQLite has rolled back already: a write here would autocommit on its own.
            with pytest.raises(StoreError, match="earlier write"):
                tx.set_state("after", 1)
        assert table_dump(db_path) == before
        assert store.chain.seq == committed
        assert store.book.get(recharge("extra").id) is None


def _enospc(*_: object) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_config_write_on_a_full_disk_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    path = tmp_path / "site.json"
    config = ConfigDB.open(path)
    config.put(ConfigKind.METERS, {"id": "000000000001", "bus": "rs485-1"})
    before = path.read_bytes()
    with monkeypatch.context() as patch:
        patch.setattr(os, call, _enospc)
        with pytest.raises(DiskFull, match="configuration not changed") as full:
            config.put(ConfigKind.METERS, {"id": "000000000002", "bus": "rs485-1"})
    assert str(path) in str(full.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.json"]  # no temporary left
    config.put(ConfigKind.METERS, {"id": "000000000002", "bus": "rs485-1"})
    assert len(ConfigDB.open(path).documents(ConfigKind.METERS)) == 2
