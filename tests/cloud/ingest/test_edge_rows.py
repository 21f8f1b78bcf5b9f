"""The whole way of a reading row and an entry: the edge's store → its outbox items → an uplink
batch → the cloud's checks. The batch and the rows the cloud stores are frozen here as the
code produced them before the outbox handed typed items (`ledger.readings.ReadingRow`, extra an
object until a text column): encoding once changed no byte. A store whose entries are in body
format version 1 still sends that very batch but for its magic (batch format 2, whose magic it
has, carries version-1 bodies as format 1 did); entries in version 2 travel as columns."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from cloud.db.bulk import READING_COLUMNS
from cloud.ingest.checks import prepare_contents, verify_ledger
from edge.store import Category, EntryItem, Event, ReadingsItem, Store
from edge.sync.uplink import BatchBuilder
from ledger.chain import NodeKey
from ledger.readings import ReadingRow
from ledger.wire import MAGIC, MAGIC_V1, decode_batch
from tests.edge.store.conftest import RICH, T0, reading, version_1_store
from tests.ledger.factories import sample_transfers

NODE = "edge-0001"
KEY = NodeKey.from_seed(bytes(32))
UTC = dt.UTC
BATCH_SHA256 = {  # by the body format of the entries
    1: "96612e9dc3a5710df25656475b9d133d478c3c895dd9e035b95e5b0024fe2cf9",
    2: "087c24a6c39a4b6b3e684f2b88ea2c7823197714d4b15a18cd5b0ae0e477c62e",
}
# The format-1 batch of the version-1 store, frozen before format 2 (its magic `VB\x01`).
FORMAT_1_SHA256 = "473f21f60c1acefb8434f2b1c76e48ed5b895d1ced492343d28ad071db387099"
EXTRA = (  # the cloud's text: ASCII-escaped, as it always was
    '{"err":9,"hz":49.98,"valve":"closed","flags":["cover_open","\\u78c1\\u573a"],'
    '"counters":[["overload_trips",3]],"mt":"2026-11-01T07:59:58"}'
)
CLOUD_ROWS = [
    (NODE, "m1", dt.datetime(2026, 11, 1, 0, 0, tzinfo=UTC), 1000, "10,20,30,940", 229.5, 1.25,
     286.9, 0.98, 1, None, None),
    (NODE, "m9", dt.datetime(2026, 11, 1, 0, 0, tzinfo=UTC), 5000, "1,2,3,4994", 231.0, None,
     None, None, 0, "1,32768", EXTRA),
    (NODE, "m2", dt.datetime(2026, 11, 1, 0, 1, tzinfo=UTC), 1200, "10,20,30,1140", 229.5, 1.25,
     286.9, 0.98, 1, None, None),
]  # fmt: skip

RICH_EXTRA = {
    "err": 9, "hz": 49.98, "valve": "closed", "flags": ["cover_open", "磁场"],
    "counters": [["overload_trips", 3]], "mt": "2026-11-01T07:59:58",
}  # fmt: skip


@pytest.mark.parametrize("version", [1, 2])
def test_store_to_outbox_items_to_batch_to_cloud_rows(tmp_path: Path, version: int) -> None:
    if version == 1:
        version_1_store(tmp_path / "edge.db", sample_transfers())
    with Store.open(tmp_path / "edge.db", node=NODE) as store:
        with store.transaction() as tx:
            if version == 2:
                tx.append_transfers(sample_transfers())
            tx.insert_readings([reading("m1", 0), RICH, reading("m2", 1, 1200)])
            tx.add_events([Event(T0, "overload", Category.ALARM, meter="m2", detail={"w": 9})])
        with store.transaction() as tx:
            tx.apply_command("c1", b"{}", [], T0)
        items = store.outbox()
        entries = list(store.entries())
        built = BatchBuilder(store, KEY).build(0)
    assert {e.version for e in entries} == {version}
    assert built is not None and (built.first, built.upto) == (items[0].id, items[-1].id)
    assert hashlib.sha256(built.payload).hexdigest() == BATCH_SHA256[version]  # byte for byte
    if version == 1:
        assert built.payload.startswith(MAGIC)
        format_1 = MAGIC_V1 + built.payload[len(MAGIC) :]
        assert hashlib.sha256(format_1).hexdigest() == FORMAT_1_SHA256
        assert decode_batch(format_1) == built.batch

    # The batch holds the items as they are: the stored bodies, the rows themselves.
    assert built.batch.ledger is not None
    assert built.batch.ledger.bodies == tuple(i.body for i in items if isinstance(i, EntryItem))
    (readings,) = (i for i in items if isinstance(i, ReadingsItem))
    assert built.batch.readings == readings.rows
    assert built.batch.results == ({"command_id": "c1", "status": "applied", "seqs": [],
                                    "outcomes": []},)  # fmt: skip

    # What the cloud receives: the same rows, typed, extra still an object.
    batch = decode_batch(built.payload)
    assert batch == built.batch
    assert all(type(row) is ReadingRow for row in batch.readings)
    assert batch.readings[1].extra == readings.rows[1].extra == RICH_EXTRA
    assert batch.ledger is not None
    verified, _ = verify_ledger(NODE, batch.ledger, KEY.public_key)
    assert [(v.seq, v.hash) for v in verified] == [(e.seq, e.hash) for e in entries]

    contents = prepare_contents(NODE, batch)
    assert contents.readings == CLOUD_ROWS
    assert all(len(row) == len(READING_COLUMNS) for row in contents.readings)
    assert {m: (s["relay"], s["energy_wh"]) for m, s in contents.latest.items()} == {
        "m1": (1, 1000), "m9": (0, 5000), "m2": (1, 1200),
    }  # fmt: skip
    assert [(e["event_id"], e["kind"], e["detail"]) for e in contents.events] == [
        (1, "overload", {"w": 9})
    ]
    assert [(o.command_id, o.status.value) for o in contents.verdicts] == [("c1", "applied")]
