"""Property: however a chain is cut into batches, and however those batches arrive —
duplicated, reordered, then resent the way an edge resends after a gap — the cloud ends up
holding exactly the edge's chain, each reading once, and the balances of that chain."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from cloud.db import models
from cloud.db.engine import session_factory
from cloud.ingest import concentrators
from cloud.ingest.handler import Ingest
from ledger.book import replay
from ledger.wire import AckStatus
from tests.cloud.fake_edge import T0, FakeEdge, reading
from tests.cloud.helpers import balances, count, open_ack, stored_chain

NODE = "edge-0001"
TABLES = [t.name for t in reversed(models.Base.metadata.sorted_tables)]


def _empty(engine: Engine) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.mark.slow  # 100 examples, each ingesting a chain
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_delivery_order_yields_the_edges_chain(engine, cloud_key, clock, data) -> None:
    _empty(engine)
    sessions = session_factory(engine)
    ingest = Ingest(engine, cloud_key, clock)
    edge = FakeEdge(NODE)
    with sessions.begin() as session:
        concentrators.register(session, NODE, edge.key.public_key, now=clock())

    size = data.draw(st.integers(1, 14), label="entries")
    edge.book_consumption(size)
    cuts = sorted(data.draw(st.sets(st.integers(1, size - 1)), label="cuts")) if size > 1 else []
    bounds = list(zip([0, *cuts], [*cuts, size], strict=True))
    # Outbox ids: entry k (0-based) is item k + 1; every batch carries one reading per entry.
    batches = [
        edge.payload(
            start + 1, end, edge.entries[start:end],
            readings=[reading("000000000001", T0 + dt.timedelta(minutes=k), k)
                      for k in range(start, end)],
        )
        for start, end in bounds
    ]  # fmt: skip
    schedule = data.draw(
        st.lists(st.integers(0, len(batches) - 1), max_size=3 * len(batches)), label="schedule"
    )

    def deliver(index: int) -> None:
        ack = open_ack(ingest.handle_batch(NODE, batches[index]), cloud_key)
        assert ack.status in (AckStatus.OK, AckStatus.GAP), ack
        assert ack.seq == 0 or ack.head == edge.entries[ack.seq - 1].hash
        deliver.acked = max(deliver.acked, ack.upto)  # type: ignore[attr-defined]

    deliver.acked = 0  # type: ignore[attr-defined]
    for index in schedule:
        deliver(index)
    # The edge resends from after the acknowledged outbox id until everything is acknowledged.
    while deliver.acked < size:  # type: ignore[attr-defined]
        start = next(i for i, (s, _) in enumerate(bounds) if s >= deliver.acked)  # type: ignore[attr-defined]
        for index in range(start, len(batches)):
            deliver(index)

    assert stored_chain(sessions, NODE) == edge.entries
    assert count(sessions, models.Reading) == size
    expected = replay([e.transfer for e in edge.entries]).balances()
    assert balances(sessions) == dict(expected)
    with sessions() as session:
        row = session.get(models.Concentrator, NODE)
        assert (row.head_seq, row.upto) == (size, size)
