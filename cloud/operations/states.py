"""The life of every money operation, as one transition table each (model: h11 `_state.py`).

An operation's row stores its state as a plain string (`status`, the enum's value, so the
columns and the API keep their words); what may change it is an event, and the table says, for
each state, which events it handles and the state each leads to. `Machine.fire` is the only way
a stored status changes: an event the table does not list for the row's state raises
`IllegalTransition` (a bug or a race, never silently a wrong state). A state with no events is
terminal. Whether an event *happened* (an entry matched, the edge refused a command) the
operation decides; the table only decides where that leads.

    recharge    pending ─booked→ posted
                pending ─refused→ voided
    correction  held ─approved→ pending ─booked→ posted      (held: above the approval amount)
                held ─rejected→ rejected
                pending ─refused→ failed
    refund      requested ─reserved→ reserved ─pay→ paid
                requested, reserved ─cancel→ cancelled
                requested, cancelled ─refused→ failed       (the refund command, never reserved)
    meter swap  held ─approved→ requested ─applied→ applied  (held: past the plausibility limit)
                held ─rejected→ rejected
                requested ─refused→ failed
    move        requested ─out_booked→ in_transit ─in_booked→ arrived ─settle_booked→ settled
                requested ─out_empty→ settled                (move_out applied, nothing to carry)
                requested ─out_refused→ failed
                in_transit ─in_refused→ voided
                (a move on one concentrator starts settled)
    takeover    requested ─approved→ issued ─applied→ applied
                requested ─rejected→ rejected ─requested→ requested
                issued ─refused→ refused ─reissued→ issued  (issued ─reissued→ once it expired)
                refused ─applied→ applied                   (an earlier command, applied late)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from cloud.db.models import RechargeStatus  # with its table: the column default uses it
from cloud.errors import IllegalTransition

S = TypeVar("S", bound=StrEnum)
E = TypeVar("E", bound=StrEnum)


class Stateful(Protocol):
    """A row with a stored status (the state's value)."""

    status: str


@dataclass(frozen=True, slots=True)
class Machine(Generic[S, E]):
    """One operation's states, where it may start, and its transitions."""

    name: str  # the operation, as errors name it
    states: type[S]
    events: type[E]
    initial: frozenset[S]
    transitions: Mapping[S, Mapping[E, S]]  # every state; a terminal one maps to {}

    def __post_init__(self) -> None:
        if set(self.transitions) != set(self.states):
            raise ValueError(f"{self.name}: the table must list every state once")
        if not self.initial <= set(self.states):
            raise ValueError(f"{self.name}: initial states must be states")
        for state, moves in self.transitions.items():
            for event, target in moves.items():
                if not isinstance(event, self.events) or not isinstance(target, self.states):
                    raise ValueError(f"{self.name}: {state} --{event}--> {target} is not typed")

    def state(self, value: str) -> S:
        """The state a stored status names; IllegalTransition for a word it does not know."""
        try:
            return self.states(value)
        except ValueError:
            raise IllegalTransition(self.name, value, None) from None

    @property
    def terminal(self) -> frozenset[S]:
        return frozenset(s for s, moves in self.transitions.items() if not moves)

    def allows(self, state: str, event: E) -> bool:
        return self._event(event) in self.transitions[self.state(state)]

    def next(self, state: str, event: E) -> S:
        """The state `event` leads to from `state`; IllegalTransition if it leads nowhere."""
        current = self.state(state)
        target = self.transitions[current].get(self._event(event))
        if target is None:
            raise IllegalTransition(self.name, current.value, event.value)
        return target

    def _event(self, event: E) -> E:
        # StrEnums of one word compare equal ("reserved" is a state and an event): only this
        # machine's events may look the table up
        if not isinstance(event, self.events):
            raise TypeError(f"{self.name}: {event!r} is not a {self.events.__name__}")
        return event

    def start(self, state: S) -> str:
        """The status a new row is stored with; IllegalTransition if it cannot start there."""
        if not isinstance(state, self.states) or state not in self.initial:
            raise IllegalTransition(self.name, str(state), "start")
        return state.value

    def fire(self, row: Stateful, event: E) -> S:
        """Move `row` along `event`: its status becomes the next state's value."""
        target = self.next(row.status, event)
        row.status = target.value
        return target


# -- recharge ---------------------------------------------------------------------------------
class RechargeEvent(StrEnum):
    BOOKED = "booked"  # the edge's recharge entry arrived: post the pending
    REFUSED = "refused"  # the edge refused (or expired) the command: void it


RECHARGE = Machine(
    "recharge", RechargeStatus, RechargeEvent, frozenset({RechargeStatus.PENDING}),
    {
        RechargeStatus.PENDING: {RechargeEvent.BOOKED: RechargeStatus.POSTED,
                                 RechargeEvent.REFUSED: RechargeStatus.VOIDED},
        RechargeStatus.POSTED: {},
        RechargeStatus.VOIDED: {},  # a later entry only raises an alarm
    },
)  # fmt: skip


# -- correction -------------------------------------------------------------------------------
class CorrectionStatus(StrEnum):
    HELD = "held"  # waits for a second user's approval: nothing booked, no command
    PENDING = "pending"
    POSTED = "posted"
    FAILED = "failed"
    REJECTED = "rejected"


class CorrectionEvent(StrEnum):
    APPROVED = "approved"  # a second user (finance, admin) approved it: book and command
    REJECTED = "rejected"  # a second user turned it down: nothing was booked
    BOOKED = "booked"  # the edge's correction entry arrived: post the pending
    REFUSED = "refused"  # the edge refused the command: void the pending


CORRECTION = Machine(
    "correction", CorrectionStatus, CorrectionEvent,
    frozenset({CorrectionStatus.HELD, CorrectionStatus.PENDING}),
    {
        CorrectionStatus.HELD: {CorrectionEvent.APPROVED: CorrectionStatus.PENDING,
                                CorrectionEvent.REJECTED: CorrectionStatus.REJECTED},
        CorrectionStatus.PENDING: {CorrectionEvent.BOOKED: CorrectionStatus.POSTED,
                                   CorrectionEvent.REFUSED: CorrectionStatus.FAILED},
        CorrectionStatus.POSTED: {},
        CorrectionStatus.FAILED: {},
        CorrectionStatus.REJECTED: {},
    },
)  # fmt: skip


# -- refund -----------------------------------------------------------------------------------
class RefundStatus(StrEnum):
    REQUESTED = "requested"
    RESERVED = "reserved"
    PAID = "paid"
    CANCELLED = "cancelled"
    FAILED = "failed"


class RefundEvent(StrEnum):
    RESERVED = "reserved"  # the edge's pending reservation arrived: the amount is known
    PAY = "pay"  # finance paid it out
    CANCEL = "cancel"  # an operator gave it up: the edge voids its pending
    REFUSED = "refused"  # the edge refused the refund command (nothing was reserved)


REFUND = Machine(
    "refund", RefundStatus, RefundEvent, frozenset({RefundStatus.REQUESTED}),
    {
        RefundStatus.REQUESTED: {RefundEvent.RESERVED: RefundStatus.RESERVED,
                                 RefundEvent.CANCEL: RefundStatus.CANCELLED,
                                 RefundEvent.REFUSED: RefundStatus.FAILED},
        RefundStatus.RESERVED: {RefundEvent.PAY: RefundStatus.PAID,
                                RefundEvent.CANCEL: RefundStatus.CANCELLED},
        # cancelled before the reservation arrived, and then the edge refused the refund
        RefundStatus.CANCELLED: {RefundEvent.REFUSED: RefundStatus.FAILED},
        RefundStatus.PAID: {},
        RefundStatus.FAILED: {},
    },
)  # fmt: skip


# -- meter swap -------------------------------------------------------------------------------
class MeterSwapStatus(StrEnum):
    HELD = "held"  # past the plausibility limit: waits for a second user, no command
    REQUESTED = "requested"
    APPLIED = "applied"
    FAILED = "failed"
    REJECTED = "rejected"


class MeterSwapEvent(StrEnum):
    APPROVED = "approved"  # a second user overrode the limit: the command goes
    REJECTED = "rejected"  # a second user turned it down
    APPLIED = "applied"  # the concentrator applied the swap
    REFUSED = "refused"  # it refused it, or the command expired


METER_SWAP = Machine(
    "meter swap", MeterSwapStatus, MeterSwapEvent,
    frozenset({MeterSwapStatus.HELD, MeterSwapStatus.REQUESTED}),
    {
        MeterSwapStatus.HELD: {MeterSwapEvent.APPROVED: MeterSwapStatus.REQUESTED,
                               MeterSwapEvent.REJECTED: MeterSwapStatus.REJECTED},
        MeterSwapStatus.REQUESTED: {MeterSwapEvent.APPLIED: MeterSwapStatus.APPLIED,
                                    MeterSwapEvent.REFUSED: MeterSwapStatus.FAILED},
        MeterSwapStatus.APPLIED: {},
        MeterSwapStatus.FAILED: {},
        MeterSwapStatus.REJECTED: {},
    },
)  # fmt: skip


# -- move -------------------------------------------------------------------------------------
class MoveStatus(StrEnum):
    REQUESTED = "requested"
    IN_TRANSIT = "in_transit"
    ARRIVED = "arrived"
    SETTLED = "settled"
    FAILED = "failed"
    VOIDED = "voided"


class MoveEvent(StrEnum):
    OUT_BOOKED = "out_booked"  # the source's pending arrived: the move_in is due
    OUT_EMPTY = "out_empty"  # the source applied the move_out with nothing to carry: a move_in
    # of 0 fen is due all the same (it brings the subsidy periods, ends the destination's hold)
    OUT_REFUSED = "out_refused"  # the source refused the move_out: nothing moved
    IN_BOOKED = "in_booked"  # the destination's entry arrived: the settle post is due
    IN_EMPTY = "in_empty"  # the destination applied a move_in of 0 fen: nothing to settle
    IN_REFUSED = "in_refused"  # the destination refused the move_in: the settle void is due
    SETTLE_BOOKED = "settle_booked"  # the source posted its pending


MOVE = Machine(
    "move", MoveStatus, MoveEvent,
    # across concentrators it starts requested; on one it is recorded, settled
    frozenset({MoveStatus.REQUESTED, MoveStatus.SETTLED}),
    {
        MoveStatus.REQUESTED: {MoveEvent.OUT_BOOKED: MoveStatus.IN_TRANSIT,
                               MoveEvent.OUT_EMPTY: MoveStatus.IN_TRANSIT,
                               MoveEvent.OUT_REFUSED: MoveStatus.FAILED},
        MoveStatus.IN_TRANSIT: {MoveEvent.IN_BOOKED: MoveStatus.ARRIVED,
                                MoveEvent.IN_EMPTY: MoveStatus.SETTLED,
                                MoveEvent.IN_REFUSED: MoveStatus.VOIDED},
        MoveStatus.ARRIVED: {MoveEvent.SETTLE_BOOKED: MoveStatus.SETTLED},
        MoveStatus.SETTLED: {},
        MoveStatus.FAILED: {},
        MoveStatus.VOIDED: {},  # the source's settle void is due, the move's state is final
    },
)  # fmt: skip


# -- takeover ---------------------------------------------------------------------------------
class TakeoverStatus(StrEnum):
    REQUESTED = "requested"  # asked for: waits for a second user, nothing booked, no command
    REJECTED = "rejected"  # turned down; asking again opens it again
    ISSUED = "issued"  # approved: booked in the cloud, its command sent to the new box
    APPLIED = "applied"  # the new box applied it
    REFUSED = "refused"  # the new box refused its command: it may be issued again


class TakeoverEvent(StrEnum):
    APPROVED = "approved"  # a second user approved it: booked, the command goes
    REJECTED = "rejected"  # a second user turned it down
    REQUESTED = "requested"  # asked for again after a rejection
    APPLIED = "applied"  # the new box applied one of its commands
    REFUSED = "refused"  # the new box refused its command
    REISSUED = "reissued"  # a new command with the same plan (the last refused or expired)


TAKEOVER = Machine(
    "takeover", TakeoverStatus, TakeoverEvent, frozenset({TakeoverStatus.REQUESTED}),
    {
        TakeoverStatus.REQUESTED: {TakeoverEvent.APPROVED: TakeoverStatus.ISSUED,
                                   TakeoverEvent.REJECTED: TakeoverStatus.REJECTED},
        TakeoverStatus.REJECTED: {TakeoverEvent.REQUESTED: TakeoverStatus.REQUESTED},
        TakeoverStatus.ISSUED: {TakeoverEvent.APPLIED: TakeoverStatus.APPLIED,
                                TakeoverEvent.REFUSED: TakeoverStatus.REFUSED,
                                TakeoverEvent.REISSUED: TakeoverStatus.ISSUED},
        TakeoverStatus.REFUSED: {TakeoverEvent.REISSUED: TakeoverStatus.ISSUED,
                                 TakeoverEvent.APPLIED: TakeoverStatus.APPLIED},
        TakeoverStatus.APPLIED: {},
    },
)  # fmt: skip

MACHINES: tuple[Machine, ...] = (RECHARGE, CORRECTION, REFUND, METER_SWAP, MOVE, TAKEOVER)  # type: ignore[type-arg]
