"""`cloud.db.retry`: an interrupted transaction is run again whole, and the idempotency key
makes the rerun find a commit whose answer was lost, so nothing is booked twice.

The connection is really cut (`pg_terminate_backend` of the session's own backend, which is
what a dying primary looks like to the client), and the refused connections are real ones to
a port nobody listens on.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from cloud.db import bulk, models
from cloud.db.engine import TCP_KEEPALIVES, make_engine, session_factory
from cloud.db.retry import retryable, retrying, unit_of_work
from cloud.errors import Conflict
from cloud.operations import recharges
from cloud.services.net import free_port
from tests.cloud.chains.test_commands import INVENTORY
from tests.cloud.helpers import count

NODE = "edge-0001"
postgres_only = pytest.mark.parametrize("engine", ["postgres"], indirect=True)


@pytest.fixture
def site(ingest, edge_of):
    edge = edge_of(NODE)
    ingest.handle_status(NODE, edge.status(accounts=INVENTORY))
    return edge


def _cut(session: Session) -> None:
    """The server ends this session's connection, as a primary that dies does."""
    session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))


def _book(session: Session, cloud_key, clock, payment: str = "P-1", fen: int = 500):
    return recharges.recharge(
        session, account="A0001", fen=fen, method="cash", operator="desk", payment=payment,
        key=cloud_key, now=clock(),
    )  # fmt: skip


@postgres_only
def test_a_transaction_cut_before_its_commit_is_run_again_and_commits_once(
    site, sessions, cloud_key, clock
) -> None:
    tries = []

    def work(session: Session) -> str:
        tries.append(1)
        row = _book(session, cloud_key, clock)
        if len(tries) == 1:
            _cut(session)  # the connection dies before COMMIT: nothing of this try stays
        return row.payment

    with sessions() as session:
        assert unit_of_work(session, work) == "P-1"
    assert len(tries) == 2
    assert count(sessions, models.Recharge) == 1
    assert count(sessions, models.Command) == 1


@postgres_only
def test_a_commit_whose_answer_was_lost_is_found_by_the_rerun_not_booked_again(
    site, sessions, cloud_key, clock
) -> None:
    found = []

    def work(session: Session) -> str:
        again = session.get(models.Recharge, "P-1") is not None
        found.append(again)
        row = _book(session, cloud_key, clock)
        if not again:
            session.commit()  # the server commits…
            _cut(session)  # …and dies before the answer reaches us
        return row.payment

    with sessions() as session:
        assert unit_of_work(session, work) == "P-1"
    assert found == [False, True]  # the rerun found the earlier commit by its payment id
    assert count(sessions, models.Recharge) == 1
    assert count(sessions, models.Command) == 1


@postgres_only
def test_a_bulk_statement_cut_under_it_is_retried_like_any_other(engine, sessions) -> None:
    """`cloud.db.bulk` talks to psycopg directly (COPY, binary arrays): its errors must come out
    as SQLAlchemy's, the broken connection dropped, or the retry would never see them."""
    tries = []

    def work(session: Session) -> int:
        tries.append(1)
        if len(tries) == 1:
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with engine.connect() as other:  # the server ends it under us, between statements
                other.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
        return bulk.execute(session, "SELECT 1", {})

    with sessions() as session:
        assert unit_of_work(session, work) == 1
    assert len(tries) == 2


@postgres_only
def test_work_that_is_wrong_is_not_retried(site, sessions, cloud_key, clock) -> None:
    with sessions() as session:
        unit_of_work(session, lambda s: _book(s, cloud_key, clock))
    tries = []

    def other_content(session: Session) -> None:
        tries.append(1)
        _book(session, cloud_key, clock, fen=900)  # the same payment id, another amount

    with sessions() as session, pytest.raises(Conflict):
        unit_of_work(session, other_content)
    assert tries == [1]
    assert count(sessions, models.Recharge) == 1


def test_a_database_that_stays_away_is_given_up_after_the_patience() -> None:
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/voltbook")
    sessions = session_factory(engine)
    began = time.monotonic()
    try:
        with sessions() as session, pytest.raises(OperationalError):
            unit_of_work(session, lambda s: s.execute(text("SELECT 1")), patience=0.5)
    finally:
        engine.dispose()
    assert 0.3 < time.monotonic() - began < 5


def test_only_database_errors_that_a_rerun_can_cure_are_retryable() -> None:
    refused = OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))
    duplicate = IntegrityError("INSERT", {}, Exception("duplicate key"))

    class ReadOnly(Exception):
        sqlstate = "25006"

    assert retryable(refused)
    assert retryable(DBAPIError("INSERT", {}, ReadOnly("read-only transaction")))
    assert not retryable(duplicate)
    assert not retryable(ValueError("not a database error"))
    calls = []

    def always(error: Exception):
        def attempt() -> None:
            calls.append(1)
            raise error

        return attempt

    with pytest.raises(IntegrityError):
        retrying(always(duplicate), sleep=lambda _s: None)
    assert len(calls) == 1


@postgres_only
def test_connections_to_postgresql_send_tcp_keepalives(engine) -> None:
    """A dead machine sends no reset: only keepalives end a connection waiting on it."""
    with engine.connect() as connection:
        parameters = connection.connection.driver_connection.info.get_parameters()
    assert {name: parameters.get(name) for name in TCP_KEEPALIVES} == {
        name: str(value) for name, value in TCP_KEEPALIVES.items()
    }
