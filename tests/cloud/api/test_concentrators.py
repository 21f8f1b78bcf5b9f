"""`/concentrators`: registry, heads, presence, quarantine and its clearing."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.app import create_app
from cloud.people.auth import Role
from ledger.chain import NodeKey, public_key_pem
from ledger.wire import AckStatus
from tests.cloud.api.conftest import (
    EDGE_KEYS,
    NODE,
    OTHER,
    T0,
    Site,
    bearer,
    invalid_fields,
    opening_transfers,
)
from tests.cloud.conftest import Clock


def test_list_is_sorted_and_leaves_out_the_cloud_chain(client: TestClient) -> None:
    body = client.get("/concentrators").json()
    assert [c["node"] for c in body["items"]] == [NODE, OTHER]
    assert (body["total"], body["limit"], body["offset"]) == (2, 100, 0)


def test_one_concentrator_shows_its_head(client: TestClient, site: Site) -> None:
    found = client.get(f"/concentrators/{NODE}").json()
    edge, outbox = site.edges[NODE], site.outbox[NODE]
    assert found == {
        "node": NODE,
        "name": f"Site {NODE}",
        "key_id": EDGE_KEYS[NODE].key_id,
        "public_key": EDGE_KEYS[NODE].public_key.public_bytes_raw().hex(),
        "status": "active",
        "reason": "",
        "online": True,
        "presence": "online",
        "last_seen": "2026-11-24T08:00:00Z",
        "head_seq": 7,
        "head_hash": edge.chain.head.hex(),
        "upto": outbox,
        "commands_applied": 0,
        "pending_commands": 0,
        "created": "2026-11-24T08:00:00Z",
    }
    assert client.get(f"/concentrators/{OTHER}").json()["head_hash"] == "00" * 32


def presences(client: TestClient) -> dict[str, str]:
    return {c["node"]: c["presence"] for c in client.get("/concentrators").json()["items"]}


def test_presence_turns_silent_past_the_limit_and_offline_on_the_last_will(
    client: TestClient, site: Site, clock: Clock
) -> None:
    """`online` is the retained status; `presence` also weighs `last_seen` against the clock
    (`cloud.db.presence`), as the console does."""
    assert presences(client) == {NODE: "online", OTHER: "online"}
    clock.advance(minutes=45)  # exactly the default limit: still on line
    assert presences(client) == {NODE: "online", OTHER: "online"}
    clock.advance(seconds=1)
    assert presences(client) == {NODE: "silent", OTHER: "silent"}
    silent = client.get(f"/concentrators/{NODE}").json()
    assert (silent["online"], silent["presence"]) == (True, "silent")
    site.status(NODE)  # heard from again
    site.status(OTHER, online=False)  # its last will
    assert presences(client) == {NODE: "online", OTHER: "offline"}
    assert client.get(f"/concentrators/{OTHER}").json()["online"] is False


def test_presence_follows_the_configured_silent_limit(
    site: Site, engine: Engine, cloud_key: NodeKey, clock: Clock, tokens: dict[Role, str]
) -> None:
    app = create_app(engine, cloud_key, clock, silent_after=dt.timedelta(minutes=10))
    with TestClient(app, headers=bearer(tokens[Role.ADMIN])) as short:
        clock.advance(minutes=10)
        assert presences(short) == {NODE: "online", OTHER: "online"}
        clock.advance(seconds=1)
        assert presences(short) == {NODE: "silent", OTHER: "silent"}


def test_unknown_concentrator_is_404(client: TestClient) -> None:
    answer = client.get("/concentrators/edge-9999")
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"
    assert "edge-9999" in answer.json()["detail"]
    assert client.get("/concentrators/cloud").status_code == 404


def test_paging_and_status_filter(client: TestClient) -> None:
    second = client.get("/concentrators", params={"limit": 1, "offset": 1}).json()
    assert [c["node"] for c in second["items"]] == [OTHER]
    assert second["total"] == 2
    assert client.get("/concentrators", params={"status": "quarantined"}).json()["total"] == 0
    assert client.get("/concentrators", params={"status": "sleepy"}).status_code == 422
    assert client.get("/concentrators", params={"limit": 0}).status_code == 422
    assert client.get("/concentrators", params={"limit": 1001}).status_code == 422
    assert client.get("/concentrators", params={"offset": -1}).status_code == 422


def test_register_with_hex_and_with_pem(client: TestClient) -> None:
    key = NodeKey.from_seed(b"3" * 32)
    raw = key.public_key.public_bytes_raw().hex()
    made = client.post("/concentrators", json={"node": "edge-0003", "public_key": raw})
    assert made.status_code == 201, made.text
    assert made.json()["key_id"] == key.key_id
    assert made.json()["status"] == "active"
    assert made.json()["head_seq"] == 0
    pem = public_key_pem(key.public_key).decode()
    again = client.post(
        "/concentrators", json={"node": "edge-0003", "public_key": pem, "name": "Hall 3"}
    )
    assert again.status_code == 201
    assert again.json()["name"] == "Hall 3"
    assert client.get("/concentrators").json()["total"] == 3


def test_register_refusals(client: TestClient) -> None:
    other_key = NodeKey.from_seed(b"9" * 32).public_key.public_bytes_raw().hex()
    clash = client.post("/concentrators", json={"node": NODE, "public_key": other_key})
    assert clash.status_code == 409
    assert clash.json()["error"] == "conflict"
    bad_key = client.post("/concentrators", json={"node": "edge-0004", "public_key": "zz" * 32})
    assert bad_key.status_code == 422
    assert "public_key" in bad_key.json()["detail"]
    bad_node = client.post("/concentrators", json={"node": "edge 4!", "public_key": other_key})
    assert bad_node.status_code == 422
    assert invalid_fields(bad_node)[0] == "body.node"
    cloud = client.post("/concentrators", json={"node": "cloud", "public_key": other_key})
    assert cloud.status_code == 422
    assert client.get("/concentrators").json()["total"] == 2


def test_quarantine_shows_and_clears(client: TestClient, site: Site) -> None:
    impostor = NodeKey.from_seed(b"x" * 32)
    ack = site.upload(OTHER, opening_transfers(OTHER), key=impostor)
    assert ack.status is AckStatus.QUARANTINED
    held = client.get(f"/concentrators/{OTHER}").json()
    assert held["status"] == "quarantined"
    assert held["reason"]
    assert [c["node"] for c in client.get("/concentrators?status=quarantined").json()["items"]] == [
        OTHER
    ]
    open_alarms = client.get("/alarms", params={"node": OTHER, "cleared": False}).json()
    assert [a["kind"] for a in open_alarms["items"]] == ["quarantined"]

    cleared = client.post(f"/concentrators/{OTHER}/clear-quarantine", json={"note": "re-keyed"})
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["status"], cleared.json()["reason"]) == ("active", "")
    assert client.get("/alarms", params={"node": OTHER, "cleared": False}).json()["total"] == 0
    alarms = client.get("/alarms", params={"node": OTHER}).json()["items"]
    assert [a["kind"] for a in alarms] == ["quarantined", "quarantine_cleared"]
    assert alarms[1]["detail"] == "cleared by admin-1"  # the logged-in user, not a body field
    (logged,) = client.get("/operator-log", params={"target": f"node:{OTHER}"}).json()["items"]
    assert (logged["user"], logged["action"]) == ("admin-1", "concentrator.clear_quarantine")
    assert logged["before"]["status"] == "quarantined"
    assert logged["after"] == {**logged["before"], "status": "active", "reason": "",
                               "note": "re-keyed"}  # fmt: skip


def test_only_an_admin_clears_a_quarantine(client: TestClient, site: Site, tokens) -> None:
    site.upload(OTHER, opening_transfers(OTHER), key=NodeKey.from_seed(b"x" * 32))
    path = f"/concentrators/{OTHER}/clear-quarantine"
    for role in (Role.OPERATOR, Role.INSTALLER, Role.FINANCE):
        assert client.post(path, headers=bearer(tokens[role])).status_code == 403, role
    assert client.get(f"/concentrators/{OTHER}").json()["status"] == "quarantined"
    assert client.post(path).status_code == 200  # without a body: no note


def test_registering_is_logged_once(client: TestClient, tokens) -> None:
    raw = NodeKey.from_seed(b"5" * 32).public_key.public_bytes_raw().hex()
    body = {"node": "edge-0005", "public_key": raw, "name": "Hall 5"}
    installer = bearer(tokens[Role.INSTALLER])
    assert client.post("/concentrators", json=body, headers=installer).status_code == 201
    assert client.post("/concentrators", json=body, headers=installer).status_code == 201
    (logged,) = client.get("/operator-log", params={"action": "concentrator.*"}).json()["items"]
    assert (logged["user"], logged["role"], logged["target"]) == (
        "installer-1", "installer", "node:edge-0005",
    )  # fmt: skip
    assert logged["before"] is None and logged["after"]["name"] == "Hall 5"


def test_clear_quarantine_refusals(client: TestClient) -> None:
    assert client.post("/concentrators/edge-9/clear-quarantine").status_code == 404
    assert client.post("/concentrators/cloud/clear-quarantine").status_code == 404
    # The operator is the logged-in user: naming one in the body is refused, not ignored.
    named = client.post(f"/concentrators/{NODE}/clear-quarantine", json={"operator": "x"})
    assert named.status_code == 422
    assert invalid_fields(named)[0] == "body.operator"
    assert client.get("/operator-log").json()["total"] == 0  # an active node: nothing changed


def test_times_are_answered_with_their_offset(client: TestClient) -> None:
    seen = client.get(f"/concentrators/{NODE}").json()["last_seen"]
    assert seen.endswith("Z") or seen.endswith("+00:00")
    assert seen.startswith(T0.date().isoformat())
