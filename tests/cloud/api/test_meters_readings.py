"""`/meters` and `/readings`: what the concentrators reported and uploaded."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient

from ledger.wire import AckStatus
from tests.cloud.api.conftest import M1, M2, M3, M9, NODE, OTHER, T0, Site, invalid_fields, reading


def test_meters_with_relay_state_and_last_reading(client: TestClient) -> None:
    body = client.get("/meters").json()
    assert [(m["node"], m["address"]) for m in body["items"]] == [
        (NODE, M1),
        (NODE, M2),
        (NODE, M3),
        (OTHER, M9),
    ]
    first, _, tripped, silent = body["items"]
    assert first == {
        "node": NODE,
        "address": M1,
        "account": "A0001",
        "protocol": "dlt645",
        "relay": "closed",
        "energy_wh": 101_200,
        "last_reading": "2026-11-24T07:00:00Z",
    }
    assert (tripped["relay"], tripped["energy_wh"]) == ("open", 7_000)
    assert (silent["relay"], silent["energy_wh"], silent["last_reading"]) == (None, None, None)


def test_meter_filters(client: TestClient) -> None:
    by_account = client.get("/meters", params={"account": "A0001"}).json()
    assert [m["address"] for m in by_account["items"]] == [M1, M2]
    by_node = client.get("/meters", params={"node": OTHER}).json()
    assert [m["address"] for m in by_node["items"]] == [M9]
    assert client.get("/meters", params={"limit": 2, "offset": 3}).json()["total"] == 4


def test_readings_in_time_order(client: TestClient) -> None:
    body = client.get("/readings").json()
    assert [(r["meter"], r["time"]) for r in body["items"]] == [
        (M1, "2026-11-24T06:00:00Z"),
        (M2, "2026-11-24T06:00:00Z"),
        (M1, "2026-11-24T07:00:00Z"),
        (M3, "2026-11-24T07:30:00Z"),
    ]
    newest = body["items"][2]
    assert newest == {
        "node": NODE,
        "meter": M1,
        "time": "2026-11-24T07:00:00Z",
        "energy_wh": 101_200,
        "tariff_wh": [1_000, 20_500, 40_700, 39_000],
        "voltage": 220.1,
        "current": 1.5,
        "power": 330.0,
        "pf": 0.98,
        "relay": "closed",
        "status": None,
    }
    assert body["items"][3]["voltage"] is None


def test_reading_filters_take_any_offset(client: TestClient) -> None:
    # 14:30 in Shanghai is 06:30 UTC: only the readings at and after 07:00 UTC.
    since = client.get("/readings", params={"since": "2026-11-24T14:30:00+08:00"}).json()
    assert [r["time"] for r in since["items"]] == ["2026-11-24T07:00:00Z", "2026-11-24T07:30:00Z"]
    until = client.get("/readings", params={"until": "2026-11-24T07:00:00Z"}).json()
    assert len(until["items"]) == 2  # `until` is exclusive
    window = client.get(
        "/readings",
        params={"meter": M1, "since": "2026-11-24T06:00:00Z", "until": "2026-11-24T08:00:00Z"},
    ).json()
    assert [r["energy_wh"] for r in window["items"]] == [100_000, 101_200]
    assert client.get("/readings", params={"node": OTHER}).json()["total"] == 0


def test_reading_paging(client: TestClient, site: Site) -> None:
    rows = [reading(M2, T0 + dt.timedelta(minutes=15 * k), 5_000 + k) for k in range(1, 11)]
    assert site.upload(NODE, readings=rows).status is AckStatus.OK
    seen = []
    for offset in range(0, 14, 5):
        page = client.get("/readings", params={"meter": M2, "limit": 5, "offset": offset}).json()
        assert page["total"] == 11
        seen += [r["energy_wh"] for r in page["items"]]
    assert seen == [5_000 + k for k in range(11)]
    meter = client.get("/meters", params={"account": "A0001"}).json()["items"][1]
    assert (meter["energy_wh"], meter["last_reading"]) == (5_010, "2026-11-24T10:30:00Z")


def test_times_without_offset_are_refused(client: TestClient) -> None:
    for params in ({"since": "2026-11-24T08:00:00"}, {"until": "yesterday"}):
        answer = client.get("/readings", params=params)
        assert answer.status_code == 422, params
        assert invalid_fields(answer)[0] == f"query.{next(iter(params))}"
