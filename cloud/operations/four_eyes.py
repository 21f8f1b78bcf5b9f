"""Four eyes: an operation stored `held` (nothing booked, no command) until a second user — never
the one who asked — approves it (then it is issued as if it had not been held) or rejects it.
Corrections above the approval amount and meter swaps past the plausibility limit are held.

    HELD = FourEyes(Correction, CORRECTION, CorrectionEvent.APPROVED, CorrectionEvent.REJECTED,
                    CorrectionStatus.REJECTED, noun="correction", second="decides it",
                    approved="approved", issue=_book)

gives the operation's `get` (404 "no correction 'c-1'"), `approve` and `reject`; the two
decisions lock the row's concentrator, refuse the user who asked (403 "… a second user decides
it") and a row that is not held (409 "… only a held one is approved"); the same decision again
changes nothing (`(row, False)`). The operation's own state machine (`cloud.operations.states`)
moves the row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.orm import Session

from cloud.chains.locks import lock_active
from cloud.errors import Conflict, Forbidden, NotFound
from cloud.operations.states import Machine
from ledger.chain import NodeKey


class Held(Protocol):
    """A row that may be held for a second user."""

    node: str
    status: str
    operator: str
    command_id: str | None
    approved_by: str | None
    resolved: dt.datetime | None


RowT = TypeVar("RowT", bound=Held)
RowC_contra = TypeVar("RowC_contra", bound=Held, contravariant=True)
E = TypeVar("E", bound=StrEnum)


class Issue(Protocol[RowC_contra]):
    """What an approval does: book the row, send its command (as if it had not been held)."""

    def __call__(
        self, session: Session, row: RowC_contra, *, key: NodeKey, now: dt.datetime
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class FourEyes(Generic[RowT, E]):
    """One held operation: its table, its machine and events, and the words its errors use."""

    model: type[RowT]
    machine: Machine[Any, E]
    approved_event: E
    rejected_event: E
    rejected: StrEnum  # the state a rejection leads to
    noun: str  # "correction": "no correction 'c-1'"
    second: str  # "decides it": "… was asked by op-1: a second user decides it"
    approved: str  # "approved": "… only a held one is approved"
    issue: Issue[RowT]

    def get(self, session: Session, ref: str) -> RowT:
        row = session.get(self.model, ref)
        if row is None:
            raise NotFound(f"no {self.noun} {ref!r}")
        return row

    def _second(self, session: Session, ref: str, user: str) -> RowT:
        row = self.get(session, ref)
        lock_active(session, row.node)
        session.refresh(row)
        if user == row.operator:
            raise Forbidden(f"{self.noun} {ref} was asked by {user}: a second user {self.second}")
        return row

    def approve(
        self, session: Session, ref: str, *, approver: str, key: NodeKey, now: dt.datetime
    ) -> tuple[RowT, bool]:
        """`approver` approves the held row: it is issued; `(row, changed)`."""
        row = self._second(session, ref, approver)
        if row.command_id is not None and row.approved_by == approver:  # approved already
            return row, False
        if not self.machine.allows(row.status, self.approved_event):
            raise Conflict(f"{self.noun} {ref} is {row.status}: only a held one is "
                           f"{self.approved}")  # fmt: skip
        row.approved_by = approver
        self.issue(session, row, key=key, now=now)
        self.machine.fire(row, self.approved_event)
        return row, True

    def reject(
        self, session: Session, ref: str, *, approver: str, now: dt.datetime
    ) -> tuple[RowT, bool]:
        """`approver` turns the held row down: nothing is issued; `(row, changed)`."""
        row = self._second(session, ref, approver)
        if row.status == self.rejected.value:
            return row, False
        if not self.machine.allows(row.status, self.rejected_event):
            raise Conflict(f"{self.noun} {ref} is {row.status}: only a held one is rejected")
        self.machine.fire(row, self.rejected_event)
        row.approved_by, row.resolved = approver, now
        return row, True
