"""`/recharges`, `/relays` and `/commands`: the operator's levers, and what the edges make of
them. Every refused request must leave nothing behind (no command, no transfer)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloud.operations.recharges import edge_recharge_id
from cloud.people.auth import Role
from ledger.accounts import Pocket, pocket_id
from ledger.chain import NodeKey
from ledger.transfers import Code
from ledger.wire import AckStatus
from tests.cloud.api.conftest import (
    CASH,
    EDGE_KEYS,
    M1,
    M3,
    M9,
    NODE,
    OTHER,
    Site,
    bearer,
    invalid_fields,
    opening_transfers,
    transfer,
)

RECHARGE = {"account": "A0001", "fen": 5_000, "method": "cash"}


def nothing_issued(client: TestClient) -> None:
    assert client.get("/commands").json()["total"] == 0
    assert client.get("/recharges").json()["total"] == 0
    assert client.get("/ledger", params={"node": "cloud"}).json()["items"] == []
    assert client.get("/operator-log").json()["total"] == 0


def test_recharge_is_pending_with_its_command(client: TestClient) -> None:
    made = client.post("/recharges", json={**RECHARGE, "payment": "P-0001"})
    assert made.status_code == 201, made.text
    recharge = made.json()
    assert {k: recharge[k] for k in ("payment", "account", "fen", "method", "operator")} == {
        **RECHARGE,
        "payment": "P-0001",
        "operator": "admin-1",  # the logged-in user
    }
    assert (recharge["status"], recharge["posted"]) == ("pending", None)
    assert recharge["created"] == "2026-11-24T08:00:00Z"
    command = client.get(f"/commands/{recharge['command_id']}").json()
    assert (command["node"], command["seq"], command["kind"], command["status"]) == (
        NODE,
        1,
        "recharge",
        "pending",
    )
    assert command["args"] == {"account": "A0001", "fen": 5_000, "payment": "P-0001",
                               "method": "cash"}  # fmt: skip
    assert command["operator"] == "admin-1"
    assert client.get(f"/concentrators/{NODE}").json()["pending_commands"] == 1
    account = client.get("/accounts/A0001").json()
    assert (account["prepaid_fen"], account["recharging_fen"]) == (9_163, 5_000)
    cloud_chain = client.get("/ledger", params={"node": "cloud"}).json()["items"]
    assert [(e["kind"], e["amount"], e["transfer_id"]) for e in cloud_chain] == [
        ("pending", 5_000, recharge["pending_transfer"])
    ]
    assert client.get("/recharges/P-0001").json() == recharge


def test_the_same_payment_again_is_the_same_recharge(client: TestClient) -> None:
    first = client.post("/recharges", json={**RECHARGE, "payment": "P-0002"})
    again = client.post("/recharges", json={**RECHARGE, "payment": "P-0002"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert client.get("/commands").json()["total"] == 1
    assert client.get("/operator-log").json()["total"] == 1  # booked once, logged once


def test_a_recharge_is_logged_with_its_booker(client: TestClient, tokens) -> None:
    finance = bearer(tokens[Role.FINANCE])
    made = client.post("/recharges", json={**RECHARGE, "payment": "P-LOG"}, headers=finance)
    assert made.status_code == 201 and made.json()["operator"] == "finance-1"
    (row,) = client.get("/operator-log", params={"action": "recharge.create"}).json()["items"]
    assert (row["user"], row["role"], row["target"], row["before"]) == (
        "finance-1", "finance", "account:A0001", None,
    )  # fmt: skip
    assert row["after"] == {"payment": "P-LOG", "account": "A0001", "fen": 5_000,
                            "method": "cash", "command_id": made.json()["command_id"],
                            "pending_transfer": made.json()["pending_transfer"]}  # fmt: skip


def test_a_payment_reused_with_another_amount_is_409(client: TestClient) -> None:
    client.post("/recharges", json={**RECHARGE, "payment": "P-0003"})
    clash = client.post("/recharges", json={**RECHARGE, "payment": "P-0003", "fen": 6_000})
    assert clash.status_code == 409
    assert clash.json()["error"] == "conflict"
    assert "P-0003" in clash.json()["detail"]
    assert client.get("/recharges/P-0003").json()["fen"] == 5_000
    assert client.get("/commands").json()["total"] == 1


def test_without_a_payment_id_one_is_made_up(client: TestClient) -> None:
    one = client.post("/recharges", json=RECHARGE).json()
    two = client.post("/recharges", json=RECHARGE).json()
    assert one["payment"] != two["payment"]
    assert client.get("/recharges", params={"account": "A0001"}).json()["total"] == 2


def test_unknown_account_is_404_and_stores_nothing(client: TestClient) -> None:
    answer = client.post("/recharges", json={**RECHARGE, "account": "A9999"})
    assert answer.status_code == 404
    assert "A9999" in answer.json()["detail"]
    nothing_issued(client)


@pytest.mark.parametrize(
    "fen",
    [-1, 0, 1.5, 5000.0, True, False, "5000", None, [5000], {"fen": 1}, 10_000_001, 2**64],
    ids=repr,
)
def test_fen_must_be_a_positive_integer(client: TestClient, fen: Any) -> None:
    answer = client.post("/recharges", json={**RECHARGE, "fen": fen})
    assert answer.status_code == 422, answer.text
    assert invalid_fields(answer) == ["body.fen"]
    nothing_issued(client)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"method": "bitcoin"}, "method"),
        ({"account": "sys:cash"}, "account"),
        ({"account": 1}, "account"),
        ({"operator": "op-li"}, "operator"),  # the operator is the logged-in user
        ({"payment": "has space"}, "payment"),
        ({"payment": 7}, "payment"),
        ({"fenn": 5}, "fenn"),
    ],
)
def test_other_fields_are_checked_too(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    answer = client.post("/recharges", json={**RECHARGE, **change})
    assert answer.status_code == 422
    assert invalid_fields(answer)[0] == f"body.{field}"
    nothing_issued(client)


def test_a_missing_field_or_a_body_that_is_no_object(client: TestClient) -> None:
    missing = client.post("/recharges", json={k: v for k, v in RECHARGE.items() if k != "fen"})
    assert missing.status_code == 422
    assert invalid_fields(missing)[0] == "body.fen"
    for content in (b"[1, 2]", b"{not json", b""):
        answer = client.post(
            "/recharges", content=content, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, content


def test_the_edge_books_it_and_the_recharge_is_posted(client: TestClient, site: Site) -> None:
    recharge = client.post("/recharges", json={**RECHARGE, "payment": "P-0004"}).json()
    command_id = recharge["command_id"]
    site.ingest.mark_delivered([command_id])
    assert client.get(f"/commands/{command_id}").json()["status"] == "delivered"
    booked = transfer(100, CASH, pocket_id("A0001", Pocket.PREPAID), 5_000, Code.RECHARGE,
                      refs={"payment": "P-0004", "command": command_id},
                      transfer_id=edge_recharge_id("P-0004"))  # fmt: skip
    result = {"command": command_id, "status": "applied", "seqs": [site.edges[NODE].chain.seq + 1]}
    assert site.upload(NODE, [booked], results=[result]).status is AckStatus.OK

    posted = client.get("/recharges/P-0004").json()
    assert (posted["status"], posted["posted"]) == ("posted", "2026-11-24T08:00:00Z")
    assert client.get(f"/commands/{command_id}").json()["status"] == "applied"
    assert client.get(f"/concentrators/{NODE}").json()["pending_commands"] == 0
    account = client.get("/accounts/A0001").json()
    assert (account["prepaid_fen"], account["recharging_fen"]) == (9_163 + 5_000, 0)
    cloud_chain = client.get("/ledger", params={"node": "cloud"}).json()["items"]
    assert [e["kind"] for e in cloud_chain] == ["pending", "post"]
    assert client.get("/recharges", params={"status": "posted"}).json()["total"] == 1
    assert client.get("/recharges", params={"status": "pending"}).json()["total"] == 0


def test_a_refused_recharge_is_voided_and_shown(client: TestClient, site: Site, tokens) -> None:
    recharge = client.post("/recharges", json={**RECHARGE, "payment": "P-0005"}).json()
    command_id = recharge["command_id"]
    site.ingest.mark_delivered([command_id])
    why = "recharge A0001 5000 fen: over the account's limit"
    result = {"command": command_id, "status": "refused", "seqs": [], "outcomes": [],
              "reason": why}  # fmt: skip
    assert site.upload(NODE, results=[result]).status is AckStatus.OK

    voided = client.get("/recharges/P-0005").json()
    assert voided == {**recharge, "status": "voided", "voided": "2026-11-24T08:00:00Z",
                      "reason": why}  # fmt: skip
    listed = client.get("/recharges", params={"status": "voided"}).json()
    assert [r["payment"] for r in listed["items"]] == ["P-0005"]
    assert client.get("/recharges", params={"status": "pending"}).json()["total"] == 0
    assert client.get(f"/commands/{command_id}").json()["status"] == "failed"
    account = client.get("/accounts/A0001").json()
    assert (account["prepaid_fen"], account["recharging_fen"]) == (9_163, 0)
    cloud_chain = client.get("/ledger", params={"node": "cloud"}).json()["items"]
    assert [(e["kind"], e["amount"], e["pending_id"]) for e in cloud_chain] == [
        ("pending", 5_000, None), ("void", 5_000, recharge["pending_transfer"]),
    ]  # fmt: skip
    [alarm] = client.get("/alarms", params={"node": NODE}).json()["items"]
    assert alarm["kind"] == "recharge_refused" and why in alarm["detail"]
    merchant = bearer(tokens[Role.MERCHANT])  # the merchant sees it too
    assert client.get("/recharges/P-0005", headers=merchant).json() == voided

    # The result delivered again changes nothing.
    assert site.upload(NODE, results=[result]).status is AckStatus.OK
    assert client.get("/recharges/P-0005").json() == voided
    assert client.get("/ledger", params={"node": "cloud"}).json()["items"] == cloud_chain
    assert client.get("/alarms").json()["total"] == 1


def test_recharge_lookups(client: TestClient) -> None:
    client.post("/recharges", json={**RECHARGE, "payment": "P-A"})
    client.post("/recharges", json={**RECHARGE, "account": "A0101", "payment": "P-B"})
    by_account = client.get("/recharges", params={"account": "A0101"}).json()
    assert [r["payment"] for r in by_account["items"]] == ["P-B"]
    assert client.get("/recharges").json()["total"] == 2
    assert client.get("/recharges/P-none").status_code == 404
    assert client.get("/recharges", params={"status": "lost"}).status_code == 422


def test_no_recharge_for_a_quarantined_node(client: TestClient, site: Site) -> None:
    impostor = NodeKey.from_seed(b"x" * 32)
    site.upload(OTHER, opening_transfers(OTHER), key=impostor)
    answer = client.post("/recharges", json={**RECHARGE, "account": "A0101"})
    assert answer.status_code == 409
    assert answer.json()["error"] == "quarantined"
    nothing_issued(client)
    assert EDGE_KEYS[OTHER].key_id  # the real key is still the registered one
    assert client.get(f"/concentrators/{OTHER}").json()["key_id"] == EDGE_KEYS[OTHER].key_id


def test_relays_one_command_per_concentrator(client: TestClient) -> None:
    answer = client.post("/relays", json={"meters": [M9, M1, M3], "action": "trip"})
    assert answer.status_code == 202, answer.text
    commands = answer.json()["commands"]
    assert [(c["node"], c["kind"], c["args"]) for c in commands] == [
        (NODE, "relay", {"meters": [M1, M3], "action": "trip"}),
        (OTHER, "relay", {"meters": [M9], "action": "trip"}),
    ]
    listed = client.get("/commands", params={"node": NODE, "status": "pending"}).json()
    assert [c["id"] for c in listed["items"]] == [commands[0]["id"]]
    assert client.get("/commands", params={"status": "applied"}).json()["total"] == 0
    close = client.post("/relays", json={"meters": [M1], "action": "close"})
    assert close.json()["commands"][0]["seq"] == 2
    logged = client.get("/operator-log", params={"action": "relay.*"}).json()["items"]
    assert [(r["action"], r["target"], r["after"]["meters"], r["user"]) for r in logged] == [
        ("relay.trip", f"node:{NODE}", [M1, M3], "admin-1"),
        ("relay.trip", f"node:{OTHER}", [M9], "admin-1"),
        ("relay.close", f"node:{NODE}", [M1], "admin-1"),
    ]
    assert all(c["operator"] == "admin-1" for c in client.get("/commands").json()["items"])


def test_an_unknown_meter_refuses_the_whole_request(client: TestClient) -> None:
    answer = client.post("/relays", json={"meters": [M1, "999999999999"], "action": "trip"})
    assert answer.status_code == 404
    assert "999999999999" in answer.json()["detail"]
    assert client.get("/commands").json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"meters": [M1], "action": "open"}, "action"),
        ({"meters": [], "action": "trip"}, "meters"),
        ({"meters": M1, "action": "trip"}, "meters"),
        ({"meters": [1], "action": "trip"}, "meters"),
        ({"meters": [M1], "action": "trip", "operator": "op"}, "operator"),
    ],
)
def test_relay_bodies_are_checked(client: TestClient, body: dict[str, Any], field: str) -> None:
    answer = client.post("/relays", json=body)
    assert answer.status_code == 422
    assert invalid_fields(answer)[0].split(".")[:2] == ["body", field]
    assert client.get("/commands").json()["total"] == 0


def test_command_lookups(client: TestClient) -> None:
    assert client.get("/commands/" + "0" * 32).status_code == 404
    assert client.get("/commands", params={"status": "lost"}).status_code == 422
