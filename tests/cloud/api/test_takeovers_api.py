"""`/concentrators/{node}/takeover` refuses what it cannot do with a clear answer and changes
nothing (the takeover itself, end to end, is tests/cloud/operations/test_takeovers.py)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.cloud.api.conftest import NODE, OTHER


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
