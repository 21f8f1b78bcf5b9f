"""The console bench's live concentrator (`bench.console_live`) on real PostgreSQL: its uploads
are taken by the real ingest (signed chain, reading, balance), its meter leads the monitoring
screen's first page, and an upload the cloud refuses stops the bench instead of being timed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from bench import console_live
from cloud.db.engine import make_engine, session_factory
from cloud.db.models import Balance, Concentrator, MeterState, ReportedAccount
from cloud.ingest import concentrators
from cloud.web import monitoring
from ledger.chain import NodeKey
from tests.cloud.conftest import PostgresDatabases

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(pg_databases: PostgresDatabases) -> Iterator[Engine]:
    url = pg_databases.create()
    engine = make_engine(url)
    yield engine
    engine.dispose()
    pg_databases.drop(url)


def _generated_shop(engine: Engine) -> None:
    """A shop as `bench.report_data` generates them: first in B01 F01, on its own node."""
    with session_factory(engine).begin() as session:
        concentrators.register(session, "edge-0001", NodeKey.generate().public_key)
        session.add(ReportedAccount(account="A00001", node="edge-0001", shop="B01-F01-001",
                                    building="B01", floor="F01"))  # fmt: skip
        session.flush()
        session.add(MeterState(node="edge-0001", address="000000000001", account="A00001",
                               protocol="dlt645", relay=1, energy_wh=1_000_000))  # fmt: skip


def test_the_live_node_uploads_through_the_ingest_and_leads_the_first_page(pg: Engine) -> None:
    _generated_shop(pg)
    live = console_live.LiveNode.register(pg, NodeKey.generate(), "B01", "F01")
    upload = live.upload()
    assert upload.register == "1002.0"  # two steps of 1 kWh past 1000 kWh
    assert 0 < upload.ingest_s < 10
    now = dt.datetime.now(dt.UTC)
    with session_factory(pg)() as session:
        page = monitoring.meter_page(session, monitoring.MeterFilters(), now)
        node = session.get(Concentrator, live.node)
        prepaid = session.scalar(
            select(Balance).where(Balance.account == f"{live.account}:prepaid")
        )
    assert [(r.node, r.address) for r in page.rows] == [
        (live.node, live.meter),
        ("edge-0001", "000000000001"),
    ]
    first = page.rows[0]
    assert (first.shop, first.energy_wh, first.voltage) == ("B01-F01-000", 1_002_000, 229.5)
    assert node is not None and (node.head_seq, node.upto, node.status) == (2, 4, "active")
    assert prepaid is not None and prepaid.debits_posted == 2 * 83  # 1 kWh at 0.8365 ¥, twice


def test_an_upload_the_cloud_refuses_stops_the_bench(pg: Engine) -> None:
    live = console_live.LiveNode.register(pg, NodeKey.generate(), "B01", "F01")
    live.key = NodeKey.generate()  # not the registered key: the chain's checkpoint is forged
    with pytest.raises(SystemExit, match="quarantined"):
        live.upload()
    with session_factory(pg)() as session:
        meter = session.get(MeterState, (live.node, live.meter))
    assert meter is not None and meter.energy_wh == 1_001_000  # the first reading only
