"""The outbox's typed items: what each kind of row becomes, the stored bytes of an entry handed
over as they are, and damage found before anything is sent."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from edge.store import (
    Category,
    CheckpointItem,
    CommandStatus,
    CorruptStore,
    EntryItem,
    Event,
    EventItem,
    OutboxKind,
    ReadingsItem,
    ResultItem,
    Store,
    TimedReading,
)
from edge.store.records import reading_row, reading_rows, readings_payload
from ledger.chain import NodeKey
from ledger.encoding import encode_body
from ledger.encoding_v2 import FORMAT_V2
from ledger.export import entry_line
from ledger.readings import READING_FIELDS, ReadingRow
from ledger.verify import verify_lines
from tests.edge.store.conftest import (
    NODE,
    RICH,
    T0,
    reading,
    recharge,
    version_1_store,
    with_amount,
)
from tests.ledger.factories import sample_transfers

KEY = NodeKey.from_seed(bytes(range(32)))

RICH_ROW = ReadingRow(
    "m9", 1_793_491_200_000, 5000, "1,2,3,4994", 231.0, None, None, None, 0, "1,32768",
    {"err": 9, "hz": 49.98, "valve": "closed", "flags": ["cover_open", "磁场"],
     "counters": [["overload_trips", 3]], "mt": "2026-11-01T07:59:58"},
)  # fmt: skip


def test_each_kind_of_row_becomes_its_typed_item(store: Store) -> None:
    with store.transaction() as tx:
        entries = tx.append_transfers(sample_transfers())
        tx.insert_readings([reading("m1", 0), RICH])
        tx.add_events([Event(T0, "meter_swapped", meter="m1")])
        tx.add_events([Event(T0, "overload", Category.ALARM, meter="m2", detail={"w": 9})])
        tx.add_checkpoint(store.chain.checkpoint(KEY))
    with store.transaction() as tx:
        result = tx.apply_command("c1", b"{}", [], T0)
    items = store.outbox()
    assert [type(i) for i in items] == [EntryItem] * len(entries) + [
        ReadingsItem, EventItem, EventItem, CheckpointItem, ResultItem,
    ]  # fmt: skip
    for item, entry in zip(items, entries, strict=False):
        assert isinstance(item, EntryItem) and item.kind is OutboxKind.ENTRY
        assert (item.seq, item.prev_hash, item.hash) == (entry.seq, entry.prev_hash, entry.hash)
        assert entry.version == FORMAT_V2  # new entries are written in format version 2
        assert item.body == encode_body(entry.transfer, FORMAT_V2)
        assert item.linked is entry.transfer.linked
        assert item.created == entry.transfer.time
        assert item.size == 8 * len(item.body)  # what the uplink's budget counts
    assert any(i.linked for i in items if isinstance(i, EntryItem))
    readings, event, alarm, checkpoint, stored_result = items[len(entries) :]
    assert isinstance(readings, ReadingsItem) and readings.kind is OutboxKind.READING
    assert readings.rows == (reading_row(reading("m1", 0)), RICH_ROW)
    assert all(type(row) is ReadingRow for row in readings.rows)
    assert isinstance(event, EventItem) and event.kind is OutboxKind.EVENT
    assert isinstance(alarm, EventItem) and alarm.kind is OutboxKind.ALARM
    assert alarm.fields == {"id": 2, "t": 1_793_491_200_000, "c": "alarm", "k": "overload",
                            "m": "m2", "d": {"w": 9}}  # fmt: skip
    assert isinstance(checkpoint, CheckpointItem) and checkpoint.seq == len(entries)
    assert isinstance(stored_result, ResultItem)
    assert result.status is CommandStatus.APPLIED
    assert stored_result.fields == {"command": "c1", "status": "applied", "seqs": [],
                                    "outcomes": []}  # fmt: skip
    assert store.outbox_newest(OutboxKind.ALARM, 0, 5) == [alarm]


@pytest.mark.parametrize("node", ["edge-0001", "n", 'quo"te\\node', "x" * 255])
def test_a_version_1_entry_counts_the_size_of_its_export_line(tmp_path: Path, node: str) -> None:
    path = tmp_path / "edge.db"
    version_1_store(path, sample_transfers() + [recharge(k) for k in range(12)], node)
    with Store.open(path, node=node) as store:
        entries = list(store.entries())
        assert len(entries) == 18 and all(e.version == 1 for e in entries)
        assert [i.size for i in store.outbox()] == [len(entry_line(e).encode()) for e in entries]


def test_a_version_1_store_continues_in_version_2(tmp_path: Path) -> None:
    """An old store opens, keeps its version-1 rows as they are and appends in version 2: the
    outbox hands both as stored, and the export verifies across the switch."""
    path = tmp_path / "edge.db"
    transfers = sample_transfers()
    version_1_store(path, transfers[:4])  # the third is linked to the fourth
    with Store.open(path, node=NODE) as store, store.transaction() as tx:
        tx.append_transfers(transfers[4:])
        tx.add_checkpoint(store.chain.checkpoint(KEY))
    with Store.open(path, node=NODE, public_key=KEY.public_key) as store:
        items = [i for i in store.outbox() if isinstance(i, EntryItem)]
        assert [i.body[:1] for i in items] == [b"{"] * 4 + [b"\x02"] * 2
        entries = list(store.entries())
        assert [e.transfer for e in entries] == transfers
        assert [e.version for e in entries] == [1, 1, 1, 1, 2, 2]
        assert [i.body for i in items] == [encode_body(e.transfer, e.version) for e in entries]
        assert [i.linked for i in items] == [t.linked for t in transfers]
        verdict = verify_lines(store.export_lines(), [KEY.public_key])
    assert verdict.ok and (verdict.entries, verdict.signed_through) == (6, 6), verdict.findings


def test_reading_rows_keep_extra_an_object_and_the_table_keeps_its_text(
    store: Store, db_path: Path
) -> None:
    row = reading_row(RICH)
    assert row == RICH_ROW
    assert reading_rows(readings_payload([row])) == (row,)
    with store.transaction() as tx:
        tx.insert_readings([RICH])
    with sqlite3.connect(db_path) as conn:
        stored = conn.execute(f"SELECT {', '.join(READING_FIELDS)} FROM readings").fetchone()
    assert stored[:-1] == RICH_ROW[:-1]
    assert stored[-1] == (
        '{"err":9,"hz":49.98,"valve":"closed","flags":["cover_open","磁场"],'
        '"counters":[["overload_trips",3]],"mt":"2026-11-01T07:59:58"}'
    )
    assert store.readings("m9") == [TimedReading(T0.astimezone(dt.UTC), RICH.reading)]


def test_a_body_changed_after_open_is_found_before_it_is_sent(store: Store, db_path: Path) -> None:
    with store.transaction() as tx:
        tx.append_transfers(sample_transfers()[:2])
    body = store.outbox()[1]
    assert isinstance(body, EntryItem)
    with sqlite3.connect(db_path) as conn:  # another tool, while the runtime runs
        conn.execute(
            "UPDATE ledger SET body = ? WHERE seq = 2",
            (with_amount(body.body, 7),),
        )
    with pytest.raises(CorruptStore, match="does not hash to its hash") as found:
        store.outbox()
    assert found.value.seq == 2
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE ledger SET body = ? WHERE seq = 2", (b"not json",))
    with pytest.raises(CorruptStore, match="does not hash to its hash"):
        store.outbox()


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"columns": ["meter"], "rows": []}',  # another layout
        b'{"columns": %s, "rows": [["m1", 0]]}'
        % str(list(READING_FIELDS)).replace("'", '"').encode(),  # a short row
    ],
)
def test_a_malformed_reading_item_is_corruption(
    store: Store, db_path: Path, payload: bytes
) -> None:
    with store.transaction() as tx:
        tx.insert_readings([reading("m1", 0)])
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE outbox SET payload = ? WHERE kind = 'reading'", (payload,))
    with pytest.raises(CorruptStore, match="is malformed"):
        store.outbox()
