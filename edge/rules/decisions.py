"""What rules return: transfers to post, relay actions, alarms, and the rule's new state.

Every rule is `rule(now, …inputs, state, policy) -> Decided[State]`. The shell posts
`decisions.transfers` to the book (each linked chain as one batch), persists `state` in the same
transaction (group commit: docs/architecture.md §6.3), and only then acts on `decisions.relays`
(no relay acts on state that is not yet durable) and raises `decisions.alarms`.

Several rules can hold one relay open for different causes (an account in arrears whose meter
also tripped on a malicious load). `settle_relay` turns the rules' actions into commands: trip
when the first cause appears, close only when the last one is released, so an auto-reclose
after a malicious-load trip never powers a shop that is still in arrears.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from ledger.transfers import Transfer

S = TypeVar("S")


class RelayCommand(StrEnum):
    TRIP = "trip"  # open the relay: power off
    CLOSE = "close"  # close the relay: power on


class RelayCause(StrEnum):
    ARREARS = "arrears"
    MALICIOUS_LOAD = "malicious_load"
    OVERLOAD = "overload"
    OVER_VOLTAGE = "over_voltage"
    OPERATOR = "operator"  # a remote trip by an operator: only an operator's close releases it
    VACANT = "vacant"  # the tenant moved out: open until a new tenant's account bills the meter


@dataclass(frozen=True, slots=True)
class RelayAction:
    """Trip or close the relay of the meter at `meter` for `cause` (a close releases it)."""

    meter: str
    command: RelayCommand
    cause: RelayCause
    reason: str = ""


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlarmKind(StrEnum):
    REGISTER_BACKWARDS = "register_backwards"
    REGISTER_JUMP = "register_jump"
    UNPAID_ENERGY = "unpaid_energy"  # consumption the pockets could not pay (see consumption)
    SUBSIDY_MISSED = "subsidy_missed"  # periods that passed entirely while the box was off
    ARREARS_TRIP = "arrears_trip"
    ARREARS_CLOSE = "arrears_close"
    MALICIOUS_LOAD = "malicious_load"
    OVERLOAD = "overload"
    OVER_VOLTAGE = "over_voltage"
    RECLOSE = "reclose"
    LOCKOUT = "lockout"
    LOW_BALANCE = "low_balance"


@dataclass(frozen=True, slots=True)
class Alarm:
    """Something an operator or a merchant should hear about.

    `message` is for logs; the UI renders its own (Chinese first) text from `kind` and the ids.
    """

    kind: AlarmKind
    severity: Severity
    message: str
    account: str | None = None
    shop: str | None = None
    meter: str | None = None


@dataclass(frozen=True, slots=True)
class Decisions:
    """Transfers (in batch order, linked chains intact), relay actions and alarms."""

    transfers: tuple[Transfer, ...] = ()
    relays: tuple[RelayAction, ...] = ()
    alarms: tuple[Alarm, ...] = ()

    def __add__(self, other: Decisions) -> Decisions:
        return Decisions(
            self.transfers + other.transfers,
            self.relays + other.relays,
            self.alarms + other.alarms,
        )

    @property
    def empty(self) -> bool:
        return not (self.transfers or self.relays or self.alarms)


NOTHING = Decisions()


@dataclass(frozen=True, slots=True)
class Decided(Generic[S]):
    """A rule's answer: its new state and what to do."""

    state: S
    decisions: Decisions = NOTHING


def settle_relay(
    held: frozenset[RelayCause], actions: Iterable[RelayAction]
) -> tuple[frozenset[RelayCause], tuple[RelayAction, ...]]:
    """Fold one meter's rule actions into the causes holding its relay open.

    Returns the new set of causes and the commands to send: a trip when the set becomes
    non-empty, a close when it becomes empty; nothing while another cause still holds it.
    """
    commands: list[RelayAction] = []
    for action in actions:
        before = held
        if action.command is RelayCommand.TRIP:
            held = held | {action.cause}
        else:
            held = held - {action.cause}
        if bool(held) != bool(before):
            commands.append(action)
    return held, tuple(commands)
