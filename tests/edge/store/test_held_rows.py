"""Rows held until the commit, and lookups deferred to it (issue 18, item 4).

A transaction holds its ledger entries (with their outbox rows and the head) and rule states and
writes them together before the next statement, read or COMMIT: every read sees every earlier
write, and the outbox keeps the order the caller wrote in. With deferred lookups (the poll
cycle's transaction) the book takes the ids it does not hold for new, and the store looks them
all up at once before anything is written: a transfer booked before — stored, or pruned — fails
the transaction with `BookedBefore`, nothing commits, and the same batch without deferral finds
it (`exists`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.store import BookedBefore, OutboxKind, Store, TransfersRefused
from ledger.book import Outcome
from tests.edge.store.conftest import reading, recharge, refund, table_dump
from tests.edge.store.test_boot_snapshot import _prune, _sign_snapshot, _sync, booked  # noqa: F401
from tests.edge.store.test_integrity import KEY


def test_held_rows_are_read_back_inside_the_transaction_and_keep_their_order(
    store: Store,
) -> None:
    with store.transaction() as tx:
        [first] = tx.append_transfers([recharge(1)])
        tx.set_state("meter", {"reg_wh": 5})
        assert store.entry(first.seq) == first
        assert store.get_state("meter") == {"reg_wh": 5}
        tx.insert_readings([reading("m1", 0)])
        tx.delete_state("meter")
        assert store.get_state("meter") is None
        [second] = tx.append_transfers([recharge(2)])
        tx.set_state("meter", {"reg_wh": 6})
    kinds = [item.kind for item in store.outbox()]
    assert kinds == [OutboxKind.ENTRY, OutboxKind.READING, OutboxKind.ENTRY]
    assert [e.transfer.id for e in store.entries()] == [first.transfer.id, second.transfer.id]
    assert store.get_state("meter") == {"reg_wh": 6}


@pytest.mark.parametrize("pruned", [False, True], ids=["stored", "pruned"])
def test_a_transfer_booked_before_fails_a_deferred_transaction_and_nothing_commits(
    booked: Path,  # noqa: F811
    pruned: bool,
) -> None:
    old, new = recharge(3, amount=103), recharge("new", amount=5)
    with Store.open(booked, public_key=KEY.public_key) as store:
        if pruned:
            _sync(store)
            _sign_snapshot(store)
            assert _prune(store) == 12
        before, balances = table_dump(booked), store.book.balances()
        with pytest.raises(BookedBefore) as failed, store.transaction(defer_lookups=True) as tx:
            entries = tx.append_transfers([new, old])
            assert [e.transfer for e in entries] == [new, old]  # taken for new, not looked up
            tx.insert_readings([reading("m1", 0)])  # the first statement looks them up
        assert failed.value.transfer_ids == {old.id}
        assert table_dump(booked) == before
        assert (store.book.balances(), store.chain.seq) == (balances, 12)
        with store.transaction() as tx:  # looked up as the book applies them: `exists`
            entries = tx.append_transfers([new, old])
        assert [e.transfer for e in entries] == [new]
        assert store.chain.seq == 13


def test_a_swallowed_booked_before_cannot_commit(booked: Path) -> None:  # noqa: F811
    with Store.open(booked, public_key=KEY.public_key) as store:
        before = table_dump(booked)
        with pytest.raises(BookedBefore), store.transaction(defer_lookups=True) as tx:
            tx.append_transfers([recharge(3, amount=103)])
            with pytest.raises(BookedBefore):
                tx.insert_readings([reading("m1", 0)])
            tx.set_state("after", 1)  # held: the COMMIT looks the ids up again
        assert table_dump(booked) == before
        assert store.get_state("after") is None


def test_a_refusal_from_a_transfer_taken_for_new_is_booked_before(store: Store) -> None:
    with store.transaction() as tx:
        tx.append_transfers([recharge(1, amount=100), refund(1, amount=100)])
    # Applied again, the refund would take the pocket below its floor: not a refusal, a replay.
    with pytest.raises(BookedBefore), store.transaction(defer_lookups=True) as tx:
        tx.append_transfers([refund(1, amount=100)])
    with store.transaction() as tx:
        assert tx.append_transfers([refund(1, amount=100)]) == []  # `exists`
    with pytest.raises(TransfersRefused) as refused, store.transaction(defer_lookups=True) as tx:
        tx.append_transfers([refund(2, amount=1)])  # a genuine refusal stays one
    assert refused.value.outcomes == (Outcome.EXCEEDS_FLOOR,)
