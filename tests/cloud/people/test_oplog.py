"""The operator log's hash chain (`cloud.people.oplog`) on every backend: rows written through
`record` verify; editing a row's before/after, deleting a row (first, middle or last) or the
head, with raw SQL, makes `verify` name the first broken row."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, text

from cloud.db.engine import session_factory
from cloud.people import oplog
from tests.cloud.fake_edge import T0

ACTOR = oplog.Actor("op-li", "operator", "10.0.0.7")
ROWS = 5


def write_log(engine: Engine) -> bytes:
    with session_factory(engine).begin() as session:
        for number in range(1, ROWS + 1):
            after = {"fen": number * 100, "名": "张三"}
            when = T0 + dt.timedelta(minutes=number)
            oplog.record(session, ACTOR, "recharge.create", f"account:A000{number}", None,
                         after, when)  # fmt: skip
        oplog.record(session, ACTOR, "user.update", "user:x", {"active": True},
                     {"active": False}, T0 + dt.timedelta(hours=1))  # fmt: skip
    with session_factory(engine)() as session:
        verdict = oplog.verify(session)
    assert verdict.ok and verdict.rows == ROWS + 1, verdict
    return verdict.head


def verdict_after(engine: Engine, *statements: str) -> oplog.Verdict:
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    with session_factory(engine)() as session:
        return oplog.verify(session)


def test_an_untouched_log_verifies_and_reads_back(engine: Engine) -> None:
    head = write_log(engine)
    with session_factory(engine)() as session:
        rows = list(session.scalars(oplog.entries(action="recharge.*", sort="-seq")))
        assert [r.seq for r in rows] == [5, 4, 3, 2, 1]
        assert rows[0].after == {"fen": 500, "名": "张三"}
        assert rows[0].address == "10.0.0.7" and bytes(rows[0].prev_hash) == bytes(rows[1].hash)
        assert len(list(session.scalars(oplog.entries(target="user:x")))) == 1
        assert bytes(session.get(oplog.OperatorLogHead, 1).hash) == head


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("""UPDATE operator_log SET "after" = '{"fen": 1}' WHERE seq = 3""", "row 3 was altered"),
        ("""UPDATE operator_log SET "before" = '{"active": false}' WHERE seq = 6""",
         "row 6 was altered"),
        ("UPDATE operator_log SET \"user\" = 'someone' WHERE seq = 1", "row 1 was altered"),
        ("DELETE FROM operator_log WHERE seq = 1", "row 1 is missing"),
        ("DELETE FROM operator_log WHERE seq = 4", "row 4 is missing"),
        ("DELETE FROM operator_log WHERE seq = 6", "row 6 is missing"),
        ("DELETE FROM operator_log_head", "the head row is missing"),
    ],
)  # fmt: skip
def test_tampering_is_named(engine: Engine, tamper: str, problem: str) -> None:
    write_log(engine)
    verdict = verdict_after(engine, tamper)
    assert not verdict.ok
    assert verdict.problem.startswith(problem), verdict.problem


def test_a_deleted_tail_with_a_rewound_head_still_breaks_against_a_kept_head(
    engine: Engine,
) -> None:
    """Someone who deletes the last row and rewinds the head gets a log that verifies — which
    is why `verify` prints the head: the copy kept elsewhere no longer matches."""
    kept = write_log(engine)
    verdict = verdict_after(
        engine,
        "DELETE FROM operator_log WHERE seq = 6",
        "UPDATE operator_log_head SET seq = 5, hash = "
        "(SELECT hash FROM operator_log WHERE seq = 5)",
    )
    assert verdict.ok and verdict.rows == ROWS
    assert verdict.head != kept
