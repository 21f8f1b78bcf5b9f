"""The console bench's live row: a concentrator of its own, uploading readings the way a real
one does, so the time from a reading ingested to its value on the monitoring screen can be
measured against the ingest alone.

The generated concentrators (`bench.report_data`) carry made-up keys and chains; this one is
real: an Ed25519 key (`ledger.chain.NodeKey`), registered by `cloud.ingest.concentrators.register`
(as `voltbook-cloud node register` does), its inventory claimed by a signed status
(`Ingest.handle_status`), and each upload one batch (`Ingest.handle_batch`, the call the MQTT
ingest worker makes for every `vb/{node}/up` message) holding a reading and the consume entry
the edge bills for it, on the node's own signed chain. Its one meter sits in the first
generated building and floor, in a shop named to sort first (`<building>-<floor>-000`), so it
is the first row of the monitoring screen's first page.

A run registers a node of its own (`edge-live-<UTC time>`): a database reused with
`--database-url` keeps earlier runs' nodes, whose meters sort before this run's.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine

from cloud.db.engine import session_factory
from cloud.ingest import concentrators
from cloud.ingest.handler import Ingest
from cloud.web.chart import kwh_text
from ledger import entry_ids
from ledger.accounts import Pocket, System, Unit, pocket_id, system_id
from ledger.chain import Chain, Entry, NodeKey, sign_checkpoint
from ledger.encoding import encode_body
from ledger.encoding_v2 import FORMAT_V2
from ledger.readings import ReadingRow
from ledger.signed import ACK_TAG, open_signed, trusted
from ledger.transfers import Code, TimeSource, Transfer
from ledger.wire import Ack, AckStatus, Batch, LedgerPart, Status, encode_batch

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
STEP_WH = 1_000  # each reading's register step: the screen's one decimal of kWh moves
FLAT_PRICE = 8365  # 0.0001 CNY/kWh, as the generated tariff's flat period


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Upload:
    """One reading's upload: wall-clock seconds (`time.time()`, the browser's `Date.now()`
    clock) when it was handed to the ingest and when its ack came back (after the commit),
    and the register as the monitoring table writes it."""

    began: float
    committed: float
    register: str

    @property
    def ingest_s(self) -> float:
        return self.committed - self.began


@dataclass
class LiveNode:
    ingest: Ingest
    cloud_key: NodeKey
    node: str
    account: str
    meter: str
    shop: str
    key: NodeKey = field(default_factory=NodeKey.generate)
    outbox: int = 0
    register_wh: int = 1_000_000

    def __post_init__(self) -> None:
        self.chain = Chain(self.node, version=FORMAT_V2)  # what an edge appends and sends

    @classmethod
    def register(cls, engine: Engine, cloud_key: NodeKey, building: str, floor: str) -> LiveNode:
        """A new node with its meter claimed in `building`/`floor` (see the module docstring)."""
        stamp = _now().strftime("%Y%m%d%H%M%S")
        live = cls(Ingest(engine, cloud_key, _now), cloud_key, node=f"edge-live-{stamp}",
                   account=f"LIVE-{stamp}", meter=f"9{stamp[1:]}",
                   shop=f"{building}-{floor}-000")  # fmt: skip
        with session_factory(engine).begin() as session:
            concentrators.register(session, live.node, live.key.public_key,
                                   name="console bench live", now=_now())  # fmt: skip
        meters = [{"address": live.meter, "protocol": "dlt645"}]
        inventory = {live.account: {"shop": live.shop, "building": building, "floor": floor,
                                    "meters": meters}}  # fmt: skip
        status = Status(live.node, True, 0, 0, 0, {"accounts": inventory}).signed(live.key)
        live.ingest.handle_status(live.node, status)
        live.upload()  # the meter's first reading: the row has values before it is watched
        return live

    def upload(self) -> Upload:
        """The next reading (`STEP_WH` more) and its prepaid consume entry, in one batch."""
        now = _now()
        reg_from, self.register_wh = self.register_wh, self.register_wh + STEP_WH
        consume = Transfer(
            id=entry_ids.consume(self.meter, reg_from, self.register_wh, Pocket.PREPAID.value),
            debit=pocket_id(self.account, Pocket.PREPAID),
            credit=system_id(System.ENERGY_SALES),
            amount=STEP_WH * FLAT_PRICE // 100_000, unit=Unit.FEN, code=Code.CONSUME,
            time=now.isoformat(), time_source=TimeSource.NTP,
            refs={"meter": self.meter, "reg_from": reg_from, "reg_to": self.register_wh,
                  "energy_wh": STEP_WH},
        )  # fmt: skip
        entry = self.chain.append(consume)
        when = (now - EPOCH) // dt.timedelta(milliseconds=1)
        reading = ReadingRow(self.meter, when, self.register_wh, None, 229.5, 1.25, 286.9, 0.98,
                             1, None, None)  # fmt: skip
        payload = encode_batch(self._batch(entry, reading))
        began = time.time()
        answer = self.ingest.handle_batch(self.node, payload)
        committed = time.time()
        ack = Ack.from_fields(open_signed(ACK_TAG, answer, trusted(self.cloud_key.public_key)))
        if ack.status is not AckStatus.OK:
            raise SystemExit(f"the live node's upload was answered {ack.status.value}: {ack}")
        return Upload(began, committed, kwh_text(self.register_wh))

    def _batch(self, entry: Entry, reading: ReadingRow) -> Batch:
        first, self.outbox = self.outbox + 1, self.outbox + 2  # the entry, the reading
        checkpoint = sign_checkpoint(self.key, self.node, entry.seq, entry.hash)
        body = encode_body(entry.transfer, entry.version)
        part = LedgerPart(from_seq=entry.seq, prev=entry.prev_hash, bodies=(body,),
                          key_id=self.key.key_id, signature=checkpoint.signature)  # fmt: skip
        return Batch(node=self.node, first=first, upto=self.outbox, ledger=part,
                     readings=(reading,))  # fmt: skip
