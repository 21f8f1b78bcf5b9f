"""`/concentrators/{node}/takeover` refuses what it cannot do with a clear answer and changes
nothing (the takeover itself, end to end, is tests/cloud/operations/test_takeovers.py)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.people.auth import Role
from ledger.chain import NodeKey
from tests.cloud.api.conftest import NODE, OTHER, Site, bearer
from tests.cloud.api.takeable import make_takeable
from tests.cloud.conftest import Clock


def test_a_takeover_that_cannot_be_done_is_refused_and_changes_nothing(client: TestClient) -> None:
    assert (
        client.post("/concentrators/edge-9999/takeover", json={"new_node": OTHER}).status_code
        == 404
    )
    assert (
        client.post(f"/concentrators/{NODE}/takeover", json={"new_node": "edge-9999"}).status_code
        == 404
    )
    extra = client.post(f"/concentrators/{NODE}/takeover", json={"new_node": OTHER, "x": 1})
    assert extra.status_code == 422
    same = client.post(f"/concentrators/{NODE}/takeover", json={"new_node": NODE})
    assert same.status_code == 422 and "its own" in same.json()["detail"]
    # edge-0001 never ran a configuration from the cloud: its accounts cannot be known as it ran
    unknown = client.post(f"/concentrators/{NODE}/takeover", json={"new_node": OTHER})
    assert unknown.status_code == 422 and "configuration" in unknown.json()["detail"]
    assert client.get(f"/concentrators/{NODE}").json()["status"] == "active"
    assert client.get(f"/concentrators/{NODE}/takeover").status_code == 404
    recover = client.post(f"/concentrators/{NODE}/takeover/recover", json={"lines": ["{}"]})
    assert recover.status_code == 404
    assert client.get("/operator-log", params={"target": f"node:{NODE}"}).json()["total"] == 0


def test_a_takeover_is_asked_for_then_approved_by_an_administrator_who_did_not_ask(  # noqa: PLR0917 (fixtures)
    client: TestClient, site: Site, engine: Engine, cloud_key: NodeKey, clock: Clock,
    tokens: dict[Role, str],
) -> None:  # fmt: skip
    make_takeable(site, engine, cloud_key, clock())
    operator = bearer(tokens[Role.OPERATOR])
    path = f"/concentrators/{NODE}/takeover"
    asked = client.post(path, json={"new_node": OTHER}, headers=operator)
    assert asked.status_code == 201, asked.text
    body = asked.json()
    assert (body["status"], body["state"], body["command_id"], body["operator"]) == (
        "requested", "requested", None, "operator-1"
    )  # fmt: skip
    assert {o["pocket"] for o in body["plan"]["openings"]} >= {"A0001:prepaid"}
    again = client.post(path, json={"new_node": OTHER}, headers=operator)
    assert again.status_code == 200 and again.json()["created"] == body["created"]
    assert client.get(f"/concentrators/{NODE}").json()["status"] == "active"  # nothing yet
    assert client.post(f"{path}/approve", headers=operator).status_code == 403  # admins only
    assert client.post(f"{path}/reissue").status_code == 409  # nothing was issued
    approved = client.post(f"{path}/approve")  # admin-1, not the one who asked
    assert approved.status_code == 200, approved.text
    done = approved.json()
    assert (done["status"], done["state"], done["approved_by"]) == ("issued", "approved", "admin-1")
    assert done["commands"] == [done["command_id"]] and done["command_id"]
    assert client.get(f"/concentrators/{NODE}").json()["status"] == "retired"
    assert client.post(f"{path}/reject").status_code == 409  # decided already
    assert client.get(path).json()["state"] == "approved"
    query = {"target": f"node:{NODE}", "sort": "seq"}
    log = client.get("/operator-log", params=query).json()["items"]
    assert [(r["action"], r["user"]) for r in log] == [
        ("concentrator.takeover.request", "operator-1"), ("concentrator.takeover", "admin-1")
    ]  # fmt: skip
