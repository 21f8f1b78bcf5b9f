"""`cloud.operations.records.record` on every backend: an operation's receipt is issued once
(a repeat gets the same one), its number lands on the row that keeps it, and the operator log
has one row per new operation, holding what `after` says once the receipt exists."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from cloud.db.auth import OperatorLogEntry
from cloud.db.operations import Receipt
from cloud.operations import records
from cloud.operations.receipts import Voucher
from cloud.people import oplog
from cloud.people.oplog import Actor

DESK = Actor("op-li", "operator")
VOUCHER = Voucher(kind="correction", ref="c-1", account="A0001", fen=-250, method="",
                  operator="op-li", transfer="ab" * 16, detail={"reason": "typo"})  # fmt: skip


@dataclass
class Row:
    receipt: str | None = None


def test_a_new_operation_gets_its_receipt_then_its_log_row(sessions, clock) -> None:
    row = Row()
    with sessions.begin() as session:
        receipt = records.record(
            session, DESK, "correction.create", "account:A0001", clock(), new=True,
            voucher=VOUCHER, row=row,
            after=lambda issued: {"receipt": issued.number if issued else None},
        )  # fmt: skip
        assert receipt is not None and row.receipt == receipt.number
        assert (receipt.kind, receipt.ref, receipt.fen, receipt.detail) == (
            "correction", "c-1", -250, {"reason": "typo"},
        )  # fmt: skip
        (entry,) = session.scalars(select(OperatorLogEntry)).all()
        assert (entry.user, entry.action, entry.target, entry.before, entry.after) == (
            "op-li", "correction.create", "account:A0001", None, {"receipt": receipt.number},
        )  # fmt: skip
        assert oplog.verify(session).ok


def test_a_repeat_prints_the_same_receipt_and_logs_nothing(sessions, clock) -> None:
    with sessions.begin() as session:
        first = records.record(session, DESK, "a", "t", clock(), new=True, voucher=VOUCHER,
                               after=lambda _: {})  # fmt: skip
        again = records.record(session, DESK, "a", "t", clock(), new=False, voucher=VOUCHER,
                               row=Row(), after=lambda _: {})  # fmt: skip
        assert first is not None and again is not None and again.number == first.number
        assert session.scalar(select(func.count()).select_from(Receipt)) == 1
        assert session.scalar(select(func.count()).select_from(OperatorLogEntry)) == 1


def test_an_operation_without_a_receipt_is_only_logged(sessions, clock) -> None:
    with sessions.begin() as session:
        assert records.record(session, DESK, "move.request", "account:A0001", clock(),
                              new=True, after=lambda _: {"id": "m-1"}) is None  # fmt: skip
        assert session.scalar(select(func.count()).select_from(Receipt)) == 0
        (entry,) = session.scalars(select(OperatorLogEntry)).all()
        assert entry.after == {"id": "m-1"}
