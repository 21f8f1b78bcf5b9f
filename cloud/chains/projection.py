"""The stored form of chain entries, and the live `balances` projection of every chain.

`balances` holds TigerBeetle's four totals per account over the union of all chains (each
concentrator's and the cloud's own). The entries were already accepted by the book of the node
that wrote them, so the projection opens accounts on first use and checks no floors; it only
adds. For `post` and `void` it needs the amount of the pending transfer they resolve: from the
same batch, else from `ledger_entries`.

Rows are upserted in account order, once per transaction (over every chain it appended to), so
concurrent transactions touching the same (system) accounts lock them in one order and never
deadlock. On PostgreSQL the sums are computed by the server from the entries just inserted
(`_PROJECT`); on SQLite in Python (`balance_deltas`); the tests run both.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.bulk import execute as _execute
from cloud.db.bulk import upsert_rows
from cloud.db.models import Balance, LedgerEntry
from cloud.db.sql import dialect_name
from ledger.accounts import AccountId, Pocket, pocket_id, unit_of
from ledger.transfers import Kind, Transfer


@dataclass(frozen=True, slots=True)
class VerifiedEntry:
    """One entry of a node's chain, its hash recomputed and its checkpoint verified
    (`cloud.ingest.checks.verify_ledger`)."""

    seq: int
    prev_hash: bytes
    hash: bytes
    body: bytes
    transfer: Transfer


log = logging.getLogger(__name__)

TOTALS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
_DP, _DPOST, _CP, _CPOST = range(4)


def hex_id(transfer_id: int) -> str:
    return f"{transfer_id:032x}"


def parse_stamp(stamp: str) -> dt.datetime | None:
    """A transfer's time stamp as an aware datetime (zoneless is UTC); None if not ISO 8601."""
    try:
        when = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def transfer_time(transfer: Transfer, fallback: dt.datetime) -> dt.datetime:
    """The transfer's wall time as an aware datetime (a zoneless stamp is taken as UTC)."""
    when = parse_stamp(transfer.time)
    if when is None:
        log.warning("transfer %s has time %r, not ISO 8601", hex_id(transfer.id), transfer.time)
        return fallback
    return when


def entry_row(  # noqa: PLR0917 (the columns of a ledger entry, in order)
    node: str,
    seq: int,
    prev_hash: bytes,
    digest: bytes,
    body: bytes,
    transfer: Transfer,
    received: dt.datetime,
) -> tuple[Any, ...]:
    """A `ledger_entries` row in `cloud.db.bulk.ENTRY_COLUMNS` order."""
    pending = transfer.pending_id
    return (
        node, seq, hex_id(transfer.id), prev_hash, digest, body, transfer.code.value,
        transfer.kind.value, transfer.debit, transfer.credit, transfer.amount,
        transfer.unit.value, None if pending is None else hex_id(pending),
        transfer_time(transfer, received), dict(transfer.refs),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Appended:
    """Entries just appended to one chain: seqs `first`..`last` of `node`, and their transfers."""

    node: str
    first: int
    last: int
    transfers: Sequence[Transfer]


def project(session: Session, appended: Sequence[Appended]) -> None:
    """Add the appended entries (already inserted in this transaction) to `balances`, in one
    statement over all chains so that account rows are always locked in one order."""
    appended = [a for a in appended if a.transfers]
    if not appended:
        return
    if dialect_name(session) == "postgresql":
        # The sums are computed by the server from the rows just inserted: nothing to send.
        _execute(session, _PROJECT, {
            "nodes": [a.node for a in appended],
            "firsts": [a.first for a in appended],
            "lasts": [a.last for a in appended],
        })  # fmt: skip
        return
    transfers = [t for a in appended for t in a.transfers]
    deltas = balance_deltas(transfers, _pending_amounts(session, transfers))
    rows = [
        {"account": account, "unit": unit_of(AccountId(account)).value}
        | dict(zip(TOTALS, totals, strict=True))
        for account, totals in sorted(deltas.items())
    ]
    upsert_rows(
        session,
        Balance.__table__,
        rows,
        index=("account",),
        update={name: f"balances.{name} + excluded.{name}" for name in TOTALS},
    )


def _pending_amounts(session: Session, transfers: Sequence[Transfer]) -> dict[int, int]:
    amounts = {t.id: t.amount for t in transfers if t.kind is Kind.PENDING}
    wanted = {t.pending_id for t in transfers if t.pending_id is not None} - amounts.keys()
    if wanted:
        rows = session.execute(
            select(LedgerEntry.transfer_id, LedgerEntry.amount).where(
                LedgerEntry.transfer_id.in_([hex_id(i) for i in wanted]),
                LedgerEntry.kind == Kind.PENDING.value,
            )
        )
        amounts.update({int(transfer_id, 16): amount for transfer_id, amount in rows})
    return amounts


def balance_deltas(
    transfers: Iterable[Transfer], pending_amounts: dict[int, int]
) -> dict[str, list[int]]:
    """The change of each account's four totals (pure; `_PROJECT` is the same in SQL)."""
    deltas: dict[str, list[int]] = {}

    def add(account: str, slot: int, amount: int) -> None:
        deltas.setdefault(account, [0, 0, 0, 0])[slot] += amount

    for t in transfers:
        if t.kind is Kind.SINGLE:
            add(t.debit, _DPOST, t.amount)
            add(t.credit, _CPOST, t.amount)
        elif t.kind is Kind.PENDING:
            add(t.debit, _DP, t.amount)
            add(t.credit, _CP, t.amount)
        else:
            assert t.pending_id is not None
            reserved = pending_amounts.get(t.pending_id)
            if reserved is None:
                # Accepted by its node's book, so the pending exists somewhere we do not see
                # (yet): release what this transfer names.
                log.warning("pending %s of %s not found", hex_id(t.pending_id), hex_id(t.id))
                reserved = t.amount
            add(t.debit, _DP, -reserved)
            add(t.credit, _CP, -reserved)
            if t.kind is Kind.POST:
                add(t.debit, _DPOST, t.amount)
                add(t.credit, _CPOST, t.amount)
    return deltas


_PROJECT = """
WITH appended AS (
    SELECT e.kind, e.debit, e.credit, e.amount, e.unit, CASE WHEN e.pending_id IS NULL THEN 0
        ELSE coalesce((SELECT p.amount FROM ledger_entries p WHERE p.transfer_id = e.pending_id
                       AND p.kind = 'pending' LIMIT 1), e.amount) END AS reserved
    FROM ledger_entries e
    JOIN unnest(%(nodes)s::text[], %(firsts)s::bigint[], %(lasts)s::bigint[])
        AS r(node, first, last) ON e.node = r.node AND e.seq BETWEEN r.first AND r.last
), legs AS (
    SELECT debit AS account, unit,
        CASE kind WHEN 'pending' THEN amount WHEN 'single' THEN 0 ELSE -reserved END AS dp,
        CASE WHEN kind IN ('single', 'post') THEN amount ELSE 0 END AS dpost,
        0 AS cp, 0 AS cpost
    FROM appended
    UNION ALL
    SELECT credit, unit, 0, 0,
        CASE kind WHEN 'pending' THEN amount WHEN 'single' THEN 0 ELSE -reserved END,
        CASE WHEN kind IN ('single', 'post') THEN amount ELSE 0 END
    FROM appended
)
INSERT INTO balances (account, unit, debits_pending, debits_posted, credits_pending,
                      credits_posted)
SELECT account, min(unit), sum(dp)::bigint, sum(dpost)::bigint, sum(cp)::bigint,
       sum(cpost)::bigint
FROM legs GROUP BY account ORDER BY account
ON CONFLICT (account) DO UPDATE SET
    debits_pending = balances.debits_pending + excluded.debits_pending,
    debits_posted = balances.debits_posted + excluded.debits_posted,
    credits_pending = balances.credits_pending + excluded.credits_pending,
    credits_posted = balances.credits_posted + excluded.credits_posted
"""


def prepaid_balance(session: Session, account: str) -> int | None:
    """The account's available prepaid fen over all chains, or None if nothing was booked."""
    if not account:
        return None
    row = session.get(Balance, pocket_id(account, Pocket.PREPAID))
    if row is None:
        return None
    return row.credits_posted - row.debits_posted - row.debits_pending
