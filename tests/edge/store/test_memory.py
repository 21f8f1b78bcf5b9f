"""The store's book keeps balances, not history: memory stays flat however many transfers are
stored, and retries of long-committed transfers are still judged against what is stored."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest

from edge.store import Store, TransfersRefused
from ledger.book import Outcome
from tests.edge.store.conftest import recharge


def _commit(store: Store, first: int, count: int) -> None:
    with store.transaction() as tx:
        tx.append_transfers(
            [recharge(f"P{n}", amount=100 + n % 7) for n in range(first, first + count)]
        )


@pytest.mark.slow  # 4 500 transfers committed under tracemalloc
def test_memory_does_not_grow_with_the_history(store: Store) -> None:
    _commit(store, 0, 500)  # warm up caches, statements, account dicts
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for batch in range(20):
        _commit(store, 1000 + batch * 200, 200)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # 4 000 transfers: holding them would cost ~1 KB each (4 MB); balances cost nothing more.
    assert grown < 4000 * 50, f"{grown} bytes for 4000 transfers"


def test_committed_transfers_are_still_exists_or_id_conflict(store: Store) -> None:
    _commit(store, 0, 50)
    original = recharge("P7", amount=100 + 7 % 7)
    with store.transaction() as tx:
        assert tx.append_transfers([original]) == []  # identical retry: exists, nothing new
    assert store.book.get(original.id) == original
    with pytest.raises(TransfersRefused) as refused, store.transaction() as tx:
        tx.append_transfers([recharge("P7", amount=999)])
    assert tuple(refused.value.outcomes) == (Outcome.ID_CONFLICT,)
    assert len(store.book) == 50


def test_reopened_store_judges_retries_from_disk(store: Store, db_path: Path) -> None:
    _commit(store, 0, 20)
    balances = store.book.balances()
    store.close()
    with Store.open(db_path) as again:
        assert again.book.balances() == balances
        with again.transaction() as tx:
            assert tx.append_transfers([recharge("P3", amount=100 + 3)]) == []
        assert again.book.balances() == balances
        with pytest.raises(TransfersRefused), again.transaction() as tx:
            tx.append_transfers([recharge("P3", amount=1)])
        assert again.book.balances() == balances
