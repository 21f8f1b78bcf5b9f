"""The application as a whole: OpenAPI, health, alarms, and the mapping of errors to statuses."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine

from cloud.app import create_app
from ledger.chain import NodeKey
from tests.cloud.api.conftest import NODE, Site
from tests.cloud.conftest import Clock

ENDPOINTS = {
    "/auth/login": {"post"},
    "/auth/logout": {"post"},
    "/auth/me": {"get"},
    "/auth/password": {"post"},
    "/claims": {"get", "post"},
    "/claims/{claim}/revoke": {"post"},
    "/claims/nodes": {"post"},
    "/provision": {"post"},
    "/concentrators/{node}/commissioning": {"post"},
    "/concentrators/{node}/commissioning/latest": {"get"},
    "/updates": {"get", "post"},
    "/updates/{rollout_id}": {"get"},
    "/updates/bundles/{sha256}": {"get"},
    "/users": {"get", "post"},
    "/users/{name}": {"get", "patch"},
    "/users/{name}/password": {"post"},
    "/users/{name}/unlock": {"post"},
    "/operator-log": {"get"},
    "/operator-log/verify": {"get"},
    "/concentrators": {"get", "post"},
    "/concentrators/{node}": {"get"},
    "/concentrators/{node}/clear-quarantine": {"post"},
    "/concentrators/{node}/takeover": {"get", "post"},
    "/concentrators/{node}/takeover/recover": {"post"},
    "/concentrators/{node}/takeover/approve": {"post"},
    "/concentrators/{node}/takeover/reject": {"post"},
    "/concentrators/{node}/takeover/reissue": {"post"},
    "/accounts": {"get"},
    "/accounts/{account}": {"get"},
    "/meters": {"get"},
    "/readings": {"get"},
    "/ledger": {"get"},
    "/recharges": {"get", "post"},
    "/recharges/{payment}": {"get"},
    "/corrections": {"get", "post"},
    "/corrections/{correction}": {"get"},
    "/corrections/{correction}/approve": {"post"},
    "/corrections/{correction}/reject": {"post"},
    "/refunds": {"get", "post"},
    "/refunds/{refund}": {"get"},
    "/refunds/{refund}/pay": {"post"},
    "/refunds/{refund}/cancel": {"post"},
    "/meter-swaps": {"get", "post"},
    "/meter-swaps/{swap}": {"get"},
    "/meter-swaps/{swap}/approve": {"post"},
    "/meter-swaps/{swap}/reject": {"post"},
    "/meter-swaps/ir-import": {"post"},
    "/meter-swaps/ir-readings": {"get"},
    "/moves": {"get", "post"},
    "/moves/{move}": {"get"},
    "/receipts": {"get"},
    "/receipts/{number}": {"get"},
    "/receipts/recharges/{payment}": {"post"},
    "/relays": {"post"},
    "/commands": {"get"},
    "/commands/{command_id}": {"get"},
    "/alarms": {"get"},
    "/alarms/counts": {"get"},
    "/alarms/read-success": {"get"},
    "/alarms/{alarm_id}/acknowledge": {"post"},
    "/faults": {"get", "post"},
    "/faults/{fault_id}": {"get"},
    "/faults/{fault_id}/status": {"post"},
    "/faults/{fault_id}/assignee": {"post"},
    "/faults/{fault_id}/photos": {"post"},
    "/faults/{fault_id}/photos/{photo_id}": {"get"},
    "/notices": {"get"},
    "/notices/{notice_id}": {"get"},
    "/notices/power-off": {"post"},
    "/reports/consumption": {"get"},
    "/reports/deposits": {"get"},
    "/reports/subsidies": {"get"},
    "/reports/refunds": {"get"},
    "/reports/meters": {"get"},
    "/report-templates": {"get"},
    "/report-templates/{name}": {"get", "put", "delete"},
    "/statements/{account}": {"get"},
    "/registry/sites": {"get", "post"},
    "/registry/sites/{key}": {"get", "patch", "delete"},
    "/registry/buildings": {"get", "post"},
    "/registry/buildings/{key}": {"get", "patch", "delete"},
    "/registry/floors": {"get", "post"},
    "/registry/floors/{key}": {"get", "patch", "delete"},
    "/registry/shops": {"get", "post"},
    "/registry/shops/{key}": {"get", "patch", "delete"},
    "/registry/merchants": {"get", "post"},
    "/registry/merchants/{key}": {"get", "patch", "delete"},
    "/registry/account-types": {"get", "post"},
    "/registry/account-types/{key}": {"get", "patch", "delete"},
    "/registry/tariffs": {"get", "post"},
    "/registry/tariffs/{key}": {"get", "patch", "delete"},
    "/registry/accounts": {"get", "post"},
    "/registry/accounts/{key}": {"get", "patch", "delete"},
    "/registry/meters": {"get", "post"},
    "/registry/meters/{key}": {"get", "patch", "delete"},
    "/registry/subsidy-policies": {"get", "post"},
    "/registry/subsidy-policies/{key}": {"get", "patch", "delete"},
    "/registry/alarm-rules": {"get", "post"},
    "/registry/alarm-rules/{key}": {"get", "patch", "delete"},
    "/registry/arrears-policies": {"get", "post"},
    "/registry/arrears-policies/{key}": {"get", "patch", "delete"},
    "/registry/push": {"post"},
    "/concentrators/{node}/config": {"get", "post"},
    "/health": {"get"},
    "/payments/orders": {"get", "post"},
    "/payments/orders/{out_trade_no}": {"get"},
    "/payments/orders/{out_trade_no}/close": {"post"},
    "/payments/wechat/notify": {"post"},
    "/payments/alipay/notify": {"post"},
    "/payments/wechat/refund-notify": {"post"},
    "/payments/refunds/{out_refund_no}": {"get"},
    "/payments/reconciliations": {"get"},
    "/payments/reconciliations/{day}": {"get"},
    "/payments/reconciliations/{day}/sign-off": {"post"},
}


def test_openapi_lists_every_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "Voltbook cloud"
    assert {path: set(ops) for path, ops in schema["paths"].items()} == ENDPOINTS
    fen = schema["components"]["schemas"]["RechargeIn"]["properties"]["fen"]
    assert (fen["type"], fen["exclusiveMinimum"]) == ("integer", 0)
    refusals = schema["paths"]["/recharges"]["post"]["responses"]
    assert set(refusals) == {"200", "201", "404", "409", "413", "422", "500", "503"}
    error = refusals["409"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorOut"}


def test_docs_page_is_served(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "swagger" in page.text.lower()
    assert "/openapi.json" in page.text


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "database": True, "broker": None}


def test_health_reports_the_broker_when_told(
    engine: Engine, site: Site, cloud_key: NodeKey, clock: Clock
) -> None:
    connected = [True]
    app = create_app(engine, cloud_key, clock, broker_connected=lambda: connected[0])
    with TestClient(app) as client:
        assert client.get("/health").json()["broker"] is True
        connected[0] = False
        assert client.get("/health").json() == {
            "status": "degraded",
            "database": True,
            "broker": False,
        }


def test_health_is_503_without_a_database(cloud_key: NodeKey) -> None:
    gone = create_engine("sqlite:////nonexistent-dir/voltbook/cloud.db")
    with TestClient(create_app(gone, cloud_key)) as client:
        answer = client.get("/health")
        assert answer.status_code == 503
        assert answer.json()["database"] is False
        listing = client.get("/accounts", headers={"Authorization": "Bearer any"})
        assert listing.status_code == 503  # checking the token needs the database
        assert listing.json()["error"] == "unavailable"


def test_alarms_filters(client: TestClient, site: Site) -> None:
    site.send(NODE, b"not a batch")
    site.send("edge-7777", b"VB\x01garbage")
    every = client.get("/alarms").json()
    assert [(a["node"], a["kind"], a["cleared"]) for a in every["items"]] == [
        (NODE, "refused_batch", False),
        ("edge-7777", "refused_batch", False),
    ]
    assert every["items"][0]["time"] == "2026-11-24T08:00:00Z"
    assert "magic" in every["items"][0]["detail"]
    assert client.get("/alarms", params={"node": NODE}).json()["total"] == 1
    assert client.get("/alarms", params={"cleared": True}).json()["total"] == 0
    assert client.get("/alarms", params={"cleared": "maybe"}).status_code == 422


def test_unknown_paths_and_methods(client: TestClient) -> None:
    assert client.get("/nothing-here").status_code == 404
    assert client.delete("/accounts/A0001").status_code == 405
