"""Transactions that outlive a failover: run, and when the database went away, run again.

    unit_of_work(session, work)    work(session) in a transaction, committed; retried whole
    retrying(attempt)              any attempt that opens and commits its own transaction

With the hot standby (README "Hot standby") the primary can die under a transaction. The
connection breaks, libpq's multi-host URL (`target_session_attrs=read-write`) finds the new
primary on the next connect, and the interrupted transaction is run again from the start, in a
new session, with the same idempotency key (a payment id, a notice's transaction id, a batch's
sequence numbers). The work must therefore be idempotent by its key, which every money path
here already is (`cloud.operations.recharges.recharge`, `cloud.payments.settle`, the ingest).

The ambiguous commit: the old primary may have committed and died before its answer reached
us. The retry then finds the earlier commit through the key and answers what it would have
answered the first time (the same recharge, a `duplicate` notice, the same ack), so an
operation is never booked twice; and since it was not acknowledged before, it is not lost
either. One more care: a row the retry only reads may have been committed on the old primary's
disk alone (a commit waiting for its standby is visible locally before it is acknowledged), and
a read-only transaction commits without waiting for any standby. So on PostgreSQL
`unit_of_work` gives every transaction an id (`pg_current_xact_id()`), which makes its commit
wait until the standby holds everything up to it, the row it found included.

Retried: a lost or refused connection, a server shutting down, a node that is (no longer) the
primary (SQLSTATE 25006), a serialization failure or deadlock (40001, 40P01), and SQLite's
"database is locked". Anything else (a constraint, a bug) is raised at once. After `patience`
seconds the last error is raised: the caller then refuses (the HTTP API answers 503, the
ingest sends no ack and the concentrator resends).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

T = TypeVar("T")
PATIENCE_S = 60.0  # a Patroni failover takes ttl + loop_wait at worst (README "Hot standby")
FIRST_WAIT_S = 0.05
LONGEST_WAIT_S = 1.0
RETRIED_SQLSTATES = frozenset({"25006", "40001", "40P01", "57P01", "57P02", "57P03"})


def retryable(exc: BaseException) -> bool:
    """Whether `exc` means "run the transaction again" rather than "the work is wrong"."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return True
    return getattr(exc.orig, "sqlstate", None) in RETRIED_SQLSTATES


def retrying(
    attempt: Callable[[], T],
    *,
    patience: float = PATIENCE_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`attempt()`, run again after a retryable database error until `patience` runs out."""
    deadline = clock() + patience
    wait = FIRST_WAIT_S
    tries = 1
    while True:
        try:
            return attempt()
        except DBAPIError as exc:
            if not retryable(exc) or clock() + wait > deadline:
                raise
            reason = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
            log.warning("database error on try %d, trying again in %.2f s: %s", tries, wait, reason)
        sleep(wait)
        wait = min(wait * 2, LONGEST_WAIT_S)
        tries += 1


def unit_of_work(
    session: Session,
    work: Callable[[Session], T],
    *,
    patience: float = PATIENCE_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`work(session)`, then the commit, before this returns; after a retryable error the
    session's connection is dropped and `work` runs whole again in a new transaction on the
    same session (so `work` must be idempotent by its key). Other errors propagate with the
    transaction open: the session's owner rolls it back."""

    def attempt() -> T:
        try:
            if session.get_bind().dialect.name == "postgresql":
                # An id for the transaction: its commit then waits for the synchronous standby
                # even if this attempt only finds the work done (see the module docstring).
                session.execute(text("SELECT pg_current_xact_id()"))
            result = work(session)
            session.commit()
            return result
        except DBAPIError as exc:
            if retryable(exc):
                session.invalidate()  # never hand this connection out again; start afresh
            raise

    return retrying(attempt, patience=patience, sleep=sleep, clock=clock)
