"""`/accounts`: the inventory the concentrators report, with balances from the projection."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.cloud.api.conftest import M1, M2, M3, M9, NODE, OTHER, invalid_fields


def test_one_account_with_live_balances(client: TestClient) -> None:
    assert client.get("/accounts/A0001").json() == {
        "account": "A0001",
        "node": NODE,
        "shop": "S101",
        "building": "B1",
        "floor": "1F",
        "subsidy_wh": 50_000 - 1_200,
        "prepaid_fen": 10_000 - 837,
        "grace_wh": 0,
        "debt_fen": 0,
        "water_subsidy_l": 0,
        "pending": {"subsidy_wh": 0, "prepaid_fen": -1_000, "grace_wh": 0},
        "recharging_fen": 0,
        "meters": [M1, M2],
    }
    other = client.get("/accounts/A0002").json()
    assert (other["subsidy_wh"], other["prepaid_fen"], other["grace_wh"]) == (50_000, 0, 2_000)
    assert other["meters"] == [M3]


def test_an_account_with_no_entries_has_zero_balances(client: TestClient) -> None:
    found = client.get("/accounts/A0101").json()
    assert (found["node"], found["subsidy_wh"], found["prepaid_fen"]) == (OTHER, 0, 0)
    assert found["meters"] == [M9]


def test_unknown_account_is_404(client: TestClient) -> None:
    answer = client.get("/accounts/A9999")
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "detail": "no account 'A9999'"}


def test_list_sorted_with_filters_and_paging(client: TestClient) -> None:
    every = client.get("/accounts").json()
    assert [a["account"] for a in every["items"]] == ["A0001", "A0002", "A0101"]
    assert every["total"] == 3
    assert every["items"][0]["prepaid_fen"] == 9_163  # the list carries balances too
    by_node = client.get("/accounts", params={"node": NODE}).json()
    assert [a["account"] for a in by_node["items"]] == ["A0001", "A0002"]
    by_shop = client.get("/accounts", params={"shop": "S201"}).json()
    assert [a["account"] for a in by_shop["items"]] == ["A0101"]
    both = client.get("/accounts", params={"node": NODE, "shop": "S201"}).json()
    assert both == {"items": [], "total": 0, "limit": 100, "offset": 0}
    pages = [
        client.get("/accounts", params={"limit": 2, "offset": offset}).json()
        for offset in (0, 2, 4)
    ]
    assert [[a["account"] for a in p["items"]] for p in pages] == [
        ["A0001", "A0002"],
        ["A0101"],
        [],
    ]
    assert {p["total"] for p in pages} == {3}


def test_paging_parameters_are_checked(client: TestClient) -> None:
    for params in ({"limit": "ten"}, {"limit": 0}, {"offset": -5}, {"limit": 1.5}):
        answer = client.get("/accounts", params=params)
        assert answer.status_code == 422, params
        assert invalid_fields(answer)[0].split(".")[0] == "query"


def test_a_page_counts_accounts_not_meters(client: TestClient) -> None:
    # A0001 has two meters: the page of one account still holds both, and the next page
    # starts at the next account.
    first = client.get("/accounts", params={"limit": 1}).json()
    assert [(a["account"], a["meters"]) for a in first["items"]] == [("A0001", [M1, M2])]
    second = client.get("/accounts", params={"limit": 1, "offset": 1}).json()
    assert [(a["account"], a["meters"]) for a in second["items"]] == [("A0002", [M3])]
    assert first["total"] == second["total"] == 3
