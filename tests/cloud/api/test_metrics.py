"""`GET /metrics` after real work on the test database: an ingest with readings, batches
refused, recharges and relay orders (commands), a restore drill's result; every figure is held
to the database, read here with SQL of its own. The latency histogram carries route templates,
never a caller's path. Payment orders by state: `tests/cloud/payments/test_payment_metrics.py`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from cloud.app import create_app
from cloud.db.models import CommandStatus
from cloud.metrics.endpoint import MetricsEndpoint
from cloud.metrics.restore_drill import DrillResult, record_drill
from cloud.people.auth import Role
from ledger.chain import NodeKey
from ledger.wire import AckStatus
from tests.cloud.api.conftest import NODE, OTHER, Site, bearer
from tests.cloud.conftest import Clock
from tests.cloud.fake_edge import T0
from tests.cloud.metrics_scrape import Samples, labelled, parse, value

TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture
def drill_file(tmp_path: Path) -> Path:
    return tmp_path / "restore-drill.json"


@pytest.fixture
def metrics_client(
    site: Site, engine: Engine, cloud_key: NodeKey, clock: Clock, drill_file: Path
) -> Iterator[TestClient]:
    app = create_app(engine, cloud_key, clock, metrics=MetricsEndpoint(TOKEN, drill_file))
    with TestClient(app) as client:
        yield client


def scrape(client: TestClient) -> Samples:
    answer = client.get("/metrics", headers=bearer(TOKEN))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return parse(answer.text)


def counts(engine: Engine, sql: str) -> dict[str, int]:
    with engine.connect() as connection:
        return {str(k): int(v) for k, v in connection.execute(text(sql))}


def test_figures_equal_the_database_after_ingest_refusals_and_commands(
    metrics_client: TestClient,
    site: Site,
    engine: Engine,
    tokens: dict[Role, str],
    clock: Clock,
) -> None:
    admin = bearer(tokens[Role.ADMIN])
    # Commands: two recharges at the desk and a relay order, all signed and waiting.
    for fen in (1000, 2500):
        body = {"account": "A0001", "fen": fen, "method": "cash"}
        answer = metrics_client.post("/recharges", headers=admin, json=body)
        assert answer.status_code == 201, answer.text
    relay = {"meters": ["000000000001"], "action": "trip"}
    answer = metrics_client.post("/relays", headers=admin, json=relay)
    assert answer.status_code in (200, 201, 202), answer.text
    # Refusals: garbage on a registered node's topic (twice), and one from a name nobody knows.
    for _ in range(2):
        assert site.send(NODE, b"not a batch").status is AckStatus.REFUSED
    site.ingest.handle_batch("edge-9999", b"\x00junk")
    clock.advance(minutes=10)

    samples = scrape(metrics_client)

    assert value(samples, "voltbook_metrics_database_up") == 1
    commands = counts(engine, "SELECT status, count(*) FROM commands GROUP BY status")
    assert sum(commands.values()) >= 3
    assert labelled(samples, "voltbook_commands", "state") == {
        state.value: commands.get(state.value, 0) for state in CommandStatus
    }
    with engine.connect() as connection:
        oldest = connection.execute(
            text("SELECT min(issued) FROM commands WHERE status = 'pending'")
        ).scalar_one()
    oldest = dt.datetime.fromisoformat(oldest) if isinstance(oldest, str) else oldest
    if oldest.tzinfo is None:  # SQLite keeps UTC without a zone
        oldest = oldest.replace(tzinfo=dt.UTC)
    assert (
        value(samples, "voltbook_commands_oldest_seconds", state="pending")
        == (clock() - oldest).total_seconds()
    )
    assert value(samples, "voltbook_commands_oldest_seconds", state="delivered") == 0

    refused = counts(engine, "SELECT node, count(*) FROM alarms WHERE kind = 'refused_batch' "
                             "GROUP BY node")  # fmt: skip
    assert refused == {NODE: 2, "edge-9999": 1}
    assert labelled(samples, "voltbook_ingest_batches_refused_total", "node") == {
        NODE: 2, OTHER: 0, "unregistered": 1}  # fmt: skip

    # Ingest lag: now minus the newest reading the node's meters have stored.
    newest = T0 - dt.timedelta(minutes=30)  # M3's reading, the newest the site uploaded
    assert value(samples, "voltbook_ingest_newest_reading_timestamp_seconds", node=NODE) == (
        newest.timestamp()
    )
    assert (
        value(samples, "voltbook_ingest_lag_seconds", node=NODE)
        == (clock() - newest).total_seconds()
    )
    assert ("voltbook_ingest_lag_seconds", frozenset({("node", OTHER)})) not in samples
    heads = counts(engine, "SELECT node, head_seq FROM concentrators WHERE node <> 'cloud'")
    assert labelled(samples, "voltbook_ledger_head_seq", "node") == heads
    assert heads[NODE] == 7
    assert labelled(samples, "voltbook_node_online", "node") == {NODE: 1, OTHER: 1}
    assert labelled(samples, "voltbook_node_quarantined", "node") == {NODE: 0, OTHER: 0}

    # A new reading moves the lag: the figures are read at the scrape, not remembered.
    from tests.cloud.api.conftest import M1, reading

    ack = site.upload(NODE, readings=[reading("000000000001", clock(), 102_000)])
    assert ack.status is AckStatus.OK and M1 == "000000000001"
    assert value(scrape(metrics_client), "voltbook_ingest_lag_seconds", node=NODE) == 0


def test_a_node_silent_past_the_limit_is_flagged_until_it_is_heard_from_again(
    metrics_client: TestClient, site: Site, clock: Clock
) -> None:
    """`voltbook_node_silent`: its status still says online, nothing came for `silent_after`
    (45 minutes by default). Read at the scrape from `last_seen` and the clock, no job."""
    assert labelled(scrape(metrics_client), "voltbook_node_silent", "node") == {NODE: 0, OTHER: 0}
    clock.advance(minutes=45)  # exactly the limit: still on line
    assert labelled(scrape(metrics_client), "voltbook_node_silent", "node") == {NODE: 0, OTHER: 0}
    clock.advance(seconds=1)
    samples = scrape(metrics_client)
    assert labelled(samples, "voltbook_node_silent", "node") == {NODE: 1, OTHER: 1}
    assert labelled(samples, "voltbook_node_online", "node") == {NODE: 1, OTHER: 1}  # its status
    site.status(NODE)  # heard from again
    site.status(OTHER, online=False)  # its last will: offline, not silent
    samples = scrape(metrics_client)
    assert labelled(samples, "voltbook_node_silent", "node") == {NODE: 0, OTHER: 0}
    assert labelled(samples, "voltbook_node_online", "node") == {NODE: 1, OTHER: 0}


def test_latency_is_labelled_by_route_template(
    metrics_client: TestClient, tokens: dict[Role, str]
) -> None:
    admin = bearer(tokens[Role.ADMIN])
    for account in ("A0001", "A0002", "A9999"):
        metrics_client.get(f"/accounts/{account}", headers=admin)
    metrics_client.get("/no/such/path/3f9a")
    metrics_client.request("BREW", "/health")
    samples = scrape(metrics_client)
    route = {"method": "GET", "route": "/accounts/{account}"}
    assert value(samples, "voltbook_api_request_duration_seconds_count", **route) == 3
    assert value(samples, "voltbook_api_requests_total", status="200", **route) == 2
    assert value(samples, "voltbook_api_requests_total", status="404", **route) == 1
    assert value(samples, "voltbook_api_request_duration_seconds_count",
                 method="GET", route="unmatched") == 1  # fmt: skip
    assert value(samples, "voltbook_api_request_duration_seconds_count",
                 method="other", route="/health") == 1  # fmt: skip
    routes = {dict(labels).get("route") for _, labels in samples}
    assert not any(r and ("A0001" in r or "3f9a" in r) for r in routes), routes
    assert value(samples, "voltbook_api_request_duration_seconds_sum", **route) > 0


def test_metrics_need_the_token(metrics_client: TestClient, tokens: dict[Role, str]) -> None:
    for headers in ({}, bearer("wrong-token-0123456789abcdef"), bearer(tokens[Role.ADMIN]),
                    {"Authorization": TOKEN}):  # fmt: skip
        answer = metrics_client.get("/metrics", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json()["error"] == "unauthorized"
        assert "voltbook_" not in answer.text
    assert metrics_client.get("/metrics?x=1", headers=bearer(TOKEN)).status_code == 422


def test_no_metrics_route_unless_configured(client: TestClient) -> None:
    assert client.get("/metrics", headers=bearer(TOKEN)).status_code == 404


def test_restore_drill_result_is_reported(metrics_client: TestClient, drill_file: Path) -> None:
    samples = scrape(metrics_client)  # never run: no success figure, last run 0
    assert ("voltbook_restore_drill_success", frozenset()) not in samples
    assert value(samples, "voltbook_restore_drill_last_run_timestamp_seconds") == 0
    finished = dt.datetime(2026, 12, 6, 3, 0, 12, tzinfo=dt.UTC)
    record_drill(drill_file, DrillResult(ok=True, finished=finished, detail="books verify"))
    samples = scrape(metrics_client)
    assert value(samples, "voltbook_restore_drill_success") == 1
    assert value(samples, "voltbook_restore_drill_last_run_timestamp_seconds") == (
        finished.timestamp()
    )
    record_drill(drill_file, DrillResult(ok=False, finished=finished, detail="chain broken"))
    assert value(scrape(metrics_client), "voltbook_restore_drill_success") == 0
    for garbage in (b"{not json", b'{"ok": "yes"}', b'{"ok": true, "finished": "yesterday"}',
                    b"\xff\xfe", b'{"ok": true, "finished": "2026-12-06T03:00:00"}',
                    b" " * 5000):  # fmt: skip
        drill_file.write_bytes(garbage)
        samples = scrape(metrics_client)  # an unreadable result is a failed drill, not a 500
        assert value(samples, "voltbook_restore_drill_success") == 0, garbage
        assert value(samples, "voltbook_metrics_database_up") == 1


def test_a_database_that_cannot_be_read_is_a_figure_not_a_500(
    tmp_path: Path, cloud_key: NodeKey, clock: Clock
) -> None:
    from cloud.db.engine import make_engine

    unmigrated = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables at all
    try:
        app = create_app(unmigrated, cloud_key, clock, metrics=MetricsEndpoint(TOKEN))
        with TestClient(app) as client:
            samples = scrape(client)
    finally:
        unmigrated.dispose()
    assert value(samples, "voltbook_metrics_database_up") == 0
    assert not labelled(samples, "voltbook_commands", "state")
    assert value(samples, "voltbook_restore_drill_last_run_timestamp_seconds") == 0
    assert TOKEN not in repr(MetricsEndpoint(TOKEN))
