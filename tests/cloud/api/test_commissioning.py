"""`/concentrators/{node}/commissioning`: a report the node signed is taken once, an altered or
foreign one is refused and stores nothing; the latest as JSON and as the PDF a building manager
signs (read back with pypdf, zh-CN and English)."""

from __future__ import annotations

import copy
import io
from typing import Any

from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import Engine, select

from cloud.db.engine import session_factory
from cloud.db.registry import Meter
from cloud.people.auth import Role
from ledger.chain import NodeKey
from ledger.commissioning import FORMAT, sign_report
from tests.cloud.api.conftest import EDGE_KEYS, NODE, OTHER, bearer
from tests.cloud.registry_world import make_registry


def _meter(address: str, status: str, **fields: Any) -> dict[str, Any]:
    base = {"address": address, "bus": "rs485-1", "protocol": "dlt645", "status": status,
            "shop": "B1-1F-001", "account": "A0001", "reads_ok": 3, "reads_tried": 3,
            "register": 1_234_567, "unit": "Wh", "relay": "ok",
            "relay_detail": "trip and close confirmed by read-back", "error": ""}  # fmt: skip
    return {**base, **fields}


def report(node: str = NODE, taken_at: str = "2026-11-24T16:00:00+08:00") -> dict[str, Any]:
    return {
        "format": FORMAT,
        "node": node,
        "site": "示范市场 Demo market",
        "taken_at": taken_at,
        "version": "0.1.0",
        "reads": 3,
        "relay_test": True,
        "buses": [
            {
                "bus": "rs485-1",
                "protocol": "dlt645",
                "discovery": "dlt645-search",
                "complete": True,
                "probes": 212,
                "reads_ok": 6,
                "reads_tried": 12,
                "found": 2,
                "missing": 1,
                "extra": 1,
                "error": "",
            },
        ],
        "meters": [
            _meter("202611000001", "found"),
            _meter(
                "202611000002",
                "missing",
                reads_ok=0,
                register=None,
                relay="not_read",
                relay_detail="",
                error="no reply",
            ),
            _meter("202611000003", "found", relay="failed", relay_detail="trip: the meter refused"),
            _meter("202699000042", "extra", shop=None, account=None),
        ],
    }


def test_a_signed_report_is_taken_once_and_printed(
    client: TestClient, tokens: dict[Role, str]
) -> None:
    signed = sign_report(report(), EDGE_KEYS[NODE])
    installer = bearer(tokens[Role.INSTALLER])
    first = client.post(f"/concentrators/{NODE}/commissioning", json=signed, headers=installer)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["new"] and not body["clean"] and body["uploaded_by"] == "installer-1"
    assert body["report"] == signed["report"] and body["key_id"] == EDGE_KEYS[NODE].key_id
    again = client.post(f"/concentrators/{NODE}/commissioning", json=signed, headers=installer)
    assert again.status_code == 201 and not again.json()["new"]
    assert again.json()["id"] == body["id"]
    latest = client.get(f"/concentrators/{NODE}/commissioning/latest", headers=installer)
    assert latest.status_code == 200 and latest.json()["digest"] == body["digest"]
    log = client.get("/operator-log", params={"action": "commissioning.upload"}).json()
    assert [e["target"] for e in log["items"]] == [NODE]

    zh = client.get(f"/concentrators/{NODE}/commissioning/latest", params={"format": "pdf"})
    assert zh.status_code == 200 and zh.headers["content-type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(zh.content)).pages)
    for expected in ("计量点调试验收报告", "示范市场", "202699000042", "多出", "缺失",
                     "6/12 (50.0%)", "1,234.567 kWh", "楼宇管理方", "需整改", "失败"):  # fmt: skip
        assert expected in text, expected
    en = client.get(
        f"/concentrators/{NODE}/commissioning/latest", params={"format": "pdf", "lang": "en"}
    )
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(en.content)).pages)
    for expected in ("Commissioning report", "Building manager", "extra (not declared)",
                     "missing", "trip: the meter refused", "items to fix"):  # fmt: skip
        assert expected in text, expected


def test_the_newest_report_is_the_latest(client: TestClient) -> None:
    for taken_at in ("2026-11-24T16:00:00+08:00", "2026-11-25T09:00:00+08:00"):
        signed = sign_report(report(taken_at=taken_at), EDGE_KEYS[NODE])
        assert client.post(f"/concentrators/{NODE}/commissioning", json=signed).status_code == 201
    latest = client.get(f"/concentrators/{NODE}/commissioning/latest").json()
    assert latest["report"]["taken_at"] == "2026-11-25T09:00:00+08:00"


def test_altered_foreign_or_malformed_reports_are_refused(client: TestClient) -> None:
    signed = sign_report(report(), EDGE_KEYS[NODE])
    url = f"/concentrators/{NODE}/commissioning"
    altered = copy.deepcopy(signed)
    altered["report"]["meters"][1]["status"] = "found"
    answer = client.post(url, json=altered)
    assert answer.status_code == 422 and "does not verify" in answer.json()["detail"]
    other = sign_report(report(), EDGE_KEYS[OTHER])  # another node's key
    assert client.post(url, json=other).status_code == 422
    stranger = sign_report(report(), NodeKey.generate())
    assert client.post(url, json=stranger).status_code == 422
    theirs = sign_report(report(node=OTHER), EDGE_KEYS[OTHER])  # right key, wrong URL
    assert client.post(url, json=theirs).status_code == 422
    wrong_shape = copy.deepcopy(signed)
    wrong_shape["report"]["meters"][0]["reads_ok"] = 1.5
    assert client.post(url, json=wrong_shape).status_code == 422
    assert client.post(url, json={"report": {}, "key_id": "x"}).status_code == 422
    unknown = client.post("/concentrators/edge-9999/commissioning", json=signed)
    assert unknown.status_code == 404
    assert client.get(f"/concentrators/{NODE}/commissioning/latest").status_code == 404


def test_roles(client: TestClient, tokens: dict[Role, str]) -> None:
    signed = sign_report(report(), EDGE_KEYS[NODE])
    url = f"/concentrators/{NODE}/commissioning"
    for role in (Role.FINANCE, Role.AUDITOR, Role.MERCHANT):
        assert client.post(url, json=signed, headers=bearer(tokens[role])).status_code == 403
    assert client.post(url, json=signed, headers={"Authorization": ""}).status_code == 401
    merchant = bearer(tokens[Role.MERCHANT])
    assert client.get(f"{url}/latest", headers=merchant).status_code == 403


def test_the_registry_is_compared_at_upload(client: TestClient, engine: Engine) -> None:
    """The registry's meters of the node against what the buses answered: one it lists that
    is silent, one that answered and it does not list."""
    with session_factory(engine).begin() as session:
        make_registry(session, register=False)
        listed = sorted(
            (m.bus, m.address) for m in session.scalars(select(Meter).where(Meter.node == NODE))
        )
    assert len(listed) == 3
    (bus_a, first), (_, second), (bus_b, third) = listed
    made = report()
    made["meters"] = [
        _meter(first, "found", bus=bus_a),
        _meter(second, "missing", bus=bus_a, reads_ok=0, register=None, relay="not_read",
               relay_detail=""),
        _meter(third, "found", bus=bus_b, protocol="sdm120", relay="no_relay", relay_detail=""),
        _meter("202699000042", "extra", bus=bus_a, shop=None, account=None),
    ]  # fmt: skip
    answer = client.post(
        f"/concentrators/{NODE}/commissioning", json=sign_report(made, EDGE_KEYS[NODE])
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["registry"] == {
        "registered": 3,
        "missing": [{"bus": bus_a, "address": second}],
        "unknown": [{"bus": bus_a, "address": "202699000042"}],
    }
    text = client.get(
        f"/concentrators/{NODE}/commissioning/latest", params={"format": "pdf", "lang": "en"}
    )
    printed = "".join(p.extract_text() for p in PdfReader(io.BytesIO(text.content)).pages)
    assert "in the registry, not found" in printed and "found, not in the registry" in printed
