"""Cash taken on site and meter swaps in the field app (`cloud.web.field_desk`) through FastAPI's
TestClient on every backend: who may take cash (the money desk's roles, never an installer), each
phone key applied once whatever is resent (one recharge, one pending transfer in the cloud chain,
one swap), a key reused for other content refused, bad input refused with nothing changed, the
receipt shown to print, and a form without script."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.db.models import LedgerEntry, Recharge
from cloud.db.operations import MeterSwap
from cloud.people.auth import Role
from tests.cloud.api.conftest import M2
from tests.web.console_world import STAFF_USERS, add_staff_and_readings
from tests.web.html import csrf_of
from tests.web.test_field_pages import log_in
from tests.web.world import NOW, World

OPERATOR = STAFF_USERS[Role.OPERATOR]
INSTALLER = STAFF_USERS[Role.INSTALLER]


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    add_staff_and_readings(world)
    with TestClient(create_app(world.engine, world.key, lambda: NOW)) as test_client:
        yield test_client


def logged_in(client: TestClient, user: str) -> dict[str, str]:
    assert log_in(client, user) == "/field/"
    return {"X-CSRF-Token": csrf_of(client.get("/field/").text)}


def field_money(world: World) -> tuple[list[tuple[str, int, str]], int]:
    """The field's recharges (account, fen, method) and the cloud chain's entries for them."""
    with Session(world.engine) as session:
        rows = [(r.account, r.fen, r.method) for r in session.scalars(
            select(Recharge).where(Recharge.payment.like("field-%")))]  # fmt: skip
        entries = session.scalar(
            select(func.count()).select_from(LedgerEntry)
            .where(LedgerEntry.transfer_id.in_(select(Recharge.pending_transfer)
                   .where(Recharge.payment.like("field-%"))))
        )  # fmt: skip
    return rows, entries or 0


def field_swaps(world: World) -> list[tuple[str, str, int, str]]:
    with Session(world.engine) as session:
        return [(s.old, s.new_address, s.final_wh, s.status) for s in session.scalars(
            select(MeterSwap).where(MeterSwap.id.like("field-%")))]  # fmt: skip


def test_an_installer_may_not_take_cash(client: TestClient, world: World) -> None:
    header = logged_in(client, INSTALLER)
    home = client.get("/field/").text
    assert 'id="cash-form"' not in home and 'id="swap-form"' in home
    cash = {"key": str(uuid.uuid4()), "account": "A0001", "amount": "50"}
    assert client.post("/field/recharges", json=cash, headers=header).status_code == 403
    assert field_money(world) == ([], 0)
    assert client.get(f"/field/receipts/{world.receipts['A0001']}").status_code == 403


def test_cash_is_booked_once_per_key(client: TestClient, world: World) -> None:
    header = logged_in(client, OPERATOR)
    assert 'id="cash-form"' in client.get("/field/").text
    cash = {"key": str(uuid.uuid4()), "account": "A0001", "amount": "50.5"}
    assert client.post("/field/recharges", json=cash).status_code == 403  # no CSRF token
    for bad in ({"amount": "50.555"}, {"amount": "-5"}, {"amount": "0"}, {"amount": ""},
                {"account": "A 1"}, {"account": "NOPE"}, {"key": "short"}):  # fmt: skip
        refused = client.post("/field/recharges", json=cash | bad, headers=header)
        assert refused.status_code in {404, 422}, (bad, refused.text)
        assert refused.json()["error"]
    assert field_money(world) == ([], 0)
    first = client.post("/field/recharges", json=cash, headers=header)
    assert first.status_code == 200, first.text
    booked = first.json()
    assert (booked["account"], booked["fen"], booked["payment"]) == (
        "A0001", 5_050, f"field-{cash['key']}")  # fmt: skip
    again = client.post("/field/recharges", json=cash, headers=header)  # a lost answer, resent
    assert again.status_code == 200 and again.json()["receipt"] == booked["receipt"]
    assert field_money(world) == ([("A0001", 5_050, "cash")], 1)
    other = client.post("/field/recharges", json=cash | {"amount": "60"}, headers=header)
    assert other.status_code == 409  # the key of another payment
    assert field_money(world) == ([("A0001", 5_050, "cash")], 1)
    receipt = client.get(booked["url"])
    assert receipt.status_code == 200 and booked["receipt"] in receipt.text
    assert "50.50" in receipt.text and 'id="print"' in receipt.text
    assert client.get("/field/receipts/2026-999999").status_code == 404


def test_a_form_without_script_lands_on_the_receipt(client: TestClient, world: World) -> None:
    logged_in(client, OPERATOR)
    page = client.get("/field/").text
    form = {"csrf": csrf_of(page), "key": str(uuid.uuid4()), "account": "A0002", "amount": "20"}
    answer = client.post("/field/recharges", data=form, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/field/receipts/")
    refused = client.post("/field/recharges", data=form | {"key": str(uuid.uuid4()),
                          "amount": "abc"})  # fmt: skip
    assert refused.status_code == 422 and 'id="form-error"' in refused.text
    assert field_money(world) == ([("A0002", 2_000, "cash")], 1)


def test_a_swap_is_requested_once_per_key(client: TestClient, world: World) -> None:
    header = logged_in(client, INSTALLER)
    swap = {"key": str(uuid.uuid4()), "old": M2, "final_kwh": "6.2", "new_address": "000000000777",
            "protocol": "dlt645", "multiplier": "1", "initial_kwh": "0"}  # fmt: skip
    for bad in ({"final_kwh": "5"}, {"final_kwh": "x"}, {"new_address": M2},
                {"protocol": "morse"}, {"old": "000000000999"}, {"key": "!"}):  # fmt: skip
        refused = client.post("/field/swaps", json=swap | bad, headers=header)
        assert refused.status_code in {404, 409, 422}, (bad, refused.text)
    assert field_swaps(world) == []
    first = client.post("/field/swaps", json=swap, headers=header)
    assert first.status_code == 200, first.text
    assert first.json()["status"] in {"requested", "held"}
    again = client.post("/field/swaps", json=swap, headers=header)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert field_swaps(world) == [(M2, "000000000777", 6_200, first.json()["status"])]
    other = client.post("/field/swaps", json=swap | {"new_address": "000000000778"},
                        headers=header)  # fmt: skip
    assert other.status_code == 409
    assert len(field_swaps(world)) == 1
