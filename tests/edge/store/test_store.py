"""The store against a real SQLite file: group commit, ledger, readings, events, outbox, state."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from edge.drivers.reading import Reading, RelayState, ValveState
from edge.store import (
    AcknowledgementMismatch,
    Category,
    CommandConflict,
    CommandStatus,
    EntryItem,
    Event,
    EventItem,
    OutboxKind,
    ReadingsItem,
    Store,
    StoreBusy,
    StoreError,
    StoreUsageError,
    TimedReading,
    TransfersRefused,
)
from ledger.accounts import Account, Pocket, pocket_id
from ledger.book import Outcome
from ledger.chain import NodeKey
from ledger.encoding_v2 import encode_transfer_v2
from ledger.invariants import check_balances_sum_to_zero
from ledger.units import Wh
from ledger.verify import verify_lines
from tests.edge.store.conftest import NODE, T0, reading, recharge, refund, table_dump
from tests.ledger.factories import sample_transfers

KEY = NodeKey.from_seed(bytes(range(32)))


def test_a_new_store_is_created_in_wal_with_full_sync(store: Store, db_path: Path) -> None:
    assert store.node == NODE
    assert store.chain.seq == 0
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_reopen_rebuilds_book_and_chain(store: Store, db_path: Path) -> None:
    with store.transaction() as tx:
        entries = tx.append_transfers(sample_transfers())
    balances, head = store.book.balances(), store.chain.head
    store.close()
    with Store.open(db_path) as again:
        assert again.book.balances() == balances
        assert (again.chain.seq, again.chain.head) == (6, head)
        assert list(again.entries()) == entries
        assert list(again.entries(from_seq=5)) == entries[4:]


def test_exception_inside_transaction_leaves_nothing(store: Store, db_path: Path) -> None:
    with store.transaction() as tx:
        tx.append_transfers([recharge(1)])
        tx.insert_readings([reading("m1", 0)])
    committed = table_dump(db_path)
    balances, chain = store.book.balances(), store.chain

    with pytest.raises(RuntimeError, match="rules crashed"), store.transaction() as tx:
        tx.append_transfers([recharge(2), recharge(3, owner="A0002")])
        tx.insert_readings([reading("m1", 1), reading("m2", 1)])
        tx.add_events([Event(T0, "relay_trip", Category.ALARM, meter="m1")])
        tx.set_state("last_time", T0.isoformat())
        tx.mark_processed("subsidy:A0001:2026-11")
        tx.apply_command("C-1", b"{}", [recharge(4)], T0)
        tx.defer("trip m1")
        raise RuntimeError("rules crashed")

    with pytest.raises(StoreUsageError, match="released only after a successful commit"):
        tx.released()
    with pytest.raises(StoreUsageError, match="rolled back"):
        tx.append_transfers([recharge(5)])
    assert table_dump(db_path) == committed
    assert store.book.balances() == balances
    assert (store.chain.seq, store.chain.head) == (chain.seq, chain.head)
    assert store.get_state("last_time") is None
    assert not store.is_processed("subsidy:A0001:2026-11")
    # The chain continues from the committed head, and the rolled-back ids are new again.
    with store.transaction() as tx:
        assert [e.seq for e in tx.append_transfers([recharge(2)])] == [2]


def test_deferred_actions_are_released_after_commit_only(store: Store) -> None:
    with store.transaction() as tx:
        tx.append_transfers([recharge(1)])
        tx.defer("close relay m1", "puback 17")
        with pytest.raises(StoreUsageError):
            tx.released()
    assert tx.released() == ["close relay m1", "puback 17"]


def test_nested_transactions_and_writes_after_close_are_refused(store: Store) -> None:
    with store.transaction() as tx:
        nested = store.transaction()
        with pytest.raises(StoreUsageError, match="not nested"):
            nested.__enter__()
    with pytest.raises(StoreUsageError, match="committed"):
        tx.set_state("x", 1)


def test_refused_transfer_changes_nothing_even_after_accepted_chains(store: Store) -> None:
    with store.transaction() as tx:
        tx.append_transfers([recharge(1, amount=500)])
    before = store.book.balances()
    with store.transaction() as tx:
        with pytest.raises(TransfersRefused, match="exceeds_floor") as refusal:
            # The first transfer alone would be accepted; the batch is all or nothing.
            tx.append_transfers([recharge(2, amount=100), refund(1, amount=10_000)])
        assert refusal.value.outcomes == (Outcome.OK, Outcome.EXCEEDS_FLOOR)
        assert store.book.balances() == before
        with pytest.raises(TransfersRefused):  # the balance is still 500, not 600
            tx.append_transfers([refund(2, amount=501)])
        assert [e.seq for e in tx.append_transfers([refund(3, amount=500)])] == [2]
    assert store.chain.seq == 2


def test_identical_retry_is_skipped_and_conflict_refused(store: Store) -> None:
    with store.transaction() as tx:
        assert [e.seq for e in tx.append_transfers([recharge(1)])] == [1]
        assert tx.append_transfers([recharge(1)]) == []
        changed = dataclasses.replace(recharge(1), amount=999)
        with pytest.raises(TransfersRefused, match="id_conflict"):
            tx.append_transfers([changed])
    assert store.chain.seq == 1


def test_merchant_pockets_get_a_floor_and_configured_credit_limits(db_path: Path) -> None:
    limit = Account.for_id(pocket_id("A0002", Pocket.PREPAID), credit_limit=300)
    with Store.open(db_path, node=NODE, accounts=[limit]) as store, store.transaction() as tx:
        tx.append_transfers([refund(1, owner="A0002", amount=300)])
        with pytest.raises(TransfersRefused):
            tx.append_transfers([refund(2, owner="A0002", amount=1)])
        with pytest.raises(TransfersRefused, match="exceeds_floor"):
            tx.append_transfers([refund(3, owner="A0003", amount=1)])
    with Store.open(db_path) as store:  # history replays without today's floors
        assert store.book.balance(pocket_id("A0002", Pocket.PREPAID)).posted == -300
        with store.transaction() as tx, pytest.raises(TransfersRefused):
            tx.append_transfers([refund(4, owner="A0002", amount=1)])


def test_a_batch_may_not_end_on_a_link_to_a_stored_transfer(store: Store) -> None:
    first = recharge(2)
    with store.transaction() as tx:
        tx.append_transfers([first])
        linked = dataclasses.replace(recharge(1), linked=True)
        with pytest.raises(StoreUsageError, match="linked"):
            tx.append_transfers([linked, first])
    assert store.chain.seq == 1 and store.book.get(linked.id) is None


def test_readings_round_trip_and_query(store: Store) -> None:
    rich = TimedReading(
        T0,
        Reading(
            "m9",
            energy_wh=Wh(12340),
            energy_error_wh=5,
            reactive_var=12.5,
            frequency_hz=50.01,
            relay=RelayState.OPEN,
            volume_l=77,
            valve=ValveState.CLOSED,
            status_words=(0x0001, 0x8000),
            event_flags=frozenset({"cover_open", "magnet"}),
            counters=(("overload_trips", 3),),
            meter_time=dt.datetime(2026, 11, 1, 7, 59, 58),
        ),
    )
    with store.transaction() as tx:
        assert tx.insert_readings([reading("m1", 0), reading("m1", 1, 1100), rich]) == 3
    got = store.readings("m9")
    assert got == [dataclasses.replace(rich, time=T0.astimezone(dt.UTC))]
    assert [r.reading.energy_wh for r in store.readings("m1")] == [1000, 1100]
    latest = store.latest_reading("m1")
    assert latest is not None and latest.reading.energy_wh == 1100
    window = store.readings(since=T0 + dt.timedelta(minutes=1), until=T0 + dt.timedelta(hours=1))
    assert len(window) == 1
    with pytest.raises(StoreUsageError, match="no zone"), store.transaction() as tx:
        tx.insert_readings([TimedReading(dt.datetime(2026, 11, 1), Reading("m1"))])


def test_events_and_alarms(store: Store) -> None:
    alarm = Event(T0, "low_balance", Category.ALARM, shop="S-101", account="A0001", detail={"d": 2})
    with store.transaction() as tx:
        ids = tx.add_events([Event(T0, "meter_swapped", meter="m1"), alarm])
    assert len(ids) == 2
    alarms = store.events(category=Category.ALARM)
    assert [(s.id, s.event.kind, s.event.detail) for s in alarms] == [
        (ids[1], "low_balance", {"d": 2})
    ]
    assert [s.event.kind for s in store.events(meter="m1")] == ["meter_swapped"]


def test_outbox_holds_everything_to_send_and_prunes_to_an_id(store: Store) -> None:
    with store.transaction() as tx:
        tx.append_transfers(sample_transfers()[:2])
        tx.insert_readings([reading("m1", 0), reading("m2", 0)])
        tx.add_events([Event(T0, "overload", Category.ALARM, meter="m2")])
        tx.add_checkpoint(store.chain.checkpoint(KEY))
    items = store.outbox()
    kinds = [i.kind for i in items]
    assert kinds == [
        OutboxKind.ENTRY,
        OutboxKind.ENTRY,
        OutboxKind.READING,
        OutboxKind.ALARM,
        OutboxKind.CHECKPOINT,
    ]
    first = store.entry(1)
    assert first is not None and isinstance(items[0], EntryItem)
    assert (items[0].seq, items[0].prev_hash, items[0].hash, items[0].linked) == (
        1, first.prev_hash, first.hash, first.transfer.linked
    )  # fmt: skip
    assert items[0].body == encode_transfer_v2(first.transfer)  # the stored bytes, as hashed
    assert isinstance(items[2], ReadingsItem)
    assert [row.meter for row in items[2].rows] == ["m1", "m2"]
    assert items[2].rows[0].energy_wh == 1000
    stored = sqlite3.connect(store.path).execute(
        "SELECT payload FROM outbox WHERE id = ?", (items[2].id,)
    )
    batch = json.loads(stored.fetchone()[0])
    assert [row[0] for row in batch["rows"]] == ["m1", "m2"]
    assert dict(zip(batch["columns"], batch["rows"][0], strict=True))["energy_wh"] == 1000
    assert isinstance(items[3], EventItem) and items[3].fields["k"] == "overload"
    with store.transaction() as tx:
        assert tx.prune_outbox(items[2].id) == 3
    assert [i.kind for i in store.outbox()] == kinds[3:]
    assert store.outbox(after_id=items[3].id)[0].kind is OutboxKind.CHECKPOINT
    # Ids are never reused after a prune (an old acknowledgement cannot delete a new row).
    with store.transaction() as tx:
        tx.prune_outbox(items[-1].id)
        tx.append_transfers(sample_transfers()[2:4])
    assert store.outbox()[0].id > items[-1].id


def test_acknowledgement_must_match_the_chain(store: Store) -> None:
    with store.transaction() as tx:
        tx.append_transfers(sample_transfers())
    head2 = store.entry(2)
    assert head2 is not None
    with store.transaction() as tx:
        with pytest.raises(AcknowledgementMismatch, match="another hash"):
            tx.acknowledge(2, bytes(32))
        with pytest.raises(AcknowledgementMismatch, match="ends at seq 6"):
            tx.acknowledge(9, bytes(32))
        tx.acknowledge(2, head2.hash)
        tx.acknowledge(1, store.entry(1).hash)  # type: ignore[union-attr]  # late duplicate
    assert store.acknowledged() == (2, head2.hash)


def test_state_values_and_processed_keys(store: Store) -> None:
    big = 2**80 + 7  # cumulative exact cost grows past 2^53; it must stay exact
    with store.transaction() as tx:
        tx.set_state("cost_cum:A0001", big)
        tx.set_state("registers:m1", {"import": 123450, "t1": [1, 2]})
        assert tx.mark_processed("subsidy:A0001:2026-11") is True
        assert tx.mark_processed("subsidy:A0001:2026-11") is False
        with pytest.raises(StoreUsageError, match="JSON"):
            tx.set_state("bad", float("nan"))
    assert store.get_state("cost_cum:A0001") == big
    assert store.get_state("registers:m1") == {"import": 123450, "t1": [1, 2]}
    assert store.get_state("missing", "default") == "default"
    assert store.is_processed("subsidy:A0001:2026-11")
    with store.transaction() as tx:
        tx.delete_state("registers:m1")
    assert store.get_state("registers:m1") is None


def test_apply_command_once_and_conflicting_payload(store: Store) -> None:
    with store.transaction() as tx:
        first = tx.apply_command("C-1", b'{"pay":500}', [recharge("C-1", command="C-1")], T0)
        again = tx.apply_command("C-1", b'{"pay":500}', [recharge("C-1", command="C-1")], T0)
        with pytest.raises(CommandConflict, match="C-1"):
            tx.apply_command("C-1", b'{"pay":900}', [], T0)
    assert first.status is CommandStatus.APPLIED and first.seqs == (1,) and first.first_delivery
    assert dataclasses.replace(again, first_delivery=True) == first
    assert store.command_result("C-1") == again
    assert store.chain.seq == 1
    assert [i.kind for i in store.outbox()] == [OutboxKind.ENTRY, OutboxKind.COMMAND_RESULT]


def test_a_refused_command_is_recorded_as_refused(store: Store) -> None:
    with store.transaction() as tx:
        result = tx.apply_command("C-2", b"refund", [refund("C-2", amount=5)], T0)
    assert result.status is CommandStatus.REFUSED
    assert result.outcomes == (Outcome.EXCEEDS_FLOOR,)
    with store.transaction() as tx:  # later money does not change a decided command
        tx.append_transfers([recharge(1)])
        assert tx.apply_command("C-2", b"refund", [refund("C-2", amount=5)], T0).seqs == ()
    assert store.chain.seq == 1


def test_export_lines_verify_with_the_ledger_verifier(store: Store) -> None:
    with store.transaction() as tx:
        tx.append_transfers(sample_transfers()[:2])
        tx.add_checkpoint(store.chain.checkpoint(KEY))
        tx.append_transfers(sample_transfers()[2:])
        cp = store.chain.checkpoint(KEY)
        assert tx.add_checkpoint(cp) is True
        assert tx.add_checkpoint(cp) is False
        with pytest.raises(StoreUsageError, match="does not match"):
            tx.add_checkpoint(dataclasses.replace(cp, head=bytes(32)))
    verdict = verify_lines(store.export_lines(), [KEY.public_key], node=NODE)
    assert verdict.ok, verdict.findings
    assert (verdict.entries, verdict.checkpoints, verdict.signed_through) == (6, 2, 6)
    assert check_balances_sum_to_zero(store.book.balances()) == []


def test_one_writer_only_and_read_only_exports(store: Store, db_path: Path) -> None:
    with store.transaction() as tx:
        tx.append_transfers(sample_transfers())
    with pytest.raises(StoreBusy, match="another process"):
        Store.open(db_path)
    with Store.open(db_path, read_only=True) as reader:
        assert [e.seq for e in reader.entries()] == [1, 2, 3, 4, 5, 6]
        with pytest.raises(StoreUsageError, match="read-only"), reader.transaction():
            pass


def test_wrong_node_and_missing_node_are_refused(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    store.close()
    with pytest.raises(StoreUsageError, match="belongs to node 'edge-0001'"):
        Store.open(db_path, node="edge-0002")
    with pytest.raises(StoreUsageError, match="give the concentrator's node id"):
        Store.open(tmp_path / "new.db")
    with pytest.raises(StoreUsageError, match="does not exist"):
        Store.open(tmp_path / "no" / "such.db", node=NODE)


def test_a_swallowed_write_error_still_rolls_back(store: Store, db_path: Path) -> None:
    before = table_dump(db_path)
    with pytest.raises(StoreError, match="rolled back"), store.transaction() as tx:
        tx.append_transfers([recharge(1)])
        store._conn.execute("DROP TABLE readings")  # sabotage: the next write fails in SQLite
        with pytest.raises(StoreError, match="no such table"):
            tx.insert_readings([reading("m1", 0)])
        with pytest.raises(StoreUsageError, match="earlier write"):
            tx.set_state("k", 1)
    assert table_dump(db_path) == before
    assert store.chain.seq == 0 and len(store.book) == 0


def test_old_readings_and_events_are_pruned_by_age(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert_readings([reading("m1", minute) for minute in range(10)])
        tx.add_events([Event(T0 + dt.timedelta(minutes=m), "poll_failed") for m in range(4)])
    cutoff = T0 + dt.timedelta(minutes=3)
    with store.transaction() as tx:
        assert tx.prune_readings(cutoff) == 3
        assert tx.prune_events(cutoff) == 3
    assert store.readings()[0].time == cutoff
    assert len(store.events()) == 1
    assert len(store.outbox()) == 1 + 4  # the uplink copies are kept until acknowledged


def test_read_only_open_of_a_closed_store(store: Store, db_path: Path) -> None:
    with store.transaction() as tx:
        tx.append_transfers(sample_transfers())
    store.close()
    with Store.open(db_path, read_only=True) as reader:
        assert reader.chain.seq == 6
    with Store.open(db_path) as writer:  # the reader left no lock behind
        assert writer.chain.seq == 6


def test_node_id_must_fit_the_chain_encoding(tmp_path: Path) -> None:
    with pytest.raises(StoreUsageError, match="1-255 ASCII"):
        Store.open(tmp_path / "a.db", node="边缘-1")
