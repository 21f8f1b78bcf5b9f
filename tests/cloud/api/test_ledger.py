"""`/ledger`: the stored chains, filtered and paged by keyset."""

from __future__ import annotations

import dataclasses

from fastapi.testclient import TestClient

from ledger.chain import make_entry
from ledger.encoding import GENESIS_HASH
from ledger.ids import derive_id
from tests.cloud.api.conftest import NODE, OTHER, Site, opening_transfers


def test_entries_in_storage_order_with_hashes(client: TestClient) -> None:
    body = client.get("/ledger").json()
    assert body["next_after_id"] is None
    entries = body["items"]
    assert [e["seq"] for e in entries] == list(range(1, 8))
    assert {e["node"] for e in entries} == {NODE}
    prev = GENESIS_HASH
    for entry, transfer in zip(entries, opening_transfers(NODE), strict=True):
        expected = make_entry(NODE, entry["seq"], prev, transfer)
        assert entry["hash"] == expected.hash.hex()
        assert entry["prev_hash"] == prev.hex()
        assert entry["transfer_id"] == f"{transfer.id:032x}"
        assert (entry["debit"], entry["credit"], entry["amount"], entry["unit"]) == (
            transfer.debit,
            transfer.credit,
            transfer.amount,
            transfer.unit.value,
        )
        assert entry["code"] == transfer.code.value
        assert entry["refs"] == dict(transfer.refs)
        assert entry["time"] == "2026-11-24T08:00:00Z"
        prev = expected.hash
    assert entries[6]["kind"] == "pending"


def test_filters(client: TestClient) -> None:
    def seqs(**params: object) -> list[int]:
        return [e["seq"] for e in client.get("/ledger", params=params).json()["items"]]

    assert seqs(code="consume") == [4, 5]
    assert seqs(account="A0001:prepaid") == [3, 5, 7]
    assert seqs(account="A0001") == [1, 3, 4, 5, 7]  # every pocket of the merchant
    assert seqs(account="sys:subsidy_issued") == [1, 2]
    assert seqs(account="A0002", code="grace_issue") == [6]
    assert seqs(node=OTHER) == []
    assert client.get("/ledger", params={"code": "gift"}).status_code == 422


def test_keyset_paging_walks_everything_once(client: TestClient, site: Site) -> None:
    more = [
        dataclasses.replace(t, id=derive_id("more", k))
        for k, t in enumerate(opening_transfers(NODE)[:3])
    ]
    site.upload(NODE, more)
    seen, after, pages = [], 0, 0
    while after is not None:
        body = client.get("/ledger", params={"after_id": after, "limit": 3}).json()
        seen += [e["seq"] for e in body["items"]]
        after, pages = body["next_after_id"], pages + 1
    assert seen == list(range(1, 11))
    assert pages == 4
    last = client.get("/ledger", params={"after_id": 0, "limit": 10}).json()
    assert last["next_after_id"] is None  # exactly a page full: no empty page to fetch


def test_bad_paging_parameters(client: TestClient) -> None:
    assert client.get("/ledger", params={"after_id": -1}).status_code == 422
    assert client.get("/ledger", params={"limit": 0}).status_code == 422
    assert client.get("/ledger", params={"limit": 5000}).status_code == 422
