"""The console's money desk through FastAPI's TestClient on every backend (SQLite, PostgreSQL):
a shop's page held to the tables it reads, the recharge form (checked before sending, refused
with words and nothing kept, CSRF, the same form twice credits once, the balance once the
concentrator books it), the receipt page and its PDF, a correction held for a second user and
decided by one, a refund requested, reserved by the concentrator and paid out, and each form
refused to a role the API refuses it to."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.db.auth import OperatorLogEntry
from cloud.db.models import Balance, Recharge
from cloud.db.operations import Correction, IrReading, MeterSwap, Move, Receipt, Refund
from cloud.operations.states import CorrectionStatus, MeterSwapStatus, MoveStatus, RefundStatus
from cloud.people.auth import Role
from cloud.web import catalogue, console_desk, console_swaps, desk, i18n, merchant_view
from cloud.web.render import ENV
from ledger.accounts import Pocket, System, system_id
from tests.cloud.api.conftest import M1, M2, NODE
from tests.cloud.api.contract_edge import ContractEdge
from tests.cloud.fake_edge import edge_recharge
from tests.cloud.registry_world import vacant_shops
from tests.web.console_world import STAFF_USERS, add_staff_and_readings
from tests.web.html import csrf_of
from tests.web.test_console_pages import log_in
from tests.web.world import NOW, World

APPROVE_ABOVE_FEN = 1_000  # a correction above ¥10 waits for a second user (cloud.toml's knob)
OPERATOR, FINANCE = STAFF_USERS[Role.OPERATOR], STAFF_USERS[Role.FINANCE]
CASH = system_id(System.CASH_IN_TRANSIT)


@pytest.fixture
def app(world: World) -> object:
    add_staff_and_readings(world)
    return create_app(world.engine, world.key, lambda: NOW, approve_above_fen=APPROVE_ABOVE_FEN)


def _client(app: object, user: str) -> Iterator[TestClient]:
    with TestClient(app) as client:  # type: ignore[arg-type]
        log_in(client, user)
        yield client


@pytest.fixture
def operator(app: object) -> Iterator[TestClient]:
    yield from _client(app, OPERATOR)


@pytest.fixture
def finance(app: object) -> Iterator[TestClient]:
    yield from _client(app, FINANCE)


def zh(key: str, **values: str) -> str:
    words = catalogue.MESSAGES[key][0]
    return words.format(**values) if values else words


def form_of(html: str, form: str) -> dict[str, str]:
    """The hidden fields (csrf, token) of one form on the page."""
    found = re.search(rf'<form[^>]*id="{form}-form".*?</form>', html, re.S)
    assert found, f"no {form} form"
    return dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]+)"', found[0]))


def counts(world: World) -> tuple[int, int, int, int, int]:
    """Recharges, corrections, refunds, receipts and operator-log rows stored."""
    with Session(world.engine) as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(table)) or 0
            for table in (Recharge, Correction, Refund, Receipt, OperatorLogEntry)
        )


def available(world: World, account: str = "A0001") -> int:
    with Session(world.engine) as session:
        return merchant_view.available(session, account, Pocket.PREPAID)


def in_transit(world: World) -> int:
    with Session(world.engine) as session:
        row = session.get(Balance, CASH)
        return 0 if row is None else row.credits_pending


def test_the_shop_page_shows_what_the_tables_hold_and_is_linked_from_monitoring(
    operator: TestClient, world: World
) -> None:
    table = operator.get("/console/monitoring").text
    assert 'href="/console/accounts/A0001"' in table
    page = operator.get("/console/accounts/A0001")
    assert page.status_code == 200
    assert "Li Wei" in page.text and M1 in page.text and M2 in page.text
    balance = re.search(r'id="balance"[^>]*>¥([\d.]+)<', page.text)
    assert balance and balance[1] == f"{available(world) // 100}.{available(world) % 100:02d}"
    assert world.receipts["A0001"] in page.text  # the desk recharge of the world, its receipt
    for form in ("recharge", "correction", "refund"):  # an operator may use all three
        assert f'id="{form}-form"' in page.text
    assert operator.get("/console/accounts/NOPE").status_code == 404


def _recharge(client: TestClient, amount: str, fields: dict[str, str] | None = None) -> object:
    sent = fields or form_of(client.get("/console/accounts/A0001").text, "recharge")
    return client.post("/console/accounts/A0001/recharge", follow_redirects=False,
                       data={**sent, "amount": amount, "method": "cash"})  # fmt: skip


def test_a_recharge_credits_once_however_often_its_form_is_sent(
    finance: TestClient, world: World
) -> None:
    before, transit = counts(world), in_transit(world)
    fields = form_of(finance.get("/console/accounts/A0001").text, "recharge")
    first = _recharge(finance, "88.50", fields)
    again = _recharge(finance, "88.50", fields)  # a double click, or the back button
    assert first.status_code == again.status_code == 303  # type: ignore[attr-defined]
    where = first.headers["location"]  # type: ignore[attr-defined]
    assert where == again.headers["location"]  # type: ignore[attr-defined]
    assert where.startswith("/console/receipts/")
    with Session(world.engine) as session:
        row = session.get(Recharge, fields["token"])
        assert row is not None
        assert (row.fen, row.method, row.operator, row.status) == (8850, "cash", FINANCE,
                                                                   "pending")  # fmt: skip
        logged = session.scalars(
            select(OperatorLogEntry).where(OperatorLogEntry.action == "recharge.create")
            .order_by(OperatorLogEntry.seq.desc())
        ).first()  # fmt: skip
        assert logged is not None and logged.user == FINANCE
        assert logged.after and logged.after["payment"] == fields["token"]
    recharges, _, _, receipts, log = counts(world)
    assert (recharges, receipts, log) == (before[0] + 1, before[3] + 1, before[4] + 1)
    assert in_transit(world) == transit + 8850  # the cloud chain's pending, once
    # The concentrator books it: the balance on the page rises by exactly ¥88.50.
    balance = available(world)
    ack = world.site.upload(NODE, [edge_recharge("A0001", 8850, fields["token"])])
    assert ack.status.value == "ok"
    assert available(world) == balance + 8850
    page = finance.get("/console/accounts/A0001").text
    assert f"¥{(balance + 8850) // 100}.{(balance + 8850) % 100:02d}" in page
    receipt = finance.get(where)
    assert receipt.status_code == 200 and "¥88.50" in receipt.text


@pytest.mark.parametrize(
    ("amount", "key", "values"),
    [
        ("12.345", "desk_amount_bad", {}),
        ("-1", "desk_amount_bad", {}),
        ("abc", "desk_amount_bad", {}),
        ("1e3", "desk_amount_bad", {}),
        ("", "desk_amount_missing", {}),
        ("0.00", "desk_amount_small", {"min": "0.01"}),
        ("100000.01", "desk_amount_large", {"max": "100000.00"}),
        ("999999999", "desk_amount_large", {"max": "100000.00"}),
    ],
)
def test_a_wrong_amount_is_refused_in_words_and_changes_nothing(
    operator: TestClient, world: World, amount: str, key: str, values: dict[str, str]
) -> None:
    before, transit = counts(world), in_transit(world)
    answer = _recharge(operator, amount)
    assert answer.status_code == 422  # type: ignore[attr-defined]
    assert zh(key, **values) in answer.text  # type: ignore[attr-defined]
    assert 'id="recharge-error"' in answer.text  # type: ignore[attr-defined]
    assert counts(world) == before and in_transit(world) == transit


def test_a_forged_form_and_an_unknown_method_change_nothing(
    operator: TestClient, world: World
) -> None:
    before = counts(world)
    fields = form_of(operator.get("/console/accounts/A0001").text, "recharge")
    forged = _recharge(operator, "10", {**fields, "csrf": "forged"})
    assert forged.status_code == 403  # type: ignore[attr-defined]
    wechat = operator.post("/console/accounts/A0001/recharge", data={**fields, "amount": "10",
                           "method": "wechat"})  # fmt: skip
    assert wechat.status_code == 422 and zh("desk_choice_bad") in wechat.text
    bad_token = _recharge(operator, "10", {**fields, "token": "no spaces allowed"})
    assert bad_token.status_code == 422  # type: ignore[attr-defined]
    assert counts(world) == before


def test_the_apis_refusal_is_shown_in_its_words(operator: TestClient, world: World) -> None:
    before = counts(world)
    fields = form_of(operator.get("/console/accounts/A0001").text, "recharge")
    # the world's own desk recharge id again, with another amount: the API answers 409
    answer = _recharge(operator, "1.00", {**fields, "token": "DESK-WEB-1"})
    assert answer.status_code == 409  # type: ignore[attr-defined]
    assert zh("desk_refused_conflict") in answer.text  # type: ignore[attr-defined]
    assert "DESK-WEB-1" in answer.text  # type: ignore[attr-defined]  # the API's own sentence
    assert counts(world) == before


def test_each_role_sees_only_the_forms_it_may_use_and_is_refused_the_others(
    app: object, world: World
) -> None:
    expected = {  # as the API routes' allow(...): recharge, correction, refund
        Role.ADMIN: (True, True, True),
        Role.FINANCE: (True, False, False),
        Role.AUDITOR: (False, False, False),
    }
    for role, shown in expected.items():
        for client in _client(app, STAFF_USERS[role]):
            page = client.get("/console/accounts/A0001")
            assert page.status_code == 200
            forms = tuple(f'id="{f}-form"' in page.text for f in ("recharge", "correction",
                                                                  "refund"))  # fmt: skip
            assert forms == shown, role
            csrf = csrf_of(page.text)
            before = counts(world)
            for form, allowed in zip(("recharge", "correction", "refund"), shown, strict=True):
                if not allowed:
                    refused = client.post(f"/console/accounts/A0001/{form}", data={
                        "csrf": csrf, "token": "desk-x-1", "amount": "10", "method": "cash",
                        "direction": "credit", "original": "x", "reason": "a reason"})  # fmt: skip
                    assert refused.status_code == 403, (role, form)
                    assert zh("desk_not_allowed") in refused.text
            assert counts(world) == before
    for client in _client(app, STAFF_USERS[Role.INSTALLER]):  # no balances for installers
        assert client.get("/console/accounts/A0001").status_code == 403
        assert client.get("/console/desk").status_code == 403


def test_the_receipt_prints_on_a_roll_or_a4_and_as_the_apis_pdf(
    operator: TestClient, world: World
) -> None:
    number = world.receipts["A0001"]
    roll = operator.get(f"/console/receipts/{number}")
    assert roll.status_code == 200
    assert 'class="receipt paper-roll"' in roll.text and "¥200.00" in roll.text
    assert "贰佰元整" in roll.text  # the amount in capitals, as the printed receipt has it
    a4 = operator.get(f"/console/receipts/{number}?paper=a4&lang=en")
    assert 'class="receipt paper-a4"' in a4.text and "Amount" in a4.text
    pdf = operator.get(f"/console/receipts/{number}/pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(__import__("io").BytesIO(pdf.content)).pages)
    assert number in text and "200.00" in text
    assert operator.get("/console/receipts/2026-999999").status_code == 404


def _ask_correction(client: TestClient, world: World, amount: str, reason: str) -> object:
    page = client.get("/console/accounts/A0001").text
    fields = form_of(page, "correction")
    original = re.search(r'<option value="([0-9a-f]{32})">', page)
    assert original, "the June recharge is a credit to correct"
    return client.post("/console/accounts/A0001/correction", follow_redirects=False, data={
        **fields, "original": original[1], "direction": "credit", "amount": amount,
        "reason": reason})  # fmt: skip


def test_a_correction_above_the_line_waits_for_a_second_user(
    operator: TestClient, finance: TestClient, world: World
) -> None:
    asked = _ask_correction(operator, world, "20.00", "收银少录入 20 元")
    assert asked.status_code == 303  # type: ignore[attr-defined]
    assert asked.headers["location"] == "/console/desk?done=correction_held"  # type: ignore[attr-defined]
    with Session(world.engine) as session:
        (row,) = session.scalars(select(Correction)).all()
        ref = row.id
        assert (row.status, row.fen, row.operator, row.command_id) == ("held", 2000, OPERATOR,
                                                                      None)  # fmt: skip
    # The one who asked sees it waiting, with no buttons, and is refused if it tries anyway.
    own = operator.get("/console/desk")
    assert ref in own.text and zh("desk_own_request") in own.text
    assert f"/console/corrections/{ref}/approve" not in own.text
    before = counts(world)
    tried = operator.post(f"/console/corrections/{ref}/approve", data={"csrf": csrf_of(own.text)})
    assert tried.status_code == 403 and zh("desk_not_allowed") in tried.text  # not PAYOUT
    assert counts(world) == before
    # Finance decides it.
    queue = finance.get("/console/desk")
    assert f"/console/corrections/{ref}/approve" in queue.text
    forged = finance.post(f"/console/corrections/{ref}/approve", data={"csrf": "x"})
    assert forged.status_code == 403
    approved = finance.post(f"/console/corrections/{ref}/approve",
                            data={"csrf": csrf_of(queue.text)}, follow_redirects=False)  # fmt: skip
    assert approved.headers["location"] == "/console/desk?done=approved"
    with Session(world.engine) as session:
        row = session.get(Correction, ref)
        assert row is not None
        assert (row.status, row.approved_by) == ("pending", FINANCE) and row.command_id
        actions = session.scalars(select(OperatorLogEntry.action).where(
            OperatorLogEntry.target == "account:A0001",
            OperatorLogEntry.action.like("correction.%"))).all()  # fmt: skip
        assert sorted(actions) == ["correction.approve", "correction.create"]
    assert zh("desk_no_held") in finance.get("/console/desk?done=approved").text


def test_the_asker_cannot_approve_its_own_correction(app: object, world: World) -> None:
    """An administrator may both ask and decide, but never its own: the API's four eyes."""
    for admin in _client(app, STAFF_USERS[Role.ADMIN]):
        asked = _ask_correction(admin, world, "30.00", "补录漏记的现金")
        assert asked.status_code == 303  # type: ignore[attr-defined]
        with Session(world.engine) as session:
            (ref,) = session.scalars(select(Correction.id)).all()
        queue = admin.get("/console/desk").text
        assert zh("desk_own_request") in queue
        answer = admin.post(f"/console/corrections/{ref}/approve", data={"csrf": csrf_of(queue)})
        assert answer.status_code == 403 and zh("desk_refused_forbidden") in answer.text
        assert "a second user decides it" in answer.text  # the API's words
        with Session(world.engine) as session:
            assert session.get(Correction, ref).status == "held"  # type: ignore[union-attr]
    for finance in _client(app, FINANCE):
        queue = finance.get("/console/desk").text
        rejected = finance.post(f"/console/corrections/{ref}/reject",
                                data={"csrf": csrf_of(queue)}, follow_redirects=False)  # fmt: skip
        assert rejected.headers["location"] == "/console/desk?done=rejected"
    with Session(world.engine) as session:
        row = session.get(Correction, ref)
        assert row is not None and (row.status, row.approved_by) == ("rejected", FINANCE)


def test_a_correction_form_is_checked_before_it_is_sent(operator: TestClient, world: World) -> None:
    before = counts(world)
    for amount, reason, key in (("5.555", "a fine reason", "desk_amount_bad"),
                                ("5", "ab", "desk_reason_short")):  # fmt: skip
        answer = _ask_correction(operator, world, amount, reason)
        assert answer.status_code == 422  # type: ignore[attr-defined]
        assert 'id="correction-error"' in answer.text  # type: ignore[attr-defined]
        assert zh(key, min="4") in answer.text  # type: ignore[attr-defined]
    # beyond what the original allows: the API's refusal, in its words
    answer = _ask_correction(operator, world, "600.00", "more than the original")
    assert answer.status_code == 422  # type: ignore[attr-defined]
    assert "more than the original" in answer.text  # type: ignore[attr-defined]
    assert counts(world) == before


def test_a_refund_is_requested_reserved_by_the_concentrator_and_paid_out(
    operator: TestClient, finance: TestClient, world: World
) -> None:
    page = operator.get("/console/accounts/A0001").text
    fields = form_of(page, "refund")
    bad = operator.post("/console/accounts/A0001/refund", data={**fields, "method": "cash",
                        "grace_kwh": "1.5", "grace_hours": "24"})  # fmt: skip
    assert bad.status_code == 422 and zh("desk_whole_bad", min="0", max="1000") in bad.text
    sent = {**fields, "method": "cash", "grace_kwh": "5", "grace_hours": "24"}
    for _ in range(2):  # the same form twice: one refund
        answer = operator.post("/console/accounts/A0001/refund", data=sent,
                               follow_redirects=False)  # fmt: skip
        assert answer.headers["location"] == "/console/accounts/A0001?done=refund_requested"
    with Session(world.engine) as session:
        (row,) = session.scalars(select(Refund)).all()
        stored = (row.id, row.status, row.grace_wh, row.operator)
        assert stored == (fields["token"], "requested", 5000, OPERATOR)
    assert 'id="refund-open"' in operator.get("/console/accounts/A0001").text
    edge = ContractEdge(world.site)
    edge.models[NODE].prepaid["A0001"] = available(world)
    edge.sync(NODE)
    with Session(world.engine) as session:
        reserved = session.get(Refund, fields["token"])
        assert reserved is not None and reserved.status == "reserved" and reserved.fen
        fen = reserved.fen
    queue = finance.get("/console/desk").text
    assert f"/console/refunds/{fields['token']}/pay" in queue
    assert f"/console/refunds/{fields['token']}/pay" not in operator.get("/console/desk").text
    paid = finance.post(f"/console/refunds/{fields['token']}/pay", data={"csrf": csrf_of(queue)},
                        follow_redirects=False)  # fmt: skip
    assert paid.headers["location"] == "/console/desk?done=paid"
    with Session(world.engine) as session:
        row = session.get(Refund, fields["token"])
        assert row is not None and (row.status, row.paid_by) == ("paid", FINANCE) and row.receipt
        receipt = session.get(Receipt, row.receipt)
        assert receipt is not None and receipt.kind == "refund" and receipt.fen == fen


def test_a_tenant_moves_to_a_vacant_shop_and_a_taken_one_is_refused_in_words(
    operator: TestClient, world: World
) -> None:
    with Session(world.engine) as session, session.begin():
        vacant_shops(session, {"S301": NODE})
    fields = form_of(operator.get("/console/accounts/A0001").text, "move")
    before = counts(world)
    taken = operator.post("/console/accounts/A0001/move",
                          data={**fields, "to_node": NODE, "to_shop": "S102"})  # fmt: skip
    assert taken.status_code == 409 and zh("desk_refused_conflict") in taken.text
    assert 'id="move-error"' in taken.text
    bad = operator.post("/console/accounts/A0001/move",
                        data={**fields, "to_node": NODE, "to_shop": "S 1"})  # fmt: skip
    assert bad.status_code == 422 and zh("desk_shop_bad") in bad.text
    elsewhere = operator.post("/console/accounts/A0001/move",
                              data={**fields, "to_node": "edge-9", "to_shop": "S301"})  # fmt: skip
    assert elsewhere.status_code == 422 and zh("desk_choice_bad") in elsewhere.text
    assert counts(world) == before
    moved = operator.post("/console/accounts/A0001/move", follow_redirects=False,
                          data={**fields, "to_node": NODE, "to_shop": "S301"})  # fmt: skip
    assert moved.headers["location"] == "/console/accounts/A0001?done=move_requested"
    with Session(world.engine) as session:
        row = session.get(Move, fields["token"])
        assert row is not None and (row.to_shop, row.status, row.operator) == (
            "S301", "settled", OPERATOR)  # fmt: skip
        logged = session.scalars(select(OperatorLogEntry.action).where(
            OperatorLogEntry.action == "move.request")).all()  # fmt: skip
        assert logged == ["move.request"]
    page = operator.get("/console/accounts/A0001?done=move_requested").text
    assert f'data-move="{fields["token"]}"' in page and zh("desk_done_move_requested") in page


IR_EXPORT = (
    "# voltbook IR export v1\naddress,read_at,energy_kwh\n{meter},2026-11-24T16:55:00+08:00,5.50\n"
)


def _swap(client: TestClient, **fields: str) -> object:
    page = client.get("/console/meter-swaps").text
    sent = {**form_of(page, "swap"), "protocol": "dlt645", "multiplier": "1",
            "initial_kwh": "0", **fields}  # fmt: skip
    return client.post("/console/meter-swaps", data=sent, follow_redirects=False)


def test_a_meter_is_swapped_with_a_typed_register_or_an_ir_import(
    operator: TestClient, world: World
) -> None:
    before = counts(world)
    for fields, key in (
        ({"old": M1, "final_kwh": "121.8", "ir_reading": "1"}, "desk_final_one"),
        ({"old": M1, "final_kwh": "12.3456"}, "desk_kwh_bad"),
        ({"old": M1, "final_kwh": "121.8", "multiplier": "0"}, "desk_whole_bad"),
        ({"old": "M 1", "final_kwh": "121.8"}, "desk_address_bad"),
    ):
        refused = _swap(operator, new_address="000000000009", **fields)
        assert refused.status_code == 422, fields  # type: ignore[attr-defined]
        assert zh(key, min="1", max="10000") in refused.text  # type: ignore[attr-defined]
    below = _swap(operator, old=M1, final_kwh="100", new_address="000000000009")
    assert below.status_code == 422  # type: ignore[attr-defined]  # under the last reading
    assert zh("desk_refused_invalid") in below.text  # type: ignore[attr-defined]
    assert counts(world) == before
    typed = _swap(operator, old=M1, final_kwh="121.8", new_address="000000000009")
    assert typed.headers["location"].endswith("done=swap_requested")  # type: ignore[attr-defined]
    # The handheld's export, imported through the form, then chosen as M2's final register.
    page = operator.get("/console/meter-swaps").text
    csrf = csrf_of(page)
    empty = operator.post("/console/meter-swaps/ir-import", data={"csrf": csrf, "source": "x",
                          "csv": "address,read_at\n1,2\n"})  # fmt: skip
    assert empty.status_code == 422 and "line" in empty.text  # the API's words, with the line
    export = {"csrf": csrf, "source": "HH-7 dead-meters.csv", "csv": IR_EXPORT.format(meter=M2)}
    imported = operator.post("/console/meter-swaps/ir-import", data=export, follow_redirects=False)
    assert imported.headers["location"] == "/console/meter-swaps?meter=&done=ir_imported"
    with Session(world.engine) as session:
        (reading,) = session.scalars(select(IrReading)).all()
        assert (reading.address, reading.energy_wh, reading.operator) == (M2, 5500, OPERATOR)
        assert session.scalars(select(OperatorLogEntry.action).where(
            OperatorLogEntry.action == "ir.import")).all() == ["ir.import"]  # fmt: skip
    chosen = _swap(operator, old=M2, ir_reading=str(reading.id), new_address="000000000008")
    assert chosen.headers["location"].endswith("done=swap_requested")  # type: ignore[attr-defined]
    with Session(world.engine) as session:
        rows = {r.old: r for r in session.scalars(select(MeterSwap))}
        assert (rows[M1].final_wh, rows[M1].status, rows[M1].operator) == (121_800, "requested",
                                                                           OPERATOR)  # fmt: skip
        assert (rows[M2].final_wh, rows[M2].ir_reading) == (5500, reading.id)
        assert rows[M1].receipt  # the swap's receipt, as the API prints it


def test_a_swap_past_the_limit_waits_for_a_second_operator(app: object, world: World) -> None:
    for operator in _client(app, OPERATOR):
        held = _swap(operator, old=M1, final_kwh="5000", new_address="000000000009")
        assert held.headers["location"].endswith("done=swap_requested")  # type: ignore[attr-defined]
        page = operator.get("/console/meter-swaps").text
        assert zh("desk_own_request") in page and "/approve" not in page
    with Session(world.engine) as session:
        (row,) = session.scalars(select(MeterSwap)).all()
        assert row.status == "held"
    for finance in _client(app, FINANCE):  # finance does not decide swaps (OPERATIONS do)
        page = finance.get("/console/meter-swaps").text
        assert 'id="swap-form"' not in page and zh("desk_waits_for_operator") in page
        refused = finance.post(f"/console/meter-swaps/{row.id}/approve",
                               data={"csrf": csrf_of(page)})  # fmt: skip
        assert refused.status_code == 403
    for admin in _client(app, STAFF_USERS[Role.ADMIN]):
        page = admin.get("/console/meter-swaps").text
        done = admin.post(f"/console/meter-swaps/{row.id}/approve", data={"csrf": csrf_of(page)},
                          follow_redirects=False)  # fmt: skip
        assert done.headers["location"] == "/console/meter-swaps?done=approved"
    with Session(world.engine) as session:
        swapped = session.get(MeterSwap, row.id)
        assert swapped is not None and (swapped.status, swapped.approved_by) == (
            "requested", STAFF_USERS[Role.ADMIN])  # fmt: skip


def test_every_desk_page_speaks_english_too(operator: TestClient, world: World) -> None:
    number = world.receipts["A0001"]
    for path, words in (
        ("/console/accounts/A0001", "Available balance"),
        ("/console/desk", "Waiting for a second user"),
        ("/console/meter-swaps", "Meter swaps and IR handheld import"),
        (f"/console/receipts/{number}", "Receipt"),
    ):
        page = operator.get(f"{path}{'&' if '?' in path else '?'}lang=en")
        assert page.status_code == 200 and words in page.text, path
        assert "<script>" not in page.text  # no inline script anywhere


def test_every_coded_value_the_desk_shows_has_its_words() -> None:
    """`term(...)` falls back to the code: every state, kind and outcome must have words."""
    coded = {
        "correction": CorrectionStatus, "refund": RefundStatus, "swap": MeterSwapStatus,
        "move": MoveStatus, "refund_method": desk.REFUND_METHODS, "method": desk.RECHARGE_METHODS,
        "desk_kind": ("recharge", "correction", "refund", "meter_swap", "move"),
        "desk_done": (*console_desk.DONE, *console_swaps.DONE),
    }  # fmt: skip
    missing = {f"{prefix}_{code}" for prefix, codes in coded.items() for code in codes}
    assert missing - set(catalogue.MESSAGES) == set()


def test_the_money_desk_cancels_an_open_refund_and_the_balance_stays(
    operator: TestClient, finance: TestClient, world: World
) -> None:
    fields = form_of(operator.get("/console/accounts/A0001").text, "refund")
    operator.post("/console/accounts/A0001/refund", data={**fields, "method": "card",
                  "grace_kwh": "0", "grace_hours": "0"})  # fmt: skip
    balance = available(world)
    queue = finance.get("/console/desk").text
    assert f"/console/refunds/{fields['token']}/pay" not in queue  # not reserved yet
    cancelled = finance.post(f"/console/refunds/{fields['token']}/cancel",
                             data={"csrf": csrf_of(queue)}, follow_redirects=False)  # fmt: skip
    assert cancelled.headers["location"] == "/console/desk?done=cancelled"
    with Session(world.engine) as session:
        row = session.get(Refund, fields["token"])
        assert row is not None and row.status == "cancelled"
        assert session.scalars(select(OperatorLogEntry.action).where(
            OperatorLogEntry.action == "refund.cancel")).all() == ["refund.cancel"]  # fmt: skip
    assert available(world) == balance
    again = finance.post(f"/console/refunds/{fields['token']}/pay", data={"csrf": csrf_of(queue)})
    assert again.status_code == 409 and zh("desk_refused_conflict") in again.text


@pytest.mark.parametrize(
    ("user", "may_decide", "shows"),
    [
        ("op-1", True, "own"),  # the asker, even one who may decide, cannot decide their own
        ("op-2", False, "waits"),
        ("op-2", True, "forms"),
    ],
)
def test_the_decision_cell_each_desk_shares(user: str, may_decide: bool, shows: str) -> None:
    """`console/_decide.html`: corrections, meter swaps and takeovers render their held requests'
    decision with this one macro."""
    t = i18n.translator("en")
    template = ENV.from_string(
        '{% from "console/_decide.html" import decide with context %}'
        "{{ decide('/console/corrections/c-7', 'op-1', 'waits for finance', 'Yes', 'No') }}"
    )
    html = template.render(t=t, who={"user": user}, may={"decide": may_decide}, csrf="tok")
    forms = re.findall(r'<form method="post" action="([^"]+)"', html)
    if shows == "forms":
        assert forms == ["/console/corrections/c-7/approve", "/console/corrections/c-7/reject"]
        assert html.count('name="csrf" value="tok"') == 2
        assert re.findall(r'data-verb="(\w+)">(\w+)</button>', html) == [
            ("approve", "Yes"),
            ("reject", "No"),
        ]
        assert 'class="primary" data-verb="approve"' in html
    else:
        assert forms == []
        expected = t("desk_own_request") if shows == "own" else "waits for finance"
        assert re.sub(r"\s+", " ", html).strip() == f"<small>{expected}</small>"
