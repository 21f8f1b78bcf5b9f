"""Readers open one consistent snapshot while another process writes (issue 12, item 4).

A real writer process (`tests.edge.store.crash_writer`) commits poll cycles in a loop; this
process opens the same file with `Store.open_readonly` over and over. Every open must pass the
full integrity check, and everything one reader sees must come from the same commit: the ledger
rows, the recorded head, the rule state and the readings of a cycle agree.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge.store import CorruptStore, Store, StoreUsageError
from ledger.invariants import check_balances_sum_to_zero
from tests.edge.store.conftest import recharge
from tests.edge.store.crash_writer import READINGS_PER_CYCLE, TRANSFERS_PER_CYCLE
from tests.edge.store.test_integrity import KEY, delete_tail, sealed  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[3]
READS = 20
DISTINCT = 10  # different commits seen


class _Writer:
    """The crash writer as a child process; `done` is the last cycle it reported committed."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.edge.store.crash_writer", "store", str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.done = 0
        self.ready = threading.Event()
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line == "ready\n":
                self.ready.set()
            elif line.strip().isdigit():
                self.done = int(line)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=10)
        self._drain.join(timeout=10)


@pytest.mark.slow
def test_readers_see_one_whole_commit_while_a_process_writes(db_path: Path) -> None:
    writer = _Writer(db_path)
    try:
        assert writer.ready.wait(20), writer.proc.stderr.read() if writer.proc.stderr else ""
        seen: list[int] = []
        deadline = time.monotonic() + 60
        # Back to back, until enough reads overlapped enough commits.
        while len(seen) < READS or len(set(seen)) < DISTINCT:
            assert time.monotonic() < deadline, f"only saw cycles {sorted(set(seen))}"
            with Store.open_readonly(db_path) as reader:
                cycle = int(reader.get_state("cycle", 0))
                head = reader.chain.seq
                # The rule state, the ledger and the readings of one commit.
                assert head == cycle * TRANSFERS_PER_CYCLE
                assert [e.seq for e in reader.entries()] == list(range(1, head + 1))
                assert len(reader.readings()) == cycle * READINGS_PER_CYCLE
                assert check_balances_sum_to_zero(reader.book.balances()) == []
                assert reader.not_checkpointed() == head  # this writer never signs
                with pytest.raises(StoreUsageError, match="read-only"), reader.transaction():
                    pass
            assert cycle <= writer.done + 1  # a commit may be on disk before it is printed
            seen.append(cycle)
        assert seen == sorted(seen)
    finally:
        writer.stop()
    with Store.open(db_path) as after:  # the readers left no lock and changed nothing
        assert after.chain.seq == int(after.get_state("cycle")) * TRANSFERS_PER_CYCLE


def test_a_reader_still_finds_a_genuinely_deleted_tail(sealed: Path) -> None:  # noqa: F811
    with sqlite3.connect(sealed) as conn:
        delete_tail(conn)
    with pytest.raises(CorruptStore, match="tail rows deleted"):
        Store.open_readonly(sealed)


def test_a_reader_still_finds_an_inserted_unsigned_row(sealed: Path) -> None:  # noqa: F811
    """An entry beyond the recorded head is not the writer's (it records the head in the same
    commit): it was inserted, not merely unsigned."""
    with Store.open(sealed) as writer, writer.transaction() as tx:
        tx.append_transfers([recharge(9)])
    with sqlite3.connect(sealed) as conn:
        row = conn.execute("SELECT seq, hash FROM ledger WHERE seq = 8").fetchone()
        conn.execute("UPDATE meta SET value = ? WHERE key = 'head'", (f"8:{bytes(row[1]).hex()}",))
    with pytest.raises(CorruptStore, match="rows were inserted"):
        Store.open_readonly(sealed)


def test_an_unsigned_tail_is_counted_not_refused(sealed: Path) -> None:  # noqa: F811
    with Store.open(sealed) as writer, writer.transaction() as tx:
        tx.append_transfers([recharge(9), recharge(10)])
    with Store.open_readonly(sealed, public_key=KEY.public_key) as reader:
        assert reader.chain.seq == 10
        assert reader.not_checkpointed() == 2
