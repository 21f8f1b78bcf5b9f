"""A round's read success reaches the cloud's events table: a real edge runtime (simulated
meters, two of them silent) stores its `read_round` events and the `read_success_low` alarm, its
own `BatchBuilder` builds the uplink batches from the outbox, and the real `Ingest` stores them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import models
from cloud.ingest import concentrators
from cloud.ingest.handler import Ingest
from demo.sim.direct_bus import DirectBus
from edge.runtime.events import RuntimeKind
from edge.site import load_site
from edge.sync.uplink import BatchBuilder
from ledger.chain import NodeKey
from ledger.wire import AckStatus
from tests.cloud.conftest import Clock
from tests.cloud.helpers import open_ack
from tests.edge.runtime.conftest import booted_at, demo


def test_read_success_events_reach_the_clouds_events_table(
    tmp_path: Path,
    ingest: Ingest,
    sessions: sessionmaker[Session],
    cloud_key: NodeKey,
    clock: Clock,
) -> None:
    files = demo(tmp_path, 8, tariff="flat")
    booted, manual = booted_at(load_site(files.site_toml))
    runtime = booted.runtime
    node = runtime.site.settings.node
    bus = runtime.buses[runtime.site.meters[0].bus]
    assert isinstance(bus, DirectBus)
    try:
        for meter in runtime.site.meters[:2]:
            bus.detach(meter.address)
        for _ in range(2):
            runtime.run_cycle()
            manual.advance(dt.timedelta(minutes=15))
        with sessions.begin() as session:
            concentrators.register(session, node, runtime.key.public_key, now=clock())
        builder = BatchBuilder(runtime.store, runtime.key)
        after = 0
        while (built := builder.build(after)) is not None:
            ack = open_ack(ingest.handle_batch(node, built.payload), cloud_key)
            assert ack.status is AckStatus.OK, ack
            after = built.upto
    finally:
        booted.close()

    with sessions() as session:
        rows = session.scalars(
            select(models.Event).where(models.Event.node == node).order_by(models.Event.event_id)
        ).all()
    rounds = [r for r in rows if r.kind == RuntimeKind.READ_ROUND.value]
    assert len(rounds) == 2
    assert rounds[0].category == "event"
    assert (rounds[0].detail["attempted"], rounds[0].detail["read"]) == (8, 6)
    assert rounds[0].detail["buses"][0]["failed"] == 2
    low = [r for r in rows if r.kind == RuntimeKind.READ_SUCCESS_LOW.value]
    assert len(low) == 1 and low[0].category == "alarm"
    assert low[0].detail["rate"] == 0.75 and low[0].detail["minimum"] == 0.9
